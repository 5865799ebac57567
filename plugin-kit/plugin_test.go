package pluginkit_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
	"github.com/plugbus/plugbus/plugin-kit/kittest"
)

const traceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func TestRequestReplyIsTheResultEvent(t *testing.T) {
	t.Parallel()
	p := newPlugin("greeter", "1.2.0")
	p.HandleFunc("com.example.greet.requested", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		var req struct{ Name string }
		if err := e.DataAs(&req); err != nil {
			return nil, pluginkit.Permanent(err)
		}
		out := pluginkit.NewEvent("com.example.greet.sent", map[string]string{"text": "hello, " + req.Name})
		out.SetSource("urn:plugbus:coordinator") // plugin-kit must replace it
		return out, nil
	})
	h := kittest.Start(t, p)
	results, err := h.Conn.SubscribeSync("plugbus.events.greeter.com.example.greet.sent")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Conn.Flush(); err != nil {
		t.Fatal(err)
	}

	ids := map[string]bool{}
	for _, tc := range []struct {
		name        string
		traceparent string
	}{
		{name: "without traceparent"},
		{name: "with traceparent", traceparent: traceParent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := pluginkit.NewEvent("com.example.greet.requested", map[string]string{"name": "Ada"})
			if tc.traceparent != "" {
				in.SetExtension(bus.ExtTraceParent, tc.traceparent)
			}
			reply, err := h.Request(in)
			if err != nil {
				t.Fatal(err)
			}
			if reply == nil {
				t.Fatal("got an empty reply, want the handler's event")
			}
			if got, want := reply.Type(), "com.example.greet.sent"; got != want {
				t.Errorf("reply type: got %q, want %q", got, want)
			}
			if got, want := reply.Source(), "urn:plugbus:greeter"; got != want {
				t.Errorf("reply source: got %q, want %q", got, want)
			}
			if got, want := string(reply.Data()), `{"text":"hello, Ada"}`; got != want {
				t.Errorf("reply data: got %s, want %s", got, want)
			}
			if reply.ID() == "" || reply.ID() == in.ID() || ids[reply.ID()] {
				t.Errorf("reply id %q: want a fresh id (trigger %q, earlier replies %v)", reply.ID(), in.ID(), ids)
			}
			ids[reply.ID()] = true
			if got := reply.Extensions()[bus.ExtCauseID]; got != in.ID() {
				t.Errorf("reply causeid: got %v, want the trigger's id %q", got, in.ID())
			}
			tp, hasTP := reply.Extensions()[bus.ExtTraceParent]
			switch {
			case tc.traceparent == "" && hasTP:
				t.Errorf("reply traceparent: got %v, want none as the trigger had none", tp)
			case tc.traceparent != "" && tp != tc.traceparent:
				t.Errorf("reply traceparent: got %v, want the trigger's %q", tp, tc.traceparent)
			}
			if _, ok := reply.Extensions()[bus.ExtDeadline]; ok {
				t.Errorf("reply carries the request's deadline extension: %v", reply.Extensions())
			}

			// The reply is also published as a result on the plugin's subject.
			msg, err := results.NextMsg(testTimeout)
			if err != nil {
				t.Fatalf("no result on plugbus.events.greeter.com.example.greet.sent: %v", err)
			}
			if got := decode(t, msg); got.ID() != reply.ID() || got.Source() != reply.Source() {
				t.Errorf("published result id %q source %q, want the reply's: id %q source %q", got.ID(), got.Source(), reply.ID(), reply.Source())
			}
		})
	}
}

func TestRequestErrorCodes(t *testing.T) {
	t.Parallel()
	p := newPlugin("fallible", "1.0.0")
	p.HandleFunc("com.example.job.requested", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		switch string(e.Data()) {
		case "fail":
			return nil, errors.New("disk full")
		case "permanent":
			return nil, pluginkit.Permanent(errors.New("no such user"))
		case "wrapped-permanent":
			return nil, fmt.Errorf("looking up: %w", pluginkit.Permanent(errors.New("no such user")))
		case "slow":
			<-ctx.Done()
			return nil, ctx.Err()
		case "slow-ignoring":
			for ctx.Err() == nil {
				time.Sleep(5 * time.Millisecond)
			}
			return nil, errors.New("gave up")
		case "nil":
			return nil, nil
		}
		return pluginkit.NewEvent("com.example.job.done", nil), nil
	})
	h := kittest.Start(t, p)

	for _, tc := range []struct {
		data     string
		deadline time.Duration // sent in the deadline extension; the test waits longer
		wantCode string        // "" for no error
		wantDesc string
		wantNil  bool
	}{
		{data: "ok"},
		{data: "nil", wantNil: true},
		{data: "fail", wantCode: "500", wantDesc: "disk full"},
		{data: "permanent", wantCode: "422", wantDesc: "no such user"},
		{data: "wrapped-permanent", wantCode: "422", wantDesc: "looking up: no such user"},
		{data: "slow", deadline: 150 * time.Millisecond, wantCode: "504", wantDesc: "deadline exceeded"},
		{data: "slow-ignoring", deadline: 150 * time.Millisecond, wantCode: "504", wantDesc: "gave up"},
	} {
		t.Run(tc.data, func(t *testing.T) {
			in := pluginkit.NewEvent("com.example.job.requested", []byte(tc.data))
			in.SetSource(bus.Source(tester))
			if tc.deadline > 0 {
				in.SetExtension(bus.ExtDeadline, types.Timestamp{Time: time.Now().Add(tc.deadline).UTC()})
			}
			start := time.Now()
			msg, err := h.Conn.RequestMsg(binaryMsg(t, invokeSubject(tester, in.Type()), in), testTimeout)
			if err != nil {
				t.Fatal(err)
			}
			if tc.deadline > 0 && time.Since(start) < tc.deadline {
				t.Errorf("reply after %v, before the deadline of %v", time.Since(start), tc.deadline)
			}
			reply, err := bus.DecodeReply(msg)
			if tc.wantCode == "" {
				if err != nil {
					t.Fatalf("got error %v, want a reply", err)
				}
				if (reply == nil) != tc.wantNil {
					t.Fatalf("got reply %v, want nil: %v", reply, tc.wantNil)
				}
				return
			}
			se := serviceError(t, err)
			if se.Code != tc.wantCode || !strings.Contains(se.Description, tc.wantDesc) {
				t.Errorf("got error code %s %q, want code %s with %q", se.Code, se.Description, tc.wantCode, tc.wantDesc)
			}
		})
	}

	// NATS micro counts every request and every error reply of the
	// answering endpoint, as `nats micro stats` shows them.
	// micro counts a request once its handler has returned, just after
	// the answer went out.
	var ep *micro.EndpointStats
	eventually(t, "micro STATS counting the 7 requests", func() bool {
		ep = microStats(t, h.Conn, "fallible")["plugbus.invoke.*.com.example.job.requested"]
		return ep != nil && ep.NumRequests >= 7
	})
	if ep.NumRequests != 7 || ep.NumErrors != 5 || !strings.Contains(ep.LastError, "gave up") {
		t.Errorf("micro STATS of the answering endpoint: %+v; want 7 requests, 5 errors, the last saying \"gave up\"", ep)
	}
}

