package pluginkit_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	"github.com/plugbus/plugbus/internal/proctest"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// Plugin binaries are built once per run of the test binary, into binDir,
// and only by the tests that need them.
var (
	binDir   string
	binMu    sync.Mutex
	binBuilt = map[string]*binary{}
)

type binary struct {
	once sync.Once
	path string
	err  error
}

const (
	helloPkg      = "github.com/plugbus/plugbus/plugins/hello/cmd/hello"
	testpluginPkg = "github.com/plugbus/plugbus/plugin-kit/internal/testplugin"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pluginkit-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// goTool returns the go command, skipping the test when there is none.
func goTool(t testing.TB) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build plugins with: %v", err)
	}
	return gobin
}

// build builds the main package pkg once per test binary run and returns
// the path of the binary. When the tests run with -race, so do the plugins.
func build(t testing.TB, pkg string) string {
	t.Helper()
	binMu.Lock()
	b := binBuilt[pkg]
	if b == nil {
		b = &binary{}
		binBuilt[pkg] = b
	}
	binMu.Unlock()
	b.once.Do(func() {
		b.path = filepath.Join(binDir, filepath.Base(pkg))
		args := []string{"build", "-o", b.path}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command(goTool(t), append(args, pkg)...).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// A proc is a plugin running as a process of its own.
type proc struct {
	cmd     *exec.Cmd
	out     *syncBuffer // stderr, where plugin-kit logs
	stdout  *syncBuffer
	exited  chan struct{}
	waitErr error // set when exited is closed
}

// startProc runs bin with PLUGBUS_URL pointing at url (unless url is ""), plus env, and
// stops it (SIGTERM, then kill) when the test ends. Its output is logged
// when the test fails; a data race reported by a -race plugin fails the
// test.
func startProc(t testing.TB, bin, url string, env ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin), out: &syncBuffer{}, stdout: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), "PLUGBUS_LOG_FORMAT=json", "PLUGBUS_LOG_LEVEL=info", "PLUGBUS_PREFIX="+bus.DefaultPrefix)
	if url != "" {
		p.cmd.Env = append(p.cmd.Env, "PLUGBUS_URL="+url)
	}
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.terminate(5 * time.Second)
		if strings.Contains(p.out.String(), "DATA RACE") {
			t.Errorf("%s reported a data race:\n%s", bin, p.out)
		} else if t.Failed() {
			t.Logf("%s (pid %d) stderr:\n%s\nstdout:\n%s", filepath.Base(bin), p.cmd.Process.Pid, p.out, p.stdout)
		}
	})
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// terminate sends SIGTERM and waits up to timeout for the process to exit,
// killing it after that. It returns the exit code, or -1 when killed.
func (p *proc) terminate(timeout time.Duration) int {
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return -1
	}
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// logMessages returns the msg of each JSON log line on the process's
// stderr.
func (p *proc) logMessages() []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(p.out.String()))
	for sc.Scan() {
		var line struct{ Msg string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg != "" {
			out = append(out, line.Msg)
		}
	}
	return out
}

// watchStarted subscribes to the started events of plugin name.
func watchStarted(t testing.TB, nc *nats.Conn, name string) *nats.Subscription {
	t.Helper()
	sub, err := nc.SubscribeSync(lifecycleSubject(name, bus.TypePluginStarted))
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return sub
}

// awaitStarted waits for the started event of process p on sub and returns
// its data.
func awaitStarted(t testing.TB, sub *nats.Subscription, p *proc) bus.Instance {
	t.Helper()
	deadline := time.Now().Add(2 * testTimeout) // a -race binary starts slowly
	for {
		msg, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			t.Fatalf("pid %d did not announce that it started: %v (running: %v)\n%s", p.pid(), err, p.running(), p.out)
		}
		if inst := instanceOf(t, msg); inst.PID == p.pid() {
			return inst
		}
	}
}

// workResult is the data of testplugin's com.example.work.done.
type workResult struct {
	Plugin   string `json:"plugin"`
	Instance string `json:"instance"`
	ID       string `json:"id"`
	PID      int    `json:"pid"`
	Trigger  string `json:"trigger"`
}

