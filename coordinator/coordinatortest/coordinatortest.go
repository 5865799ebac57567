// Package coordinatortest runs a real coordinator inside a test process, so
// that a test can run plugins against it (as processes, static, stdio or
// wasm plugins) and invoke them over its embedded NATS server and HTTP API.
package coordinatortest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator"
	"github.com/plugbus/plugbus/internal/proctest"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// ReadyWithin is how long Start waits for the coordinator to serve. It is
// generous because compiling a wasm module or starting plugins on a busy
// machine can take tens of seconds.
const ReadyWithin = 90 * time.Second

// Start runs a coordinator configured by cfg in this process until the test
// ends, and returns it once it serves. An empty NATSListen or HTTPListen gets
// a free loopback port and an empty DataDir a temporary directory. Its logs
// go to the test's log under -v and are discarded otherwise. When the test
// ends the coordinator is stopped, and an error it stops with fails the test.
func Start(t testing.TB, cfg coordinator.Config) *coordinator.Coordinator {
	t.Helper()
	if cfg.NATSListen == "" && len(cfg.NATSURLs) == 0 {
		cfg.NATSListen = proctest.FreeAddr(t)
	}
	if cfg.HTTPListen == "" {
		cfg.HTTPListen = proctest.FreeAddr(t)
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	c, err := coordinator.New(cfg, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("coordinator: %v", err)
		}
	})
	select {
	case <-c.Ready():
	case err := <-done:
		t.Fatalf("coordinator stopped before it served: %v", err)
	case <-time.After(ReadyWithin):
		t.Fatalf("coordinator not ready within %v", ReadyWithin)
	}
	return c
}

// Connect connects to c's embedded NATS server with opts, until the test
// ends. In secure mode, opts must carry credentials. It waits for the
// server's answer far longer than nats.go's default of 2 s, which a busy
// machine exceeds.
func Connect(t testing.TB, c *coordinator.Coordinator, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(c.NATSURL(), append([]nats.Option{nats.Name(t.Name()), nats.Timeout(30 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatalf("connecting to the coordinator's NATS server: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Invoke asks for typ with data on nc, as the caller "test", until a plugin
// answers or within has passed (plugins may still be starting), and returns
// the answer or the error of the last try.
func Invoke(t testing.TB, nc *nats.Conn, typ string, data any, within time.Duration, opts ...bus.RequestOption) (*pluginkit.Event, error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		res, err := bus.Request(ctx, nc, bus.DefaultPrefix, "test", pluginkit.NewEvent(typ, data), opts...)
		cancel()
		if !errors.Is(err, bus.ErrNoResponders) || time.Now().After(deadline) {
			return res, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logger logs through t under -v, until the test ends, and discards
// otherwise.
func logger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	w := &testWriter{t: t}
	t.Cleanup(func() { w.done.Store(true) })
	return slog.New(slog.NewTextHandler(w, nil))
}

// testWriter writes each log line to t's log; after the test it drops them,
// since testing panics on a log after the end.
type testWriter struct {
	t    testing.TB
	done atomic.Bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimSpace(string(b)))
	}
	return len(b), nil
}
