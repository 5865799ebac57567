package bus_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
)

// The events stream captures P.events.> only: a request travels on its
// invoke subject, is answered by the plugin alone (no acknowledgement of the
// stream on its reply subject) and is never stored as an event.
func TestRequestIsNotCapturedByTheStream(t *testing.T) {
	s := bustest.NewServer(t)
	nc := bustest.Connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	reply := newEvent("r-1", "com.example.resized")
	startService(t, s, "resizer", "com.example.resize", respondWith(t, reply))
	got, err := bus.Request(ctx, nc, bus.DefaultPrefix, "tester", newEvent("q-1", "com.example.resize"))
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	if got == nil || got.ID() != "r-1" {
		t.Fatalf("Request returned %v, want the plugin's reply r-1", got)
	}
	info, err := js.Stream(ctx, bus.DefaultEventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("the stream holds %d messages, want none: a request is not an event", n)
	}
}

func TestPublishDurableStoresARetriedEventOnce(t *testing.T) {
	s := bustest.NewServer(t)
	js, _ := jetstream.New(bustest.Connect(t, s))
	short, cancelShort := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancelShort()
	if err := bus.PublishDurable(short, js, bus.DefaultPrefix, "shop", newEvent("o-1", "com.example.order.placed")); err == nil {
		t.Fatal("PublishDurable with no stream: got no error, want one once ctx ends")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ { // a publisher retrying after lost acknowledgements
		if err := bus.PublishDurable(ctx, js, bus.DefaultPrefix, "shop", newEvent("o-1", "com.example.order.placed")); err != nil {
			t.Fatalf("PublishDurable: %v", err)
		}
	}
	if err := bus.PublishDurable(ctx, js, bus.DefaultPrefix, "shop", newEvent("o-2", "com.example.order.placed")); err != nil {
		t.Fatalf("PublishDurable: %v", err)
	}
	stream, err := js.Stream(ctx, bus.DefaultEventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := stream.CachedInfo().State.Msgs; n != 2 {
		t.Errorf("the stream holds %d messages, want 2: o-1 once and o-2", n)
	}
}

func TestPublishDurableAsyncStoresEveryEventOnce(t *testing.T) {
	s := bustest.NewServer(t)
	js, _ := jetstream.New(bustest.Connect(t, s))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	var futures []jetstream.PubAckFuture
	for i := range 100 {
		id := fmt.Sprintf("o-%d", i%50) // every event published twice
		f, err := bus.PublishDurableAsync(js, bus.DefaultPrefix, "shop", newEvent(id, "com.example.order.placed"))
		if err != nil {
			t.Fatalf("PublishDurableAsync: %v", err)
		}
		futures = append(futures, f)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("the publishes were not all acknowledged within 10s")
	}
	duplicates := 0
	for _, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				duplicates++
			}
		case err := <-f.Err():
			t.Fatalf("a publish failed: %v", err)
		}
	}
	if duplicates != 50 {
		t.Errorf("%d acknowledgements say duplicate, want 50", duplicates)
	}
	stream, err := js.Stream(ctx, bus.DefaultEventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := stream.CachedInfo().State.Msgs; n != 50 {
		t.Errorf("the stream holds %d messages, want 50", n)
	}

	if _, err := bus.PublishDurableAsync(js, bus.DefaultPrefix, "shop", newEvent("o-x", "not a type")); !errors.Is(err, bus.ErrInvalidType) {
		t.Errorf("PublishDurableAsync with a bad type: got %v, want ErrInvalidType", err)
	}
}

func TestDurableSubjects(t *testing.T) {
	subject, err := bus.ReplaySubject("plugbus", "archive", "shop", "com.example.order.placed")
	if err != nil || subject != "plugbus.replay.archive.shop.com.example.order.placed" {
		t.Fatalf("ReplaySubject: %q, %v", subject, err)
	}
	for _, tt := range []struct{ subject, producer, typ string }{
		{subject, "shop", "com.example.order.placed"},
		{"plugbus.events.shop.com.example.order.placed", "shop", "com.example.order.placed"},
	} {
		producer, typ, err := bus.ParseDurableSubject("plugbus", tt.subject)
		if err != nil || producer != tt.producer || typ != tt.typ {
			t.Errorf("ParseDurableSubject(%q) = %q, %q, %v; want %q, %q", tt.subject, producer, typ, err, tt.producer, tt.typ)
		}
	}
	if _, _, err := bus.ParseDurableSubject("plugbus", "plugbus.replay.archive"); err == nil {
		t.Error("ParseDurableSubject of a short replay subject: got no error")
	}
	if a, b := bus.MsgID("p", "s", "1"), bus.MsgID("p", "s1", ""); a == b {
		t.Errorf("MsgID must not collide when fields shift: %s", a)
	}
}
