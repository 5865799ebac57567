package coordinator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator"
	"github.com/plugbus/plugbus/coordinator/coordinatortest"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// runCoordinator runs a coordinator in this process with the given plugins
// until the test ends, and returns it with a client connection.
func runCoordinator(t *testing.T, plugins ...coordinator.PluginSpec) (*coordinator.Coordinator, *nats.Conn) {
	t.Helper()
	c := coordinatortest.Start(t, coordinator.Config{Plugins: plugins})
	return c, coordinatortest.Connect(t, c)
}

func pythonSpec(t *testing.T, name string) coordinator.PluginSpec {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 to run the Python example with")
	}
	return coordinator.PluginSpec{Name: name, Exec: py, Args: []string{"../examples/stdio/hello.py"}, Stdio: true}
}

func TestStdioExamples(t *testing.T) {
	c, nc := runCoordinator(t,
		pythonSpec(t, "hello-py"),
		coordinator.PluginSpec{Name: "counter", Exec: "sh", Args: []string{"../examples/stdio/counter.sh"}, Stdio: true, Replicas: 2},
	)

	res, err := coordinatortest.Invoke(t, nc, "com.example.greet.requested", map[string]string{"name": "Ada"}, 30*time.Second)
	if err != nil {
		t.Fatalf("invoke hello-py: %v", err)
	}
	var greeting struct{ Text string }
	if err := res.DataAs(&greeting); err != nil || greeting.Text != "hello, Ada" || res.Type() != "com.example.greet.sent" {
		t.Fatalf("hello-py answered %s %s (%v), want com.example.greet.sent with text \"hello, Ada\"", res.Type(), res.Data(), err)
	}
	if got, want := res.Source(), bus.Source("hello-py"); got != want {
		t.Errorf("result source %q, want %q", got, want)
	}

	_, err = coordinatortest.Invoke(t, nc, "com.example.greet.requested", map[string]int{"name": 3}, 30*time.Second)
	var se *bus.ServiceError
	if !errors.As(err, &se) || se.Code != bus.CodePermanent || !strings.Contains(se.Description, `string "name"`) {
		t.Fatalf("invoke hello-py with bad data: got %v, want a permanent error (%s) with the plugin's message", err, bus.CodePermanent)
	}

	// The shell plugin, over HTTP, twice: both replicas share the queue
	// group, and each answer names the caller. It starts beside hello-py
	// and may not answer yet when hello-py does: the first invoke is
	// retried while nothing answers its type (404).
	for i := range 2 {
		var out struct {
			Data struct {
				Count    int    `json:"count"`
				Producer string `json:"producer"`
			} `json:"data"`
		}
		var status int
		var body string
		waitFor(t, "counter answering over HTTP", 30*time.Second, func() error {
			status, body = httpInvoke(t, c.HTTPAddr(), "com.example.counter.requested", `{}`)
			if i == 0 && status == http.StatusNotFound {
				return fmt.Errorf("%d %s", status, body)
			}
			return nil
		})
		if status != http.StatusOK {
			t.Fatalf("HTTP invoke counter: %d %s", status, body)
		}
		if err := json.Unmarshal([]byte(body), &out); err != nil || out.Data.Count < 1 || out.Data.Producer == "" {
			t.Fatalf("HTTP invoke counter answered %s (%v), want a count and the producer", body, err)
		}
	}

	// Discovery sees the bridged plugins as any other.
	waitFor(t, "hello-py and 2 counter instances in the registry", 30*time.Second, func() error {
		n := map[string]int{}
		for _, p := range c.Plugins() {
			n[p.Name] = len(p.Instances)
		}
		if n["hello-py"] != 1 || n["counter"] != 2 {
			return fmt.Errorf("instances %v", n)
		}
		return nil
	})
}

func TestStdioInSecureMode(t *testing.T) {
	// The bridge connects with the plugin's own nkey, limited to the types
	// its spec declares; the program itself gets no key.
	secure := true
	spec := pythonSpec(t, "hello-py")
	spec.Answers, spec.Handles, spec.Emits = []string{"com.example.greet.requested"}, []string{"com.example.greet.requested"}, []string{"com.example.greet.sent"}
	c := coordinatortest.Start(t, coordinator.Config{Secure: &secure, Plugins: []coordinator.PluginSpec{spec}})
	waitFor(t, "hello-py answering over HTTP", 30*time.Second, func() error {
		status, body := httpInvoke(t, c.HTTPAddr(), "com.example.greet.requested", `{"name":"Ada"}`)
		if status != http.StatusOK || !strings.Contains(body, "hello, Ada") {
			return fmt.Errorf("%d %s", status, body)
		}
		return nil
	})
}

