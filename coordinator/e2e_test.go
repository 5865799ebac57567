package coordinator_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/internal/natscli"
	"github.com/plugbus/plugbus/internal/proctest"
)

// binDir holds the binaries the end-to-end tests run, built once.
var binDir string

func TestMain(m *testing.M) {
	if kind := os.Getenv(floodEnv); kind != "" {
		os.Exit(runFlooder(kind)) // TestFloodDoesNotStarveInvoke's flooder
	}
	dir, err := os.MkdirTemp("", "plugbus-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/coordinator", "../plugins/hello/cmd/hello", "../plugins/archive/cmd/archive", "../plugins/thumbnail/cmd/thumbnail", "./testdata/recorder", "./testdata/hog")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the binaries:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// deployment is a coordinator process with its configuration.
type deployment struct {
	t                *testing.T
	config, natsAddr string
	httpAddr         string
	cmd              *exec.Cmd
	logMu            sync.Mutex
	log              bytes.Buffer
	exited           chan struct{}
	env              []string // more KEY=VALUE settings for the coordinator
}

func (d *deployment) start() {
	d.t.Helper()
	d.cmd = exec.Command(filepath.Join(binDir, "coordinator"), "serve", "--config", d.config,
		"--nats-listen", d.natsAddr, "--http-listen", d.httpAddr, "--gone-after", "2s", "--log-format", "json")
	d.cmd.Env = append(append(os.Environ(), "PLUGBUS_CONFIG="), d.env...)
	d.cmd.Stdout = io.Discard
	pr, pw := io.Pipe()
	d.cmd.Stderr = pw
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			d.logMu.Lock()
			d.log.WriteString(sc.Text() + "\n")
			d.logMu.Unlock()
		}
	}()
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.exited = make(chan struct{})
	go func() {
		d.cmd.Wait()
		pw.Close()
		close(d.exited)
	}()
	d.t.Cleanup(func() { d.stop(syscall.SIGTERM) })
	d.waitFor("the coordinator to be ready", 15*time.Second, func() error {
		resp, err := http.Get("http://" + d.httpAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	})
}

func (d *deployment) stop(sig syscall.Signal) {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	select {
	case <-d.exited:
		return
	default:
	}
	d.cmd.Process.Signal(sig)
	select {
	case <-d.exited:
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		d.t.Errorf("the coordinator did not stop within 20s after %v", sig)
	}
}

func (d *deployment) waitFor(what string, within time.Duration, check func() error) {
	d.t.Helper()
	deadline := time.Now().Add(within)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.logMu.Lock()
	defer d.logMu.Unlock()
	d.t.Fatalf("waited %v for %s: %v\ncoordinator log:\n%s", within, what, err, d.log.String())
}

type instance struct {
	ID    string `json:"id"`
	PID   int    `json:"pid"`
	State string `json:"state"`
}

type plugin struct {
	Name      string   `json:"name"`
	State     string   `json:"state"`
	Running   int      `json:"running"`
	Answers   []string `json:"answers"`
	Ambiguous []struct {
		Type    string   `json:"type"`
		Plugins []string `json:"plugins"`
	} `json:"ambiguous"`
	Instances []instance `json:"instances"`
}

func (d *deployment) plugins() (map[string]plugin, error) {
	resp, err := http.Get("http://" + d.httpAddr + "/v1/plugins")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var list []plugin
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, err
	}
	out := map[string]plugin{}
	for _, p := range list {
		out[p.Name] = p
	}
	return out, nil
}

// waitRunning waits until each named plugin has the given number of running
// instances.
func (d *deployment) waitRunning(want map[string]int, within time.Duration) map[string]plugin {
	d.t.Helper()
	var got map[string]plugin
	d.waitFor(fmt.Sprintf("running instances %v", want), within, func() error {
		var err error
		if got, err = d.plugins(); err != nil {
			return err
		}
		for name, n := range want {
			if got[name].Running != n {
				return fmt.Errorf("plugin %s: %d running instances, want %d (%+v)", name, got[name].Running, n, got[name])
			}
		}
		return nil
	})
	return got
}

func postEvent(t *testing.T, httpAddr, id, typ, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+httpAddr+"/v1/events", strings.NewReader(body))
	req.Header.Set("ce-specversion", "1.0")
	req.Header.Set("ce-id", id)
	req.Header.Set("ce-source", "e2e-test")
	req.Header.Set("ce-type", typ)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	// A zombie still answers kill 0; read its state.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// TestEndToEnd runs the real coordinator binary with real plugin binaries
