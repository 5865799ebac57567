package bus_test

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	"github.com/plugbus/plugbus/internal/proctest"
)

// eventLog records what OnEvent hears and lets a test wait for a kind.
type eventLog struct {
	mu     sync.Mutex
	events []bus.ConnEvent
	wake   chan struct{}
}

func newEventLog() *eventLog { return &eventLog{wake: make(chan struct{}, 1)} }

func (l *eventLog) record(e bus.ConnEvent) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *eventLog) count(kind bus.ConnEventKind) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

func (l *eventLog) kinds() []bus.ConnEventKind {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ks []bus.ConnEventKind
	for _, e := range l.events {
		ks = append(ks, e.Kind)
	}
	return ks
}

func (l *eventLog) waitFor(t *testing.T, kind bus.ConnEventKind, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for l.count(kind) == 0 {
		select {
		case <-l.wake:
		case <-deadline:
			t.Fatalf("no %s event after %v; got %v", kind, timeout, l.kinds())
		}
	}
}

func TestConnectRetriesFirstConnect(t *testing.T) {
	addr := proctest.FreeAddr(t)
	log := newEventLog()
	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		nc, err := bus.Connect(ctx, bus.ConnConfig{URLs: []string{"nats://" + addr}, Name: t.Name(), OnEvent: log.record})
		done <- result{nc, err}
	}()

	select {
	case r := <-done:
		t.Fatalf("Connect returned %v, %v before any server was up; want it to keep trying", r.nc, r.err)
	case <-time.After(600 * time.Millisecond):
	}

	bustest.NewServerOn(t, addr, t.TempDir())
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Connect did not return within 10s of the server starting")
	}
	if r.err != nil {
		t.Fatalf("Connect: %v", r.err)
	}
	defer r.nc.Close()
	if !r.nc.IsConnected() {
		t.Errorf("got status %v, want connected", r.nc.Status())
	}
	if err := r.nc.Publish("x", nil); err != nil {
		t.Errorf("Publish: %v", err)
	}
	if err := r.nc.Flush(); err != nil {
		t.Errorf("Flush: %v", err)
	}
	log.waitFor(t, bus.Connected, 5*time.Second)
	if n := log.count(bus.Connected); n != 1 {
		t.Errorf("Connected events: got %d, want 1 (all: %v)", n, log.kinds())
	}
}

func TestConnectReconnectsAfterRestart(t *testing.T) {
	addr, store := proctest.FreeAddr(t), t.TempDir()
	s := bustest.NewServerOn(t, addr, store)
	log := newEventLog()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, bus.ConnConfig{URLs: []string{s.ClientURL()}, Name: t.Name(), OnEvent: log.record})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("after.restart")
	if err != nil {
		t.Fatalf("SubscribeSync: %v", err)
	}
	log.waitFor(t, bus.Connected, 5*time.Second)

	s.Close()
	log.waitFor(t, bus.Disconnected, 5*time.Second)
	// Let a few reconnect attempts fail before the server comes back.
	time.Sleep(600 * time.Millisecond)
	bustest.NewServerOn(t, addr, store)
	log.waitFor(t, bus.Reconnected, 10*time.Second)

	// The subscription is restored on the new server.
	if err := nc.Publish("after.restart", []byte("hi")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Errorf("NextMsg after reconnect: %v", err)
	}
	time.Sleep(200 * time.Millisecond) // let any extra event arrive
	for kind, want := range map[bus.ConnEventKind]int{bus.Connected: 1, bus.Disconnected: 1, bus.Reconnected: 1, bus.Closed: 0} {
		if got := log.count(kind); got != want {
			t.Errorf("%s events: got %d, want %d (all: %v)", kind, got, want, log.kinds())
		}
	}
}

func TestConnectMissingFiles(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	tests := []struct {
		name         string
		cfg          bus.ConnConfig
		mention      string
		wantNotExist bool
	}{
		{name: "creds file", cfg: bus.ConnConfig{CredsFile: missing}, mention: "credentials file", wantNotExist: true},
		{name: "nkey seed file", cfg: bus.ConnConfig{NKeySeedFile: missing}, mention: "nkey seed file", wantNotExist: true},
		{name: "CA file", cfg: bus.ConnConfig{CAFile: missing}, mention: "CA file", wantNotExist: true},
		{name: "certificate without key", cfg: bus.ConnConfig{CertFile: "conn_test.go"}, mention: "key file"},
	}
	// Nothing listens here: a clear error must come from the settings,
	// at once, not after retrying to connect.
	addr := proctest.FreeAddr(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.URLs = []string{"nats://" + addr}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			nc, err := bus.Connect(ctx, tt.cfg)
			if err == nil {
				nc.Close()
				t.Fatal("got a connection, want an error")
			}
			if elapsed := time.Since(start); elapsed > time.Second {
				t.Errorf("took %v, want an immediate error", elapsed)
			}
			if tt.wantNotExist && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("got %v, want it to wrap fs.ErrNotExist", err)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("got %q, want it to mention %q", err, tt.mention)
			}
			if tt.wantNotExist && !strings.Contains(err.Error(), missing) {
				t.Errorf("got %q, want it to name %s", err, missing)
			}
		})
	}
}

