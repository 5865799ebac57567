package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/internal/proctest"
)

// TestAgentAndRuntimePlugins runs coordinator agent as a process and drives
// it with the CLI: run, agents, scale, logs, stop.
func TestAgentAndRuntimePlugins(t *testing.T) {
	hello := proctest.Build(t, "../../../plugins/hello/cmd/hello")
	e := newCLIEnv(t)
	e.fails([]string{"run", "hello", "--exec", hello}, "no agent is running", "coordinator agent")

	agent := exec.Command(coordinatorBin, "agent", "--name", "a")
	agent.Env = append(os.Environ(), "PLUGBUS_URL="+e.url, "PLUGBUS_PREFIX=plugbus", "PLUGBUS_TOKEN=")
	var agentLog proctest.Output
	agent.Stdout, agent.Stderr = &agentLog, &agentLog
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = agent.Process.Signal(os.Interrupt)
		_ = agent.Wait()
		if t.Failed() {
			t.Logf("agent's log:\n%s", agentLog.String())
		}
	})

	type status struct {
		Name      string
		Instances []struct{ Instance, State string }
	}
	agents := func() []status {
		var as []status
		if err := json.Unmarshal([]byte(e.ok("agents", "--json")), &as); err != nil {
			t.Fatal(err)
		}
		return as
	}
	until := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 30s", what)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	until("the agent announced", func() bool { as := agents(); return len(as) == 1 && as[0].Name == "a" })

	if out := e.ok("run", "hello", "--exec", hello); !strings.Contains(out, "agent a") {
		t.Errorf("run: %q does not name the agent", out)
	}
	running := func(n int) func() bool {
		return func() bool {
			as := agents()
			if len(as) != 1 || len(as[0].Instances) != n {
				return false
			}
			for _, in := range as[0].Instances {
				if in.State != "running" {
					return false
				}
			}
			return true
		}
	}
	until("one hello instance running", running(1))
	e.ok("scale", "hello", "2")
	until("two hello instances running", running(2))
	if out := e.ok("agents"); !strings.Contains(out, "hello-1(running) hello-2(running)") {
		t.Errorf("agents: %q does not list both instances", out)
	}
	e.fails([]string{"scale", "hello", "two"}, "want a number")
	e.fails([]string{"scale", "nobody", "2"}, "no such plugin", "nobody")

	until("hello's log lines", func() bool {
		out := e.ok("logs", "hello", "-n", "3")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		return len(lines) == 3 && strings.Contains(out, `"plugin":"hello"`)
	})

	e.ok("stop", "hello")
	until("no instance after stop", running(0))
	e.fails([]string{"stop", "hello"}, "no such plugin")
}