func TestHandlerContextDeadline(t *testing.T) {
	t.Parallel()
	type seen struct {
		deadline time.Time
		ok       bool
	}
	got := make(chan seen, 1)
	p := newPlugin("clock", "1.0.0")
	p.HandleFunc("com.example.time.asked", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		dl, ok := ctx.Deadline()
		got <- seen{dl, ok}
		return nil, nil
	})
	h := kittest.Start(t, p)

	t.Run("request", func(t *testing.T) {
		want := time.Now().Add(3 * time.Second)
		ctx, cancel := context.WithDeadline(context.Background(), want)
		defer cancel()
		if _, err := bus.Request(ctx, h.Conn, bus.DefaultPrefix, tester, pluginkit.NewEvent("com.example.time.asked", nil)); err != nil {
			t.Fatal(err)
		}
		s := <-got
		if !s.ok || !s.deadline.Equal(want) {
			t.Errorf("handler ctx deadline: got %v (set: %v), want the request's %v", s.deadline, s.ok, want)
		}
	})
	t.Run("event", func(t *testing.T) {
		if err := h.Publish(pluginkit.NewEvent("com.example.time.asked", nil)); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-got:
			if s.ok {
				t.Errorf("handler ctx deadline: got %v, want none for an event without a deadline", s.deadline)
			}
		case <-time.After(testTimeout):
			t.Fatal("handler not called")
		}
	})
}

// A handler learns its producer (for a request, the caller) from the
// subject, whatever the headers or the body claim.
func TestProducerIsTheSubjectsProducer(t *testing.T) {
	t.Parallel()
	p := newPlugin("auditor", "1.0.0")
	p.HandleFunc("com.example.money.moved", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		return pluginkit.NewEvent("com.example.money.audited", []byte(pluginkit.Producer(ctx)+" "+e.Source())), nil
	})
	h := kittest.Start(t, p)

	binary := func(producer string, extra nats.Header) *nats.Msg {
		e := pluginkit.NewEvent("com.example.money.moved", nil)
		e.SetSource("urn:plugbus:coordinator")
		e.SetExtension("producer", "coordinator")
		msg := binaryMsg(t, invokeSubject(producer, e.Type()), e)
		for k, vs := range extra {
			msg.Header[k] = vs
		}
		return msg
	}
	for _, tc := range []struct {
		name string
		msg  *nats.Msg
		want string
	}{
		{
			name: "ce-source and ce-producer claim the coordinator",
			msg:  binary("alice", nil),
			want: "alice urn:plugbus:coordinator",
		},
		{
			name: "plain producer and Nats-Producer headers",
			msg:  binary("bob", nats.Header{"producer": {"coordinator"}, "Nats-Producer": {"coordinator"}, "Ce-Source": nil}),
			want: "bob urn:plugbus:coordinator",
		},
		{
			name: "structured mode body claims the coordinator",
			msg: &nats.Msg{
				Subject: invokeSubject("carol", "com.example.money.moved"),
				Header:  nats.Header{"Content-Type": {"application/cloudevents+json"}, "producer": {"coordinator"}},
				Data:    []byte(`{"specversion":"1.0","id":"1","source":"urn:plugbus:coordinator","type":"com.example.money.moved","producer":"coordinator"}`),
			},
			want: "carol urn:plugbus:coordinator",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := h.Conn.RequestMsg(tc.msg, testTimeout)
			if err != nil {
				t.Fatal(err)
			}
			reply, err := bus.DecodeReply(msg)
			if err != nil || reply == nil {
				t.Fatalf("got reply %v, error %v; want an event", reply, err)
			}
			if got := string(reply.Data()); got != tc.want {
				t.Errorf("handler saw producer and source %q, want %q", got, tc.want)
			}
		})
	}

	if got := pluginkit.Producer(context.Background()); got != "" {
		t.Errorf("Producer outside a handler: got %q, want \"\"", got)
	}
}

