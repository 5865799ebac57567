package pluginkit_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/bus/bustest"
	"github.com/plugbus/plugbus/internal/natscli"
)

// The real nats CLI sees a plugin as a NATS micro service, can invoke it in
// binary and structured mode on the invoke subject, sees its errors in the
// micro statistics, and gets no answer on an events subject.
func TestNATSCLIInterop(t *testing.T) {
	t.Parallel()
	cli := natscli.Path(t)
	hello := build(t, helloPkg)
	s := bustest.NewServer(t)
	nc := bustest.Connect(t, s)
	started := watchStarted(t, nc, "hello")
	p := startProc(t, hello, s.ClientURL())
	inst := awaitStarted(t, started, p)

	home := t.TempDir() // no contexts of the user's
	// run runs the nats CLI and returns its combined output and error.
	run := func(args ...string) (string, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, cli, append([]string{"--server", s.ClientURL(), "--timeout", "3s"}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home, "NO_COLOR=1")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	nats := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("nats %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	mustContain := func(what, out string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s does not show %q:\n%s", what, w, out)
			}
		}
	}
	// mustHaveLine wants a line of out holding every one of words.
	mustHaveLine := func(what, out string, words ...string) {
		t.Helper()
	next:
		for _, line := range strings.Split(out, "\n") {
			for _, w := range words {
				if !strings.Contains(line, w) {
					continue next
				}
			}
			return
		}
		t.Errorf("%s has no line with %q:\n%s", what, words, out)
	}
	binary := []string{
		"-H", "ce-specversion:1.0", "-H", "ce-id:cli-1", "-H", "ce-source:urn:natscli",
		"-H", "ce-type:com.example.greet.requested", "-H", "ce-datacontenttype:application/json",
	}

	t.Run("micro ls", func(t *testing.T) {
		mustHaveLine("nats micro ls", nats("micro", "ls"), "hello", "0.1.0", inst.ID)
	})
	t.Run("micro ls --json", func(t *testing.T) {
		var list []struct {
			Name, Version, ID string
		}
		out := nats("micro", "ls", "--json")
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("%v in %s", err, out)
		}
		if len(list) != 1 || list[0].Name != "hello" || list[0].Version != "0.1.0" || list[0].ID != inst.ID {
			t.Errorf("nats micro ls --json: got %+v, want hello 0.1.0 %s", list, inst.ID)
		}
	})
	t.Run("micro info", func(t *testing.T) {
		out := nats("micro", "info", "hello")
		mustHaveLine("nats micro info hello", out, "Service:", "hello", inst.ID)
		mustHaveLine("nats micro info hello", out, "Version:", "0.1.0")
		mustHaveLine("nats micro info hello", out, "Subject:", "plugbus.events.*.com.example.greet.requested")
		mustHaveLine("nats micro info hello", out, "Subject:", "plugbus.invoke.*.com.example.greet.requested")
		mustHaveLine("nats micro info hello", out, "Queue Group:", "hello")
		mustHaveLine("nats micro info hello", out, "plugbus.emits:", "com.example.greet.sent")
		mustHaveLine("nats micro info hello", out, "plugbus.role:", "answer")
		// The schemas of the typed handler's data and answer.
		// (nats shortens long metadata values in the middle.)
		mustHaveLine("nats micro info hello", out, "plugbus.schema:", `"required":["name"]`)
		mustHaveLine("nats micro info hello", out, "plugbus.schema.com.example.greet.sent:", `"required":["text"]`)
	})
	t.Run("request in binary mode", func(t *testing.T) {
		out := nats(append([]string{"request", "--raw", "plugbus.invoke.natscli.com.example.greet.requested", `{"name":"cli"}`}, binary...)...)
		mustContain("nats request", out, `{"text":"hello, cli"}`)
	})
	t.Run("request in structured mode", func(t *testing.T) {
		out := nats("request", "--raw", "plugbus.invoke.natscli.com.example.greet.requested",
			`{"specversion":"1.0","id":"cli-2","source":"urn:natscli","type":"com.example.greet.requested","datacontenttype":"application/json","data":{"name":"structured"}}`,
			"-H", "Content-Type:application/cloudevents+json")
		mustContain("nats request", out, `{"text":"hello, structured"}`)
	})
	t.Run("a request that is no event gets a micro error", func(t *testing.T) {
		out := nats("request", "plugbus.invoke.natscli.com.example.greet.requested", "just text")
		mustContain("nats request", out, "Nats-Service-Error-Code: 400", "not a CloudEvent")
		// The error counts in the answering endpoint's micro statistics
		// (once the handler has returned, just after the answer went out).
		deadline := time.Now().Add(testTimeout)
		for out = nats("micro", "info", "hello"); !strings.Contains(out, "Errors: 1") && time.Now().Before(deadline); out = nats("micro", "info", "hello") {
			time.Sleep(50 * time.Millisecond)
		}
		mustHaveLine("nats micro info hello", out, "Errors:", "1")
	})
	t.Run("data that breaks the schema gets a 422 naming the field", func(t *testing.T) {
		out := nats(append([]string{"request", "plugbus.invoke.natscli.com.example.greet.requested", `{"name":5}`}, binary...)...)
		mustContain("nats request", out, "Nats-Service-Error-Code: 422", `field "name": got number, want string`)
	})
	t.Run("nothing answers on an events subject", func(t *testing.T) {
		out, err := run(append([]string{"request", "--timeout", "500ms", "plugbus.events.natscli.com.example.greet.requested", `{"name":"cli"}`}, binary...)...)
		if err == nil || strings.Contains(out, "hello, cli") {
			t.Errorf("nats request on the events subject: got an answer (error %v):\n%s", err, out)
		}
	})
}
