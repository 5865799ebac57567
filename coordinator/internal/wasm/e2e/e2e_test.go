// Package e2e_test runs WebAssembly plugins in a real coordinator: plugin
// hello built for wasip1 from its unchanged source, and a module that
// misbehaves on request.
package e2e_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator"
	"github.com/plugbus/plugbus/coordinator/coordinatortest"
	"github.com/plugbus/plugbus/coordinator/internal/wasm/wasmtest"
	"github.com/plugbus/plugbus/internal/proctest"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// The modules, built and compiled into cache once for the test binary.
var hello, misbehaving, cache string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "plugbus-wasm-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cache = filepath.Join(dir, "cache")
	helloPkg := "./plugins/hello"
	if _, err := os.Stat("../../../../plugins/hello/cmd/hello"); err == nil {
		helloPkg = "./plugins/hello/cmd/hello"
	}
	modules, err := wasmtest.Build("../../../..", "../../../..", dir, cache, helloPkg, "./coordinator/internal/wasm/testdata/wasmtest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	hello, misbehaving = modules[0], modules[1]
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// run runs a coordinator in this process with the given plugins until the
// test ends, and returns it with a client connection.
func run(t *testing.T, plugins ...coordinator.PluginSpec) (*coordinator.Coordinator, *nats.Conn) {
	t.Helper()
	c := coordinatortest.Start(t, coordinator.Config{WasmCacheDir: cache, Plugins: plugins})
	return c, coordinatortest.Connect(t, c)
}

func greets(t *testing.T, nc *nats.Conn, typ, name string) {
	t.Helper()
	res, err := coordinatortest.Invoke(t, nc, typ, map[string]string{"name": name}, 90*time.Second)
	if err != nil {
		t.Fatalf("invoke %s: %v", typ, err)
	}
	var got struct{ Text string }
	if err := res.DataAs(&got); err != nil || got.Text != "hello, "+name {
		t.Fatalf("invoke %s answered %s (%v), want text %q", typ, res.Data(), err, "hello, "+name)
	}
}

// instance is a supervised instance as GET /v1/supervised shows it.
type instance struct {
	Instance string `json:"instance"`
	State    string `json:"state"`
	Restarts int    `json:"restarts"`
	LastExit *struct {
		Error string `json:"error"`
	} `json:"last_exit"`
}

func supervised(t *testing.T, c *coordinator.Coordinator, name string) instance {
	t.Helper()
	resp, err := http.Get("http://" + c.HTTPAddr() + "/v1/supervised")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []instance
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	for _, in := range list {
		if in.Instance == name {
			return in
		}
	}
	t.Fatalf("no instance %s", name)
	return instance{}
}

func TestHelloAsWebAssembly(t *testing.T) {
	c, nc := run(t, coordinator.PluginSpec{Name: "hello", Wasm: hello})
	greets(t, nc, "com.example.greet.requested", "Ada")
	_, err := coordinatortest.Invoke(t, nc, "com.example.greet.requested", 3, 90*time.Second)
	var se *bus.ServiceError
	if !errors.As(err, &se) || se.Code != bus.CodePermanent {
		t.Fatalf("bad data: got %v, want a permanent error", err)
	}
	// Over HTTP, and in discovery, like any plugin.
	resp, err := http.Post("http://"+c.HTTPAddr()+"/v1/invoke/com.example.greet.requested", "application/json", strings.NewReader(`{"name":"Bo"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "hello, Bo") {
		t.Fatalf("HTTP invoke: %d %s", resp.StatusCode, body)
	}
	found := false
	for _, p := range c.Plugins() {
		found = found || (p.Name == "hello" && len(p.Instances) == 1)
	}
	if !found {
		t.Errorf("hello is not in the registry: %+v", c.Plugins())
	}
}

func TestMisbehavingModulesStopOnlyThemselves(t *testing.T) {
	c, nc := run(t,
		coordinator.PluginSpec{Name: "hello", Wasm: hello},
		coordinator.PluginSpec{Name: "bad", Wasm: misbehaving, MemoryPages: 1024, Timeout: coordinator.Duration(3 * time.Second)},
	)
	greets(t, nc, "com.example.greet.requested", "Ada")
	greets(t, nc, "com.example.wasm.greet", "Ada")

	for i, tc := range []struct {
		typ  string
		exit []string // the last exit's error says one of these
	}{
		{"com.example.wasm.loop", []string{"interrupted"}}, // the bridge's timeout interrupts it
		// Go's runtime exits "out of memory", unless the timeout comes
		// first (allocating 64 MiB is slow under the race detector).
		{"com.example.wasm.bomb", []string{"exit status", "interrupted"}},
		{"com.example.wasm.trap", []string{"out of bounds"}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := bus.Request(ctx, nc, bus.DefaultPrefix, "test", pluginkit.NewEvent(tc.typ, map[string]int{}))
		cancel()
		if err == nil {
			t.Fatalf("%s: answered, want an error", tc.typ)
		}
		// The failure is the plugin's: it is restarted, with the reason...
		var got instance
		deadline := time.Now().Add(60 * time.Second)
		for got = supervised(t, c, "bad-1"); got.Restarts < i+1 || got.State != "running"; got = supervised(t, c, "bad-1") {
			if time.Now().After(deadline) {
				t.Fatalf("%s: bad-1 not restarted within 60s: %+v", tc.typ, got)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if got.LastExit == nil || !slices.ContainsFunc(tc.exit, func(s string) bool { return strings.Contains(got.LastExit.Error, s) }) {
			t.Errorf("%s: last exit %+v, want one saying one of %q", tc.typ, got.LastExit, tc.exit)
		}
		// ...while the coordinator and the other plugin keep serving, and
		// the restarted one serves again.
		greets(t, nc, "com.example.greet.requested", "Bo")
		greets(t, nc, "com.example.wasm.greet", "Bo")
		if h := supervised(t, c, "hello-1"); h.Restarts != 0 {
			t.Fatalf("hello was restarted too: %+v", h)
		}
	}
}

func TestReplacingTheFileStartsTheNewCode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plugin.wasm")
	copyFile(t, misbehaving, path)
	_, nc := run(t, coordinator.PluginSpec{Name: "hello", Wasm: path})
	greets(t, nc, "com.example.wasm.greet", "Ada")

	copyFile(t, hello, path+".new")
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	greets(t, nc, "com.example.greet.requested", "Ada") // hello's code now
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCPluginOverHTTP(t *testing.T) {
	// examples/wasm-c, built with Debian's clang and wasi-libc.
	clang, err := exec.LookPath("clang")
	if err != nil {
		t.Skip("no clang: run make wasm-tools to install clang, lld and wasi-libc (Debian packages)")
	}
	module := filepath.Join(t.TempDir(), "greet-c.wasm")
	out, err := exec.Command(clang, "--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-o", module, "../../../../examples/wasm-c/greet.c").CombinedOutput()
	if err != nil {
		t.Skipf("clang cannot build for wasm32-wasi (run make wasm-tools for wasi-libc and the wasm32 builtins): %v\n%s", err, out)
	}
	c, _ := run(t, coordinator.PluginSpec{Name: "greet-c", Wasm: module})
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Post("http://"+c.HTTPAddr()+"/v1/invoke/com.example.greet.requested", "application/json", strings.NewReader(`{"name":"Ada"}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"hello, Ada"`) {
			break
		}
		if resp.StatusCode != http.StatusNotFound || time.Now().After(deadline) {
			t.Fatalf("HTTP invoke of the C plugin: %d %s", resp.StatusCode, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Post("http://"+c.HTTPAddr()+"/v1/invoke/com.example.greet.requested", "application/json", strings.NewReader(`{"nom":"Ada"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(body), `string \"name\"`) {
		t.Fatalf("bad data: %d %s, want 422 with the plugin's message", resp.StatusCode, body)
	}
}

// TestRestartLoadsTheNewCode changes a module's code without changing its
// file's size or modification time, which the file watcher compares, so
// that only `coordinator restart` can start the new code.
func TestRestartLoadsTheNewCode(t *testing.T) {
	// The old code is the small module padded to hello's size; the new
	// code is hello as built, which TestMain compiled into the cache.
	dir := t.TempDir()
	oldCode, newCode := filepath.Join(dir, "old.wasm"), hello
	padTo(t, misbehaving, oldCode, fileSize(t, hello))
	path := filepath.Join(dir, "plugin.wasm")
	copyFile(t, oldCode, path)
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	c, nc := run(t, coordinator.PluginSpec{Name: "hello", Wasm: path})
	greets(t, nc, "com.example.wasm.greet", "Ada")

	copyFile(t, newCode, path) // in place: same size
	if err := os.Chtimes(path, before.ModTime(), before.ModTime()); err != nil {
		t.Fatal(err)
	}
	if after, err := os.Stat(path); err != nil || after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
		t.Fatalf("the file's size and time changed (%v): the test needs them kept", err)
	}

	coordinatorBin := proctest.Build(t, "../../../cmd/coordinator")
	cli := func(args ...string) (string, error) {
		cmd := exec.Command(coordinatorBin, append(args, "--nats-url", c.NATSURL(), "--api", c.HTTPURL())...)
		cmd.Env = append(os.Environ(), "PLUGBUS_TOKEN=", "PLUGBUS_HTTP_TOKEN=", "PLUGBUS_NKEY=")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := cli("restart", "hello")
	if err != nil || !strings.Contains(out, "hello: 1 instance(s) restarting") {
		t.Fatalf("coordinator restart hello: %v\n%s", err, out)
	}
	greets(t, nc, "com.example.greet.requested", "Ada") // hello's code now

	out, err = cli("restart", "nope")
	if err == nil || !strings.Contains(out, "404") || !strings.Contains(out, "GET /v1/supervised lists the plugins") {
		t.Fatalf("coordinator restart nope: got %v\n%s\nwant a 404 that says where the plugins are listed", err, out)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// padTo copies the module from to to, with a custom section (which
// runtimes ignore) appended so that the file is size bytes long.
func padTo(t *testing.T, from, to string, size int64) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	need := int(size) - len(b) // bytes the section takes: id, length, name, payload
	name := "pad"
	for payload := need - 2 - len(name); payload >= 0 && need-payload <= 16; payload-- {
		body := append([]byte{byte(len(name))}, name...)
		body = append(body, make([]byte, payload)...)
		section := binary.AppendUvarint([]byte{0}, uint64(len(body)))
		section = append(section, body...)
		if len(section) == need {
			if err := os.WriteFile(to, append(b, section...), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("cannot pad %s (%d bytes) to %d bytes", from, len(b), size)
}