func TestEmitFromHandler(t *testing.T) {
	t.Parallel()
	p := newPlugin("emitter", "1.0.0")
	p.HandleFunc("com.example.order.placed", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		if string(e.Data()) == "bad" {
			// An emitted event is validated: the error is the handler's.
			return nil, pluginkit.Emit(ctx, pluginkit.NewEvent("com.example bad", nil))
		}
		for _, typ := range []string{"com.example.stock.reserved", "com.example.invoice.created"} {
			if err := pluginkit.Emit(ctx, pluginkit.NewEvent(typ, nil)); err != nil {
				return nil, err
			}
		}
		return pluginkit.NewEvent("com.example.order.accepted", nil), nil
	})
	h := kittest.Start(t, p)
	results, err := h.Conn.SubscribeSync("plugbus.events.emitter.com.example.*.*")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Conn.Flush(); err != nil {
		t.Fatal(err)
	}

	in := pluginkit.NewEvent("com.example.order.placed", nil)
	in.SetExtension(bus.ExtTraceParent, traceParent)
	if err := h.Publish(in); err != nil {
		t.Fatal(err)
	}
	var types []string
	ids := map[string]bool{in.ID(): true}
	for range 3 {
		msg, err := results.NextMsg(testTimeout)
		if err != nil {
			t.Fatalf("after %v: %v", types, err)
		}
		e := decode(t, msg)
		types = append(types, e.Type())
		if want := eventSubject("emitter", e.Type()); msg.Subject != want {
			t.Errorf("%s published on %s, want %s", e.Type(), msg.Subject, want)
		}
		if e.Source() != "urn:plugbus:emitter" {
			t.Errorf("%s source: got %q, want urn:plugbus:emitter", e.Type(), e.Source())
		}
		if got := e.Extensions()[bus.ExtCauseID]; got != in.ID() {
			t.Errorf("%s causeid: got %v, want %q", e.Type(), got, in.ID())
		}
		if got := e.Extensions()[bus.ExtTraceParent]; got != traceParent {
			t.Errorf("%s traceparent: got %v, want %q", e.Type(), got, traceParent)
		}
		if ids[e.ID()] {
			t.Errorf("%s id %q is not fresh", e.Type(), e.ID())
		}
		ids[e.ID()] = true
	}
	slices.Sort(types)
	if want := []string{"com.example.invoice.created", "com.example.order.accepted", "com.example.stock.reserved"}; !slices.Equal(types, want) {
		t.Errorf("got results %v, want %v", types, want)
	}

	_, err = h.Request(pluginkit.NewEvent("com.example.order.placed", []byte("bad")))
	if se := serviceError(t, err); se.Code != bus.CodeFailed || !strings.Contains(se.Description, "com.example bad") {
		t.Errorf("emitting an invalid event: got %v, want error 500 naming the type", se)
	}
}

func TestEmitAndInvokeNeedAHandlerContext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if err := pluginkit.Emit(ctx, pluginkit.NewEvent("com.example.x", nil)); !errors.Is(err, pluginkit.ErrNotRunning) {
		t.Errorf("Emit outside a handler: got %v, want ErrNotRunning", err)
	}
	if _, err := pluginkit.Invoke(ctx, pluginkit.NewEvent("com.example.x", nil)); !errors.Is(err, pluginkit.ErrNotRunning) {
		t.Errorf("Invoke outside a handler: got %v, want ErrNotRunning", err)
	}
	p := newPlugin("idle", "1.0.0")
	if err := p.Publish(pluginkit.NewEvent("com.example.x", nil)); !errors.Is(err, pluginkit.ErrNotRunning) {
		t.Errorf("Publish before the plugin runs: got %v, want ErrNotRunning", err)
	}
	if _, err := p.Invoke(ctx, pluginkit.NewEvent("com.example.x", nil)); !errors.Is(err, pluginkit.ErrNotRunning) {
		t.Errorf("Invoke before the plugin runs: got %v, want ErrNotRunning", err)
	}
}

// Plugin a's handler invokes plugin b, which gets a's remaining budget.
func TestInvokePassesTheDeadlineOn(t *testing.T) {
	t.Parallel()
	s := bustest.NewServer(t)
	nc := bustest.Connect(t, s)

	type seen struct {
		deadline  time.Time
		ok        bool
		ext       any
		producer  string
		source    string
		causeid   any
		traceparn any
	}
	got := make(chan seen, 1)
	b := newPlugin("b", "1.0.0")
	b.HandleFunc("com.example.b.asked", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		dl, ok := ctx.Deadline()
		ext := e.Extensions()
		got <- seen{dl, ok, ext[bus.ExtDeadline], pluginkit.Producer(ctx), e.Source(), ext[bus.ExtCauseID], ext[bus.ExtTraceParent]}
		return pluginkit.NewEvent("com.example.b.answered", []byte("from b")), nil
	})
	a := newPlugin("a", "1.0.0")
	a.HandleFunc("com.example.a.asked", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		out, err := pluginkit.Invoke(ctx, pluginkit.NewEvent("com.example.b.asked", nil))
		if err != nil {
			return nil, err
		}
		return pluginkit.NewEvent("com.example.a.answered", []byte(string(out.Data())+" via a")), nil
	})
	serve(t, s, b)
	serve(t, s, a)

	deadline := time.Now().Add(2 * time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	in := pluginkit.NewEvent("com.example.a.asked", nil)
	in.SetExtension(bus.ExtTraceParent, traceParent)
	reply, err := bus.Request(ctx, nc, bus.DefaultPrefix, tester, in)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(reply.Data()), "from b via a"; got != want {
		t.Errorf("reply data: got %q, want %q", got, want)
	}
	sb := <-got
	if !sb.ok || !sb.deadline.Equal(deadline) {
		t.Errorf("b's handler deadline: got %v (set: %v), want a's %v", sb.deadline, sb.ok, deadline)
	}
	if dl, err := types.ToTime(sb.ext); err != nil || !dl.Equal(deadline) {
		t.Errorf("b's event deadline extension: got %v (%v), want %v", sb.ext, err, deadline)
	}
	if sb.producer != "a" || sb.source != "urn:plugbus:a" {
		t.Errorf("b saw producer %q source %q, want a and urn:plugbus:a", sb.producer, sb.source)
	}
	if sb.causeid != in.ID() || sb.traceparn != traceParent {
		t.Errorf("b's event causeid %v traceparent %v, want a's trigger %q and %q", sb.causeid, sb.traceparn, in.ID(), traceParent)
	}
}

