package bus_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	natsce "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
)

// interopEvents are events whose values need no percent-encoding, which is
// what sdk-go's nats_jetstream binding can carry faithfully (it neither
// escapes nor unescapes header values, sdk-go issue 1334).
func interopEvents(t testing.TB) map[string]*event.Event {
	full := newEvent("id-1", "com.example.image.uploaded")
	full.SetSource("https://example.com/uploader")
	full.SetTime(time.Date(2026, 1, 2, 3, 4, 5, 600700800, time.UTC))
	full.SetDataContentType("application/json")
	full.SetDataSchema("https://example.com/schema.json")
	full.SetSubject("images/42.png")
	full.SetExtension("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	full.SetExtension("count", int32(3))
	full.SetExtension("flag", true)
	full.DataEncoded = []byte(`{"name":"42.png","size":1024}`)

	binary := newEvent("id-2", "com.example.blob")
	// SetData with []byte marks the data as binary, so that format.JSON
	// writes data_base64; with DataEncoded set directly it would write the
	// bytes as a JSON string and lose the invalid UTF-8.
	if err := binary.SetData("application/octet-stream", []byte{0, 1, 2, 0xfe, 0xff}); err != nil {
		t.Fatalf("SetData: %v", err)
	}

	return map[string]*event.Event{
		"minimal":     newEvent("id-0", "com.example.ping"),
		"full":        full,
		"binary data": binary,
	}
}

func TestInteropSDKGoWritesBusReads(t *testing.T) {
	s := bustest.NewServer(t)
	pub, sub := bustest.Connect(t, s), bustest.Connect(t, s)
	for name, want := range interopEvents(t) {
		t.Run(name, func(t *testing.T) {
			var body bytes.Buffer
			h, err := natsce.WriteMsg(context.Background(), binding.ToMessage(want), &body)
			if err != nil {
				t.Fatalf("nats_jetstream.WriteMsg: %v", err)
			}
			msg := &nats.Msg{Header: h, Data: body.Bytes()}
			for where, m := range map[string]*nats.Msg{"in memory": msg, "over the wire": wire(t, pub, sub, &nats.Msg{Header: h, Data: body.Bytes()})} {
				got, err := bus.Decode(m)
				if err != nil {
					t.Fatalf("%s: Decode: %v\nheaders:\n%s", where, err, sortedHeader(m.Header))
				}
				if d := eventDiff(got, want); d != "" {
					t.Errorf("%s: %s", where, d)
				}
			}
		})
	}
}

func TestInteropBusWritesSDKGoReads(t *testing.T) {
	s := bustest.NewServer(t)
	pub, sub := bustest.Connect(t, s), bustest.Connect(t, s)
	for name, want := range interopEvents(t) {
		t.Run(name, func(t *testing.T) {
			var msg nats.Msg
			if err := bus.Encode(want, &msg); err != nil {
				t.Fatalf("Encode: %v", err)
			}
			for where, m := range map[string]*nats.Msg{"in memory": &msg, "over the wire": wire(t, pub, sub, &nats.Msg{Header: msg.Header, Data: msg.Data})} {
				got, err := binding.ToEvent(context.Background(), natsce.NewMessage(m))
				if err != nil {
					t.Fatalf("%s: nats_jetstream.NewMessage + binding.ToEvent: %v", where, err)
				}
				if err := got.Validate(); err != nil {
					t.Errorf("%s: sdk-go Validate: %v", where, err)
				}
				if d := eventDiff(got, want); d != "" {
					t.Errorf("%s: %s", where, d)
				}
			}
		})
	}
}

func TestInteropUnprefixedContentType(t *testing.T) {
	// sdk-go's nats_jetstream reads an unprefixed "content-type" header as
	// datacontenttype; a message written that way means the same to us.
	msg := &nats.Msg{
		Header: nats.Header{
			"ce-specversion": {"1.0"}, "ce-id": {"1"}, "ce-source": {"urn:s"}, "ce-type": {"t"},
			"content-type": {"text/plain; charset=utf-8"},
		},
		Data: []byte("hello"),
	}
	theirs, err := binding.ToEvent(context.Background(), natsce.NewMessage(msg))
	if err != nil {
		t.Fatalf("nats_jetstream: %v", err)
	}
	ours, err := bus.Decode(msg)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if d := eventDiff(ours, theirs); d != "" {
		t.Error(d)
	}
	if got, want := ours.DataContentType(), "text/plain; charset=utf-8"; got != want {
		t.Errorf("datacontenttype: got %q, want %q", got, want)
	}
}

func TestInteropStructuredFromSDKGo(t *testing.T) {
	s := bustest.NewServer(t)
	pub, sub := bustest.Connect(t, s), bustest.Connect(t, s)
	events := interopEvents(t)
	// Structured mode is JSON, so it carries non-ASCII values without
	// escaping, unlike nats_jetstream's binary mode.
	intl := newEvent("Euro € 😀", "com.example.intl")
	intl.SetSubject("Grüße")
	intl.SetExtension("note", "€")
	events["non-ASCII"] = intl
	for name, want := range events {
		t.Run(name, func(t *testing.T) {
			body, err := format.JSON.Marshal(want)
			if err != nil {
				t.Fatalf("format.JSON.Marshal: %v", err)
			}
			h := nats.Header{bus.HeaderContentType: {format.JSON.MediaType()}}
			if name == "binary data" && !bytes.Contains(body, []byte(`"data_base64"`)) {
				t.Errorf("format.JSON wrote %s, want data_base64", body)
			}
			for where, m := range map[string]*nats.Msg{"in memory": {Header: h, Data: body}, "over the wire": wire(t, pub, sub, &nats.Msg{Header: h, Data: body})} {
				got, err := bus.Decode(m)
				if err != nil {
					t.Fatalf("%s: Decode: %v\nbody: %s", where, err, body)
				}
				if d := eventDiff(got, want); d != "" {
					t.Errorf("%s: %s", where, d)
				}
			}
		})
	}
}
