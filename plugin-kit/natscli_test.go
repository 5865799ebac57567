package pluginkit_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/plugbus/plugbus/bus/bustest"
	"github.com/plugbus/plugbus/internal/natscli"
)

// The real nats CLI sees a plugin as a NATS micro service and can send it
// an event in binary mode with its header flags.
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
	nats := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, cli, append([]string{"--server", s.ClientURL(), "--timeout", "3s"}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home, "NO_COLOR=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("nats %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
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
		mustHaveLine("nats micro info hello", out, "Queue Group:", "hello")
		mustHaveLine("nats micro info hello", out, "plugbus.emits:", "com.example.greet.sent")
	})
	t.Run("request", func(t *testing.T) {
		out := nats("request", "--raw", "plugbus.events.natscli.com.example.greet.requested", `{"name":"cli"}`,
			"-H", "ce-specversion:1.0", "-H", "ce-id:cli-1", "-H", "ce-source:urn:natscli",
			"-H", "ce-type:com.example.greet.requested", "-H", "ce-datacontenttype:application/json")
		mustContain("nats request", out, `{"text":"hello, cli"}`)
	})
}