func TestMiddlewareOrder(t *testing.T) {
	t.Parallel()
	var (
		mu  sync.Mutex
		log []string
	)
	record := func(s string) {
		mu.Lock()
		log = append(log, s)
		mu.Unlock()
	}
	mw := func(name string) pluginkit.Middleware {
		return func(next pluginkit.Handler) pluginkit.Handler {
			return pluginkit.HandlerFunc(func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
				record(name + ">")
				defer record("<" + name)
				return next.HandleEvent(ctx, e)
			})
		}
	}
	p := newPlugin("layered", "1.0.0")
	p.HandleFunc("com.example.one", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		record("one")
		return nil, nil
	})
	p.Use(mw("a"), mw("b"))
	p.Use(mw("c"))
	p.HandleFunc("com.example.two", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		record("two")
		return nil, nil
	})
	h := kittest.Start(t, p)
	for _, typ := range []string{"one", "two"} {
		mu.Lock()
		log = nil
		mu.Unlock()
		if _, err := h.Request(pluginkit.NewEvent("com.example."+typ, nil)); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		got := slices.Clone(log)
		mu.Unlock()
		if want := []string{"a>", "b>", "c>", typ, "<c", "<b", "<a"}; !slices.Equal(got, want) {
			t.Errorf("handler %s: got calls %v, want %v", typ, got, want)
		}
	}
}

func TestPanicBecomesAnErrorReply(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []pluginkit.HandleOption
	}{
		{name: "concurrent handler"},
		{name: "Concurrency(1)", opts: []pluginkit.HandleOption{pluginkit.Concurrency(1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newPlugin("fragile", "1.0.0")
			p.HandleFunc("com.example.thing.done", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
				if string(e.Data()) == "boom" {
					var none []byte
					_ = none[len(e.Data())] // a runtime panic: index out of range
				}
				return pluginkit.NewEvent("com.example.thing.ok", nil), nil
			}, tc.opts...)
			h := kittest.Start(t, p)
			for i := range 3 {
				_, err := h.Request(pluginkit.NewEvent("com.example.thing.done", []byte("boom")))
				se := serviceError(t, err)
				if se.Code != bus.CodeFailed || !strings.Contains(se.Description, "panicked") || !strings.Contains(se.Description, "index out of range") {
					t.Errorf("panic %d: got error %s %q, want 500 saying the handler panicked and why", i, se.Code, se.Description)
				}
				// The plugin keeps serving.
				if reply, err := h.Request(pluginkit.NewEvent("com.example.thing.done", []byte("fine"))); err != nil || reply == nil || reply.Type() != "com.example.thing.ok" {
					t.Fatalf("after panic %d: got %v, %v; want com.example.thing.ok", i, reply, err)
				}
			}
			c := stats(t, h.Conn, "fragile")["plugbus.events.*.com.example.thing.done"]
			if want := (endpointCounters{Received: 6, Handled: 3, Failed: 3}); c != want {
				t.Errorf("STATS: got %+v, want %+v", c, want)
			}
		})
	}
}

func TestConcurrencyLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		popts  []pluginkit.Option
		hopts  []pluginkit.HandleOption
		wantAt int
	}{
		{name: "Concurrency(1)", hopts: []pluginkit.HandleOption{pluginkit.Concurrency(1)}, wantAt: 1},
		{name: "Concurrency(2)", hopts: []pluginkit.HandleOption{pluginkit.Concurrency(2)}, wantAt: 2},
		{name: "WithConcurrency(3)", popts: []pluginkit.Option{pluginkit.WithConcurrency(3)}, wantAt: 3},
		{name: "Concurrency(2) beats WithConcurrency(5)", popts: []pluginkit.Option{pluginkit.WithConcurrency(5)}, hopts: []pluginkit.HandleOption{pluginkit.Concurrency(2)}, wantAt: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var running, most atomic.Int32
			p := newPlugin("limited", "1.0.0", tc.popts...)
			p.HandleFunc("com.example.work.requested", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
				n := running.Add(1)
				defer running.Add(-1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(20 * time.Millisecond)
				return pluginkit.NewEvent("com.example.work.done", nil), nil
			}, tc.hopts...)
			h := kittest.Start(t, p)

			const events = 20
			for range events {
				if err := h.Publish(pluginkit.NewEvent("com.example.work.requested", nil)); err != nil {
					t.Fatal(err)
				}
			}
			for range events {
				if _, err := h.Next("com.example.work.done"); err != nil {
					t.Fatal(err)
				}
			}
			if got := int(most.Load()); got != tc.wantAt {
				t.Errorf("at most %d handlers ran at once, want %d under %d events at once", got, tc.wantAt, events)
			}
		})
	}
}

func TestConcurrencyOneHandlesInOrder(t *testing.T) {
	t.Parallel()
	const events = 50
	var (
		mu  sync.Mutex
		got []string
	)
	p := newPlugin("sequential", "1.0.0")
	p.HandleFunc("com.example.step.taken", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		time.Sleep(time.Millisecond) // give a second handler time to overtake
		mu.Lock()
		got = append(got, string(e.Data()))
		mu.Unlock()
		return nil, nil
	}, pluginkit.Concurrency(1))
	h := kittest.Start(t, p)
	var want []string
	for i := range events {
		want = append(want, fmt.Sprint(i))
		if err := bus.Publish(h.Conn, bus.DefaultPrefix, tester, pluginkit.NewEvent("com.example.step.taken", []byte(want[i]))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "all events handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == events
	})
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, want) {
		t.Errorf("handled in order %v, want %v", got, want)
	}
}

