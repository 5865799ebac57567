package bus_test

import (
	"fmt"
	"sort"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
)

func ExampleEncode() {
	e := event.New()
	e.SetID("42")
	e.SetSource(bus.Source("uploader"))
	e.SetType("com.example.image.uploaded")
	e.SetTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	e.SetSubject("Euro € 😀")
	if err := e.SetData("application/json", map[string]string{"name": "cat.png"}); err != nil {
		panic(err)
	}

	msg := nats.Msg{Subject: "plugbus.events.uploader.com.example.image.uploaded"}
	if err := bus.Encode(&e, &msg); err != nil {
		panic(err)
	}
	names := make([]string, 0, len(msg.Header))
	for name := range msg.Header {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Printf("%s: %s\n", name, msg.Header.Get(name))
	}
	fmt.Printf("data: %s\n", msg.Data)
	// Output:
	// ce-datacontenttype: application/json
	// ce-id: 42
	// ce-source: urn:plugbus:uploader
	// ce-specversion: 1.0
	// ce-subject: Euro%20%E2%82%AC%20%F0%9F%98%80
	// ce-time: 2026-01-02T03:04:05Z
	// ce-type: com.example.image.uploaded
	// data: {"name":"cat.png"}
}

func ExampleDecode() {
	// What a plugin in any language might send: header names in any case,
	// values percent-encoded.
	msg := &nats.Msg{
		Subject: "plugbus.events.uploader.com.example.image.uploaded",
		Header: nats.Header{
			"ce-specversion":     {"1.0"},
			"ce-id":              {"42"},
			"ce-source":          {"urn:plugbus:uploader"},
			"CE-Type":            {"com.example.image.uploaded"},
			"ce-subject":         {"Euro%20%e2%82%ac%20%f0%9f%98%80"},
			"ce-datacontenttype": {"application/json"},
			"ce-traceparent":     {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		},
		Data: []byte(`{"name":"cat.png"}`),
	}
	e, err := bus.Decode(msg)
	if err != nil {
		fmt.Println(err)
		return
	}
	producer, typ, _ := bus.ParseEventSubject(bus.DefaultPrefix, msg.Subject)
	fmt.Println("producer:", producer)
	fmt.Println("type:", typ, e.Type() == typ)
	fmt.Println("id:", e.ID())
	fmt.Println("subject:", e.Subject())
	fmt.Println("traceparent:", e.Extensions()[bus.ExtTraceParent])
	fmt.Printf("data: %s\n", e.Data())

	// A message that is not an event is rejected with a reason.
	_, err = bus.Decode(&nats.Msg{Header: nats.Header{"ce-specversion": {"1.0"}, "ce-id": {"%C0%A0"}, "ce-source": {"s"}, "ce-type": {"t"}}})
	fmt.Println(err)
	// Output:
	// producer: uploader
	// type: com.example.image.uploaded true
	// id: 42
	// subject: Euro € 😀
	// traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01
	// data: {"name":"cat.png"}
	// bus: invalid event: id "%C0%A0": value is not valid UTF-8 after percent-decoding
}
