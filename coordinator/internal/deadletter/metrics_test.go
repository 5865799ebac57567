package deadletter_test

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator/internal/deadletter"
)

// gather scrapes c and returns "name{plugin}" → value.
func gather(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			plugin := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "plugin" {
					plugin = l.GetValue()
				}
			}
			out[fmt.Sprintf("%s{%s}", f.GetName(), plugin)] = m.GetGauge().GetValue()
		}
	}
	return out
}

func TestCollector(t *testing.T) {
	e := newEnv(t)
	cons, err := e.js.CreateOrUpdateConsumer(ctx(t), bus.DefaultEventsStream, jetstream.ConsumerConfig{
		Durable:       "archive",
		FilterSubject: "plugbus.events.*.com.example.>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		// One outstanding at a time: the fetch after a nak gets the
		// redelivery, whichever the server handles first.
		MaxAckPending: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Ephemeral consumers (a CLI, a listing) are no plugins.
	if _, err := e.js.CreateConsumer(ctx(t), bus.DefaultEventsStream, jetstream.ConsumerConfig{AckPolicy: jetstream.AckNonePolicy}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		ev := event.New()
		ev.SetID(fmt.Sprint("e", i))
		ev.SetType("com.example.order.placed")
		if err := bus.PublishDurable(ctx(t), e.js, bus.DefaultPrefix, "shop", &ev); err != nil {
			t.Fatal(err)
		}
	}
	e.put(letterSpec{plugin: "archive", producer: "shop", typ: "com.example.order.placed", id: "o1"})
	e.put(letterSpec{plugin: "archive", producer: "shop", typ: "com.example.order.placed", id: "o2"})
	e.put(letterSpec{plugin: "mailer", producer: "shop", typ: "com.example.order.placed", id: "o3"})

	c := deadletter.NewCollector(e.js, bus.DefaultPrefix, bus.DefaultEventsStream, bus.DefaultDeadLetterStream)
	want := map[string]float64{
		"plugbus_consumer_pending{archive}":     3,
		"plugbus_consumer_ack_pending{archive}": 0,
		"plugbus_consumer_redelivered{archive}": 0,
		"plugbus_deadletters{archive}":          2,
		"plugbus_deadletters{mailer}":           1,
	}
	if got := gather(t, c); !reflect.DeepEqual(got, want) {
		t.Errorf("metrics =\n%v\nwant\n%v", got, want)
	}

	// One delivered and not acknowledged, then delivered again.
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := msg.Nak(); err != nil {
		t.Fatal(err)
	}
	if _, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Purge(ctx(t), deadletter.Filter{Plugin: "archive"}); err != nil {
		t.Fatal(err)
	}
	want = map[string]float64{
		"plugbus_consumer_pending{archive}":     2,
		"plugbus_consumer_ack_pending{archive}": 1,
		"plugbus_consumer_redelivered{archive}": 1,
		"plugbus_deadletters{archive}":          0, // a consumer with no dead letters reports 0
		"plugbus_deadletters{mailer}":           1,
	}
	if got := gather(t, c); !reflect.DeepEqual(got, want) {
		t.Errorf("metrics =\n%v\nwant\n%v", got, want)
	}
}

func TestCollectorWithoutStreams(t *testing.T) {
	e := newEnv(t)
	c := deadletter.NewCollector(e.js, "", "NO_EVENTS", "NO_DEADLETTERS")
	if got := gather(t, c); len(got) != 0 {
		t.Errorf("metrics without streams = %v; want none", got)
	}
	// Without a connection the scrape still succeeds, and is empty.
	c = deadletter.NewCollector(e.js, "", "", "")
	e.js.Conn().Close()
	start := time.Now()
	if got := gather(t, c); len(got) != 0 {
		t.Errorf("metrics without a connection = %v; want none", got)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("scrape took %v; want at most about 2s", d)
	}
}