// Two instances of one plugin share events unless the handler asks for
// Broadcast.
func TestBroadcastAndLoadBalancing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		broadcast bool
	}{
		{name: "shared"},
		{name: "Broadcast", broadcast: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := bustest.NewServer(t)
			nc := bustest.Connect(t, s)
			type instance struct {
				mu  sync.Mutex
				ids map[string]int
			}
			var total atomic.Int32
			instances := make([]*instance, 2)
			for i := range instances {
				in := &instance{ids: map[string]int{}}
				instances[i] = in
				var opts []pluginkit.HandleOption
				if tc.broadcast {
					opts = append(opts, pluginkit.Broadcast())
				}
				p := newPlugin("cache", "1.0.0")
				p.HandleFunc("com.example.cache.invalidated", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
					in.mu.Lock()
					in.ids[e.ID()]++
					in.mu.Unlock()
					total.Add(1)
					return nil, nil
				}, opts...)
				serve(t, s, p)
			}

			const events = 40
			sent := map[string]bool{}
			for range events {
				e := pluginkit.NewEvent("com.example.cache.invalidated", nil)
				sent[e.ID()] = true
				if err := bus.Publish(nc, bus.DefaultPrefix, tester, e); err != nil {
					t.Fatal(err)
				}
			}
			want := events
			if tc.broadcast {
				want = 2 * events
			}
			eventually(t, fmt.Sprintf("%d deliveries", want), func() bool { return int(total.Load()) >= want })
			time.Sleep(100 * time.Millisecond) // for deliveries beyond want to show
			if got := int(total.Load()); got != want {
				t.Fatalf("got %d deliveries, want %d", got, want)
			}
			seen := map[string]int{}
			for i, in := range instances {
				in.mu.Lock()
				for id, n := range in.ids {
					if n != 1 || !sent[id] {
						t.Errorf("instance %d got event %s %d times (sent: %v)", i, id, n, sent[id])
					}
					seen[id]++
				}
				got := len(in.ids)
				in.mu.Unlock()
				switch {
				case tc.broadcast && got != events:
					t.Errorf("instance %d got %d events, want all %d", i, got, events)
				case !tc.broadcast && got == 0:
					t.Errorf("instance %d got no event of %d; want both instances to share them", i, events)
				}
			}
			for id := range sent {
				if want := map[bool]int{true: 2, false: 1}[tc.broadcast]; seen[id] != want {
					t.Errorf("event %s reached %d instances, want %d", id, seen[id], want)
				}
			}
		})
	}
}

func TestWildcardPatterns(t *testing.T) {
	t.Parallel()
	s := bustest.NewServer(t)
	nc := bustest.Connect(t, s)
	patterns := map[string]string{
		"wild":  "com.wild.>",
		"star":  "com.star.*.created",
		"exact": "com.exact.user.created",
	}
	for name, pattern := range patterns {
		p := newPlugin(name, "1.0.0")
		// Answer: a pattern handler only observes without it.
		p.HandleFunc(pattern, func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
			return pluginkit.NewEvent("com.example.matched", []byte(pattern+" "+e.Type())), nil
		}, pluginkit.Answering())
		serve(t, s, p)
	}
	for _, tc := range []struct {
		typ  string
		want string // the pattern that must answer, "" for none
	}{
		{typ: "com.wild.a", want: "com.wild.>"},
		{typ: "com.wild.a.b.c", want: "com.wild.>"},
		{typ: "com.wild"},
		{typ: "com.wildcat.a"},
		{typ: "com.star.user.created", want: "com.star.*.created"},
		{typ: "com.star.order.created", want: "com.star.*.created"},
		{typ: "com.star.user.deleted"},
		{typ: "com.star.a.b.created"},
		{typ: "com.exact.user.created", want: "com.exact.user.created"},
		{typ: "com.exact.user.created.v2"},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			reply, err := request(nc, pluginkit.NewEvent(tc.typ, nil))
			if tc.want == "" {
				if !errors.Is(err, bus.ErrNoResponders) {
					t.Errorf("got reply %v, error %v; want ErrNoResponders", reply, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := string(reply.Data()), tc.want+" "+tc.typ; got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}

	// Discovery shows the pattern in the endpoints' subjects: one
	// observing, one answering.
	in := info(t, nc, "wild")
	if len(in.Endpoints) != 2 {
		t.Fatalf("wild has endpoints %+v, want two", in.Endpoints)
	}
	for i, want := range []struct{ subject, role string }{
		{"plugbus.events.*.com.wild.>", bus.RoleObserve},
		{"plugbus.invoke.*.com.wild.>", bus.RoleAnswer},
	} {
		ep := in.Endpoints[i]
		if ep.Subject != want.subject || ep.Metadata[bus.MetaType] != "com.wild.>" || ep.Metadata[bus.MetaRole] != want.role || ep.QueueGroup != "wild" {
			t.Errorf("endpoint %+v: want subject %s, type com.wild.>, role %s, queue group wild", ep, want.subject, want.role)
		}
	}
}

// Messages that are not valid events never reach the handler; each is
// answered with 400 when it came as a request, logged, and counted, and
// the plugin goes on handling good events.
func TestInvalidMessagesAreRejected(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	var calls atomic.Int32
	p := pluginkit.New("strict", "1.0.0", pluginkit.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	p.HandleFunc("com.example.thing.happened", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		calls.Add(1)
		return pluginkit.NewEvent("com.example.thing.seen", nil), nil
	})
	h := kittest.Start(t, p)
	const typ = "com.example.thing.happened"
	subject := eventSubject(tester, typ)

	good := func() nats.Header {
		e := pluginkit.NewEvent(typ, nil)
		e.SetSource(bus.Source(tester))
		return binaryMsg(t, subject, e).Header
	}
	with := func(k, v string) nats.Header {
		hdr := good()
		if v == "" {
			delete(hdr, k)
		} else {
			hdr[k] = []string{v}
		}
		return hdr
	}
	cases := []struct {
		name   string
		header nats.Header
		data   string
		reason string // in the error description
	}{
		{name: "no ce headers", data: "hello", reason: "neither"},
		{name: "other headers only", header: nats.Header{"X-Trace": {"1"}}, data: "{}", reason: "neither"},
		{name: "bad percent-encoding", header: with("ce-id", "a%zz"), reason: "percent-encoding"},
		{name: "type differs from the subject", header: with("ce-type", "com.example.other.happened"), reason: "must equal the type in the subject"},
		{name: "missing id", header: with("ce-id", ""), reason: "id"},
		{name: "specversion 0.3", header: with("ce-specversion", "0.3"), reason: "specversion"},
		{
			name:   "truncated structured JSON",
			header: nats.Header{"Content-Type": {"application/cloudevents+json"}},
			data:   `{"specversion":"1.0","id":"1","source":"urn:x","type":"` + typ + `","data":{"a":`,
			reason: "structured",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := h.Conn.RequestMsg(&nats.Msg{Subject: invokeSubject(tester, typ), Header: tc.header, Data: []byte(tc.data)}, testTimeout)
			if err != nil {
				t.Fatal(err)
			}
			_, err = bus.DecodeReply(msg)
			se := serviceError(t, err)
			if se.Code != bus.CodeBadEvent || !strings.Contains(se.Description, tc.reason) {
				t.Errorf("got error %s %q, want %s mentioning %q", se.Code, se.Description, bus.CodeBadEvent, tc.reason)
			}
			// Without a reply subject: dropped, counted, logged.
			if err := h.Conn.PublishMsg(&nats.Msg{Subject: subject, Header: tc.header, Data: []byte(tc.data)}); err != nil {
				t.Fatal(err)
			}
			// The next good event is handled.
			if _, err := h.Request(pluginkit.NewEvent(typ, nil)); err != nil {
				t.Fatalf("good event after the bad one: %v", err)
			}
		})
	}

	n := uint64(len(cases))
	want := endpointCounters{Received: 3 * n, Handled: n, Invalid: 2 * n}
	var got endpointCounters
	eventually(t, "STATS counting every message as done", func() bool {
		got = stats(t, h.Conn, "strict")["plugbus.events.*."+typ]
		return got.Received >= want.Received && got.Handled+got.Failed+got.Invalid >= want.Received
	})
	if got != want {
		t.Errorf("STATS: got %+v, want %+v", got, want)
	}
	if got := calls.Load(); got != int32(n) {
		t.Errorf("handler called %d times, want %d (the good events only)", got, n)
	}
	// Counted before logged; the warnings are rate-limited (at most one a
	// second), so there is at least one and at most one per rejection.
	rejections := func() int {
		n := 0
		for _, sub := range []string{subject, invokeSubject(tester, typ)} {
			n += len(logs.lines(`"msg":"rejected a message that is not a valid event"`, `"subject":"`+sub+`"`, `"reason":`))
		}
		return n
	}
	eventually(t, "a rejection logged", func() bool { return rejections() >= 1 })
	if got := rejections(); got > 2*len(cases) {
		t.Errorf("got %d rejection log lines, want at most %d; logs:\n%s", got, 2*len(cases), logs)
	}
}

// A flood of junk makes a few warnings, not one per message, and every
// message is counted.
func TestInvalidFloodIsLoggedBriefly(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	p := pluginkit.New("flooded", "1.0.0", pluginkit.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	p.HandleFunc("com.example.thing.happened", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) { return nil, nil })
	h := kittest.Start(t, p)
	subject := eventSubject(tester, "com.example.thing.happened")
	// Junk published (with no reply subject) on the invoke subject too:
	// there is no one to send the error reply to.
	request := invokeSubject(tester, "com.example.thing.happened")
	const n = 20000
	start := time.Now()
	for range n {
		if err := h.Conn.Publish(subject, []byte("junk")); err != nil {
			t.Fatal(err)
		}
		if err := h.Conn.Publish(request, []byte("junk")); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every junk message counted", func() bool {
		var invalid uint64
		for _, c := range stats(t, h.Conn, "flooded") {
			invalid += c.Invalid
		}
		return invalid == 2*n
	})
	lines := len(logs.lines(`"msg":"rejected a message that is not a valid event"`))
	if limit := int(time.Since(start)/time.Second) + 2; lines < 1 || lines > limit {
		t.Errorf("%d warnings for %d junk messages in %v, want 1 to %d", lines, 2*n, time.Since(start), limit)
	}
	if lines := len(logs.lines(`could not send the error reply`)); lines != 0 {
		t.Errorf("%d warnings about error replies to junk published without a reply subject, want none", lines)
	}
}

