package pluginkit_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// Effectively-once across instances: another instance's claim on an event
// in the record bucket, written by the test as that instance would, keeps
// the handler from running while it is renewed, and is taken over once it
// has not been renewed for a lease (5s here: the ack wait is shorter).

// onceSetup serves a durable plugin "claims" with effectively-once and a
// debug log (its Durable changed by opts), and returns the test's JetStream, the record bucket and the
// plugin's log.
func onceSetup(t *testing.T, h pluginkit.Handler, opts ...func(*pluginkit.Durable)) (jetstream.JetStream, jetstream.KeyValue, *syncBuffer) {
	t.Helper()
	s := bustest.NewServer(t)
	js, _ := jetstream.New(bustest.Connect(t, s))
	log := &syncBuffer{}
	d := fastRetries
	d.EffectivelyOnce = true
	for _, o := range opts {
		o(&d)
	}
	p := newPlugin("claims", "1.0.0", pluginkit.WithDurable(d), pluginkit.WithLogger(slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	p.Handle("com.example.order.>", h)
	serve(t, s, p)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	kv, err := js.KeyValue(ctx, bus.DefaultDedupBucket)
	if err != nil {
		t.Fatal(err)
	}
	return js, kv, log
}

// orderEvent returns the test's event and the key of its record.
func orderEvent(id string) (*pluginkit.Event, string) {
	e := pluginkit.NewEvent("com.example.order.placed", map[string]string{})
	e.SetID(id)
	e.SetSource(bus.Source("shop"))
	return e, "claims." + bus.MsgID("shop", e.Source(), id)
}

func publishOrder(t *testing.T, js jetstream.JetStream, e *pluginkit.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := bus.PublishDurable(ctx, js, bus.DefaultPrefix, "shop", e); err != nil {
		t.Fatal(err)
	}
}

func TestEffectivelyOnceLeavesAnEventToTheInstanceHandlingIt(t *testing.T) {
	t.Parallel()
	h := &counter{}
	js, kv, log := onceSetup(t, h)
	e, key := orderEvent("o-live")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Another instance handles the event and renews its claim.
	rev, err := kv.Create(ctx, key, []byte("handling other"))
	if err != nil {
		t.Fatal(err)
	}
	var renewing sync.WaitGroup
	renewing.Add(1)
	go func() {
		defer renewing.Done()
		for ctx.Err() == nil {
			time.Sleep(500 * time.Millisecond)
			if r, err := kv.Update(ctx, key, []byte("handling other"), rev); err == nil {
				rev = r
			}
		}
	}()
	publishOrder(t, js, e)
	eventually(t, "the plugin to leave the event to the other instance", func() bool {
		return len(log.lines("another instance is handling the event; waiting for that one", "o-live")) > 0
	})
	cancel()
	renewing.Wait()
	if n := h.count("o-live"); n != 0 {
		t.Fatalf("the handler ran %d times while another instance held the event", n)
	}
	// The other instance finishes: the record says handled. The event,
	// kept meanwhile, is acknowledged without running the handler.
	if _, err := kv.Update(context.Background(), key, nil, rev); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the redelivery to be acknowledged as handled", func() bool {
		return len(log.lines("already handled; acknowledging the redelivery", "o-live")) > 0
	})
	if n := h.count("o-live"); n != 0 {
		t.Errorf("the handler ran %d times for an event another instance handled", n)
	}
}

