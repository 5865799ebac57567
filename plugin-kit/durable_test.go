package pluginkit_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// fastRetries keeps durable tests short.
var fastRetries = pluginkit.Durable{MaxDeliver: 3, Backoff: []time.Duration{20 * time.Millisecond}, AckWait: 2 * time.Second, StartAt: pluginkit.StartAll}

// counter is a handler that records the ids it handled and fails while
// fail says so.
type counter struct {
	mu   sync.Mutex
	seen map[string]int
	fail func(e pluginkit.Event, attempt int) error
}

func (c *counter) HandleEvent(_ context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
	c.mu.Lock()
	if c.seen == nil {
		c.seen = map[string]int{}
	}
	c.seen[e.ID()]++
	n := c.seen[e.ID()]
	c.mu.Unlock()
	if c.fail != nil {
		if err := c.fail(e, n); err != nil {
			return nil, err
		}
	}
	return pluginkit.NewEvent("com.example.done", map[string]string{"id": e.ID()}), nil
}

func (c *counter) count(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[id]
}

func TestDurableDeliversEventsPublishedWhileThePluginWasDown(t *testing.T) {
	s := bustest.NewServer(t)
	js, _ := jetstream.New(bustest.Connect(t, s))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	first := &counter{}
	p := newPlugin("keeper", "1.0.0", pluginkit.WithDurable(fastRetries))
	p.Handle("com.example.order.>", first)
	if err := serve(t, s, p).stop(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ { // the plugin is down
		e := pluginkit.NewEvent("com.example.order.placed", map[string]int{"n": i})
		e.SetID("o-" + strconv.Itoa(i))
		if err := bus.PublishDurable(ctx, js, bus.DefaultPrefix, "shop", e); err != nil {
			t.Fatal(err)
		}
	}
	second := &counter{}
	q := newPlugin("keeper", "1.0.0", pluginkit.WithDurable(fastRetries))
	q.Handle("com.example.order.>", second)
	serve(t, s, q)
	eventually(t, "the five events handled after the restart", func() bool {
		for i := 0; i < 5; i++ {
			if second.count("o-"+strconv.Itoa(i)) != 1 {
				return false
			}
		}
		return true
	})
	// The results were stored too: durable plugins publish with acknowledgement.
	stream, err := js.Stream(ctx, bus.DefaultEventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.GetLastMsgForSubject(ctx, "plugbus.events.keeper.com.example.done"); err != nil {
		t.Errorf("no result stored in the stream: %v", err)
	}
}

func TestDurableRetriesThenDeadLetters(t *testing.T) {
	s := bustest.NewServer(t)
	nc := bustest.Connect(t, s)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	h := &counter{fail: func(e pluginkit.Event, attempt int) error {
		switch e.ID() {
		case "flaky":
			if attempt < 2 {
				return errors.New("database busy")
			}
		case "poison":
			return errors.New("always fails")
		case "bad":
			return pluginkit.Permanent(errors.New("no such product"))
		}
		return nil
	}}
	p := newPlugin("orders", "1.0.0", pluginkit.WithDurable(fastRetries))
	p.Handle("com.example.order.placed", h)
	serve(t, s, p)
	for _, id := range []string{"flaky", "poison", "bad", "fine"} {
		e := pluginkit.NewEvent("com.example.order.placed", nil)
		e.SetID(id)
		if err := bus.PublishDurable(ctx, js, bus.DefaultPrefix, "shop", e); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every event settled", func() bool {
		return h.count("flaky") == 2 && h.count("poison") == 3 && h.count("bad") == 1 && h.count("fine") == 1
	})
	dl, err := js.Stream(ctx, bus.DefaultDeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	var letters []*jetstream.RawStreamMsg
	eventually(t, "two dead letters", func() bool {
		letters = letters[:0]
		for seq := uint64(1); seq <= 2; seq++ {
			m, err := dl.GetMsg(ctx, seq)
			if err != nil {
				return false
			}
			letters = append(letters, m)
		}
		return true
	})
	got := map[string]string{}
	for _, m := range letters {
		if m.Subject != "plugbus.deadletter.orders" {
			t.Errorf("dead letter on %s, want plugbus.deadletter.orders", m.Subject)
		}
		got[m.Header.Get("ce-id")] = m.Header.Get(bus.HeaderDLAttempts) + " " + m.Header.Get(bus.HeaderDLError)
		if m.Header.Get(bus.HeaderDLSubject) != "plugbus.events.shop.com.example.order.placed" {
			t.Errorf("dead letter subject header %q", m.Header.Get(bus.HeaderDLSubject))
		}
	}
	if got["poison"] != "3 always fails" || got["bad"] != "1 no such product" {
		t.Errorf("dead letters %v; want poison after 3 attempts and bad after 1", got)
	}
	// Nothing is redelivered after it settled.
	time.Sleep(200 * time.Millisecond)
	if h.count("poison") != 3 || h.count("fine") != 1 {
		t.Errorf("redelivered after settling: poison %d, fine %d", h.count("poison"), h.count("fine"))
	}
}

func TestDurableAnswersRequestsLiveAndOnce(t *testing.T) {
	s := bustest.NewServer(t)
	nc := bustest.Connect(t, s)
	var calls atomic.Int32
	p := newPlugin("greeter", "1.0.0", pluginkit.WithDurable(fastRetries))
	p.HandleFunc("com.example.greet.requested", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		calls.Add(1)
		return pluginkit.NewEvent("com.example.greet.sent", "hi"), nil
	})
	serve(t, s, p)
	reply := mustRequest(t, nc, pluginkit.NewEvent("com.example.greet.requested", nil))
	if reply.Type() != "com.example.greet.sent" {
		t.Fatalf("reply %s, want com.example.greet.sent", reply.Type())
	}
	time.Sleep(300 * time.Millisecond) // room for the stream's copy to come through
	if n := calls.Load(); n != 1 {
		t.Errorf("handler ran %d times for one request, want 1", n)
	}
}

// A publish to the events stream carries a reply subject for the stream's
// acknowledgement; a plugin that is not durable must take it as an event,
// not answer it as a request.
func TestStreamPublishesAreNotRequests(t *testing.T) {
	s := bustest.NewServer(t)
	js, _ := jetstream.New(bustest.Connect(t, s))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	h := &counter{}
	p := newPlugin("live", "1.0.0")
	p.Handle("com.example.order.placed", h)
	serve(t, s, p)
	for i := 0; i < 20; i++ {
		e := pluginkit.NewEvent("com.example.order.placed", nil)
		e.SetID("x-" + strconv.Itoa(i))
		if err := bus.PublishDurable(ctx, js, bus.DefaultPrefix, "shop", e); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	eventually(t, "the plugin handled all 20", func() bool {
		for i := 0; i < 20; i++ {
			if h.count("x-"+strconv.Itoa(i)) != 1 {
				return false
			}
		}
		return true
	})
}

// A durable plugin acknowledges each event after its handler, without
// making the worker wait for the server's confirmation; stopping must
// still wait for every acknowledgement, or the events are redelivered.
func TestDurableStopWaitsForAcknowledgements(t *testing.T) {
	s := bustest.NewServer(t)
	js, _ := jetstream.New(bustest.Connect(t, s))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	handled := &counter{}
	p := newPlugin("acker", "1.0.0", pluginkit.WithDurable(fastRetries))
	p.Handle("com.example.order.>", handled)
	running := serve(t, s, p)
	const n = 200
	for i := range n {
		e := pluginkit.NewEvent("com.example.order.placed", map[string]int{"n": i})
		e.SetID("o-" + strconv.Itoa(i))
		if _, err := bus.PublishDurableAsync(js, bus.DefaultPrefix, "shop", e); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("the publishes were not acknowledged")
	}
	eventually(t, "every event handled", func() bool {
		for i := range n {
			if handled.count("o-"+strconv.Itoa(i)) == 0 {
				return false
			}
		}
		return true
	})
	if err := running.stop(); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, bus.DefaultEventsStream, "acker")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 || info.NumPending != 0 {
		t.Errorf("after the plugin stopped, %d events await acknowledgement and %d delivery; want none", info.NumAckPending, info.NumPending)
	}
	for i := range n {
		if c := handled.count("o-" + strconv.Itoa(i)); c != 1 {
			t.Errorf("o-%d handled %d times, want once", i, c)
		}
	}
}

// How a durable plugin acknowledges, seen on the wire: a double ack is a
// request (the server confirms it), a plain ack has no reply subject. With
// either, each event is handled once and acknowledged: the consumer has
// nothing pending, nothing unacknowledged and nothing redelivered.
func TestDurableAcknowledgesPlainOnlyWhereChosen(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		once      bool
		plain     bool
		wantReply bool
	}{
		{name: "default-double-ack", wantReply: true},
		{name: "plain-ack", plain: true},
		{name: "effectively-once", once: true},
		{name: "effectively-once-and-plain-ack", once: true, plain: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := bustest.NewServer(t)
			nc := bustest.Connect(t, s)
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			acks, err := nc.SubscribeSync("$JS.ACK." + bus.DefaultEventsStream + ".acker.>")
			if err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			d := fastRetries
			d.AckWait = 30 * time.Second // a lost ack would show as a redelivery
			d.EffectivelyOnce, d.PlainAck = tc.once, tc.plain
			h := &counter{}
			p := newPlugin("acker", "1.0.0", pluginkit.WithDurable(d))
			p.Handle("com.example.order.>", h)
			serve(t, s, p)
			const n = 20
			for i := range n {
				e := pluginkit.NewEvent("com.example.order.placed", map[string]int{"n": i})
				e.SetID("o-" + strconv.Itoa(i))
				if err := bus.PublishDurable(ctx, js, bus.DefaultPrefix, "shop", e); err != nil {
					t.Fatal(err)
				}
			}
			cons, err := js.Consumer(ctx, bus.DefaultEventsStream, "acker")
			if err != nil {
				t.Fatal(err)
			}
			var info *jetstream.ConsumerInfo
			eventually(t, "every event acknowledged", func() bool {
				info, err = cons.Info(ctx)
				return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Consumer >= n
			})
			if info.NumRedelivered != 0 {
				t.Errorf("%d events redelivered, want none", info.NumRedelivered)
			}
			for i := range n {
				if got := h.count("o-" + strconv.Itoa(i)); got != 1 {
					t.Errorf("event o-%d handled %d times, want once", i, got)
				}
			}
			for i := range n {
				m, err := acks.NextMsg(testTimeout)
				if err != nil {
					t.Fatalf("ack %d of %d not seen: %v", i+1, n, err)
				}
				if string(m.Data) != "+ACK" {
					t.Errorf("acknowledgement %q, want +ACK", m.Data)
				}
				if got := m.Reply != ""; got != tc.wantReply {
					t.Errorf("acknowledgement waits for the server's confirmation: %v, want %v", got, tc.wantReply)
				}
			}
		})
	}
}

