// Package kittest runs a plugin against a real in-process NATS server, the
// way net/http/httptest runs a real HTTP server: publish events to it, wait
// for what it emits, send it requests. Use [Start] in a test; [New] and
// [Harness.Close] anywhere else.
package kittest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/embedded"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// Producer is the producer name under which a [Harness] publishes.
const Producer = "kittest"

// Source is the source of the events the harness sends without one.
const Source = "urn:plugbus:" + Producer

// DefaultTimeout bounds every wait of a [Harness].
const DefaultTimeout = 5 * time.Second

// A Harness runs one plugin on its own NATS server.
type Harness struct {
	// Server is the embedded NATS server the plugin runs on (JetStream on).
	Server *embedded.Server
	// Conn is the harness's own client connection, for anything the
	// helpers below do not cover.
	Conn *nats.Conn

	prefix     string
	plugin     string
	pluginConn *nats.Conn
	storeDir   string
	cancel     context.CancelFunc
	done       chan error
	sub        *nats.Subscription

	mu     sync.Mutex
	seen   []*pluginkit.Event
	errs   []error
	more   chan struct{}
	closed bool
}

// Start is [New] for tests: it fails t when the plugin cannot start, and
// closes the harness when the test ends, failing t if the plugin stopped
// with an error.
func Start(t testing.TB, p *pluginkit.Plugin) *Harness {
	t.Helper()
	h, err := New(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Error(err)
		}
	})
	return h
}

// New starts an in-process NATS server, runs p on it, and waits until p
// answers NATS micro discovery. Events the plugin emits are recorded from
// the start; read them with [Harness.Next].
func New(p *pluginkit.Plugin) (*Harness, error) {
	dir, err := os.MkdirTemp("", "kittest-")
	if err != nil {
		return nil, fmt.Errorf("kittest: %w", err)
	}
	s, err := embedded.Start(embedded.Config{StoreDir: dir})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("kittest: %w", err)
	}
	h := &Harness{Server: s, prefix: bus.DefaultPrefix, plugin: p.Name(), storeDir: dir, more: make(chan struct{}, 1), done: make(chan error, 1)}
	fail := func(err error) (*Harness, error) {
		h.Close()
		return nil, fmt.Errorf("kittest: plugin %q: %w", p.Name(), err)
	}
	if h.Conn, err = nats.Connect("", nats.InProcessServer(s)); err != nil {
		return fail(err)
	}
	if h.pluginConn, err = nats.Connect("", nats.InProcessServer(s), nats.Name(p.Name())); err != nil {
		return fail(err)
	}
	if h.sub, err = h.Conn.Subscribe(h.prefix+".events."+p.Name()+".>", h.record); err != nil {
		return fail(err)
	}
	// The server must know the subscription before the plugin announces
	// itself, as waitReady waits for that announcement.
	if err := h.Conn.Flush(); err != nil {
		return fail(err)
	}
	var ctx context.Context
	ctx, h.cancel = context.WithCancel(context.Background())
	go func() { h.done <- p.Serve(ctx, h.pluginConn) }()
	if err := h.waitReady(p.Name()); err != nil {
		return fail(err)
	}
	return h, nil
}

// waitReady waits for the plugin's started event: a plugin announces itself
// only once every handler is subscribed, while it answers NATS micro
// discovery a little earlier, before its endpoints exist.
func (h *Harness) waitReady(name string) error {
	deadline := time.After(DefaultTimeout)
	for {
		if h.announced() {
			return nil
		}
		select {
		case err := <-h.done:
			h.done <- err
			return fmt.Errorf("did not start: %w", err)
		case <-h.more:
		case <-deadline:
			return fmt.Errorf("did not announce %s on %s.events.%s within %v", bus.TypePluginStarted, h.prefix, name, DefaultTimeout)
		}
	}
}

// announced reports whether the plugin's started event was recorded; it
// stays there for Next.
func (h *Harness) announced() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.seen {
		if e.Type() == bus.TypePluginStarted {
			return true
		}
	}
	return false
}