// and checks what a user relies on: fan-out, load balancing, invoke, bad
// input, supervision, and surviving a coordinator crash.
func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "plugbus.yaml")
	os.WriteFile(config, []byte(fmt.Sprintf(`data_dir: %s
plugins:
  - name: alpha
    exec: %s/recorder
    args: ["-name", "alpha", "-types", "com.example.thing.>"]
    replicas: 2
  - name: beta
    exec: %s/recorder
    args: ["-name", "beta", "-types", "com.example.thing.>"]
  - name: hello
    exec: %s/hello
`, filepath.Join(dir, "data"), binDir, binDir, binDir)), 0o600)
	d := &deployment{t: t, config: config, natsAddr: proctest.FreeAddr(t), httpAddr: proctest.FreeAddr(t)}
	d.start()
	d.waitRunning(map[string]int{"alpha": 2, "beta": 1, "hello": 1}, 15*time.Second)

	nc, err := nats.Connect("nats://"+d.natsAddr, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	recorded := make(chan *nats.Msg, 1000)
	if _, err := nc.ChanSubscribe("plugbus.events.*.test.recorded", recorded); err != nil {
		t.Fatal(err)
	}
	nc.Flush()

	t.Run("fan-out and load balancing", func(t *testing.T) {
		const n = 20
		for i := 0; i < n; i++ {
			if code, body := postEvent(t, d.httpAddr, fmt.Sprintf("fan-%d", i), "com.example.thing.happened", `{"n":1}`); code != http.StatusAccepted {
				t.Fatalf("POST /v1/events: %d %s", code, body)
			}
		}
		perEvent := map[string]map[string]int{} // event id -> plugin -> deliveries
		alphaInstances := map[string]int{}
		timeout := time.After(10 * time.Second)
		for got := 0; got < 2*n; got++ {
			select {
			case msg := <-recorded:
				e, err := bus.Decode(msg)
				if err != nil {
					t.Fatal(err)
				}
				var r struct{ Plugin, Instance, ID string }
				e.DataAs(&r)
				if perEvent[r.ID] == nil {
					perEvent[r.ID] = map[string]int{}
				}
				perEvent[r.ID][r.Plugin]++
				if r.Plugin == "alpha" {
					alphaInstances[r.Instance]++
				}
			case <-timeout:
				t.Fatalf("got %d of %d deliveries: %v", got, 2*n, perEvent)
			}
		}
		select {
		case msg := <-recorded:
			t.Fatalf("an extra delivery: %s", msg.Data)
		case <-time.After(300 * time.Millisecond):
		}
		for id, by := range perEvent {
			if by["alpha"] != 1 || by["beta"] != 1 {
				t.Errorf("event %s: delivered %v, want alpha 1 (one of its two instances) and beta 1", id, by)
			}
		}
		if len(perEvent) != n {
			t.Errorf("%d distinct events delivered, want %d", len(perEvent), n)
		}
		if len(alphaInstances) != 2 {
			t.Errorf("alpha's deliveries by instance: %v; want both instances to share the load", alphaInstances)
		}
	})

	t.Run("invoke returns the hello reply", func(t *testing.T) {
		resp, err := http.Post("http://"+d.httpAddr+"/v1/invoke/com.example.greet.requested", "application/json", strings.NewReader(`{"name":"Ada"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var reply struct {
			Type string
			Data struct{ Text string }
		}
		if err := json.NewDecoder(resp.Body).Decode(&reply); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || reply.Type != "com.example.greet.sent" || reply.Data.Text != "hello, Ada" {
			t.Errorf("invoke: %s %+v, want 200 com.example.greet.sent \"hello, Ada\"", resp.Status, reply)
		}
	})

	t.Run("CLI", func(t *testing.T) {
		cli := func(args ...string) (string, string, int) {
			cmd := exec.Command(filepath.Join(binDir, "coordinator"), args...)
			cmd.Env = append(os.Environ(), "PLUGBUS_URL=nats://"+d.natsAddr, "PLUGBUS_API=http://"+d.httpAddr)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			return stdout.String(), stderr.String(), code
		}
		out, _, code := cli("plugins")
		if code != 0 || !regexpMatch(`(?m)^alpha\s+running\s+2/2\s+process\s+1\.0\.0\s+com\.example\.thing\.>`, out) {
			t.Errorf("plugins: exit %d, output:\n%s", code, out)
		}
		if !regexpMatch(`(?m)^hello\s.*answers greeting requests$`, out) {
			t.Errorf("plugins: hello's description missing from its row:\n%s", out)
		}
		out, _, _ = cli("plugins", "--json")
		var list []plugin
		if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) < 3 {
			t.Errorf("plugins --json: %v, %d plugins in %s", err, len(list), out)
		}
		out, stderr, code := cli("invoke", "com.example.greet.requested", "--data", `{"name":"Grace"}`)
		if code != 0 || strings.TrimSpace(out) != `{"text":"hello, Grace"}` {
			t.Errorf("invoke: exit %d, stdout %q, stderr %q", code, out, stderr)
		}
		_, stderr, code = cli("invoke", "com.example.nobody.home", "--data", `{}`)
		if code != 3 || !strings.Contains(stderr, "com.example.nobody.home") {
			t.Errorf("invoke of an unhandled type: exit %d, stderr %q; want 3 naming the type", code, stderr)
		}
		_, stderr, code = cli("publish", "com.example.thing.happened", "--data", `{not json`)
		if code == 0 || !strings.Contains(stderr, "not valid JSON") {
			t.Errorf("publish of bad JSON: exit %d, stderr %q; want an error", code, stderr)
		}

		tail := exec.Command(filepath.Join(binDir, "coordinator"), "tail", "com.example.thing.>", "--nats-url", "nats://"+d.natsAddr)
		tailOut, _ := tail.StdoutPipe()
		tailErr, _ := tail.StderrPipe()
		if err := tail.Start(); err != nil {
			t.Fatal(err)
		}
		defer tail.Process.Kill()
		bufio.NewReader(tailErr).ReadString('\n') // "following ...": subscribed
		out, stderr, code = cli("publish", "com.example.thing.happened", "--data", `{"via":"cli"}`, "--json")
		var published struct{ ID string }
		if code != 0 || json.Unmarshal([]byte(out), &published) != nil || published.ID == "" {
			t.Fatalf("publish: exit %d, stdout %q, stderr %q", code, out, stderr)
		}
		line := make(chan string, 1)
		go func() {
			l, _ := bufio.NewReader(tailOut).ReadString('\n')
			line <- l
		}()
		select {
		case l := <-line:
			for _, want := range []string{"cli", "com.example.thing.happened", published.ID, `{"via":"cli"}`} {
				if !strings.Contains(l, want) {
					t.Errorf("tail line %q does not show %q", l, want)
				}
			}
		case <-time.After(5 * time.Second):
			t.Error("tail printed nothing within 5s of a publish")
		}
		for got := 0; got < 2; got++ { // alpha and beta record the CLI's event
			select {
			case <-recorded:
			case <-time.After(5 * time.Second):
				t.Fatalf("the CLI's event reached %d of 2 plugins", got)
			}
		}
	})

	t.Run("nats micro ls lists the running plugins", func(t *testing.T) {
		cmd := exec.Command(natscli.Path(t), "--server", "nats://"+d.natsAddr, "--timeout", "3s", "micro", "ls")
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "NO_COLOR=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("nats micro ls: %v\n%s", err, out)
		}
		for _, name := range []string{"alpha", "beta", "hello"} {
			if !regexpMatch(`(?m)^\W*`+name+`\W`, string(out)) {
				t.Errorf("nats micro ls does not list %s:\n%s", name, out)
			}
		}
	})

	t.Run("malformed POST gets a 400 and the next good one goes through", func(t *testing.T) {
		code, body := postEvent(t, d.httpAddr, "", "com.example.thing.happened", `{}`)
		if code != http.StatusBadRequest || !strings.Contains(body, "id") {
			t.Errorf("POST without ce-id: %d %s, want 400 naming id", code, body)
		}
		code, body = postEvent(t, d.httpAddr, "bad-type", "com.example..thing", `{}`)
		if code != http.StatusBadRequest || !strings.Contains(body, "com.example..thing") {
			t.Errorf("POST with type a..b: %d %s, want 400 naming the type", code, body)
		}
		if code, body := postEvent(t, d.httpAddr, "good-after-bad", "com.example.thing.happened", `{}`); code != http.StatusAccepted {
			t.Fatalf("good POST after bad ones: %d %s", code, body)
		}
		deadline := time.After(5 * time.Second)
		for seen := 0; seen < 2; {
			select {
			case msg := <-recorded:
				if strings.Contains(string(msg.Data), "good-after-bad") {
					seen++
				}
			case <-deadline:
				t.Fatalf("the good event after bad ones reached %d of 2 plugins", seen)
			}
		}
	})

	t.Run("a plugin killed with -9 is reported gone and restarted", func(t *testing.T) {
		before := d.waitRunning(map[string]int{"hello": 1}, 5*time.Second)["hello"].Instances[0]
		if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		d.waitFor("the killed instance to be reported gone", 10*time.Second, func() error {
			ps, err := d.plugins()
			if err != nil {
				return err
			}
			for _, in := range ps["hello"].Instances {
				if in.ID == before.ID {
					if in.State != "gone" {
						return fmt.Errorf("killed instance is %s", in.State)
					}
					return nil
				}
			}
			return errors.New("killed instance not listed")
		})
		after := d.waitRunning(map[string]int{"hello": 1}, 10*time.Second)["hello"]
		for _, in := range after.Instances {
			if in.State == "running" && (in.ID == before.ID || in.PID == before.PID) {
				t.Errorf("the running instance is the killed one: %+v", in)
			}
		}
		resp, err := http.Get("http://" + d.httpAddr + "/v1/supervised")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var supervised []struct {
			Plugin, State string
			PID, Restarts int
		}
		if err := json.NewDecoder(resp.Body).Decode(&supervised); err != nil {
			t.Fatalf("GET /v1/supervised: %v", err)
		}
		restarted := false
		for _, p := range supervised {
			restarted = restarted || (p.Plugin == "hello" && p.Restarts >= 1 && p.State == "running" && p.PID != before.PID)
		}
		if !restarted {
			t.Errorf("GET /v1/supervised: %+v; want hello running again with a restart counted", supervised)
		}
	})

	t.Run("coordinator killed with -9 leaves no orphan and finds external plugins again", func(t *testing.T) {
		external := exec.Command(filepath.Join(binDir, "recorder"), "-name", "gamma", "-types", "com.example.other")
		external.Env = append(os.Environ(), "PLUGBUS_URL=nats://"+d.natsAddr)
		if err := external.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			external.Process.Signal(syscall.SIGTERM)
			external.Wait()
		}()
		gamma := d.waitRunning(map[string]int{"gamma": 1}, 10*time.Second)["gamma"].Instances[0]
		var supervised []int
		ps, _ := d.plugins()
		for _, name := range []string{"alpha", "beta", "hello"} {
			for _, in := range ps[name].Instances {
				if in.State == "running" {
					supervised = append(supervised, in.PID)
				}
			}
		}
		d.stop(syscall.SIGKILL)
		d.waitFor("the supervised plugins to die with the coordinator", 5*time.Second, func() error {
			for _, pid := range supervised {
				if alive(pid) {
					return fmt.Errorf("plugin process %d outlived the coordinator", pid)
				}
			}
			return nil
		})
		if !alive(external.Process.Pid) {
			t.Fatal("the external plugin died with the coordinator")
		}
		d.start()
		start := time.Now()
		after := d.waitRunning(map[string]int{"gamma": 1}, 5*time.Second)["gamma"].Instances
		found := false
		for _, in := range after {
			found = found || (in.ID == gamma.ID && in.State == "running")
		}
		if !found {
			t.Errorf("after the restart gamma's instances are %+v, want the same instance %s running", after, gamma.ID)
		}
		t.Logf("the restarted coordinator found the external plugin after %v", time.Since(start).Round(time.Millisecond))
	})

	t.Run("a clean stop is not logged as an outage", func(t *testing.T) {
		d.stop(syscall.SIGTERM)
		d.logMu.Lock()
		log := d.log.String()
		d.logMu.Unlock()
		if !strings.Contains(log, `"msg":"coordinator ready"`) {
			t.Fatalf("the log lacks the coordinator's records:\n%s", log)
		}
		if strings.Contains(log, "disconnected from NATS") {
			t.Errorf("stopping the coordinator logged a disconnection, as if NATS had gone away:\n%s", log)
		}
	})
}

func TestRefusesToListenBeyondLoopbackWithoutAuth(t *testing.T) {
	// (NATS beyond loopback runs in secure mode instead: TestConfigIsSecure.)
	for _, args := range [][]string{
		{"--http-listen", "0.0.0.0:0"},
		{"--nats-listen", "0.0.0.0:0", "--secure=false"},
	} {
		cmd := exec.Command(filepath.Join(binDir, "coordinator"), append([]string{"serve", "--data-dir", t.TempDir()}, args...)...)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || !strings.Contains(string(out), "token") {
			t.Errorf("serve %v: err %v, output %q; want a refusal saying how to configure a token", args, err, out)
		}
	}
}