// collect reads n results from sub, then makes sure no more come.
func collect(t testing.TB, sub *nats.Subscription, n int) []workResult {
	t.Helper()
	var out []workResult
	for len(out) < n {
		msg, err := sub.NextMsg(testTimeout)
		if err != nil {
			t.Fatalf("after %d results of %d: %v", len(out), n, err)
		}
		var r workResult
		if err := decode(t, msg).DataAs(&r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if msg, err := sub.NextMsg(200 * time.Millisecond); err == nil {
		t.Errorf("got a result beyond the %d expected: %s", n, msg.Data)
	}
	return out
}

// publishWork publishes n com.example.work.requested events and returns
// their ids.
func publishWork(t testing.TB, nc *nats.Conn, n int) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	for range n {
		e := pluginkit.NewEvent("com.example.work.requested", nil)
		ids[e.ID()] = true
		if err := bus.Publish(nc, bus.DefaultPrefix, tester, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return ids
}

func resultsSub(t testing.TB, nc *nats.Conn) *nats.Subscription {
	t.Helper()
	sub, err := nc.SubscribeSync("plugbus.events.*.com.example.work.done")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return sub
}

// Two different plugins handling the same type each get every event.
// Main keeps the connection settings a program gave New with
// WithConnConfig, where no flag or environment variable overrides them.
func TestMainKeepsWithConnConfig(t *testing.T) {
	t.Parallel()
	bin := build(t, testpluginPkg)
	s := bustest.NewServer(t)
	nc := bustest.Connect(t, s)
	started := watchStarted(t, nc, "configured")
	p := startProc(t, bin, "", "TESTPLUGIN_NAME=configured", "TESTPLUGIN_CONN_URL="+s.ClientURL())
	awaitStarted(t, started, p)
}

func TestProcessFanOut(t *testing.T) {
	t.Parallel()
	bin := build(t, testpluginPkg)
	s := bustest.NewServer(t)
	nc := bustest.Connect(t, s)
	procs := map[string]*proc{}
	for _, name := range []string{"alpha", "beta"} {
		started := watchStarted(t, nc, name)
		procs[name] = startProc(t, bin, s.ClientURL(), "TESTPLUGIN_NAME="+name)
		awaitStarted(t, started, procs[name])
	}
	results := resultsSub(t, nc)

	const events = 20
	sent := publishWork(t, nc, events)
	got := map[string]map[string]int{} // trigger -> plugin -> results
	for _, r := range collect(t, results, 2*events) {
		if got[r.Trigger] == nil {
			got[r.Trigger] = map[string]int{}
		}
		got[r.Trigger][r.Plugin]++
		if p := procs[r.Plugin]; p == nil || p.pid() != r.PID {
			t.Errorf("result from plugin %q pid %d: no such process", r.Plugin, r.PID)
		}
	}
	for id := range sent {
		if g := got[id]; len(g) != 2 || g["alpha"] != 1 || g["beta"] != 1 {
			t.Errorf("event %s handled %v, want once by alpha and once by beta", id, g)
		}
	}
}

// Two instances of one plugin share the events: each is handled once, and
// both instances get some.
func TestProcessLoadBalancing(t *testing.T) {
	t.Parallel()
	bin := build(t, testpluginPkg)
	s := bustest.NewServer(t)
	nc := bustest.Connect(t, s)
	started := watchStarted(t, nc, "worker")
	ids := map[string]string{} // PLUGBUS_INSTANCE -> micro instance id
	pids := map[string]int{}
	for _, inst := range []string{"w1", "w2"} {
		p := startProc(t, bin, s.ClientURL(), "TESTPLUGIN_NAME=worker", "PLUGBUS_INSTANCE="+inst)
		ids[inst] = awaitStarted(t, started, p).ID
		pids[inst] = p.pid()
	}
	results := resultsSub(t, nc)

	const events = 40
	sent := publishWork(t, nc, events)
	handled := map[string]int{}
	per := map[string]int{}
	for _, r := range collect(t, results, events) {
		handled[r.Trigger]++
		per[r.Instance]++
		if ids[r.Instance] != r.ID || pids[r.Instance] != r.PID {
			t.Errorf("result from instance %q says id %q pid %d, want %q %d", r.Instance, r.ID, r.PID, ids[r.Instance], pids[r.Instance])
		}
	}
	for id := range sent {
		if handled[id] != 1 {
			t.Errorf("event %s handled %d times, want once", id, handled[id])
		}
	}
	if per["w1"] == 0 || per["w2"] == 0 || per["w1"]+per["w2"] != events {
		t.Errorf("instances handled %v of %d events, want both some and together all", per, events)
	}
}

// SIGTERM while a handler runs: the handler finishes, its result goes out,
// then the stopped event, and the process exits 0.
func TestProcessSIGTERMDrains(t *testing.T) {
	t.Parallel()
	bin := build(t, testpluginPkg)
	s := bustest.NewServer(t)
	nc := bustest.Connect(t, s)
	started := watchStarted(t, nc, "sleeper")
	p := startProc(t, bin, s.ClientURL(), "TESTPLUGIN_NAME=sleeper", "TESTPLUGIN_SLEEP=300ms")
	inst := awaitStarted(t, started, p)
	events, err := nc.SubscribeSync("plugbus.events.sleeper.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	trigger := publishWork(t, nc, 1)

	next := func() (*pluginkit.Event, *nats.Msg) {
		t.Helper()
		msg, err := events.NextMsg(testTimeout)
		if err != nil {
			t.Fatal(err)
		}
		return decode(t, msg), msg
	}
	if e, _ := next(); e.Type() != "com.example.work.began" {
		t.Fatalf("got %s, want com.example.work.began", e.Type())
	}
	sigterm := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(testTimeout):
		t.Fatalf("still running %v after SIGTERM", testTimeout)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0 (%v)", code, p.waitErr)
	}
	if took := time.Since(sigterm); took < 200*time.Millisecond {
		t.Errorf("exited %v after SIGTERM, before the 300ms handler could finish", took)
	}
	// Durations are logged as such ("10s"), not as nanoseconds.
	for line := range strings.Lines(p.out.String()) {
		var rec struct {
			Msg     string
			Timeout any
		}
		if json.Unmarshal([]byte(line), &rec) != nil || !strings.HasPrefix(rec.Msg, "plugin stopping") {
			continue
		}
		s, ok := rec.Timeout.(string)
		if _, err := time.ParseDuration(s); !ok || err != nil {
			t.Errorf("stop log line %s: want its timeout as a duration such as \"10s\"", line)
		}
	}

	e, _ := next()
	var r workResult
	if e.Type() != "com.example.work.done" || e.DataAs(&r) != nil || !trigger[r.Trigger] {
		t.Fatalf("after SIGTERM got %s %s, want the running handler's com.example.work.done", e.Type(), e.Data())
	}
	e, msg := next()
	if e.Type() != bus.TypePluginStopped {
		t.Fatalf("got %s, want %s after the result", e.Type(), bus.TypePluginStopped)
	}
	if got := instanceOf(t, msg); got.ID != inst.ID || got.PID != p.pid() || got.Reason != "shutdown" {
		t.Errorf("stopped event %+v, want instance %s pid %d reason shutdown", got, inst.ID, p.pid())
	}
}

// ping asks $SRV.PING.<name> and returns the instance that answered.
func ping(nc *nats.Conn, name string, timeout time.Duration) (micro.Ping, error) {
	subject, err := micro.ControlSubject(micro.PingVerb, name, "")
	if err != nil {
		return micro.Ping{}, err
	}
	msg, err := nc.Request(subject, nil, timeout)
	if err != nil {
		return micro.Ping{}, err
	}
	var pg micro.Ping
	err = json.Unmarshal(msg.Data, &pg)
	return pg, err
}

func greet(nc *nats.Conn, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	reply, err := bus.Request(ctx, nc, bus.DefaultPrefix, tester, pluginkit.NewEvent("com.example.greet.requested", map[string]string{"name": name}))
	if err != nil {
		return err
	}
	if reply == nil {
		return errors.New("empty reply")
	}
	var out struct{ Text string }
	if err := reply.DataAs(&out); err != nil {
		return err
	}
	if want := "hello, " + name; out.Text != want {
		return fmt.Errorf("got %q, want %q", out.Text, want)
	}
	return nil
}

// The NATS server goes away and comes back on the same port: the plugin
// process reconnects by itself and answers again, as the same instance.
func TestProcessSurvivesNATSRestart(t *testing.T) {
	t.Parallel()
	bin := build(t, helloPkg)
	addr, dir := proctest.FreeAddr(t), t.TempDir()
	s1 := bustest.NewServerOn(t, addr, dir)
	nc1 := bustest.Connect(t, s1)
	started := watchStarted(t, nc1, "hello")
	// A stream keeps the lifecycle events across the restart (the store
	// directory stays), so the re-announcement after the reconnect is seen
	// whenever it comes.
	js, err := jetstream.New(nc1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*testTimeout)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "LIFECYCLE", Subjects: []string{lifecycleSubject("hello", ">")}}); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, bin, "nats://"+addr)
	inst := awaitStarted(t, started, p)
	if err := greet(nc1, "before", testTimeout); err != nil {
		t.Fatalf("before the restart: %v", err)
	}
	before, err := ping(nc1, "hello", testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if before.ID != inst.ID {
		t.Fatalf("PING answered by %s, started event says %s", before.ID, inst.ID)
	}

	s1.Close()
	s2 := bustest.NewServerOn(t, addr, dir)
	back := time.Now()
	nc2 := bustest.Connect(t, s2)
	for {
		err := greet(nc2, "after", 250*time.Millisecond)
		if err == nil {
			break
		}
		if time.Since(back) > testTimeout {
			t.Fatalf("no answer within %v of the server coming back: %v", testTimeout, err)
		}
		if !errors.Is(err, bus.ErrNoResponders) && !errors.Is(err, bus.ErrTimeout) {
			t.Fatalf("after the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("answered again %v after the server came back", time.Since(back).Round(time.Millisecond))

	after, err := ping(nc2, "hello", testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if after.ID != before.ID {
		t.Errorf("after the restart PING answered by instance %s, want the same %s", after.ID, before.ID)
	}
	if got := info(t, nc2, "hello").Metadata[bus.MetaPID]; got != strconv.Itoa(p.pid()) {
		t.Errorf("INFO pid %s, want the process still running, %d", got, p.pid())
	}
	if !p.running() {
		t.Fatalf("the plugin process exited: %v", p.waitErr)
	}
	checkReannounced(ctx, t, nc2, inst)

	if code := p.terminate(testTimeout); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	var disconnected, reconnected int
	for _, msg := range p.logMessages() {
		switch {
		case strings.Contains(msg, "disconnected"):
			disconnected++
		case strings.HasPrefix(msg, "reconnected"):
			reconnected++
		}
	}
	if disconnected != 1 || reconnected != 1 {
		t.Errorf("logged disconnected %d times and reconnected %d times, want once each; log messages: %q", disconnected, reconnected, p.logMessages())
	}
}

// checkReannounced checks that the LIFECYCLE stream holds the plugin's
// first started event and then one with reason "reconnected", from the same
// instance.
func checkReannounced(ctx context.Context, t *testing.T, nc *nats.Conn, inst bus.Instance) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, "LIFECYCLE")
	if err != nil {
		t.Fatal(err)
	}
	var got []bus.Instance
	for seq := uint64(1); len(got) < 2; seq++ {
		var m *jetstream.RawStreamMsg
		for {
			if m, err = stream.GetMsg(ctx, seq); err == nil || !errors.Is(err, jetstream.ErrMsgNotFound) || ctx.Err() != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("lifecycle event %d after %+v: %v", seq, got, err)
		}
		msg := &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data}
		if e := decode(t, msg); e.Type() == bus.TypePluginStarted {
			got = append(got, instanceOf(t, msg))
		}
	}
	for i, reason := range []string{"", "reconnected"} {
		want := inst
		want.Reason = reason
		if got[i].ID != want.ID || got[i].PID != want.PID || got[i].Reason != want.Reason {
			t.Errorf("started event %d: got %+v, want %+v", i+1, got[i], want)
		}
	}
}

// A plugin binary links no NATS server: plugin-kit and bus leave it to
// bus/embedded, which only tests and the coordinator import. Nor does it
// link packages whose init costs every start of every plugin and that only
// the coordinator needs (docs/benchmarks-notes.md, cold start).
func TestPluginsLinkNoNATSServer(t *testing.T) {
	t.Parallel()
	gobin := goTool(t)
	for _, tc := range []struct {
		pkg        string
		wantServer bool
	}{
		{pkg: helloPkg},
		{pkg: testpluginPkg},
		{pkg: "github.com/plugbus/plugbus/plugin-kit"},
		{pkg: "github.com/plugbus/plugbus/bus"},
		// The check itself works: kittest runs an embedded server.
		{pkg: "github.com/plugbus/plugbus/plugin-kit/kittest", wantServer: true},
	} {
		t.Run(tc.pkg, func(t *testing.T) {
			t.Parallel()
			out, err := exec.Command(gobin, "list", "-deps", tc.pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go list -deps %s: %v\n%s", tc.pkg, err, out)
			}
			deps := strings.Fields(string(out))
			var server []string
			hasClient := false
			for _, d := range deps {
				if strings.HasPrefix(d, "github.com/nats-io/nats-server") {
					server = append(server, d)
				}
				// Compiles five drafts' meta-schemas at init, about 9 ms.
				if strings.HasPrefix(d, "github.com/santhosh-tekuri/jsonschema") {
					t.Errorf("links %s, the coordinator's any-draft schema validator", d)
				}
				// OpenTelemetry's otlptracehttp linked these (14 MB).
				if d == "google.golang.org/grpc" || d == "google.golang.org/protobuf/proto" {
					t.Errorf("links %s (internal/tracing writes OTLP's protobuf itself)", d)
				}
				hasClient = hasClient || d == "github.com/nats-io/nats.go"
			}
			if !hasClient {
				t.Fatalf("go list -deps %s does not list nats.go: %d lines, is the check broken?", tc.pkg, len(deps))
			}
			if got := len(server) > 0; got != tc.wantServer {
				t.Errorf("links a NATS server: %v, want %v (%v)", got, tc.wantServer, server)
			}
		})
	}
}

// TestProcessSaysWhereItConnectsAndWhyItCannot runs a plugin whose
// PLUGBUS_URL points at a port nobody listens on. It printed nothing for
// 30s and, on SIGTERM, "context canceled (last error: <nil>)": it must say
// at once where it connects, why the attempts fail, and on SIGTERM the
// real last error.
func TestProcessSaysWhereItConnectsAndWhyItCannot(t *testing.T) {
	t.Parallel()
	bin := build(t, testpluginPkg)
	addr := proctest.FreeAddr(t)
	p := startProc(t, bin, "nats://"+addr, "TESTPLUGIN_NAME=lonely")
	const within = 15 * time.Second
	deadline := time.Now().Add(within)
	for !strings.Contains(p.out.String(), "cannot reach NATS") {
		if time.Now().After(deadline) || !p.running() {
			t.Fatalf("no word of a failed connect after %v; stderr:\n%s", within, p.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	msgs := p.logMessages()
	if len(msgs) == 0 || msgs[0] != "connecting to NATS" || !strings.Contains(p.out.String(), addr) {
		t.Errorf("log %q, want it to start with connecting to NATS at %s", msgs, addr)
	}
	if !strings.Contains(p.out.String(), "connection refused") {
		t.Errorf("stderr does not say why it cannot connect:\n%s", p.out)
	}
	p.terminate(testTimeout)
	out := p.out.String()
	last := out[strings.LastIndex(strings.TrimRight(out, "\n"), "\n")+1:]
	if !strings.Contains(last, "plugin failed") || !strings.Contains(last, "connection refused") || strings.Contains(last, "<nil>") {
		t.Errorf("last line after SIGTERM %q, want the last connect error (connection refused)", last)
	}
}

// TestProcessHelpShowsTheDescription: WithDescription's text appeared
// nowhere a user would look.
func TestProcessHelpShowsTheDescription(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(build(t, testpluginPkg), "-h").CombinedOutput()
	if err != nil && !strings.Contains(err.Error(), "exit status") {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "works for plugin-kit's process tests") || !strings.Contains(string(out), "-nats-url") {
		t.Errorf("-h printed:\n%s\nwant the plugin's description and its flags", out)
	}
}
