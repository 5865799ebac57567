package deadletter

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
)

func TestMatchType(t *testing.T) {
	for _, tc := range []struct {
		pattern, typ string
		want         bool
	}{
		{"", "a.b", true},
		{"a.b", "", false},
		{"a.b", "a.b", true},
		{"a.b", "a.b.c", false},
		{"a.b.c", "a.b", false},
		{"a.b", "a.bc", false},
		{"a.*", "a.b", true},
		{"a.*", "a.b.c", false},
		{"*", "a", true},
		{"*", "a.b", false},
		{"*.b.*", "a.b.c", true},
		{"*.b.*", "a.x.c", false},
		{"a.>", "a.b", true},
		{"a.>", "a.b.c.d", true},
		{"a.>", "a", false},
		{">", "a", true},
		{">", "a.b.c", true},
		{"*.>", "a", false},
		{"*.>", "a.b", true},
		{"com.example.order.placed", "com.example.order.placed", true},
		{"com.example.order.placed", "com.example.order.placed2", false},
	} {
		if got := matchType(tc.pattern, tc.typ); got != tc.want {
			t.Errorf("matchType(%q, %q) = %v; want %v", tc.pattern, tc.typ, got, tc.want)
		}
	}
}

func TestIsGone(t *testing.T) {
	nc := bustest.Connect(t, bustest.NewServer(t))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamConfig{Memory: true}); err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, "plugbus.deadletter.p", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, bus.DefaultDeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(ctx, ack.Sequence); err != nil || isGone(err) {
		t.Fatalf("first delete: %v", err)
	}
	for _, seq := range []uint64{ack.Sequence, 999} {
		if err := st.DeleteMsg(ctx, seq); !isGone(err) {
			t.Errorf("delete of missing sequence %d: isGone(%v) = false", seq, err)
		}
	}
	if isGone(context.DeadlineExceeded) {
		t.Error("isGone(DeadlineExceeded) = true")
	}
}

func TestReplayHeader(t *testing.T) {
	h := nats.Header{
		"ce-id":                     {"1"},
		"ce-type":                   {"com.example.x"},
		"traceparent":               {"00-abc"},
		"Nats-Msg-Id":               {"old"},
		"Nats-Expected-Stream":      {"X"},
		"Nats-Expected-Last-Msg-Id": {"y"},
		"Nats-Rollup":               {"all"},
		"Nats-TTL":                  {"1s"},
		"Nats-Stream":               {"PLUGBUS_DEADLETTER"},
		"Nats-Sequence":             {"5"},
		"Nats-Time-Stamp":           {"2026-01-02T03:04:05Z"},
		"Nats-Subject":              {"plugbus.deadletter.p"},
		"Plugbus-Dl-Error":          {"boom"},
		"plugbus-dl-attempts":       {"3"},
	}
	got := replayHeader(h)
	want := nats.Header{"ce-id": {"1"}, "ce-type": {"com.example.x"}, "traceparent": {"00-abc"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("replayHeader = %v; want %v", got, want)
	}
	got["ce-id"][0] = "changed"
	if h["ce-id"][0] != "1" {
		t.Error("replayHeader shares values with the stored header")
	}
}
