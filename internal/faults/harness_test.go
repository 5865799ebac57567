package faults_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/internal/proctest"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// The harness: binaries built once, processes killed at the end of each
// test, a nats-server in its own process, the ledger files, and a proxy that
// can hold back a plugin's acknowledgements.

const (
	ledgerType = "com.example.ledger.recorded" // what the tests publish
	producer   = "faults"                      // who the tests publish as
)

var (
	binDir    string
	buildOnce sync.Once
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "plugbus-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// bin returns the path of a binary the tests run, building all of them (the
// ledger plugin, nats-server and the coordinator) the first time, without
// -race: the processes under test need not be slowed down by it.
func bin(t testing.TB, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("fault tests run real processes; skipped in -short mode")
	}
	buildOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", binDir+"/", "./testdata/ledger", "github.com/nats-io/nats-server/v2", "../../coordinator/cmd/coordinator")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building the test binaries: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

// proc is a process under test. Its output (stdout and stderr) is kept,
// and shown when the test fails; the process is killed when the test ends.
type proc struct {
	t    testing.TB
	name string
	path string
	args []string
	env  []string
	cmd  *exec.Cmd
	out  *proctest.Output
	done chan struct{}
}

// start runs a process; t.Cleanup kills it if it still runs.
func start(t testing.TB, name, path string, args, env []string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, path: path, args: args, env: env, out: &proctest.Output{}}
	p.restart()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			out := p.out.String()
			if len(out) > 30000 {
				out = "...\n" + out[len(out)-30000:]
			}
			t.Logf("output of %s:\n%s", p.name, out)
		}
	})
	return p
}

// restart starts the process again with the same settings; the previous
// one must have exited.
func (p *proc) restart() {
	p.t.Helper()
	p.cmd = exec.Command(p.path, p.args...)
	p.cmd.Env = append(os.Environ(), p.env...)
	fmt.Fprintf(p.out, "=== %s: start %v\n", time.Now().Format("15:04:05.000"), p.args)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	p.done = done
	cmd := p.cmd
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(p.out, "=== %s: exited: %v\n", time.Now().Format("15:04:05.000"), err)
		close(done)
	}()
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process, unless it has exited.
func (p *proc) signal(sig syscall.Signal) {
	if !p.exited() {
		_ = p.cmd.Process.Signal(sig)
	}
}

// freeze sends SIGSTOP and waits until every thread of the process has
// stopped. The signal alone does not stop them at once: the kernel wakes
// one thread to start the stop, and on a busy machine the others go on
// running Go code (taking events, starting handlers) until that thread
// gets a CPU.
func (p *proc) freeze() {
	p.t.Helper()
	p.signal(syscall.SIGSTOP)
	if _, err := os.Stat("/proc/self/task"); err != nil {
		return // no /proc to look at: the signal will have to do
	}
	waitFor(p.t, p.name+" to stop", 20*time.Second, func() error {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", p.pid()))
		if err != nil {
			return err
		}
		for _, task := range tasks {
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", p.pid(), task.Name()))
			if err != nil {
				return err
			}
			// pid (comm) state ...: comm may hold spaces and parentheses.
			i := bytes.LastIndexByte(stat, ')')
			if i < 0 || i+2 >= len(stat) {
				return fmt.Errorf("thread %s: unexpected stat %q", task.Name(), stat)
			}
			if state := stat[i+2]; state != 'T' && state != 't' {
				return fmt.Errorf("thread %s is in state %c", task.Name(), state)
			}
		}
		return nil
	})
}

// kill sends SIGKILL (after SIGCONT, in case it is stopped) and waits for
// the process to exit.
func (p *proc) kill() {
	if p.cmd == nil || p.exited() {
		return
	}
	fmt.Fprintf(p.out, "=== %s: SIGKILL\n", time.Now().Format("15:04:05.000"))
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	<-p.done
}

// stop sends SIGTERM and waits for the process to exit, killing it after
// timeout.
func (p *proc) stop(timeout time.Duration) {
	if p.exited() {
		return
	}
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Errorf("%s did not stop within %v of SIGTERM", p.name, timeout)
		p.kill()
	}
}

