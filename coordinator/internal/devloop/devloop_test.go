package devloop_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	"github.com/plugbus/plugbus/coordinator/internal/devloop"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// syncBuffer collects output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const pluginSource = `package main

import (
	"context"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

func main() {
	p := pluginkit.New("devplugin", "0.1.0")
	p.HandleFunc("com.example.dev.ping", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		return pluginkit.NewEvent("com.example.dev.pong", map[string]string{"version": "VERSION"}), nil
	})
	pluginkit.Main(p)
}
`

// newPluginModule writes a plugin in a module of its own, as a plugin
// author's would be, requiring this repository's plugin-kit.
func newPluginModule(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the plugin with")
	}
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go \S+$`).Find(gomod)
	dir := filepath.Join(t.TempDir(), "devplugin")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mod := "module example.com/devplugin\n\n" + string(goLine) + "\n\nrequire github.com/plugbus/plugbus v0.0.0\n\nreplace github.com/plugbus/plugbus => " + root + "\n"
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"go.mod": mod, "go.sum": string(sum), "main.go": strings.Replace(pluginSource, "VERSION", "v1", 1)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tidy := exec.Command(gobin, "mod", "tidy")
	tidy.Dir = dir
	if out, err := tidy.CombinedOutput(); err != nil {
		t.Fatalf("go mod tidy: %v\n%s", err, out)
	}
	return dir
}

// ping asks the plugin for its version; "" while none answers.
func ping(nc *nats.Conn) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	reply, err := bus.Request(ctx, nc, bus.DefaultPrefix, "test", pluginkit.NewEvent("com.example.dev.ping", nil))
	if err != nil || reply == nil {
		return ""
	}
	var v struct{ Version string }
	_ = reply.DataAs(&v)
	return v.Version
}

// TestEditedPluginAnswersWithNewCode runs the loop on a plugin, edits its
// source, and waits for the new code to answer; a change that does not
// compile leaves the last good build running.
func TestEditedPluginAnswersWithNewCode(t *testing.T) {
	dir := newPluginModule(t)
	srv := bustest.NewServer(t)
	nc := bustest.Connect(t, srv)

	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- devloop.Run(ctx, devloop.Config{
			Package: dir,
			Env:     []string{"PLUGBUS_URL=" + srv.ClientURL(), "PLUGBUS_LOG_FORMAT=text"},
			Stdout:  out, Stderr: out, Poll: 100 * time.Millisecond,
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if !strings.Contains(out.String(), "dev: stopping devplugin") {
			t.Errorf("no word of stopping the plugin:\n%s", out)
		}
	}()

	waitFor := func(what string, within time.Duration, ok func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for deadline := start.Add(within); !ok(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waited %v for %s; output:\n%s", within, what, out)
			}
		}
		return time.Since(start)
	}
	// The first build compiles plugin-kit's dependencies unless cached.
	waitFor("the first build to answer", 3*time.Minute, func() bool { return ping(nc) == "v1" })
	if !strings.Contains(out.String(), `msg="plugin started"`) {
		t.Errorf("the plugin's own log is not printed:\n%s", out)
	}

	edit := func(version string) {
		t.Helper()
		src := strings.Replace(pluginSource, "VERSION", version, 1)
		if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	edit("v2")
	took := waitFor("the edited code to answer", 2*time.Minute, func() bool { return ping(nc) == "v2" })
	// The compiler's time depends on the machine and its load; the rest
	// (seeing the change, stopping the old process, starting the new one
	// and its subscribing) is the loop's, and must be a few seconds.
	m := regexp.MustCompile(`(?s)dev: main.go changed; building\n.*?dev: built in (\S+); restarted`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no word of the rebuild:\n%s", out)
	}
	buildTime, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("from saving the file to the new code answering: %v, of which building %v", took, buildTime)
	if rest := took - buildTime; rest > 5*time.Second {
		t.Errorf("from saving the file to the new code answering took %v besides the build, want a few seconds", rest)
	}

	// Broken code: the build fails, and v2 keeps answering.
	if err := os.WriteFile(filepath.Join(dir, "broken.go"), []byte("package main\n\nfunc broken() { undefined() }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor("the failed build to be reported", time.Minute, func() bool {
		return strings.Contains(out.String(), "build failed; devplugin keeps running the last good build")
	})
	if !strings.Contains(out.String(), "undefined: undefined") {
		t.Errorf("the compiler's error is not printed:\n%s", out)
	}
	if v := ping(nc); v != "v2" {
		t.Errorf("after a failed build the plugin answers %q, want v2 still", v)
	}
	if err := os.Remove(filepath.Join(dir, "broken.go")); err != nil {
		t.Fatal(err)
	}
	edit("v3")
	waitFor("the fixed code to answer", time.Minute, func() bool { return ping(nc) == "v3" })
}
