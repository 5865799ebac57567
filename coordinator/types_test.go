package coordinator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator"
	"github.com/plugbus/plugbus/coordinator/coordinatortest"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

type greetRequest struct {
	Name string `json:"name"`
}

type greeting struct {
	Text string `json:"text"`
}

// startInProcess runs a coordinator in this process on free ports and
// returns it with its HTTP base URL.
func startInProcess(t *testing.T) (*coordinator.Coordinator, string) {
	t.Helper()
	c := coordinatortest.Start(t, coordinator.Config{})
	return c, "http://" + c.HTTPAddr()
}

// runPlugin runs p against the coordinator's bus until the test ends.
func runPlugin(t *testing.T, p *pluginkit.Plugin) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- p.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// waitFor polls check until it returns nil or the time runs out.
func waitFor(t *testing.T, what string, within time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpDo(t *testing.T, method, url, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestTypedContractsAtTheDoor(t *testing.T) {
	c, api := startInProcess(t)
	var calls atomic.Int32
	hello := pluginkit.New("hello", "0.1.0", pluginkit.WithConnConfig(bus.ConnConfig{URLs: []string{c.NATSURL()}}))
	pluginkit.Answer(hello, "com.example.greet.requested", "com.example.greet.sent", func(ctx context.Context, req greetRequest) (greeting, error) {
		calls.Add(1)
		return greeting{Text: "hello, " + req.Name}, nil
	})
	runPlugin(t, hello)
	// A second plugin declaring another schema for the same type.
	other := pluginkit.New("other", "0.1.0", pluginkit.WithConnConfig(bus.ConnConfig{URLs: []string{c.NATSURL()}}))
	pluginkit.On(other, "com.example.greet.sent", func(ctx context.Context, g struct {
		Text int `json:"text"`
	}) error {
		return nil
	})
	runPlugin(t, other)

	type entry struct {
		Type       string          `json:"type"`
		EmittedBy  []string        `json:"emitted_by"`
		AnsweredBy []string        `json:"answered_by"`
		HandledBy  []string        `json:"handled_by"`
		Schema     json.RawMessage `json:"schema"`
		Conflict   string          `json:"conflict"`
	}
	byType := map[string]entry{}
	waitFor(t, "the catalogue lists both plugins' types with schemas", 20*time.Second, func() error {
		status, body := httpDo(t, "GET", api+"/v1/types", "", "")
		var types []entry
		if status != 200 || json.Unmarshal([]byte(body), &types) != nil {
			return &testError{"GET /v1/types: " + body}
		}
		byType = map[string]entry{}
		for _, e := range types {
			byType[e.Type] = e
		}
		if len(byType["com.example.greet.requested"].Schema) == 0 || byType["com.example.greet.sent"].Conflict == "" {
			return &testError{"not yet: " + body}
		}
		return nil
	})
	if got := byType["com.example.greet.requested"]; strings.Join(got.AnsweredBy, ",") != "hello" {
		t.Errorf("greet.requested entry %+v, want answered by hello", got)
	}
	if got := byType["com.example.greet.sent"]; strings.Join(got.EmittedBy, ",") != "hello" || strings.Join(got.HandledBy, ",") != "other" || !strings.Contains(got.Conflict, "hello") || !strings.Contains(got.Conflict, "other") {
		t.Errorf("greet.sent entry %+v, want emitted by hello, handled by other, a conflict naming both", got)
	}

	status, body := httpDo(t, "POST", api+"/v1/invoke/com.example.greet.requested", "application/json", `{"name": 5}`)
	if status != http.StatusBadRequest || !strings.Contains(body, `"field":"data.name"`) || !strings.Contains(body, "want string") {
		t.Errorf("invoke with a number for name: %d %s, want 400 naming data.name", status, body)
	}
	status, body = httpDo(t, "POST", api+"/v1/invoke/com.example.greet.requested", "application/json", `{"name":`)
	if status != http.StatusBadRequest || !strings.Contains(body, "not valid JSON") {
		t.Errorf("invoke with broken JSON: %d %s, want 400", status, body)
	}
	req, _ := http.NewRequest("POST", api+"/v1/events", strings.NewReader(`{"name":`))
	for k, v := range map[string]string{"ce-specversion": "1.0", "ce-id": "1", "ce-source": "test", "ce-type": "com.example.greet.requested", "Content-Type": "application/json"} {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `"field":"data"`) {
		t.Errorf("binary event with broken JSON data: %d %s, want 400 naming data", resp.StatusCode, b)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the handler ran %d times; bad data must not reach it", n)
	}
	status, body = httpDo(t, "POST", api+"/v1/invoke/com.example.greet.requested", "application/json", `{"name":"Ada"}`)
	if status != http.StatusOK || !strings.Contains(body, "hello, Ada") {
		t.Errorf("invoke with good data: %d %s", status, body)
	}
}

type testError struct{ s string }

func (e *testError) Error() string { return e.s }

// A client in another language, with no Plugbus library, gets the
// plugin's Permanent error naming the field when its data is wrong.
func TestPythonClientGetsTheFieldError(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	c, _ := startInProcess(t)
	hello := pluginkit.New("hello", "0.1.0", pluginkit.WithConnConfig(bus.ConnConfig{URLs: []string{c.NATSURL()}}))
	pluginkit.Answer(hello, "com.example.greet.requested", "com.example.greet.sent", func(ctx context.Context, req greetRequest) (greeting, error) {
		return greeting{Text: "hello, " + req.Name}, nil
	})
	runPlugin(t, hello)
	script := filepath.Join("..", "examples", "nats-python", "invoke.py")
	run := func(data string) (string, error) {
		var out bytes.Buffer
		cmd := exec.Command("python3", script, c.NATSURL(), "com.example.greet.requested", data)
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return strings.TrimSpace(out.String()), err
	}
	waitFor(t, "hello answers the Python client", 20*time.Second, func() error {
		out, err := run(`{"name":"Ada"}`)
		if err != nil || out != `{"text":"hello, Ada"}` {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	out, err := run(`{"name": 5}`)
	if err == nil || !strings.Contains(out, "422") || !strings.Contains(out, `field "name": got number, want string`) {
		t.Errorf("python3 invoke.py with a number for name: %v: %s; want exit 1 with the 422 naming the field", err, out)
	}
}