// waitFor calls check until it returns nil or within passes.
func waitFor(t testing.TB, what string, within time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s: %v", within, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// natsServer is a nats-server process with JetStream, which a test may kill
// and start again on the same port and store directory.
type natsServer struct {
	*proc
	addr string
}

func startNATS(t testing.TB) *natsServer {
	t.Helper()
	addr := proctest.FreeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	s := &natsServer{addr: addr}
	s.proc = start(t, "nats-server", bin(t, "nats-server"), []string{"-a", host, "-p", port, "-js", "-sd", t.TempDir(), "-n", "faults"}, nil)
	s.waitReady()
	return s
}

func (s *natsServer) url() string { return "nats://" + s.addr }

// waitReady waits until the server answers JetStream requests.
func (s *natsServer) waitReady() {
	s.t.Helper()
	waitFor(s.t, "nats-server to serve JetStream", 20*time.Second, func() error {
		if s.exited() {
			return errors.New("nats-server exited")
		}
		nc, err := nats.Connect(s.url(), nats.Timeout(time.Second))
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = js.AccountInfo(ctx)
		return err
	})
}

// client is the test's own connection to the bus, which publishes events
// and reads the consumer's state.
type client struct {
	t  testing.TB
	nc *nats.Conn
	js jetstream.JetStream
}

// connect connects to url, retrying and reconnecting forever as plugins do,
// and creates the durable streams.
func connect(t testing.TB, url string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, bus.ConnConfig{URLs: []string{url}, Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.EnsureStreams(ctx, js, bus.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	return &client{t: t, nc: nc, js: js}
}

// newEvent returns a ledger event with the given id and data (nil, or
// what the ledger's handler is asked to do).
func newEvent(id string, data any) *pluginkit.Event {
	e := pluginkit.NewEvent(ledgerType, data)
	if data == nil {
		e = pluginkit.NewEvent(ledgerType, map[string]string{})
	}
	e.SetID(id)
	return e
}

// publish publishes an event and waits until the stream acknowledges it,
// retrying for up to within.
func (c *client) publish(id string, data any, within time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	return bus.PublishDurable(ctx, c.js, bus.DefaultPrefix, producer, newEvent(id, data))
}

// mustPublish publishes and fails the test unless the event is stored.
func (c *client) mustPublish(id string, data any) string {
	c.t.Helper()
	if err := c.publish(id, data, 20*time.Second); err != nil {
		c.t.Fatalf("publish %s: %v", id, err)
	}
	return id
}

// consumer returns the info of a plugin's consumer.
func (c *client) consumer(plugin string) (*jetstream.ConsumerInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := c.js.Consumer(ctx, bus.DefaultEventsStream, plugin)
	if err != nil {
		return nil, err
	}
	return cons.Info(ctx)
}

// deadLetters returns the dead letters of plugin, by event id.
func (c *client) deadLetters(plugin string) map[string]*nats.Msg {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := map[string]*nats.Msg{}
	stream, err := c.js.Stream(ctx, bus.DefaultDeadLetterStream)
	if err != nil {
		c.t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	subject, _ := bus.DeadLetterSubject(bus.DefaultPrefix, plugin)
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			c.t.Fatal(err)
		}
		if m.Subject == subject {
			out[m.Header.Get("ce-id")] = &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data}
		}
	}
	return out
}

// ledger is a ledger plugin's directory: its effects and calls files.
type ledger struct{ dir string }

func newLedger(t testing.TB) ledger { return ledger{dir: t.TempDir()} }

// counts reads a file of lines "<id>[ more]" and counts each id.
func counts(path string) map[string]int {
	out := map[string]int{}
	b, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		if id, _, _ := strings.Cut(line, " "); id != "" {
			out[id]++
		}
	}
	return out
}

func (l ledger) effects() map[string]int { return counts(filepath.Join(l.dir, "effects")) }
func (l ledger) calls() map[string]int   { return counts(filepath.Join(l.dir, "calls")) }

// callers returns the pids whose handlers were called for id, in order.
func (l ledger) callers(id string) []int {
	b, _ := os.ReadFile(filepath.Join(l.dir, "calls"))
	var pids []int
	for _, line := range strings.Split(string(b), "\n") {
		if got, pid, ok := strings.Cut(line, " "); ok && got == id {
			n, _ := strconv.Atoi(pid)
			pids = append(pids, n)
		}
	}
	return pids
}