func TestEffectivelyOnceTakesOverAStaleClaim(t *testing.T) {
	t.Parallel()
	h := &counter{}
	js, kv, log := onceSetup(t, h)
	e, key := orderEvent("o-stale")
	// An instance claimed the event and died.
	if _, err := kv.Create(context.Background(), key, []byte("handling dead")); err != nil {
		t.Fatal(err)
	}
	published := time.Now()
	publishOrder(t, js, e)
	eventually(t, "the handler to run", func() bool { return h.count("o-stale") > 0 })
	if waited := time.Since(published); waited < 5*time.Second {
		t.Errorf("the claim was taken over %v after the event came, before a lease (5s)", waited)
	}
	if len(log.lines("took over an event whose claim was not renewed", "owner=dead")) == 0 {
		t.Error("no log of the takeover")
	}
	eventually(t, "the record to say handled", func() bool {
		entry, err := kv.Get(context.Background(), key)
		return err == nil && len(entry.Value()) == 0
	})
	if n := h.count("o-stale"); n != 1 {
		t.Errorf("the handler ran %d times, want 1", n)
	}
}

// A handler whose claim another instance took over (as after this one was
// frozen for longer than a lease) has its context cancelled.
func TestEffectivelyOnceCancelsAHandlerThatLostItsClaim(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	cancelled := make(chan error, 1)
	js, kv, log := onceSetup(t, pluginkit.HandlerFunc(func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		if calls.Add(1) > 1 {
			return nil, nil
		}
		select {
		case <-ctx.Done():
			cancelled <- ctx.Err()
			return nil, ctx.Err()
		case <-time.After(20 * time.Second):
			cancelled <- errors.New("not cancelled")
			return nil, nil
		}
	}))
	e, key := orderEvent("o-lost")
	publishOrder(t, js, e)
	eventually(t, "the handler to start", func() bool { return calls.Load() == 1 })
	if _, err := kv.Put(context.Background(), key, []byte("handling thief")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-cancelled:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the handler ended with %v, want its context cancelled", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the handler's context was not cancelled after its claim was taken over")
	}
	if len(log.lines("another instance took over the event this one is handling", key)) == 0 {
		t.Error("no log of the lost claim")
	}
}

// Waiting for another instance's claim does not count as a delivery: an
// event held for longer than MaxDeliver waits of a lease each, whose other
// instance then fails and releases it, runs here once instead of becoming
// a dead letter that never failed.
func TestEffectivelyOnceWaitingForAClaimIsNoDelivery(t *testing.T) {
	t.Parallel()
	h := &counter{}
	js, kv, log := onceSetup(t, h, func(d *pluginkit.Durable) { d.MaxDeliver = 1 })
	e, key := orderEvent("o-wait")
	ctx, cancel := context.WithTimeout(context.Background(), 2*testTimeout)
	defer cancel()
	rev, err := kv.Create(ctx, key, []byte("handling other"))
	if err != nil {
		t.Fatal(err)
	}
	publishOrder(t, js, e)
	// Renewed for two waits of a lease (5s) each.
	for waits := 0; waits < 2; {
		time.Sleep(500 * time.Millisecond)
		if r, err := kv.Update(ctx, key, []byte("handling other"), rev); err == nil {
			rev = r
		}
		waits = len(log.lines("another instance is handling the event; waiting for that one", "o-wait"))
		if ctx.Err() != nil {
			t.Fatal("the plugin did not wait for the other instance twice")
		}
	}
	if n := h.count("o-wait"); n != 0 {
		t.Fatalf("the handler ran %d times while another instance held the event", n)
	}
	// The other instance's handler fails: it releases its claim.
	if err := kv.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the handler to run", func() bool { return h.count("o-wait") == 1 })
	eventually(t, "the record to say handled", func() bool {
		entry, err := kv.Get(ctx, key)
		return err == nil && len(entry.Value()) == 0
	})
	cons, err := js.Consumer(ctx, bus.DefaultEventsStream, "claims")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the event to be acknowledged", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	})
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Consumer != 1 {
		t.Errorf("the event was delivered %d times, want 1", info.Delivered.Consumer)
	}
	dl, err := js.Stream(ctx, bus.DefaultDeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	dinfo, err := dl.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if dinfo.State.Msgs != 0 {
		t.Errorf("%d dead letters, want none", dinfo.State.Msgs)
	}
	if n := h.count("o-wait"); n != 1 {
		t.Errorf("the handler ran %d times, want 1", n)
	}
}