func (h *Harness) record(msg *nats.Msg) {
	e, err := bus.Decode(msg)
	h.mu.Lock()
	if err != nil {
		h.errs = append(h.errs, fmt.Errorf("the plugin published something that is not a valid event on %s: %w", msg.Subject, err))
	} else {
		h.seen = append(h.seen, e)
	}
	h.mu.Unlock()
	select {
	case h.more <- struct{}{}:
	default:
	}
}

// Publish sends e to the plugin as an event from [Producer].
func (h *Harness) Publish(e *pluginkit.Event) error {
	if err := bus.Publish(h.Conn, h.prefix, Producer, e); err != nil {
		return fmt.Errorf("kittest: publish %q: %w", e.Type(), err)
	}
	return h.Conn.Flush()
}

// Request sends e as a request from [Producer] on the invoke subject
// (P.invoke.kittest.<type>), as any caller does, and returns the answer
// event (nil when the handler returned none), or the error reply as a
// *pluginkit.AnswerError. Only a handler that answers the type (an exact
// type, or a pattern registered with the pluginkit.Answering option)
// replies; with none, the error is pluginkit.ErrNoResponders.
func (h *Harness) Request(e *pluginkit.Event) (*pluginkit.Event, error) {
	return h.RequestAs(Producer, e)
}

// RequestAs is [Harness.Request] from another caller, for plugins that
// treat callers differently.
func (h *Harness) RequestAs(caller string, e *pluginkit.Event) (*pluginkit.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
	defer cancel()
	return bus.Request(ctx, h.Conn, h.prefix, caller, e)
}

// Next waits up to [DefaultTimeout] for the next event the plugin emits whose
// type is typ, or starts with typ's prefix when typ ends in ".>", and
// returns it.
func (h *Harness) Next(typ string) (*pluginkit.Event, error) {
	deadline := time.After(DefaultTimeout)
	for {
		if e, err := h.take(typ); e != nil || err != nil {
			return e, err
		}
		select {
		case <-h.more:
		case <-deadline:
			return nil, fmt.Errorf("kittest: no %q event within %v", typ, DefaultTimeout)
		}
	}
}

func (h *Harness) take(typ string) (*pluginkit.Event, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.errs) > 0 {
		return nil, fmt.Errorf("kittest: %w", errors.Join(h.errs...))
	}
	for i, e := range h.seen {
		if typ == e.Type() || strings.HasSuffix(typ, ".>") && strings.HasPrefix(e.Type(), strings.TrimSuffix(typ, ">")) {
			h.seen = append(h.seen[:i], h.seen[i+1:]...)
			return e, nil
		}
	}
	return nil, nil
}

// Close stops the plugin (it drains as on SIGTERM), then the server. It
// returns the error the plugin stopped with.
func (h *Harness) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.mu.Unlock()
	var err error
	if h.cancel != nil {
		h.cancel()
		if perr := <-h.done; perr != nil {
			err = fmt.Errorf("kittest: plugin stopped with an error: %w", perr)
		}
	}
	for _, nc := range []*nats.Conn{h.pluginConn, h.Conn} {
		if nc != nil {
			nc.Close()
		}
	}
	h.Server.Close()
	os.RemoveAll(h.storeDir)
	return err
}

// Counters are what a plugin's handlers counted, summed over its
// endpoints, as NATS micro STATS reports them.
type Counters struct {
	Received, Handled, Failed, Invalid uint64
}

// Counters asks the plugin for its STATS and sums its handlers' counters.
func (h *Harness) Counters() (Counters, error) {
	var sum Counters
	msg, err := h.Conn.Request("$SRV.STATS."+h.plugin, nil, DefaultTimeout)
	if err != nil {
		return sum, fmt.Errorf("kittest: STATS of %s: %w", h.plugin, err)
	}
	var st micro.Stats
	if err := json.Unmarshal(msg.Data, &st); err != nil {
		return sum, fmt.Errorf("kittest: STATS of %s: %w", h.plugin, err)
	}
	for _, ep := range st.Endpoints {
		var c Counters
		if json.Unmarshal(ep.Data, &c) == nil {
			sum.Received += c.Received
			sum.Handled += c.Handled
			sum.Failed += c.Failed
			sum.Invalid += c.Invalid
		}
	}
	return sum, nil
}