// publishOrders publishes n order events with ids prefix-0, prefix-1, ...
// and waits for the stream to store them all.
func publishOrders(t *testing.T, js jetstream.JetStream, prefix string, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	ids := make([]string, n)
	for i := range n {
		ids[i] = prefix + "-" + strconv.Itoa(i)
		e := pluginkit.NewEvent("com.example.order.placed", map[string]int{"n": i})
		e.SetID(ids[i])
		if _, err := bus.PublishDurableAsync(js, bus.DefaultPrefix, "shop", e); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("the publishes were not acknowledged")
	}
	return ids
}

// Instances of one plugin share its events: with quick handlers, each
// pulling a batch ahead of its workers, both get work and each event is
// handled once.
func TestDurableInstancesShareEvents(t *testing.T) {
	t.Parallel()
	s := bustest.NewServer(t)
	js, _ := jetstream.New(bustest.Connect(t, s))
	d := fastRetries
	d.AckWait = 30 * time.Second // no redelivery however loaded the machine
	a, b := &counter{}, &counter{}
	for _, h := range []*counter{a, b} {
		p := newPlugin("shared", "1.0.0", pluginkit.WithDurable(d))
		p.Handle("com.example.order.>", h)
		serve(t, s, p)
	}
	ids := publishOrders(t, js, "o", 2000)
	eventually(t, "every event handled", func() bool {
		for _, id := range ids {
			if a.count(id)+b.count(id) == 0 {
				return false
			}
		}
		return true
	})
	inA := 0
	for _, id := range ids {
		if n := a.count(id) + b.count(id); n != 1 {
			t.Errorf("%s handled %d times, want once", id, n)
		}
		inA += a.count(id)
	}
	t.Logf("instance a handled %d events, b %d", inA, len(ids)-inA)
	if inA == 0 || inA == len(ids) {
		t.Errorf("instance a handled %d of %d events: one instance got no work", inA, len(ids))
	}
}