// missing returns the acknowledged ids without an effect.
func missing(acked []string, effects map[string]int) []string {
	var out []string
	for _, id := range acked {
		if effects[id] == 0 {
			out = append(out, id)
		}
	}
	return out
}

// duplicates returns the ids with more than one effect, and how many.
func duplicates(effects map[string]int) map[string]int {
	out := map[string]int{}
	for id, n := range effects {
		if n > 1 {
			out[id] = n
		}
	}
	return out
}

// waitHandled waits until every acknowledged id has had its effect.
func (l ledger) waitHandled(t testing.TB, acked []string, within time.Duration) {
	t.Helper()
	waitFor(t, fmt.Sprintf("all %d acknowledged events to have their effect", len(acked)), within, func() error {
		if m := missing(acked, l.effects()); len(m) > 0 {
			return fmt.Errorf("%d missing, such as %v", len(m), m[:min(5, len(m))])
		}
		return nil
	})
}

// check asserts missing = 0 and, when once, duplicate effects = 0, and logs
// the figures.
func (l ledger) check(t testing.TB, acked []string, once bool) {
	t.Helper()
	effects := l.effects()
	m, d := missing(acked, effects), duplicates(effects)
	t.Logf("ledger: %d acknowledged, %d with an effect, missing %d, duplicate effects %d", len(acked), len(effects), len(m), len(d))
	if len(m) > 0 {
		sort.Strings(m)
		t.Errorf("missing = %d, want 0: %v", len(m), m[:min(20, len(m))])
	}
	if once && len(d) > 0 {
		t.Errorf("duplicate effects = %d, want 0: %v", len(d), d)
		for id := range d {
			t.Logf("%s: handlers ran in processes %v", id, l.callers(id))
		}
	}
}

// ledgerPlugin starts a ledger plugin process writing to l, connected to
// url, with the LEDGER_* and PLUGBUS_* settings in env.
func ledgerPlugin(t testing.TB, name string, l ledger, url string, env ...string) *proc {
	t.Helper()
	base := []string{"LEDGER_DIR=" + l.dir, "PLUGBUS_URL=" + url, "PLUGBUS_LOG_LEVEL=debug", "PLUGBUS_DRAIN_TIMEOUT=2s"}
	return start(t, name, bin(t, "ledger"), nil, append(base, env...))
}

// waitConsumer waits until the plugin's consumer exists and has a pull
// waiting: the plugin consumes.
func (c *client) waitConsumer(plugin string, within time.Duration) {
	c.t.Helper()
	waitFor(c.t, "consumer "+plugin+" to be pulled from", within, func() error {
		info, err := c.consumer(plugin)
		if err != nil {
			return err
		}
		if info.NumWaiting == 0 {
			return errors.New("no pull request waiting")
		}
		return nil
	})
}

// ackHolder is a TCP proxy between a plugin and nats-server that, while
// armed, holds back every acknowledgement ("+ACK" published to $JS.ACK.…)
// the plugin sends, so that a test can kill or stop the plugin at the
// point between plugin-kit storing an event's effectively-once record and
// its acknowledgement reaching the server. Everything else passes.
type ackHolder struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu    sync.Mutex
	armed bool
	held  []heldAck
	seen  chan string // the subject of each held ack
}

type heldAck struct {
	w   *lockedWriter
	cmd []byte
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func newAckHolder(t testing.TB, target string) *ackHolder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &ackHolder{t: t, ln: ln, target: target, armed: true, seen: make(chan string, 100)}
	var conns []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			go func() {
				_, _ = io.Copy(c, s)
				c.Close()
				s.Close()
			}()
			go h.forward(c, &lockedWriter{w: s})
		}
	}()
	return h
}

func (h *ackHolder) url() string { return "nats://" + h.ln.Addr().String() }

