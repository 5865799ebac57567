package coordinator_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/internal/natscli"
	"github.com/plugbus/plugbus/internal/proctest"
)

// TestInvokeEndToEnd runs the real binaries: hello answers
// com.example.greet.requested, archive observes com.example.> and never
// answers, and a second plugin (hello2) answers hello's type too. Invoke
// must refuse the ambiguity unless the caller names a plugin, pass the
// plugin's errors on, and answer an unanswered type with 404 at once.
func TestInvokeEndToEnd(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "plugbus.yaml")
	archiveDir := filepath.Join(dir, "archive")
	os.WriteFile(config, []byte(fmt.Sprintf(`data_dir: %s
plugins:
  - name: hello
    exec: %s/hello
  - name: archive
    exec: %s/archive
    args: ["-dir", %q, "-types", "com.example.>"]
  - name: hello2
    exec: %s/recorder
    args: ["-name", "hello2", "-types", "com.example.greet.requested", "-reject", "reject-me"]
`, filepath.Join(dir, "data"), binDir, binDir, archiveDir, binDir)), 0o600)
	d := &deployment{t: t, config: config, natsAddr: proctest.FreeAddr(t), httpAddr: proctest.FreeAddr(t)}
	d.start()
	d.waitRunning(map[string]int{"hello": 1, "archive": 1, "hello2": 1}, 15*time.Second)
	const greet = "com.example.greet.requested"
	d.waitFor("the registry to show who answers the greeting", 10*time.Second, func() error {
		ps, err := d.plugins()
		if err != nil {
			return err
		}
		for _, name := range []string{"hello", "hello2"} {
			if len(ps[name].Ambiguous) != 1 {
				return fmt.Errorf("%s: answers %v, ambiguous %+v", name, ps[name].Answers, ps[name].Ambiguous)
			}
		}
		return nil
	})

	t.Run("the registry shows the ambiguity and that archive answers nothing", func(t *testing.T) {
		ps, err := d.plugins()
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"hello", "hello2"} {
			a := ps[name].Ambiguous[0]
			if len(ps[name].Answers) != 1 || ps[name].Answers[0] != greet || a.Type != greet || strings.Join(a.Plugins, ",") != "hello,hello2" {
				t.Errorf("%s: answers %v, ambiguous %+v; want %s, answered by hello and hello2", name, ps[name].Answers, a, greet)
			}
		}
		if a := ps["archive"]; len(a.Answers) != 0 || len(a.Ambiguous) != 0 {
			t.Errorf("archive answers %v, ambiguous %+v; want nothing", a.Answers, a.Ambiguous)
		}
	})

	invoke := func(query, body string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Post("http://"+d.httpAddr+"/v1/invoke/"+query, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("POST /v1/invoke/%s: %s: %v: %s", query, resp.Status, err, b)
		}
		return resp.StatusCode, out
	}
	t.Run("an unnamed invoke of the ambiguous type gets 409 naming both", func(t *testing.T) {
		code, out := invoke(greet, `{"name":"Ada"}`)
		msg, _ := out["error"].(string)
		if code != http.StatusConflict || !strings.Contains(msg, "hello and hello2") || !strings.Contains(msg, "?plugin=") {
			t.Errorf("got %d %v; want 409 naming hello and hello2 and ?plugin=", code, out)
		}
	})
	t.Run("?plugin=hello gets hello's answer", func(t *testing.T) {
		for i := range 20 {
			code, out := invoke(greet+"?plugin=hello", `{"name":"Ada"}`)
			data, _ := out["data"].(map[string]any)
			if code != http.StatusOK || out["type"] != "com.example.greet.sent" || data["text"] != "hello, Ada" {
				t.Fatalf("invoke %d: got %d %v; want 200 com.example.greet.sent hello, Ada", i, code, out)
			}
		}
		code, out := invoke(greet+"?plugin=hello2", `{"name":"Ada"}`)
		data, _ := out["data"].(map[string]any)
		if code != http.StatusOK || data["plugin"] != "hello2" {
			t.Errorf("?plugin=hello2: got %d %v; want hello2's answer", code, out)
		}
	})
	t.Run("bad data gets the plugin's 4xx with its message", func(t *testing.T) {
		// Data that hello's schema allows (the coordinator checks it at the
		// door) and that hello2's handler rejects for good.
		code, out := invoke(greet+"?plugin=hello2", `{"name":"reject-me"}`)
		msg, _ := out["error"].(string)
		if code != http.StatusUnprocessableEntity || out["code"] != "422" || out["plugin_error"] != true || msg != `hello2 rejects data holding "reject-me"` {
			t.Errorf("got %d %v; want 422 with hello2's message", code, out)
		}
	})
	t.Run("an unanswered type gets 404 at once", func(t *testing.T) {
		// The fastest of three, so that one hiccup of a loaded machine does
		// not fail the test; a type nobody answers takes one round trip.
		fastest := time.Hour
		for range 3 {
			start := time.Now()
			code, out := invoke("com.example.nobody.home", `{}`)
			fastest = min(fastest, time.Since(start))
			msg, _ := out["error"].(string)
			if code != http.StatusNotFound || !strings.Contains(msg, "com.example.nobody.home") || !strings.Contains(msg, "/v1/plugins") {
				t.Fatalf("got %d %v; want 404 naming the type and GET /v1/plugins", code, out)
			}
		}
		t.Logf("404 for an unanswered type in %v", fastest)
		if fastest > 500*time.Millisecond {
			t.Errorf("404 for an unanswered type took %v at best; want it at once", fastest)
		}
		// Archive observes com.example.>, which this type matches: it
		// still does not answer.
		code, _ := invoke("com.example.archived.only", `{}`)
		if code != http.StatusNotFound {
			t.Errorf("a type only archive observes: got %d, want 404", code)
		}
	})
	t.Run("the CLI", func(t *testing.T) {
		cli := func(args ...string) (string, string, int) {
			cmd := exec.Command(filepath.Join(binDir, "coordinator"), args...)
			cmd.Env = append(os.Environ(), "PLUGBUS_URL=nats://"+d.natsAddr, "PLUGBUS_API=http://"+d.httpAddr)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				t.Fatal(err)
			}
			return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
		}
		for _, tc := range []struct {
			args     []string
			code     int
			stdout   string
			mentions []string // in stderr
		}{
			{args: []string{greet, "--data", `{"name":"Grace"}`}, code: 6, mentions: []string{"hello and hello2", "--plugin"}},
			{args: []string{greet, "--data", `{"name":"Grace"}`, "--plugin", "hello"}, stdout: `{"text":"hello, Grace"}`},
			{args: []string{greet, "--data", `{"name":"reject-me"}`, "--plugin", "hello2"}, code: 5, mentions: []string{"422", `hello2 rejects data holding "reject-me"`}},
			{args: []string{"com.example.nobody.home", "--data", `{}`}, code: 3, mentions: []string{"no plugin answers type com.example.nobody.home", "coordinator plugins"}},
		} {
			out, stderr, code := cli(append([]string{"invoke"}, tc.args...)...)
			if code != tc.code || strings.TrimSpace(out) != tc.stdout {
				t.Errorf("invoke %v: exit %d, stdout %q, stderr %q; want exit %d, stdout %q", tc.args, code, out, stderr, tc.code, tc.stdout)
			}
			for _, m := range tc.mentions {
				if !strings.Contains(stderr, m) {
					t.Errorf("invoke %v: stderr %q does not mention %q", tc.args, stderr, m)
				}
			}
			if strings.Contains(stderr, "exit status") {
				t.Errorf("invoke %v: stderr %q has a stray exit status line", tc.args, stderr)
			}
		}
		out, _, code := cli("plugins")
		if code != 0 || !regexpMatch(`(?m)^hello\s+running\s+1/1\s+process\s+0\.1\.0\s+com\.example\.greet\.requested\s+com\.example\.greet\.requested\s`, out) ||
			!regexpMatch(`(?m)^archive\s+running\s+1/1\s+process\s+0\.1\.0\s+com\.example\.>\s+-\s`, out) ||
			!strings.Contains(out, "ambiguous: com.example.greet.requested is answered by hello and hello2") {
			t.Errorf("plugins: exit %d, want the answers and the ambiguity in:\n%s", code, out)
		}
	})
	t.Run("nats micro info shows the error count", func(t *testing.T) {
		cmd := exec.Command(natscli.Path(t), "--server", "nats://"+d.natsAddr, "--timeout", "3s", "micro", "info", "hello2")
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "NO_COLOR=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("nats micro info hello2: %v\n%s", err, out)
		}
		// The answering endpoint's statistics: the two 422s above.
		_, stats, _ := strings.Cut(string(out), "answer-com_example_greet_requested Endpoint Statistics:")
		if !regexpMatch(`(?m)^\s*Errors: 2\s*$`, stats) {
			t.Errorf("nats micro info hello2 does not count 2 errors of the answering endpoint:\n%s", out)
		}
	})
	t.Run("archive records the results and never the requests", func(t *testing.T) {
		d.waitFor("archive to record hello's results", 10*time.Second, func() error {
			b, err := os.ReadFile(filepath.Join(archiveDir, "archive.jsonl"))
			if err != nil {
				return err
			}
			if n := strings.Count(string(b), `"type":"com.example.greet.sent"`); n < 20 {
				return fmt.Errorf("%d greetings archived, want at least 20", n)
			}
			if strings.Contains(string(b), `"type":"com.example.greet.requested"`) {
				return fmt.Errorf("a request was archived: requests are not events")
			}
			return nil
		})
	})
}
