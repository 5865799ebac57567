//go:build unix

package supervise_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/plugbus/plugbus/coordinator/internal/supervise"
)

// waitTimeout bounds every wait for an event or a log line.
const waitTimeout = 10 * time.Second

// fastBackoff restarts quickly, for tests.
var fastBackoff = supervise.Backoff{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond}

// logBuffer is the buffer behind a test's JSON slog handler.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// records parses every record logged so far.
func (l *logBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	data := bytes.Clone(l.b.Bytes())
	l.mu.Unlock()
	var recs []map[string]any
	for line := range bytes.Lines(data) {
		var r map[string]any
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// waitLine waits for a record of a child's output and returns it.
func (l *logBuffer) waitLine(t *testing.T, instance, stream, msg string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		for _, r := range l.records(t) {
			if r["instance"] == instance && r["stream"] == stream && r["msg"] == msg {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s line %q from %s in %s; log:\n%s", stream, msg, instance, waitTimeout, l.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// harness runs a Supervisor for one test and records its logs and events.
type harness struct {
	s       *supervise.Supervisor
	logs    *logBuffer
	events  chan supervise.Event
	seen    []supervise.Event // events read from the channel so far
	pending []supervise.Event // events in seen that next has not returned
	cancel  context.CancelFunc
	runErr  chan error
}

// run starts a Supervisor for cfg; t's cleanup stops it.
func run(t *testing.T, cfg supervise.Config) *harness {
	t.Helper()
	h := &harness{
		logs:   &logBuffer{},
		events: make(chan supervise.Event, 1000),
		runErr: make(chan error, 1),
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(h.logs, nil))
	cfg.OnEvent = func(e supervise.Event) { h.events <- e }
	s, err := supervise.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.runErr <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		s.Stop()
	})
	return h
}

// stop cancels Run's context and waits for Run to return nil.
func (h *harness) stop(t *testing.T) {
	t.Helper()
	h.cancel()
	select {
	case err := <-h.runErr:
		if err != nil {
			t.Fatalf("Run returned %v, want nil", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("Run did not return %s after cancel", waitTimeout)
	}
	// Run has returned: every event is in the channel.
	for {
		select {
		case e := <-h.events:
			h.seen = append(h.seen, e)
		default:
			return
		}
	}
}

// next returns the first event of the given kind and instance not returned
// yet, waiting for it if need be.
func (h *harness) next(t *testing.T, kind supervise.EventKind, instance string) supervise.Event {
	t.Helper()
	match := func(e supervise.Event) bool { return e.Kind == kind && e.Instance == instance }
	for i, e := range h.pending {
		if match(e) {
			h.pending = append(h.pending[:i], h.pending[i+1:]...)
			return e
		}
	}
	timeout := time.After(waitTimeout)
	for {
		select {
		case e := <-h.events:
			h.seen = append(h.seen, e)
			if match(e) {
				return e
			}
			h.pending = append(h.pending, e)
		case <-timeout:
			t.Fatalf("no %s event for %s in %s; events: %+v\nlog:\n%s", kind, instance, waitTimeout, h.seen, h.logs)
		}
	}
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestEnvironmentAndOutput(t *testing.T) {
	t.Parallel()
	spec := helperSpec(self(t), "hello", "echoenv")
	spec.Env = append(spec.Env, "X=spec")
	h := run(t, supervise.Config{
		Specs:   []supervise.Spec{spec},
		BaseEnv: []string{"PLUGBUS_URL=nats://127.0.0.1:4299", "X=base"},
	})
	h.next(t, supervise.EventStarted, "hello-1")
	for _, want := range []string{"PLUGBUS_URL=nats://127.0.0.1:4299", "PLUGBUS_INSTANCE=hello-1", "X=spec", "ready"} {
		r := h.logs.waitLine(t, "hello-1", "stdout", want)
		if r["plugin"] != "hello" || r["level"] != "INFO" {
			t.Errorf("record %v: want plugin hello, level INFO", r)
		}
	}
	h.logs.waitLine(t, "hello-1", "stderr", "to stderr")
	h.stop(t)
}

// TestEnvIsMinimal: a plugin does not inherit the coordinator's secrets,
// only the few variables any program needs, and what its spec names.
func TestEnvIsMinimal(t *testing.T) {
	t.Setenv("PLUGBUS_HTTP_TOKEN", "the-http-token")
	t.Setenv("SECRET_OF_THE_COORDINATOR", "s3cret")
	t.Setenv("HOME", "/home/plugbus-test")
	spec := helperSpec(self(t), "hello", "echoenv")
	spec.Env = append(spec.Env, "SECRET_OF_THE_COORDINATOR=given")
	h := run(t, supervise.Config{Specs: []supervise.Spec{spec}})
	h.next(t, supervise.EventStarted, "hello-1")
	for _, want := range []string{"PLUGBUS_HTTP_TOKEN=", "SECRET_OF_THE_COORDINATOR=given", "HOME=/home/plugbus-test", "ready"} {
		h.logs.waitLine(t, "hello-1", "stdout", want)
	}
	h.stop(t)
}

func TestOutputLines(t *testing.T) {
	t.Parallel()
	h := run(t, supervise.Config{
		Specs:   []supervise.Spec{helperSpec(self(t), "lines", "printlines")},
		Backoff: supervise.Backoff{Initial: time.Hour, Max: time.Hour},
	})
	h.next(t, supervise.EventExited, "lines-1")
	// The output is logged before the exit is reported.
	var got []string
	for _, r := range h.logs.records(t) {
		if s, ok := r["stream"].(string); ok {
			got = append(got, s+": "+r["msg"].(string))
		}
	}
	want := []string{
		"stdout: crlf line",
		"stdout: from slog", // a slog JSON record is logged as a record
		"stderr: stderr line",
		"stdout: no newline at the end",
	}
	for _, r := range h.logs.records(t) {
		if r["msg"] == "from slog" && (r["k"] != 1.0 || r["level"] != "INFO") {
			t.Errorf("slog record relogged as %v; want its attribute k=1 and level INFO", r)
		}
	}
	// A large integer stays one (a float64 in between wrote 1e+10).
	h.logs.mu.Lock()
	raw := h.logs.b.String()
	h.logs.mu.Unlock()
	if !strings.Contains(raw, `"timeout":10000000000`) {
		t.Errorf("the record's timeout 10000000000 was relogged otherwise:\n%s", raw)
	}
	// stdout and stderr are read concurrently: compare each stream's order.
	for _, stream := range []string{"stdout: ", "stderr: "} {
		g, w := filter(got, stream), filter(want, stream)
		if strings.Join(g, "\n") != strings.Join(w, "\n") {
			t.Errorf("%slines\n got %q\nwant %q", stream, g, w)
		}
	}
	h.stop(t)
}

func filter(lines []string, prefix string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

func TestReplicas(t *testing.T) {
	t.Parallel()
	spec := helperSpec(self(t), "hello", "echoenv")
	spec.Replicas = 2
	h := run(t, supervise.Config{Specs: []supervise.Spec{spec}})
	pids := map[int]bool{}
	for _, inst := range []string{"hello-1", "hello-2"} {
		pids[h.next(t, supervise.EventStarted, inst).PID] = true
		h.logs.waitLine(t, inst, "stdout", "PLUGBUS_INSTANCE="+inst)
	}
	if len(pids) != 2 {
		t.Errorf("PIDs %v, want 2 distinct", pids)
	}
	st := h.s.Status()
	if len(st) != 2 || st[0].Instance != "hello-1" || st[1].Instance != "hello-2" {
		t.Fatalf("Status = %+v, want hello-1 and hello-2", st)
	}
	for _, s := range st {
		if s.Plugin != "hello" || s.State != supervise.StateRunning || !pids[s.PID] || s.Started.IsZero() {
			t.Errorf("status %+v: want plugin hello, running, one of PIDs %v", s, pids)
		}
	}
	h.stop(t)
	for _, s := range h.s.Status() {
		if s.State != supervise.StateStopped || s.PID != 0 || s.LastExit == nil {
			t.Errorf("after stop: status %+v, want stopped, no PID, a last exit", s)
		}
	}
}

func TestRestartBackoffAndCrashLoop(t *testing.T) {
	t.Parallel()
	b := supervise.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond, Factor: 2, CrashLoopAfter: 4}
	h := run(t, supervise.Config{Specs: []supervise.Spec{helperSpec(self(t), "crash", "exit1")}, Backoff: b})
	wantDelays := []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond, 200 * time.Millisecond}
	var exited supervise.Event
	for i, want := range wantDelays {
		started := h.next(t, supervise.EventStarted, "crash-1")
		if started.Restarts != i {
			t.Errorf("start %d: Restarts = %d, want %d", i, started.Restarts, i)
		}
		if i > 0 {
			if gap := started.Time.Sub(exited.Time); gap < exited.NextRestartIn {
				t.Errorf("start %d came %s after the exit, before the announced %s", i, gap, exited.NextRestartIn)
			}
		}
		exited = h.next(t, supervise.EventExited, "crash-1")
		if exited.ExitCode != 1 || exited.Err == nil || exited.PID != started.PID || exited.Restarts != i {
			t.Errorf("exit %d: %+v, want code 1, an error, PID %d, %d restarts", i, exited, started.PID, i)
		}
		if exited.NextRestartIn != want {
			t.Errorf("exit %d: NextRestartIn = %s, want %s", i, exited.NextRestartIn, want)
		}
	}
	// The first crashlooping event is for the last exit (each has its PID).
	if e := h.next(t, supervise.EventCrashLooping, "crash-1"); e.PID != exited.PID || e.NextRestartIn != b.Max || e.ExitCode != 1 {
		t.Errorf("crashlooping event %+v, want PID %d, code 1, next restart in %s", e, exited.PID, b.Max)
	}
	st := h.s.Status()[0]
	if !st.CrashLooping || st.Restarts != 3 || st.LastExit == nil || st.LastExit.Code != 1 {
		t.Errorf("Status = %+v, want crash-looping, 3 restarts, last exit code 1", st)
	}
	// Still retried, at the maximum delay.
	if started := h.next(t, supervise.EventStarted, "crash-1"); started.Time.Sub(exited.Time) < b.Max {
		t.Errorf("restart after crash loop came %s after the exit, want at least %s", started.Time.Sub(exited.Time), b.Max)
	}
	h.logs.waitLine(t, "crash-1", "stderr", "crashing")
	h.stop(t)
}

func TestKilledChildRestarts(t *testing.T) {
	t.Parallel()
	h := run(t, supervise.Config{Specs: []supervise.Spec{helperSpec(self(t), "victim", "sleep")}, Backoff: fastBackoff})
	first := h.next(t, supervise.EventStarted, "victim-1")
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	exited := h.next(t, supervise.EventExited, "victim-1")
	if exited.PID != first.PID || exited.ExitCode != -1 || exited.Err == nil || !strings.Contains(exited.Err.Error(), "killed") {
		t.Errorf("exit %+v: want PID %d, code -1, error 'signal: killed'", exited, first.PID)
	}
	second := h.next(t, supervise.EventStarted, "victim-1")
	if second.PID == first.PID || second.Restarts != 1 || !alive(second.PID) {
		t.Errorf("restart %+v: want a new, live PID (was %d), 1 restart", second, first.PID)
	}
	h.stop(t)
	if alive(second.PID) {
		t.Errorf("PID %d still alive after Run returned", second.PID)
	}
}

func TestStopGraceful(t *testing.T) {
	t.Parallel()
	h := run(t, supervise.Config{
		Specs:       []supervise.Spec{helperSpec(self(t), "polite", "trapterm")},
		StopTimeout: time.Minute, // the test would time out if the child were killed
	})
	started := h.next(t, supervise.EventStarted, "polite-1")
	h.logs.waitLine(t, "polite-1", "stdout", "ready") // the handler is installed
	h.stop(t)
	stopped := h.seen[len(h.seen)-1]
	if stopped.Kind != supervise.EventStopped || stopped.PID != started.PID || stopped.ExitCode != 0 || stopped.Err != nil {
		t.Errorf("last event %+v, want stopped, PID %d, exit code 0, no error", stopped, started.PID)
	}
	h.logs.waitLine(t, "polite-1", "stdout", "got SIGTERM")
	if alive(started.PID) {
		t.Errorf("PID %d still alive after Run returned", started.PID)
	}
}

func TestStopKillsAfterTimeout(t *testing.T) {
	t.Parallel()
	const stopTimeout = 200 * time.Millisecond
	h := run(t, supervise.Config{
		Specs:       []supervise.Spec{helperSpec(self(t), "stubborn", "ignoreterm")},
		StopTimeout: stopTimeout,
	})
	started := h.next(t, supervise.EventStarted, "stubborn-1")
	h.logs.waitLine(t, "stubborn-1", "stdout", "ready") // SIGTERM is ignored
	t0 := time.Now()
	h.stop(t)
	if d := time.Since(t0); d < stopTimeout {
		t.Errorf("stop took %s, less than the stop timeout %s", d, stopTimeout)
	}
	stopped := h.seen[len(h.seen)-1]
	if stopped.Kind != supervise.EventStopped || stopped.PID != started.PID || stopped.ExitCode != -1 || stopped.Err == nil || !strings.Contains(stopped.Err.Error(), "killed") {
		t.Errorf("last event %+v, want stopped, PID %d, code -1, 'signal: killed'", stopped, started.PID)
	}
	if alive(started.PID) {
		t.Errorf("PID %d still alive after Run returned", started.PID)
	}
}

func TestSHA256(t *testing.T) {
	t.Parallel()
	exe := self(t)
	f, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	hash := sha256.New()
	_, err = io.Copy(hash, f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	actual := hex.EncodeToString(hash.Sum(nil))
	wrong := strings.Repeat("0", 64)

	good := helperSpec(exe, "good", "sleep")
	good.SHA256 = strings.ToUpper(actual)
	bad := helperSpec(exe, "bad", "sleep")
	bad.SHA256 = wrong
	h := run(t, supervise.Config{Specs: []supervise.Spec{good, bad}})

	h.next(t, supervise.EventStarted, "good-1")
	failed := h.next(t, supervise.EventFailed, "bad-1")
	if !errors.Is(failed.Err, supervise.ErrChecksum) {
		t.Errorf("failed event error %v, want ErrChecksum", failed.Err)
	}
	for _, s := range []string{"expected sha256 " + wrong, "got " + actual, exe} {
		if failed.Err == nil || !strings.Contains(failed.Err.Error(), s) {
			t.Errorf("failed event error %q does not contain %q", failed.Err, s)
		}
	}
	st := h.s.Status()
	if st[0].State != supervise.StateRunning || st[1].State != supervise.StateFailed || !strings.Contains(st[1].Error, wrong) {
		t.Errorf("Status = %+v, want good running, bad failed with the error", st)
	}
	h.stop(t)
	for _, e := range h.seen {
		if e.Instance == "bad-1" && e.Kind != supervise.EventFailed {
			t.Errorf("bad-1 got event %+v; want only failed", e)
		}
	}
}

func TestStartFailureNotRetried(t *testing.T) {
	t.Parallel()
	h := run(t, supervise.Config{
		Specs: []supervise.Spec{
			{Name: "missing", Exec: t.TempDir() + "/no-such-plugin"},
			helperSpec(self(t), "fine", "sleep"),
		},
		Backoff: fastBackoff,
	})
	failed := h.next(t, supervise.EventFailed, "missing-1")
	if !errors.Is(failed.Err, os.ErrNotExist) {
		t.Errorf("failed event error %v, want one for a missing file", failed.Err)
	}
	h.next(t, supervise.EventStarted, "fine-1")
	h.stop(t)
	n := 0
	for _, e := range h.seen {
		if e.Instance == "missing-1" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("missing-1 got %d events, want 1 (failed, not retried): %+v", n, h.seen)
	}
}

func TestStopTwiceAndRunTwice(t *testing.T) {
	t.Parallel()
	h := run(t, supervise.Config{Specs: []supervise.Spec{helperSpec(self(t), "s", "sleep")}})
	started := h.next(t, supervise.EventStarted, "s-1")
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(h.s.Stop)
	}
	wg.Wait()
	if alive(started.PID) {
		t.Errorf("PID %d alive after Stop returned", started.PID)
	}
	h.s.Stop()
	h.stop(t)
	if err := h.s.Run(context.Background()); !errors.Is(err, supervise.ErrAlreadyStarted) {
		t.Errorf("second Run returned %v, want ErrAlreadyStarted", err)
	}
}

func TestStopBeforeRun(t *testing.T) {
	t.Parallel()
	events := make(chan supervise.Event, 10)
	s, err := supervise.New(supervise.Config{
		Specs:   []supervise.Spec{helperSpec(self(t), "s", "sleep")},
		OnEvent: func(e supervise.Event) { events <- e },
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if err := s.Run(context.Background()); err != nil {
		t.Errorf("Run after Stop returned %v, want nil", err)
	}
	s.Stop()
	if len(events) != 0 {
		t.Errorf("got event %+v, want none", <-events)
	}
	if st := s.Status(); len(st) != 1 || st[0].State != supervise.StateStopped {
		t.Errorf("Status = %+v, want one stopped instance", st)
	}
}

func TestValidate(t *testing.T) {
	ok := supervise.Spec{Name: "p", Exec: "/bin/true"}
	with := func(f func(*supervise.Spec)) supervise.Spec { s := ok; f(&s); return s }
	tests := []struct {
		name string
		cfg  supervise.Config
		want string // in the error; "" for none
	}{
		{"ok", supervise.Config{Specs: []supervise.Spec{ok}, BaseEnv: []string{"A=", "B=c=d"}}, ""},
		{"no specs", supervise.Config{}, ""},
		{"bad name", supervise.Config{Specs: []supervise.Spec{with(func(s *supervise.Spec) { s.Name = "a.b" })}}, `"a.b"`},
		{"empty name", supervise.Config{Specs: []supervise.Spec{with(func(s *supervise.Spec) { s.Name = "" })}}, "empty"},
		{"duplicate", supervise.Config{Specs: []supervise.Spec{ok, ok}}, "listed twice"},
		{"no executable", supervise.Config{Specs: []supervise.Spec{with(func(s *supervise.Spec) { s.Exec = "" })}}, "exec: the plugin's executable is required"},
		{"exec and wasm", supervise.Config{Specs: []supervise.Spec{with(func(s *supervise.Spec) { s.Wasm = "p.wasm" })}}, "set one of them"},
		{"wasm without a runtime", supervise.Config{Specs: []supervise.Spec{with(func(s *supervise.Spec) { s.Exec, s.Wasm = "", "p.wasm" })}}, "no WebAssembly runtime"},
		{"too much memory", supervise.Config{Specs: []supervise.Spec{with(func(s *supervise.Spec) { s.Exec, s.Wasm, s.MemoryPages = "", "p.wasm", 70000 })}}, "memory_pages 70000: at most 65536"},
		{"negative replicas", supervise.Config{Specs: []supervise.Spec{with(func(s *supervise.Spec) { s.Replicas = -1 })}}, "replicas"},
		{"short sha256", supervise.Config{Specs: []supervise.Spec{with(func(s *supervise.Spec) { s.SHA256 = "abcd" })}}, "64 hex digits"},
		{"bad env", supervise.Config{Specs: []supervise.Spec{with(func(s *supervise.Spec) { s.Env = []string{"NOEQUALS"} })}}, `"NOEQUALS"`},
		{"bad base env", supervise.Config{BaseEnv: []string{"=x"}}, `"=x"`},
		{"max below initial", supervise.Config{Backoff: supervise.Backoff{Initial: time.Minute, Max: time.Second}}, "less than initial"},
		{"default max below initial", supervise.Config{Backoff: supervise.Backoff{Initial: time.Hour}}, "less than initial"},
		{"negative duration", supervise.Config{Backoff: supervise.Backoff{ResetAfter: -1}}, "negative"},
		{"factor", supervise.Config{Backoff: supervise.Backoff{Factor: 0.5}}, "factor"},
		{"crash loop", supervise.Config{Backoff: supervise.Backoff{CrashLoopAfter: -1}}, "CrashLoopAfter"},
		{"stop timeout", supervise.Config{StopTimeout: -time.Second}, "stop timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, supervise.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want ErrInvalidConfig mentioning %q", err, tt.want)
			}
			if _, nerr := supervise.New(tt.cfg); nerr == nil {
				t.Fatal("New accepted the config")
			}
		})
	}
}

func TestRestartOrder(t *testing.T) {
	t.Parallel()
	h := run(t, supervise.Config{Specs: []supervise.Spec{helperSpec(self(t), "victim", "sleep")}, Backoff: fastBackoff})
	first := h.next(t, supervise.EventStarted, "victim-1")
	if n, err := h.s.Restart("victim"); n != 1 || err != nil {
		t.Fatalf("Restart: got %d, %v; want 1 instance", n, err)
	}
	second := h.next(t, supervise.EventStarted, "victim-1")
	if second.PID == first.PID || !alive(second.PID) || alive(first.PID) {
		t.Errorf("after Restart: %+v; want a new, live PID and PID %d gone", second, first.PID)
	}
	if _, err := h.s.Restart("nope"); !errors.Is(err, supervise.ErrUnknownPlugin) {
		t.Errorf("Restart of an unknown plugin: got %v, want ErrUnknownPlugin", err)
	}
	h.stop(t)
}