// forward copies the client's protocol to the server, command by command,
// holding back acknowledgements while armed.
func (h *ackHolder) forward(c net.Conn, s *lockedWriter) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		cmd := line
		fields := strings.Fields(string(line))
		if len(fields) >= 3 && (strings.EqualFold(fields[0], "PUB") || strings.EqualFold(fields[0], "HPUB")) {
			size, err := strconv.Atoi(fields[len(fields)-1])
			if err != nil {
				return
			}
			payload := make([]byte, size+2) // and the \r\n after it
			if _, err := io.ReadFull(r, payload); err != nil {
				return
			}
			cmd = append(append([]byte{}, line...), payload...)
			hdrLen := 0
			if strings.EqualFold(fields[0], "HPUB") {
				hdrLen, _ = strconv.Atoi(fields[len(fields)-2])
			}
			if strings.HasPrefix(fields[1], "$JS.ACK.") && bytes.HasPrefix(payload[hdrLen:], []byte("+ACK")) {
				h.mu.Lock()
				if h.armed {
					h.held = append(h.held, heldAck{w: s, cmd: cmd})
					h.mu.Unlock()
					h.seen <- fields[1]
					continue
				}
				h.mu.Unlock()
			}
		}
		if _, err := s.Write(cmd); err != nil {
			return
		}
	}
}

// release disarms the holder and sends the held acknowledgements on, late.
func (h *ackHolder) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.armed = false
	for _, a := range h.held {
		_, _ = a.w.Write(a.cmd)
	}
	h.held = nil
}

// waitHeld waits for the proxy to hold back an acknowledgement.
func (h *ackHolder) waitHeld(within time.Duration) string {
	h.t.Helper()
	select {
	case s := <-h.seen:
		return s
	case <-time.After(within):
		h.t.Fatalf("no acknowledgement held back within %v", within)
		return ""
	}
}

// coordinator is a coordinator process.
type coordinator struct {
	*proc
	natsAddr, httpAddr string
}

// startCoordinator runs `coordinator serve` with the given YAML
// configuration (data_dir is added) and extra arguments, and waits until it
// is ready.
func startCoordinator(t testing.TB, config string, args ...string) *coordinator {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "plugbus.yaml")
	config = "data_dir: " + filepath.Join(dir, "data") + "\n" + config
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &coordinator{natsAddr: proctest.FreeAddr(t), httpAddr: proctest.FreeAddr(t)}
	args = append([]string{"serve", "--config", cfg, "--nats-listen", c.natsAddr, "--http-listen", c.httpAddr, "--gone-after", "2s", "--log-format", "json"}, args...)
	c.proc = start(t, "coordinator", bin(t, "coordinator"), args, []string{"PLUGBUS_CONFIG="})
	t.Cleanup(func() { c.stop(20 * time.Second) }) // before the kill: let it stop its plugins
	c.waitReady()
	return c
}

func (c *coordinator) natsURL() string { return "nats://" + c.natsAddr }

func (c *coordinator) waitReady() {
	c.t.Helper()
	waitFor(c.t, "the coordinator to be ready", 20*time.Second, func() error {
		if c.exited() {
			return errors.New("the coordinator exited")
		}
		resp, err := http.Get("http://" + c.httpAddr + "/readyz")
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

// running returns how many instances of plugin the registry lists as
// running.
func (c *coordinator) running(plugin string) (int, error) {
	resp, err := http.Get("http://" + c.httpAddr + "/v1/plugins")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var list []struct {
		Name    string `json:"name"`
		Running int    `json:"running"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return 0, err
	}
	for _, p := range list {
		if p.Name == plugin {
			return p.Running, nil
		}
	}
	return 0, nil
}

func (c *coordinator) waitRunning(plugin string, n int, within time.Duration) {
	c.t.Helper()
	waitFor(c.t, fmt.Sprintf("%d running instances of %s in /v1/plugins", n, plugin), within, func() error {
		got, err := c.running(plugin)
		if err != nil {
			return err
		}
		if got != n {
			return fmt.Errorf("%d running", got)
		}
		return nil
	})
}

// post publishes an event through POST /v1/events and reports whether it
// was stored (202).
func (c *coordinator) post(id string, data string) (bool, error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+c.httpAddr+"/v1/events", strings.NewReader(data))
	if err != nil {
		return false, err
	}
	req.Header.Set("ce-specversion", "1.0")
	req.Header.Set("ce-id", id)
	req.Header.Set("ce-source", "faults-test")
	req.Header.Set("ce-type", ledgerType)
	req.Header.Set("Content-Type", "application/json")
	cl := http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return false, fmt.Errorf("POST /v1/events: %s %s", resp.Status, body)
	}
	return true, nil
}

// logRecords returns the coordinator's JSON log records whose msg is msg.
func (c *coordinator) logRecords(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(c.out.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}
