package pluginkit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	"github.com/plugbus/plugbus/bus/embedded"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// testTimeout bounds every wait in these tests: generous, because a busy
// machine running them under the race detector is slow, and no test waits
// for it to pass when things work.
const testTimeout = 20 * time.Second

// tester is the producer name the tests publish and request as.
const tester = "tester"

// quiet is the logger of plugins whose logs a test does not read.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newPlugin is pluginkit.New with a logger that discards, unless opts set
// another.
func newPlugin(name, version string, opts ...pluginkit.Option) *pluginkit.Plugin {
	return pluginkit.New(name, version, append([]pluginkit.Option{pluginkit.WithLogger(quiet)}, opts...)...)
}

// A served plugin runs with Plugin.Serve on its own connection.
type served struct {
	p      *pluginkit.Plugin
	nc     *nats.Conn
	id     string // instance id from the started event
	cancel context.CancelFunc
	done   chan error

	once     sync.Once
	err      error
	explicit bool // the test called stop and checked its error
}

// serve runs p on a new connection to s, waits until it announced that it
// started, and stops it when the test ends, failing the test if Serve
// returned an error then.
func serve(t testing.TB, s *embedded.Server, p *pluginkit.Plugin) *served {
	t.Helper()
	watch := bustest.Connect(t, s)
	started, err := watch.SubscribeSync(lifecycleSubject(p.Name(), bus.TypePluginStarted))
	if err != nil {
		t.Fatal(err)
	}
	if err := watch.Flush(); err != nil {
		t.Fatal(err)
	}
	r := &served{p: p, nc: bustest.Connect(t, s), done: make(chan error, 1)}
	var ctx context.Context
	ctx, r.cancel = context.WithCancel(context.Background())
	go func() { r.done <- p.Serve(ctx, r.nc) }()
	t.Cleanup(func() {
		if err := r.shutdown(); err != nil && !r.explicit {
			t.Errorf("plugin %s stopped with: %v", p.Name(), err)
		}
	})
	msg, err := started.NextMsg(testTimeout)
	if err != nil {
		select {
		case err := <-r.done:
			r.done <- err
			t.Fatalf("plugin %s did not start: Serve returned %v", p.Name(), err)
		default:
		}
		t.Fatalf("plugin %s did not announce that it started: %v", p.Name(), err)
	}
	inst := instanceOf(t, msg)
	r.id = inst.ID
	_ = started.Unsubscribe()
	return r
}

// stop cancels Serve's context and returns what Serve returned, for the
// test to check.
func (r *served) stop() error {
	r.explicit = true
	return r.shutdown()
}

func (r *served) shutdown() error {
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(15 * time.Second):
			r.err = errors.New("Serve did not return within 15s of its context ending")
		}
	})
	return r.err
}

func lifecycleSubject(plugin, typ string) string {
	return bus.DefaultPrefix + ".events." + plugin + "." + typ
}

// instanceOf decodes a lifecycle event's data.
func instanceOf(t testing.TB, msg *nats.Msg) bus.Instance {
	t.Helper()
	e := decode(t, msg)
	var inst bus.Instance
	if err := e.DataAs(&inst); err != nil {
		t.Fatalf("%s: data %s: %v", e.Type(), e.Data(), err)
	}
	return inst
}

func decode(t testing.TB, msg *nats.Msg) *pluginkit.Event {
	t.Helper()
	e, err := bus.Decode(msg)
	if err != nil {
		t.Fatalf("message on %s is not a valid event: %v", msg.Subject, err)
	}
	return e
}

// request sends e as a request from tester and returns the reply.
func request(nc *nats.Conn, e *pluginkit.Event) (*pluginkit.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	return bus.Request(ctx, nc, bus.DefaultPrefix, tester, e)
}

// mustRequest is request that fails the test on an error.
func mustRequest(t testing.TB, nc *nats.Conn, e *pluginkit.Event) *pluginkit.Event {
	t.Helper()
	reply, err := request(nc, e)
	if err != nil {
		t.Fatalf("request %s: %v", e.Type(), err)
	}
	if reply == nil {
		t.Fatalf("request %s: empty reply, want an event", e.Type())
	}
	return reply
}