func TestHandlePanicsOnBadPatterns(t *testing.T) {
	t.Parallel()
	nop := pluginkit.HandlerFunc(func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) { return nil, nil })
	for _, tc := range []struct {
		name    string
		pattern string
		handler pluginkit.Handler
		want    string
	}{
		{name: "empty", pattern: "", handler: nop, want: "empty"},
		{name: "empty part", pattern: "com..example", handler: nop, want: `"com..example"`},
		{name: "trailing dot", pattern: "com.example.", handler: nop, want: `"com.example."`},
		{name: "space", pattern: "com.example thing", handler: nop, want: "whitespace"},
		{name: "> not last", pattern: "com.>.thing", handler: nop, want: "last"},
		{name: "partial wildcard", pattern: "com.ex*", handler: nop, want: "whole"},
		{name: "duplicate", pattern: "com.example.taken", handler: nop, want: "already registered"},
		{name: "nil handler", pattern: "com.example.other", handler: nil, want: "nil handler"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPlugin("picky", "1.0.0")
			p.Handle("com.example.taken", nop)
			msg := mustPanic(t, func() { p.Handle(tc.pattern, tc.handler) })
			if !strings.Contains(msg, tc.want) {
				t.Errorf("panic %q does not mention %q", msg, tc.want)
			}
		})
	}

	t.Run("after start", func(t *testing.T) {
		p := newPlugin("picky", "1.0.0")
		p.Handle("com.example.taken", nop)
		kittest.Start(t, p)
		if msg := mustPanic(t, func() { p.Handle("com.example.late", nop) }); !strings.Contains(msg, "after the plugin started") {
			t.Errorf("panic %q does not say the plugin already started", msg)
		}
	})

	for _, name := range []string{"", "a.b", "a b", "a*", "a>"} {
		t.Run("New "+name, func(t *testing.T) {
			msg := mustPanic(t, func() { pluginkit.New(name, "1.0.0") })
			if !strings.Contains(msg, "producer name") {
				t.Errorf("panic %q does not explain the name rule", msg)
			}
		})
	}
}

