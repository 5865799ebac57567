package lease_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/bus/bustest"
	"github.com/plugbus/plugbus/coordinator/internal/lease"
)

// contender runs a lease on its own connection to the server.
type contender struct {
	l      *lease.Lease
	cancel context.CancelFunc
	done   chan struct{}
}

func start(t *testing.T, js jetstream.JetStream, name string, ttl time.Duration) *contender {
	t.Helper()
	l, err := lease.New(lease.Config{JetStream: js, Holder: name, TTL: ttl, Bucket: "TEST_LEASE"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &contender{l: l, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(c.done); _ = l.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-c.done })
	return c
}

func waitFor(t *testing.T, what string, within time.Duration, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > within {
			t.Fatalf("%s: not after %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// holders counts the contenders that hold the lease.
func holders(cs ...*contender) (n int, who *contender) {
	for _, c := range cs {
		if c.l.Held() {
			n, who = n+1, c
		}
	}
	return n, who
}

func TestOneHolderAndTakeOverOnStop(t *testing.T) {
	srv := bustest.NewServer(t)
	var cs []*contender
	for _, name := range []string{"a", "b", "c"} {
		nc := bustest.Connect(t, srv)
		js, _ := jetstream.New(nc)
		cs = append(cs, start(t, js, name, 3*time.Second))
	}
	waitFor(t, "one holder", 20*time.Second, func() bool { n, _ := holders(cs...); return n == 1 })
	// Over several renewals, never two holders at once.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if n, _ := holders(cs...); n > 1 {
			t.Fatalf("%d contenders hold the lease at once", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, first := holders(cs...)
	for _, c := range cs {
		if got := c.l.Holder(); got != "" && c != first && got != first.l.Holder() {
			t.Errorf("a contender sees holder %q, want %q", got, first.l.Holder())
		}
	}
	// A clean stop gives the lease up: another takes it within a renewal
	// period or two, well before the TTL would have expired it twice.
	first.cancel()
	<-first.done
	took := waitFor(t, "another holder after a clean stop", 10*time.Second, func() bool {
		n, who := holders(cs...)
		return n == 1 && who != first
	})
	t.Logf("taken over %v after a clean stop", took)
}

func TestTakeOverWhenTheHolderVanishes(t *testing.T) {
	srv := bustest.NewServer(t)
	ncA := bustest.Connect(t, srv)
	jsA, _ := jetstream.New(ncA)
	// A TTL of 5 s: a renews every 1.7 s, which a machine busy enough to
	// stall it for over 3 s would miss, and b would rightly take over early.
	const ttl = 5 * time.Second
	a := start(t, jsA, "a", ttl)
	waitFor(t, "a holds the lease", 20*time.Second, a.l.Held)
	ncB := bustest.Connect(t, srv)
	jsB, _ := jetstream.New(ncB)
	var mu sync.Mutex
	var changes []bool
	b, err := lease.New(lease.Config{JetStream: jsB, Holder: "b", TTL: ttl, Bucket: "TEST_LEASE",
		OnChange: func(held bool) { mu.Lock(); changes = append(changes, held); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "b sees a as the holder", 10*time.Second, func() bool { return b.Holder() == "a" })
	if b.Held() {
		t.Fatal("b holds the lease while a renews it")
	}

	// a's connection dies without giving the lease up, as in a crash.
	ncA.Close()
	waitFor(t, "a no longer counts itself the holder", 4*ttl, func() bool { return !a.l.Held() })
	took := waitFor(t, "b takes the lease over", 6*ttl, b.Held)
	t.Logf("taken over %v after the holder vanished", took)
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != 1 || !changes[0] {
		t.Errorf("b's OnChange calls: %v, want [true]", changes)
	}
}