func TestStdioRestartsAProgramThatExits(t *testing.T) {
	c, nc := runCoordinator(t, pythonSpec(t, "hello-py"))
	if _, err := coordinatortest.Invoke(t, nc, "com.example.greet.requested", map[string]string{"name": "Ada"}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	pid := supervisedPID(t, c.HTTPAddr(), "hello-py-1")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new hello-py process", 30*time.Second, func() error {
		if p := supervisedPID(t, c.HTTPAddr(), "hello-py-1"); p == pid || p == 0 {
			return fmt.Errorf("pid %d", p)
		}
		return nil
	})
	if _, err := coordinatortest.Invoke(t, nc, "com.example.greet.requested", map[string]string{"name": "Bo"}, 30*time.Second); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
}

// misbehaving writes a stdio program in shell: its manifest answers
// com.example.test.requested, then body runs for each line read ($id holds
// the line's id).
func misbehaving(t *testing.T, body string) string {
	t.Helper()
	script := `printf '%s\n' '{"manifest":{"version":"1.0.0","answers":["com.example.test.requested"]}}'
while IFS= read -r line; do
	id=$(printf '%s\n' "$line" | sed -n 's/^{"id":"\([^"]*\)".*/\1/p')
` + body + `
done
`
	path := filepath.Join(t.TempDir(), "plugin.sh")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestStdioSkipsMalformedLines(t *testing.T) {
	script := misbehaving(t, `
	echo 'this is not JSON'
	echo '{"id":"no-such-line"}'
	echo '{"neither":"manifest nor id nor emit"}'
	head -c 1100000 /dev/zero | tr '\0' x; echo
	printf '{"id":"%s","event":{"type":"com.example.test.done","data":{"ok":true}}}\n' "$id"`)
	c, nc := runCoordinator(t, coordinator.PluginSpec{Name: "sloppy", Exec: "sh", Args: []string{script}, Stdio: true})
	for range 3 {
		res, err := coordinatortest.Invoke(t, nc, "com.example.test.requested", map[string]int{}, 30*time.Second)
		if err != nil || res == nil || res.Type() != "com.example.test.done" {
			t.Fatalf("got %v, %v; want the answer after the malformed lines", res, err)
		}
	}
	// Each answer came after its 4 bad lines had been read and skipped.
	if got := supervised(t, c.HTTPAddr(), "sloppy-1").MalformedLines; got != 12 {
		t.Errorf("malformed_lines %d, want 12", got)
	}
}

func TestStdioRestartsAProgramThatStopsAnswering(t *testing.T) {
	// The first process answers once, then never again; the restarted one
	// (a marker file tells them apart) answers everything.
	marker := filepath.Join(t.TempDir(), "hung-once")
	script := misbehaving(t, `
	if [ -e `+marker+` ]; then
		printf '{"id":"%s"}\n' "$id"
	elif [ -n "$answered" ]; then
		touch `+marker+`
		sleep 3600 &
		wait
	else
		answered=1
		printf '{"id":"%s"}\n' "$id"
	fi`)
	c, nc := runCoordinator(t, coordinator.PluginSpec{Name: "stuck", Exec: "sh", Args: []string{script}, Stdio: true, Timeout: coordinator.Duration(time.Second)})
	if _, err := coordinatortest.Invoke(t, nc, "com.example.test.requested", nil, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	pid := supervisedPID(t, c.HTTPAddr(), "stuck-1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := bus.Request(ctx, nc, bus.DefaultPrefix, "test", pluginkit.NewEvent("com.example.test.requested", nil))
	var se *bus.ServiceError
	if !errors.As(err, &se) || !strings.Contains(se.Description, "restarting") {
		t.Fatalf("request to a hung plugin: got %v, want an error saying it is restarting", err)
	}
	waitFor(t, "the hung program replaced", 30*time.Second, func() error {
		if p := supervisedPID(t, c.HTTPAddr(), "stuck-1"); p == pid || p == 0 {
			return fmt.Errorf("pid %d", p)
		}
		return nil
	})
	if _, err := coordinatortest.Invoke(t, nc, "com.example.test.requested", nil, 30*time.Second); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
}

func httpInvoke(t *testing.T, addr, typ, body string) (int, string) {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/v1/invoke/"+typ, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// supervisedInstance is an instance as GET /v1/supervised shows it.
type supervisedInstance struct {
	Instance       string `json:"instance"`
	PID            int    `json:"pid"`
	MalformedLines uint64 `json:"malformed_lines"`
}

// supervised returns a supervised instance by name.
func supervised(t *testing.T, addr, instance string) supervisedInstance {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/v1/supervised")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []supervisedInstance
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	for _, in := range list {
		if in.Instance == instance {
			return in
		}
	}
	t.Fatalf("no supervised instance %s in %v", instance, list)
	return supervisedInstance{}
}

// supervisedPID returns the pid of a supervised instance, 0 if none runs.
func supervisedPID(t *testing.T, addr, instance string) int {
	t.Helper()
	return supervised(t, addr, instance).PID
}

func TestStdioRunsAPluginKitProgram(t *testing.T) {
	// plugins/hello, unchanged: the supervisor sets PLUGBUS_STDIO=1 and
	// plugin-kit's Main speaks the stdio protocol instead of NATS.
	_, nc := runCoordinator(t, coordinator.PluginSpec{Name: "hello", Exec: filepath.Join(binDir, "hello"), Stdio: true})
	res, err := coordinatortest.Invoke(t, nc, "com.example.greet.requested", map[string]string{"name": "Ada"}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var greeting struct{ Text string }
	if err := res.DataAs(&greeting); err != nil || greeting.Text != "hello, Ada" {
		t.Fatalf("hello over stdio answered %s (%v)", res.Data(), err)
	}
	_, err = coordinatortest.Invoke(t, nc, "com.example.greet.requested", 3, 30*time.Second)
	var se *bus.ServiceError
	if !errors.As(err, &se) || se.Code != bus.CodePermanent {
		t.Fatalf("bad data: got %v, want a permanent error", err)
	}
}

func TestStdioObserverDoesNotAnswer(t *testing.T) {
	// A stdio plugin that handles com.example.> observes events only:
	// requests go to the plugin that answers their type, and the results
	// published after them reach the observer.
	seen := filepath.Join(t.TempDir(), "seen")
	script := filepath.Join(t.TempDir(), "watcher.sh")
	body := `printf '%s\n' '{"manifest":{"version":"1.0.0","handles":["com.example.>"]}}'
while IFS= read -r line; do
	id=$(printf '%s\n' "$line" | sed -n 's/^{"id":"\([^"]*\)".*/\1/p')
	printf '%s\n' "$line" >> ` + seen + `
	printf '{"id":"%s","error":{"message":"the observer answered","permanent":true}}\n' "$id"
done
`
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	_, nc := runCoordinator(t,
		pythonSpec(t, "hello-py"),
		coordinator.PluginSpec{Name: "watcher", Exec: "sh", Args: []string{script}, Stdio: true},
	)
	for range 5 {
		if _, err := coordinatortest.Invoke(t, nc, "com.example.greet.requested", map[string]string{"name": "Ada"}, 30*time.Second); err != nil {
			t.Fatalf("invoke: %v (the observer must not answer)", err)
		}
	}
	waitFor(t, "the observer to see the greetings sent", 30*time.Second, func() error {
		b, _ := os.ReadFile(seen)
		if !strings.Contains(string(b), "com.example.greet.sent") {
			return fmt.Errorf("it saw %q", b)
		}
		return nil
	})
}

func TestStdioSchemasCheckedByTheBridge(t *testing.T) {
	// The manifest gives a schema: the bridge checks data against it, so
	// bad data never reaches the program (which counts its lines), and
	// good data comes marked as checked (which the program sends back).
	seen := filepath.Join(t.TempDir(), "seen")
	script := filepath.Join(t.TempDir(), "plugin.sh")
	body := `printf '%s\n' '{"manifest":{"version":"1.0.0","answers":["com.example.test.requested"],"schemas":{"com.example.test.requested":{"type":"object","properties":{"name":{"type":"string"}},"required":["name"]}}}}'
while IFS= read -r line; do
	echo x >> ` + seen + `
	id=$(printf '%s\n' "$line" | sed -n 's/^{"id":"\([^"]*\)".*/\1/p')
	checked=$(printf '%s\n' "$line" | sed -n 's/.*"checked":"\([^"]*\)".*/\1/p')
	printf '{"id":"%s","event":{"type":"com.example.test.done","data":{"checked":"%s"}}}\n' "$id" "$checked"
done
`
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	_, nc := runCoordinator(t, coordinator.PluginSpec{Name: "typed", Exec: "sh", Args: []string{script}, Stdio: true})
	res, err := coordinatortest.Invoke(t, nc, "com.example.test.requested", map[string]string{"name": "Ada"}, 30*time.Second)
	var got struct{ Checked string }
	if err != nil || res.DataAs(&got) != nil || got.Checked != "com.example.test.requested" {
		t.Fatalf("good data: got %v, %v; want the line marked checked", res, err)
	}
	_, err = coordinatortest.Invoke(t, nc, "com.example.test.requested", map[string]int{"name": 3}, 30*time.Second)
	var se *bus.ServiceError
	if !errors.As(err, &se) || se.Code != bus.CodePermanent || !strings.Contains(se.Description, "name") {
		t.Fatalf("bad data: got %v, want a permanent error naming the field", err)
	}
	if b, err := os.ReadFile(seen); err != nil || strings.Count(string(b), "x") != 1 {
		t.Fatalf("the program read %q (%v), want only the good line", b, err)
	}
}