// An instance whose handler is busy pulls nothing ahead of it: the events
// that come meanwhile go to another instance rather than wait behind it.
func TestDurableBusyInstanceHoldsNoMoreThanItRuns(t *testing.T) {
	t.Parallel()
	s := bustest.NewServer(t)
	js, _ := jetstream.New(bustest.Connect(t, s))
	d := fastRetries
	d.AckWait = 30 * time.Second
	unblock := make(chan struct{})
	var blocked atomic.Int32
	busy := &counter{fail: func(pluginkit.Event, int) error {
		blocked.Add(1)
		<-unblock
		return nil
	}}
	p := newPlugin("shared", "1.0.0", pluginkit.WithDurable(d), pluginkit.WithConcurrency(1))
	p.Handle("com.example.order.>", busy)
	serve(t, s, p)
	var once sync.Once
	release := func() { once.Do(func() { close(unblock) }) }
	t.Cleanup(release) // before the plugin stops, if the test failed
	first := publishOrders(t, js, "first", 1)
	eventually(t, "the busy instance's handler to start", func() bool { return blocked.Load() == 1 })

	other := &counter{}
	q := newPlugin("shared", "1.0.0", pluginkit.WithDurable(d))
	q.Handle("com.example.order.>", other)
	serve(t, s, q)
	ids := publishOrders(t, js, "later", 20)
	eventually(t, "the other instance to handle every later event", func() bool {
		for _, id := range ids {
			if other.count(id) == 0 {
				return false
			}
		}
		return true
	})
	release()
	for _, id := range ids {
		if n := busy.count(id); n != 0 {
			t.Errorf("%s went to the busy instance (%d times)", id, n)
		}
	}
	if n := busy.count(first[0]); n != 1 {
		t.Errorf("the busy instance handled its event %d times, want 1", n)
	}
}