func TestServeErrors(t *testing.T) {
	t.Parallel()
	s := bustest.NewServer(t)
	nop := func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) { return nil, nil }
	for _, tc := range []struct {
		name   string
		plugin func() *pluginkit.Plugin
		want   []string
	}{
		{
			name:   "no handlers",
			plugin: func() *pluginkit.Plugin { return newPlugin("empty", "1.0.0") },
			want:   []string{`"empty"`, "no handlers", "Handle"},
		},
		{
			name: "version not semver",
			plugin: func() *pluginkit.Plugin {
				p := newPlugin("versioned", "1.x")
				p.HandleFunc("com.example.a", nop)
				return p
			},
			want: []string{`"versioned"`, `version "1.x"`, "semantic version"},
		},
		{
			name: "version empty",
			plugin: func() *pluginkit.Plugin {
				p := newPlugin("versioned", "")
				p.HandleFunc("com.example.a", nop)
				return p
			},
			want: []string{`version ""`, "semantic version"},
		},
		{
			name: "version with a v",
			plugin: func() *pluginkit.Plugin {
				p := newPlugin("versioned", "v1.2.0")
				p.HandleFunc("com.example.a", nop)
				return p
			},
			want: []string{`version "v1.2.0"`, "semantic version"},
		},
		{
			name: "bad prefix",
			plugin: func() *pluginkit.Plugin {
				p := newPlugin("prefixed", "1.0.0", pluginkit.WithPrefix("plug..bus"))
				p.HandleFunc("com.example.a", nop)
				return p
			},
			want: []string{`"plug..bus"`, "prefix"},
		},
		{
			name: "bad emitted type",
			plugin: func() *pluginkit.Plugin {
				p := newPlugin("emits", "1.0.0", pluginkit.WithEmits("com.example.ok", "com.example.*"))
				p.HandleFunc("com.example.a", nop)
				return p
			},
			want: []string{"WithEmits", `"com.example.*"`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			err := tc.plugin().Serve(ctx, bustest.Connect(t, s))
			if err == nil {
				t.Fatal("Serve returned nil, want an error")
			}
			if ctx.Err() != nil {
				t.Fatalf("Serve returned only when its context ended: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}

	t.Run("already running", func(t *testing.T) {
		p := newPlugin("twice", "1.0.0")
		p.HandleFunc("com.example.a", nop)
		serve(t, s, p)
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		err := p.Serve(ctx, bustest.Connect(t, s))
		if err == nil || !strings.Contains(err.Error(), "already running") || ctx.Err() != nil {
			t.Errorf("second Serve: got %v, want an immediate error saying it is already running", err)
		}
	})
}

func TestRun(t *testing.T) {
	t.Parallel()
	s := bustest.NewServer(t)
	nc := bustest.Connect(t, s)
	lifecycle, err := nc.SubscribeSync(lifecycleSubject("runner", "io.plugbus.plugin.*"))
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	p := newPlugin("runner", "1.0.0", pluginkit.WithConnConfig(bus.ConnConfig{URLs: []string{s.ClientURL()}}))
	p.HandleFunc("com.example.run.asked", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		return pluginkit.NewEvent("com.example.run.answered", nil), nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer cancel()

	next := func(want string) {
		t.Helper()
		msg, err := lifecycle.NextMsg(testTimeout)
		if err != nil {
			t.Fatalf("waiting for %s: %v", want, err)
		}
		if e := decode(t, msg); e.Type() != want {
			t.Fatalf("got %s, want %s", e.Type(), want)
		}
	}
	next(bus.TypePluginStarted)
	mustRequest(t, nc, pluginkit.NewEvent("com.example.run.asked", nil))
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Run did not return after its context ended")
	}
	next(bus.TypePluginStopped)
	if _, err := request(nc, pluginkit.NewEvent("com.example.run.asked", nil)); !errors.Is(err, bus.ErrNoResponders) {
		t.Errorf("request after Run returned: got %v, want ErrNoResponders", err)
	}
}

func TestRunErrors(t *testing.T) {
	t.Parallel()
	nop := func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) { return nil, nil }
	for _, tc := range []struct {
		name string
		cfg  bus.ConnConfig
		want string
	}{
		{name: "missing credentials file", cfg: bus.ConnConfig{CredsFile: "/nonexistent/plugin.creds"}, want: "credentials file"},
		{name: "certificate without key", cfg: bus.ConnConfig{CertFile: os.Args[0]}, want: "key file"},
		{name: "no server before ctx ends", cfg: bus.ConnConfig{URLs: []string{"nats://127.0.0.1:1"}}, want: "deadline exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPlugin("lonely", "1.0.0", pluginkit.WithConnConfig(tc.cfg))
			p.HandleFunc("com.example.a", nop)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			err := p.Run(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `"lonely"`) {
				t.Errorf("got %v, want an error naming the plugin and %q", err, tc.want)
			}
		})
	}
}

// Cancelling Serve's context while a handler runs: Serve waits for it, its
// result goes out, then the stopped event.
func TestDrainWaitsForRunningHandlers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []pluginkit.HandleOption
	}{
		{name: "concurrent handler"},
		{name: "Concurrency(1)", opts: []pluginkit.HandleOption{pluginkit.Concurrency(1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := bustest.NewServer(t)
			nc := bustest.Connect(t, s)
			began := make(chan struct{})
			var finished atomic.Bool
			p := newPlugin("drainer", "1.0.0")
			p.HandleFunc("com.example.slow.requested", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
				close(began)
				time.Sleep(300 * time.Millisecond)
				finished.Store(true)
				return pluginkit.NewEvent("com.example.slow.done", nil), nil
			}, tc.opts...)
			r := serve(t, s, p)
			out, err := nc.SubscribeSync("plugbus.events.drainer.>")
			if err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := bus.Publish(nc, bus.DefaultPrefix, tester, pluginkit.NewEvent("com.example.slow.requested", nil)); err != nil {
				t.Fatal(err)
			}
			select {
			case <-began:
			case <-time.After(testTimeout):
				t.Fatal("handler not called")
			}
			start := time.Now()
			if err := r.stop(); err != nil {
				t.Fatalf("Serve: %v", err)
			}
			if !finished.Load() {
				t.Errorf("Serve returned %v after its context ended, before the running handler finished", time.Since(start))
			}
			var got []string
			for len(got) < 2 {
				msg, err := out.NextMsg(testTimeout)
				if err != nil {
					t.Fatalf("after %v: %v", got, err)
				}
				got = append(got, decode(t, msg).Type())
			}
			if want := []string{"com.example.slow.done", bus.TypePluginStopped}; !slices.Equal(got, want) {
				t.Errorf("published %v, want %v: the result before the stopped event", got, want)
			}
		})
	}
}