func TestConnectContextEndsBeforeFirstConnect(t *testing.T) {
	addr := proctest.FreeAddr(t)
	t.Run("deadline", func(t *testing.T) {
		log := newEventLog()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		nc, err := bus.Connect(ctx, bus.ConnConfig{URLs: []string{"nats://" + addr}, OnEvent: log.record})
		if err == nil {
			nc.Close()
			t.Fatal("got a connection, want an error")
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v, want it to wrap context.DeadlineExceeded", err)
		}
		if !strings.Contains(err.Error(), addr) {
			t.Errorf("got %q, want it to name %s", err, addr)
		}
		if elapsed := time.Since(start); elapsed > 3*time.Second {
			t.Errorf("took %v, want about 300ms", elapsed)
		}
		log.waitFor(t, bus.Closed, 5*time.Second)
		if n := log.count(bus.Connected); n != 0 {
			t.Errorf("Connected events: got %d, want 0", n)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		nc, err := bus.Connect(ctx, bus.ConnConfig{URLs: []string{"nats://" + addr}})
		if err == nil {
			nc.Close()
			t.Fatal("got a connection, want an error")
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want it to wrap context.Canceled", err)
		}
	})
}

func TestConnectAlreadyUp(t *testing.T) {
	// With the server up, Connect returns at once even if ctx is already
	// done: there is nothing left to wait for.
	s := bustest.NewServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	nc, err := bus.Connect(ctx, bus.ConnConfig{URLs: []string{s.ClientURL()}})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer nc.Close()
	if !nc.IsConnected() {
		t.Errorf("got status %v, want connected", nc.Status())
	}
}

// TestConnectSaysWhereAndWhyItCannotConnect points Connect at a port
// nobody listens on: it must say at once where it connects, why each
// attempt fails at a bounded rate, and, when its context ends, the real
// last error (it said "last error: <nil>").
func TestConnectSaysWhereAndWhyItCannotConnect(t *testing.T) {
	addr := proctest.FreeAddr(t)
	log := newEventLog()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	nc, err := bus.Connect(ctx, bus.ConnConfig{URLs: []string{"nats://ada:secret@" + addr}, OnEvent: log.record})
	elapsed := time.Since(start)
	if err == nil {
		nc.Close()
		t.Fatal("got a connection, want an error")
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "refused") || strings.Contains(err.Error(), "<nil>") {
		t.Errorf("got %q, want the deadline and the last attempt's cause (connection refused)", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("got %q, which shows the password", err)
	}
	log.mu.Lock()
	events := slices.Clone(log.events)
	log.mu.Unlock()
	if len(events) == 0 || events[0].Kind != bus.Connecting || !strings.Contains(events[0].URL, addr) || strings.Contains(events[0].URL, "secret") {
		t.Fatalf("first event %+v, want connecting to %s without the password", events, addr)
	}
	failed := 0
	for _, e := range events {
		if e.Kind != bus.ConnectFailed {
			continue
		}
		failed++
		if e.Err == nil || !strings.Contains(e.Err.Error(), "refused") || e.Failures < 1 {
			t.Errorf("connect failed event %+v, want its cause and count", e)
		}
	}
	// The first failure at once, then one per ConnectFailedEvery at most.
	if most := 1 + int(elapsed/bus.ConnectFailedEvery); failed < 1 || failed > most {
		t.Errorf("%d connect failed events in %v, want 1 to %d", failed, elapsed, most)
	}
}

func TestRedactURLs(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                 "nats://127.0.0.1:4222",
		"nats://alice:s3cret@n1:4222":           "nats://redacted@n1:4222",
		"nats://tok3n@n1:4222,nats://n2:4222":   "nats://redacted@n1:4222,nats://n2:4222",
		"tls://u:p@n1:4222, nats://u:p@n2:4222": "tls://redacted@n1:4222,nats://redacted@n2:4222",
		"nats://u:p%zz@n1:4222":                 "(an unparsable URL with credentials)",
	} {
		if got := bus.RedactURLs(in); got != want {
			t.Errorf("RedactURLs(%q) = %q, want %q", in, got, want)
		}
		if strings.Contains(bus.RedactURLs(in), "s3cret") || strings.Contains(bus.RedactURLs(in), "tok3n") {
			t.Errorf("RedactURLs(%q) leaks a secret", in)
		}
	}
}

// TestInProcessConnectionSaysSo checks that an in-process connection reports
// itself as such, not as nats.go's default URL, which it never dials (a
// static plugin logged "connecting to NATS url=nats://127.0.0.1:4222").
func TestInProcessConnectionSaysSo(t *testing.T) {
	s := bustest.NewServer(t)
	log := newEventLog()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, bus.ConnConfig{InProcess: s, Name: t.Name(), OnEvent: log.record})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	log.waitFor(t, bus.Connected, 10*time.Second)
	log.mu.Lock()
	defer log.mu.Unlock()
	for _, e := range log.events {
		if (e.Kind == bus.Connecting || e.Kind == bus.Connected) && e.URL != bus.InProcessURL {
			t.Errorf("%s event names %q, want %q", e.Kind, e.URL, bus.InProcessURL)
		}
	}
}