// serviceError returns err as a *bus.ServiceError, failing the test when it
// is not one.
func serviceError(t testing.TB, err error) *bus.ServiceError {
	t.Helper()
	var se *bus.ServiceError
	if !errors.As(err, &se) {
		t.Fatalf("got error %v, want a *bus.ServiceError", err)
	}
	return se
}

// binaryMsg encodes e in binary mode for subject.
func binaryMsg(t testing.TB, subject string, e *pluginkit.Event) *nats.Msg {
	t.Helper()
	msg := &nats.Msg{Subject: subject}
	if err := bus.Encode(e, msg); err != nil {
		t.Fatal(err)
	}
	return msg
}

func eventSubject(producer, typ string) string {
	return bus.DefaultPrefix + ".events." + producer + "." + typ
}

func invokeSubject(caller, typ string) string {
	return bus.DefaultPrefix + ".invoke." + caller + "." + typ
}

// microStats asks $SRV.STATS.<name> and returns what NATS micro itself
// counts for each endpoint, by subject.
func microStats(t testing.TB, nc *nats.Conn, name string) map[string]*micro.EndpointStats {
	t.Helper()
	subject, err := micro.ControlSubject(micro.StatsVerb, name, "")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := nc.Request(subject, nil, testTimeout)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	var st micro.Stats
	if err := json.Unmarshal(msg.Data, &st); err != nil {
		t.Fatalf("%s: %v in %s", subject, err, msg.Data)
	}
	out := map[string]*micro.EndpointStats{}
	for _, ep := range st.Endpoints {
		out[ep.Subject] = ep
	}
	return out
}

// endpointCounters is the data plugin-kit puts in a NATS micro STATS
// answer for each endpoint.
type endpointCounters struct {
	Received uint64 `json:"received"`
	Handled  uint64 `json:"handled"`
	Failed   uint64 `json:"failed"`
	Invalid  uint64 `json:"invalid"`
}

// stats asks $SRV.STATS.<name> and returns the counters of each endpoint
// by subject.
func stats(t testing.TB, nc *nats.Conn, name string) map[string]endpointCounters {
	t.Helper()
	subject, err := micro.ControlSubject(micro.StatsVerb, name, "")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := nc.Request(subject, nil, testTimeout)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	var st micro.Stats
	if err := json.Unmarshal(msg.Data, &st); err != nil {
		t.Fatalf("%s: %v in %s", subject, err, msg.Data)
	}
	out := map[string]endpointCounters{}
	for _, ep := range st.Endpoints {
		var c endpointCounters
		if err := json.Unmarshal(ep.Data, &c); err != nil {
			t.Fatalf("%s: endpoint %s data: %v in %s", subject, ep.Name, err, ep.Data)
		}
		out[ep.Subject] = c
	}
	return out
}

// info asks $SRV.INFO.<name>.
func info(t testing.TB, nc *nats.Conn, name string) micro.Info {
	t.Helper()
	subject, err := micro.ControlSubject(micro.InfoVerb, name, "")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := nc.Request(subject, nil, testTimeout)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	var in micro.Info
	if err := json.Unmarshal(msg.Data, &in); err != nil {
		t.Fatalf("%s: %v in %s", subject, err, msg.Data)
	}
	return in
}

// eventually polls cond every 10ms until it holds or testTimeout passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, testTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mustPanic runs f and returns what it panicked with, failing the test when
// it did not panic.
func mustPanic(t testing.TB, f func()) (msg string) {
	t.Helper()
	defer func() {
		v := recover()
		if v == nil {
			t.Fatal("did not panic")
		}
		msg, _ = v.(string)
		if msg == "" {
			t.Fatalf("panicked with %#v, want a message", v)
		}
	}()
	f()
	return ""
}

// syncBuffer is a bytes.Buffer safe for concurrent writers, for logs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the lines of b that contain every one of words.
func (b *syncBuffer) lines(words ...string) []string {
	var out []string
next:
	for _, line := range strings.Split(b.String(), "\n") {
		for _, w := range words {
			if !strings.Contains(line, w) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}
