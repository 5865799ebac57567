package pluginkit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/bus/bustest"
)

// natscliVersion is the release of the nats CLI the interop test runs.
const natscliVersion = "v0.5.0"

// natsCLI returns the path of the nats CLI, building it with go install
// into the user cache directory the first time. When the build fails for
// want of the network (no module proxy), the test is skipped, unless CI is
// set: CI must run it.
func natsCLI(t *testing.T) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "plugbus-test", "natscli-"+natscliVersion)
	bin := filepath.Join(dir, "nats")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	gobin := goTool(t)
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "natscli-build-")
	if os.IsNotExist(err) {
		if err = os.MkdirAll(filepath.Dir(dir), 0o755); err == nil {
			tmp, err = os.MkdirTemp(filepath.Dir(dir), "natscli-build-")
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)

	// About a minute from an empty module and build cache on a quiet
	// 2-core machine; the margin is for a busy one (go test runs packages
	// in parallel).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, gobin, "install", "github.com/nats-io/natscli/nats@"+natscliVersion)
	cmd.Dir = tmp // outside the module: go install pkg@version ignores go.mod anyway
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=-mod=mod")
	out, err := cmd.CombinedOutput()
	if err != nil {
		why := fmt.Sprintf("building the nats CLI %s (go install, %v): %v\n%s", natscliVersion, time.Since(start).Round(time.Second), err, out)
		if os.Getenv("CI") == "" && unreachable(string(out)) {
			t.Skip("no module proxy: " + why)
		}
		t.Fatal(why)
	}
	t.Logf("built the nats CLI %s in %v", natscliVersion, time.Since(start).Round(time.Second))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A rename within one directory tree is atomic: a concurrent run sees
	// the whole binary or none.
	if err := os.Rename(filepath.Join(tmp, "nats"), bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// unreachable reports whether go command output says the network or the
// module proxy could not be reached.
func unreachable(out string) bool {
	for _, s := range []string{"dial tcp", "no such host", "connection refused", "i/o timeout", "TLS handshake", "proxyconnect", "network is unreachable", "Temporary failure in name resolution", "403 Forbidden", "502 Bad Gateway", "503 Service Unavailable", "GOPROXY=off"} {
		if strings.Contains(out, s) {
			return true
		}
	}
	return false
}

// The real nats CLI sees a plugin as a NATS micro service and can send it
// an event in binary mode with its header flags.
func TestNATSCLIInterop(t *testing.T) {
	t.Parallel()
	cli := natsCLI(t)
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