func TestDrainTimeoutCancelsHandlers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		ignoresCtx bool
		wantErr    string
	}{
		{name: "handler returns on cancel"},
		{name: "handler ignores ctx", ignoresCtx: true, wantErr: "still running after the drain timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := bustest.NewServer(t)
			nc := bustest.Connect(t, s)
			began := make(chan struct{})
			ctxErr := make(chan error, 1)
			p := newPlugin("stubborn", "1.0.0", pluginkit.WithDrainTimeout(100*time.Millisecond))
			p.HandleFunc("com.example.forever.requested", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
				close(began)
				if tc.ignoresCtx {
					time.Sleep(1500 * time.Millisecond)
					return nil, nil
				}
				select {
				case <-ctx.Done():
				case <-time.After(testTimeout):
				}
				ctxErr <- ctx.Err()
				return nil, ctx.Err()
			})
			r := serve(t, s, p)
			stopped, err := nc.SubscribeSync(lifecycleSubject("stubborn", bus.TypePluginStopped))
			if err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := bus.Publish(nc, bus.DefaultPrefix, tester, pluginkit.NewEvent("com.example.forever.requested", nil)); err != nil {
				t.Fatal(err)
			}
			<-began
			start := time.Now()
			err = r.stop()
			took := time.Since(start)
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
				if got := <-ctxErr; !errors.Is(got, context.Canceled) {
					t.Errorf("handler ctx ended with %v, want context.Canceled", got)
				}
				if took > time.Second {
					t.Errorf("Serve took %v to return with a 100ms drain timeout", took)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Serve: got %v, want an error saying %q", err, tc.wantErr)
			}
			if took < 100*time.Millisecond {
				t.Errorf("Serve returned after %v, before the 100ms drain timeout", took)
			}
			if _, err := stopped.NextMsg(testTimeout); err != nil {
				t.Errorf("no stopped event: %v", err)
			}
		})
	}
}

func TestLifecycleEvents(t *testing.T) {
	t.Parallel()
	s := bustest.NewServer(t)
	nc := bustest.Connect(t, s)
	lifecycle, err := nc.SubscribeSync(lifecycleSubject("life", "io.plugbus.plugin.*"))
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	p := newPlugin("life", "2.3.4",
		pluginkit.WithDescription("lives and dies"),
		pluginkit.WithEmits("com.example.life.born", "com.example.life.died"))
	nop := func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) { return nil, nil }
	p.HandleFunc("com.example.life.checked", nop, pluginkit.Schema(`{"type":"object"}`))
	p.HandleFunc("com.example.config.>", nop, pluginkit.Broadcast())
	r := serve(t, s, p)

	host, _ := os.Hostname()
	want := bus.Instance{
		Plugin: "life", Version: "2.3.4", ID: p.ID(), Host: host, PID: os.Getpid(), Mode: bus.ModeProcess, Protocol: bus.ProtocolVersion,
		Handles: []string{"com.example.life.checked", "com.example.config.>"},
		Emits:   []string{"com.example.life.born", "com.example.life.died"},
	}
	check := func(typ, reason string) {
		t.Helper()
		msg, err := lifecycle.NextMsg(testTimeout)
		if err != nil {
			t.Fatalf("no %s event: %v", typ, err)
		}
		e := decode(t, msg)
		if e.Type() != typ || msg.Subject != lifecycleSubject("life", typ) || e.Source() != "urn:plugbus:life" {
			t.Errorf("got %s on %s from %s, want %s on %s from urn:plugbus:life", e.Type(), msg.Subject, e.Source(), typ, lifecycleSubject("life", typ))
		}
		w := want
		w.Reason = reason
		if got := instanceOf(t, msg); !reflect.DeepEqual(got, w) {
			t.Errorf("%s data:\n got %+v\nwant %+v", typ, got, w)
		}
	}
	check(bus.TypePluginStarted, "")
	if p.ID() == "" || r.id != p.ID() {
		t.Errorf("ID() = %q, started event says %q", p.ID(), r.id)
	}

	// The same instance answers NATS micro discovery, with the manifest.
	in := info(t, nc, "life")
	if in.ID != p.ID() || in.Version != "2.3.4" || in.Description != "lives and dies" {
		t.Errorf("INFO: id %q version %q description %q, want %q 2.3.4 \"lives and dies\"", in.ID, in.Version, in.Description, p.ID())
	}
	for k, v := range map[string]string{
		bus.MetaProtocol: bus.ProtocolVersion,
		bus.MetaEmits:    "com.example.life.born,com.example.life.died",
		bus.MetaHost:     host,
		bus.MetaPID:      fmt.Sprint(os.Getpid()),
	} {
		if in.Metadata[k] != v {
			t.Errorf("INFO metadata %s: got %q, want %q", k, in.Metadata[k], v)
		}
	}
	wantEndpoints := []micro.EndpointInfo{
		{Name: "com_example_life_checked", Subject: "plugbus.events.*.com.example.life.checked", QueueGroup: "life",
			Metadata: map[string]string{bus.MetaType: "com.example.life.checked", bus.MetaRole: bus.RoleObserve, bus.MetaSchema: `{"type":"object"}`}},
		{Name: "answer-com_example_life_checked", Subject: "plugbus.invoke.*.com.example.life.checked", QueueGroup: "life",
			Metadata: map[string]string{bus.MetaType: "com.example.life.checked", bus.MetaRole: bus.RoleAnswer, bus.MetaSchema: `{"type":"object"}`}},
		{Name: "com_example_config_all", Subject: "plugbus.events.*.com.example.config.>",
			Metadata: map[string]string{bus.MetaType: "com.example.config.>", bus.MetaRole: bus.RoleObserve}},
	}
	if !reflect.DeepEqual(in.Endpoints, wantEndpoints) {
		t.Errorf("INFO endpoints:\n got %+v\nwant %+v", in.Endpoints, wantEndpoints)
	}

	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	check(bus.TypePluginStopped, "shutdown")
}
