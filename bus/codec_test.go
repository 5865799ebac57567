package bus_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	"github.com/plugbus/plugbus/bus/embedded"
)

// newEvent returns a small valid event with the four required attributes.
func newEvent(id, typ string) *event.Event {
	e := event.New()
	e.SetID(id)
	e.SetSource("urn:plugbus:test")
	e.SetType(typ)
	return &e
}

func mustURI(t testing.TB, s string) types.URI {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("url.Parse(%q): %v", s, err)
	}
	return types.URI{URL: *u}
}

func mustURIRef(t testing.TB, s string) types.URIRef {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("url.Parse(%q): %v", s, err)
	}
	return types.URIRef{URL: *u}
}

// eventDiff describes how got differs from want, or returns "" when they
// carry the same event. Attributes and extensions are compared in their
// canonical string forms, since binary mode carries every extension as a
// string; times are compared as instants; data byte for byte (nil and empty
// are the same).
func eventDiff(got, want *event.Event) string {
	var diffs []string
	cmp := func(name, g, w string) {
		if g != w {
			diffs = append(diffs, fmt.Sprintf("%s: got %q, want %q", name, g, w))
		}
	}
	cmp("specversion", got.SpecVersion(), want.SpecVersion())
	cmp("id", got.ID(), want.ID())
	cmp("source", got.Source(), want.Source())
	cmp("type", got.Type(), want.Type())
	gc, wc := got.Context.(*event.EventContextV1), want.Context.(*event.EventContextV1)
	if gc == nil || wc == nil {
		return fmt.Sprintf("context: got %T, want %T, both *event.EventContextV1", got.Context, want.Context)
	}
	cmp("subject", optString(gc.Subject), optString(wc.Subject))
	cmp("datacontenttype", optString(gc.DataContentType), optString(wc.DataContentType))
	cmp("dataschema", got.DataSchema(), want.DataSchema())
	if gt, wt := got.Time(), want.Time(); !gt.Equal(wt) {
		diffs = append(diffs, fmt.Sprintf("time: got %s, want %s", gt.Format(time.RFC3339Nano), wt.Format(time.RFC3339Nano)))
	}
	gx, wx := canonicalExtensions(got), canonicalExtensions(want)
	cmp("extensions", gx, wx)
	if !bytes.Equal(got.Data(), want.Data()) {
		diffs = append(diffs, fmt.Sprintf("data: got %d bytes %.40q, want %d bytes %.40q", len(got.Data()), got.Data(), len(want.Data()), want.Data()))
	}
	return strings.Join(diffs, "; ")
}

func optString(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func canonicalExtensions(e *event.Event) string {
	var parts []string
	for name, v := range e.Extensions() {
		s, err := types.Format(v)
		if err != nil {
			s = "<" + err.Error() + ">"
		}
		parts = append(parts, name+"="+s)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// sortedHeader renders h one "name: value" line per value, sorted.
func sortedHeader(h nats.Header) string {
	var lines []string
	for k, vs := range h {
		for _, v := range vs {
			lines = append(lines, k+": "+v)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// wire sends msg through s from one connection to another and returns what
// the other end received.
func wire(t testing.TB, pub, sub *nats.Conn, msg *nats.Msg) *nats.Msg {
	t.Helper()
	inbox := nats.NewInbox()
	s, err := sub.SubscribeSync(inbox)
	if err != nil {
		t.Fatalf("SubscribeSync: %v", err)
	}
	defer s.Unsubscribe()
	if err := sub.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	msg.Subject = inbox
	if err := pub.PublishMsg(msg); err != nil {
		t.Fatalf("PublishMsg: %v", err)
	}
	got, err := s.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("NextMsg: %v", err)
	}
	return got
}

// newServerWithMaxPayload starts a server that accepts messages up to max
// bytes, for payloads beyond the default 1 MiB.
func newServerWithMaxPayload(t testing.TB, max int32) *embedded.Server {
	t.Helper()
	s, err := embedded.Start(embedded.Config{Listen: "127.0.0.1:0", Options: &server.Options{MaxPayload: max}})
	if err != nil {
		t.Fatalf("embedded.Start: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	nano := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)
	inParis := time.Date(2026, 3, 4, 6, 6, 7, 1, time.FixedZone("CET", 3600))
	nonUTF8 := []byte{0x00, 0xff, 0xfe, 0xc0, 0xa0, '\r', '\n', 0x80}
	mib := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB

	tests := []struct {
		name  string
		given func(t testing.TB) *event.Event
		// wantHeader lists header values that must be on the wire, exactly.
		wantHeader map[string]string
	}{
		{
			name:  "required attributes only",
			given: func(testing.TB) *event.Event { return newEvent("1", "com.example.a") },
			wantHeader: map[string]string{
				"ce-specversion": "1.0", "ce-id": "1", "ce-source": "urn:plugbus:test", "ce-type": "com.example.a",
			},
		},
		{
			name: "every attribute",
			given: func(t testing.TB) *event.Event {
				e := newEvent("id-2", "com.example.every")
				e.SetSource("https://example.com/src?x=1")
				e.SetTime(nano)
				e.SetDataContentType("application/json; charset=utf-8")
				e.SetDataSchema("https://example.com/schema.json")
				e.SetSubject("orders/42")
				e.DataEncoded = []byte(`{"a":1}`)
				return e
			},
			wantHeader: map[string]string{
				"ce-time":            "2026-03-04T05:06:07.123456789Z",
				"ce-datacontenttype": "application/json;%20charset=utf-8",
				"ce-dataschema":      "https://example.com/schema.json",
				"ce-subject":         "orders/42",
				"ce-source":          "https://example.com/src?x=1",
			},
		},
		{
			name: "time in another zone goes out in UTC",
			given: func(testing.TB) *event.Event {
				e := newEvent("3", "t")
				e.SetTime(inParis)
				return e
			},
			wantHeader: map[string]string{"ce-time": "2026-03-04T05:06:07.000000001Z"},
		},
		{
			name: "extensions of every kind",
			given: func(t testing.TB) *event.Event {
				e := newEvent("4", "t")
				e.SetExtension("str", "plain")
				e.SetExtension("num", int32(-42))
				e.SetExtension("flag", true)
				e.SetExtension("uri", mustURI(t, "https://example.com/a/b"))
				e.SetExtension("uriref", mustURIRef(t, "/relative/path"))
				e.SetExtension("stamp", types.Timestamp{Time: nano})
				e.SetExtension("bin", []byte{1, 2, 3, 0xff})
				return e
			},
			wantHeader: map[string]string{
				"ce-str": "plain", "ce-num": "-42", "ce-flag": "true",
				"ce-uri": "https://example.com/a/b", "ce-uriref": "/relative/path",
				"ce-stamp": "2026-03-04T05:06:07.123456789Z", "ce-bin": "AQID/w==",
			},
		},
		{
			name: "non-ASCII values are percent-encoded",
			given: func(testing.TB) *event.Event {
				e := newEvent("Euro € 😀", "t")
				e.SetSubject("Euro € 😀")
				e.SetExtension("note", "Euro € 😀")
				return e
			},
			wantHeader: map[string]string{
				"ce-id":      "Euro%20%E2%82%AC%20%F0%9F%98%80",
				"ce-subject": "Euro%20%E2%82%AC%20%F0%9F%98%80",
				"ce-note":    "Euro%20%E2%82%AC%20%F0%9F%98%80",
			},
		},
		{
			name: "quote and percent are percent-encoded",
			given: func(testing.TB) *event.Event {
				e := newEvent(`say "100%"`, "t")
				return e
			},
			wantHeader: map[string]string{"ce-id": "say%20%22100%25%22"},
		},
		{
			name:  "empty data",
			given: func(testing.TB) *event.Event { e := newEvent("5", "t"); e.DataEncoded = []byte{}; return e },
		},
		{
			name: "binary data that is not UTF-8",
			given: func(testing.TB) *event.Event {
				e := newEvent("6", "t")
				e.SetDataContentType("application/octet-stream")
				e.DataEncoded = nonUTF8
				return e
			},
			wantHeader: map[string]string{"ce-datacontenttype": "application/octet-stream"},
		},
		{
			name: "1 MiB data",
			given: func(testing.TB) *event.Event {
				e := newEvent("7", "t")
				e.SetDataContentType("text/plain")
				e.DataEncoded = mib
				return e
			},
		},
	}
	// 1 MiB of data plus headers exceeds the default max_payload of 1 MiB
	// (TestMaxPayload covers that limit), so this server allows 4 MiB.
	s := newServerWithMaxPayload(t, 4<<20)
	pub, sub := bustest.Connect(t, s), bustest.Connect(t, s)

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.given(t)
			if err := bus.Validate(want); err != nil {
				t.Fatalf("test event is invalid: %v", err)
			}
			var msg nats.Msg
			if err := bus.Encode(want, &msg); err != nil {
				t.Fatalf("Encode: %v", err)
			}
			for k, v := range tt.wantHeader {
				if got := msg.Header.Values(k); len(got) != 1 || got[0] != v {
					t.Errorf("header %s: got %q, want [%q]", k, got, v)
				}
			}
			for k := range msg.Header {
				if k != strings.ToLower(k) || !strings.HasPrefix(k, "ce-") {
					t.Errorf("header %q: want a lower-case ce- name", k)
				}
			}

			t.Run("in memory", func(t *testing.T) {
				got, err := bus.Decode(&msg)
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if d := eventDiff(got, want); d != "" {
					t.Error(d)
				}
			})
			t.Run("over the wire", func(t *testing.T) {
				out := nats.Msg{Header: msg.Header, Data: msg.Data}
				in := wire(t, pub, sub, &out)
				for k, v := range tt.wantHeader {
					if got := in.Header.Values(k); len(got) != 1 || got[0] != v {
						t.Errorf("received header %s: got %q, want [%q]", k, got, v)
					}
				}
				got, err := bus.Decode(in)
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if d := eventDiff(got, want); d != "" {
					t.Error(d)
				}
			})
		})
	}
}

func TestEncodeTypedExtensionsDecodeAsStrings(t *testing.T) {
	// Binary mode carries no types: an extension comes back as its
	// canonical string, which types.ToInteger and friends convert.
	e := newEvent("1", "t")
	e.SetExtension("num", int32(7))
	e.SetExtension("deadline", types.Timestamp{Time: time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)})
	var msg nats.Msg
	if err := bus.Encode(e, &msg); err != nil {
		t.Fatalf("Encode: %v", err)
	}
	got, err := bus.Decode(&msg)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if n, err := types.ToInteger(got.Extensions()["num"]); err != nil || n != 7 {
		t.Errorf("num: got %v (%v), want 7", n, err)
	}
	if d, ok := bus.Deadline(got); !ok || !d.Equal(time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)) {
		t.Errorf("Deadline: got %v %v, want 2030-01-02T03:04:05.000000006Z true", d, ok)
	}
}

func TestEncodeEscapes(t *testing.T) {
	// Encode does not validate, so it must escape even values Validate
	// refuses: control characters, DEL, invalid UTF-8.
	tests := []struct{ given, want string }{
		{"plain-ASCII_!#$&'()*+,/:;<=>?@[]^`{|}~", "plain-ASCII_!#$&'()*+,/:;<=>?@[]^`{|}~"},
		{"a b", "a%20b"},
		{`"`, "%22"},
		{"%", "%25"},
		{"%25", "%2525"},
		{"tab\there", "tab%09here"},
		{"cr\rlf\n", "cr%0Dlf%0A"},
		{"nul\x00", "nul%00"},
		{"del\x7f", "del%7F"},
		{"\xff\xfe", "%FF%FE"},
		{"é", "%C3%A9"},
		{"", ""},
	}
	for _, tt := range tests {
		var msg nats.Msg
		e := newEvent("1", "t")
		e.SetExtension("x", tt.given)
		if err := bus.Encode(e, &msg); err != nil {
			t.Fatalf("Encode(%q): %v", tt.given, err)
		}
		if got := msg.Header.Get("ce-x"); got != tt.want {
			t.Errorf("Encode(%q): got header %q, want %q", tt.given, got, tt.want)
		}
	}
}

func TestEncodeRejectsOtherSpecVersions(t *testing.T) {
	e := event.New(event.CloudEventsVersionV03)
	e.SetID("1")
	e.SetSource("s")
	e.SetType("t")
	var msg nats.Msg
	err := bus.Encode(&e, &msg)
	if !errors.Is(err, bus.ErrInvalidEvent) || !strings.Contains(err.Error(), "0.3") {
		t.Errorf("Encode(0.3 event): got %v, want ErrInvalidEvent naming 0.3", err)
	}
}

func TestEncodeReplacesHeaderAndData(t *testing.T) {
	msg := nats.Msg{Header: nats.Header{"Old": {"x"}}, Data: []byte("old")}
	if err := bus.Encode(newEvent("1", "t"), &msg); err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if _, ok := msg.Header["Old"]; ok || len(msg.Data) != 0 {
		t.Errorf("got header %v data %q, want only ce- headers and no data", msg.Header, msg.Data)
	}
}

func TestEncoderWritesWhatEncodeWrites(t *testing.T) {
	var enc bus.Encoder
	first := newEvent("1", "com.example.a")
	first.SetExtension("note", "Euro €")
	first.SetExtension(bus.ExtCauseID, "from the event")
	first.SetData("text/plain", []byte("hello"))
	second := newEvent("2", "com.example.b")
	second.SetSource("urn:plugbus:other")
	for i, e := range []*event.Event{first, second, first} {
		var want nats.Msg
		if err := bus.Encode(e, &want); err != nil {
			t.Fatalf("Encode: %v", err)
		}
		got, err := enc.Encode("plugbus.events.x."+e.Type(), e)
		if err != nil {
			t.Fatalf("Encoder.Encode: %v", err)
		}
		if got.Subject != "plugbus.events.x."+e.Type() || sortedHeader(got.Header) != sortedHeader(want.Header) || !bytes.Equal(got.Data, want.Data) {
			t.Errorf("event %d: Encoder wrote %s\nheaders:\n%s\nEncode wrote\nheaders:\n%s", i, got.Subject, sortedHeader(got.Header), sortedHeader(want.Header))
		}
	}
	// An extension set on the message replaces the event's own.
	msg, err := enc.Encode("s", first)
	if err != nil {
		t.Fatalf("Encoder.Encode: %v", err)
	}
	enc.SetExtension(bus.ExtCauseID, "from the sender")
	enc.SetExtension(bus.ExtTraceParent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	got, err := bus.Decode(msg)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if ext := got.Extensions(); ext[bus.ExtCauseID] != "from the sender" || ext[bus.ExtTraceParent] == nil || ext["note"] != "Euro €" {
		t.Errorf("got extensions %v, want causeid from the sender, traceparent and note", ext)
	}
}

func TestMaxPayload(t *testing.T) {
	// The default max_payload is 1 MiB, headers included.
	s := bustest.NewServer(t)
	pub, sub := bustest.Connect(t, s), bustest.Connect(t, s)
	if got, want := pub.MaxPayload(), int64(1<<20); got != want {
		t.Fatalf("MaxPayload: got %d, want %d", got, want)
	}
	encode := func(n int) *nats.Msg {
		e := newEvent("1", "t")
		e.DataEncoded = bytes.Repeat([]byte{'x'}, n)
		var msg nats.Msg
		if err := bus.Encode(e, &msg); err != nil {
			t.Fatalf("Encode: %v", err)
		}
		return &msg
	}

	msg := encode(1<<20 - 1024)
	in := wire(t, pub, sub, msg)
	got, err := bus.Decode(in)
	if err != nil {
		t.Fatalf("Decode just under the limit: %v", err)
	}
	if len(got.Data()) != 1<<20-1024 {
		t.Errorf("data: got %d bytes, want %d", len(got.Data()), 1<<20-1024)
	}

	msg = encode(1 << 20)
	msg.Subject = "too.big"
	if err := pub.PublishMsg(msg); !errors.Is(err, nats.ErrMaxPayload) {
		t.Errorf("PublishMsg 1 MiB of data: got %v, want %v", err, nats.ErrMaxPayload)
	}
}

func TestDecodeAccepts(t *testing.T) {
	base := func() nats.Header {
		return nats.Header{
			"ce-specversion": {"1.0"}, "ce-id": {"1"}, "ce-source": {"urn:s"}, "ce-type": {"t"},
		}
	}
	with := func(kv ...string) nats.Header {
		h := base()
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(h, kv[i])
				continue
			}
			h[kv[i]] = []string{kv[i+1]}
		}
		return h
	}
	tests := []struct {
		name   string
		header nats.Header
		data   string
		check  func(t *testing.T, e *event.Event)
	}{
		{
			name:   "mixed-case header names",
			header: nats.Header{"CE-SpecVersion": {"1.0"}, "Ce-Id": {"1"}, "CE-Source": {"urn:s"}, "CE-Type": {"com.example.t"}, "Ce-Traceparent": {"00-abc"}},
			check: func(t *testing.T, e *event.Event) {
				if e.Type() != "com.example.t" || e.ID() != "1" || e.Extensions()["traceparent"] != "00-abc" {
					t.Errorf("got type %q id %q traceparent %v, want com.example.t 1 00-abc", e.Type(), e.ID(), e.Extensions()["traceparent"])
				}
			},
		},
		{
			name:   "lower-case hex and unnecessary encoding",
			header: with("ce-id", "Euro%20%e2%82%ac%20%f0%9f%98%80", "ce-type", "%63om.example"),
			check: func(t *testing.T, e *event.Event) {
				if e.ID() != "Euro € 😀" || e.Type() != "com.example" {
					t.Errorf("got id %q type %q, want %q %q", e.ID(), e.Type(), "Euro € 😀", "com.example")
				}
			},
		},
		{
			name:   "quoted values",
			header: with("ce-id", `"a b"`, "ce-subject", `"say \"hi\""`, "ce-type", `"%41"`),
			check: func(t *testing.T, e *event.Event) {
				if e.ID() != "a b" || e.Subject() != `say "hi"` || e.Type() != "A" {
					t.Errorf(`got id %q subject %q type %q, want "a b" "say \"hi\"" "A"`, e.ID(), e.Subject(), e.Type())
				}
			},
		},
		{
			name:   "quoted or encoded specversion",
			header: with("ce-specversion", `"1%2E0"`),
			check: func(t *testing.T, e *event.Event) {
				if e.SpecVersion() != "1.0" {
					t.Errorf("specversion: got %q, want 1.0", e.SpecVersion())
				}
			},
		},
		{
			name:   "unprefixed content-type as datacontenttype (sdk-go nats_jetstream)",
			header: with("content-type", "application/json"),
			data:   `{"x":1}`,
			check: func(t *testing.T, e *event.Event) {
				if e.DataContentType() != "application/json" || string(e.Data()) != `{"x":1}` {
					t.Errorf("got datacontenttype %q data %q, want application/json {\"x\":1}", e.DataContentType(), e.Data())
				}
			},
		},
		{
			name:   "ce-datacontenttype wins over content-type",
			header: with("Content-Type", "text/plain", "ce-datacontenttype", "application/json"),
			check: func(t *testing.T, e *event.Event) {
				if e.DataContentType() != "application/json" {
					t.Errorf("datacontenttype: got %q, want application/json", e.DataContentType())
				}
			},
		},
		{
			name:   "structured mode with data_base64",
			header: nats.Header{"Content-Type": {"application/cloudevents+json"}},
			data:   `{"specversion":"1.0","id":"s1","source":"urn:s","type":"t","datacontenttype":"application/octet-stream","data_base64":"AP/+"}`,
			check: func(t *testing.T, e *event.Event) {
				if e.ID() != "s1" || !bytes.Equal(e.Data(), []byte{0, 0xff, 0xfe}) {
					t.Errorf("got id %q data %x, want s1 00fffe", e.ID(), e.Data())
				}
			},
		},
		{
			name:   "structured mode with JSON data and charset, lower-case header name",
			header: nats.Header{"content-type": {"application/cloudevents+json; charset=utf-8"}},
			data:   `{"specversion":"1.0","id":"s2","source":"urn:s","type":"t","datacontenttype":"application/json","data":{"a":[1,2]},"ext1":"v","num":3}`,
			check: func(t *testing.T, e *event.Event) {
				if string(e.Data()) != `{"a":[1,2]}` || e.Extensions()["ext1"] != "v" || e.Extensions()["num"] != int32(3) {
					t.Errorf("got data %s extensions %v, want {\"a\":[1,2]} ext1=v num=3", e.Data(), e.Extensions())
				}
			},
		},
		{
			name:   "structured mode wins over ce- headers",
			header: with("Content-Type", "application/cloudevents+json"),
			data:   `{"specversion":"1.0","id":"from-body","source":"urn:s","type":"t"}`,
			check: func(t *testing.T, e *event.Event) {
				if e.ID() != "from-body" {
					t.Errorf("id: got %q, want from-body", e.ID())
				}
			},
		},
		{
			name:   "extension name of exactly 20 characters",
			header: with("ce-abcdefghij0123456789", "x"),
			check: func(t *testing.T, e *event.Event) {
				if e.Extensions()["abcdefghij0123456789"] != "x" {
					t.Errorf("extensions: got %v, want abcdefghij0123456789=x", e.Extensions())
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := bus.Decode(&nats.Msg{Header: tt.header, Data: []byte(tt.data)})
			if err != nil {
				t.Fatalf("Decode: got error %v, want none", err)
			}
			tt.check(t, e)
		})
	}
}

// decodeRejection is a message Decode must refuse, and what the error must
// say.
type decodeRejection struct {
	name    string
	header  nats.Header
	data    string
	wantIs  error  // the sentinel the error wraps
	field   string // the field a *bus.FieldError must name, if any
	mention string // text the message must contain
}

func decodeRejections() []decodeRejection {
	base := func(kv ...string) nats.Header {
		h := nats.Header{"ce-specversion": {"1.0"}, "ce-id": {"1"}, "ce-source": {"urn:s"}, "ce-type": {"t"}}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "<del>" {
				delete(h, kv[i])
				continue
			}
			h[kv[i]] = append(h[kv[i]], kv[i+1])
		}
		return h
	}
	set := func(h nats.Header, k, v string) nats.Header { h[k] = []string{v}; return h }
	structured := nats.Header{"Content-Type": {"application/cloudevents+json"}}
	return []decodeRejection{
		{name: "no headers", wantIs: bus.ErrNotEvent, mention: "ce-specversion"},
		{name: "no ce-specversion and no structured content-type", header: base("ce-specversion", "<del>"), wantIs: bus.ErrNotEvent, mention: "ce-specversion"},
		{name: "plain JSON content-type", header: nats.Header{"Content-Type": {"application/json"}}, data: `{"specversion":"1.0"}`, wantIs: bus.ErrNotEvent},
		{name: "specversion 0.3", header: set(base(), "ce-specversion", "0.3"), wantIs: bus.ErrInvalidEvent, field: "specversion", mention: "0.3"},
		{name: "specversion 2.0", header: set(base(), "ce-specversion", "2.0"), wantIs: bus.ErrInvalidEvent, field: "specversion", mention: "2.0"},
		{name: "specversion empty", header: set(base(), "ce-specversion", ""), wantIs: bus.ErrInvalidEvent, field: "specversion"},
		{name: "specversion twice", header: base("ce-specversion", "1.0"), wantIs: bus.ErrInvalidEvent, field: "specversion"},
		{name: "two ce-id values", header: base("ce-id", "2"), wantIs: bus.ErrInvalidEvent, field: "id", mention: "more than once"},
		{name: "ce-id and CE-ID", header: base("CE-ID", "2"), wantIs: bus.ErrInvalidEvent, field: "id", mention: "more than once"},
		{name: "overlong UTF-8", header: set(base(), "ce-id", "%C0%A0"), wantIs: bus.ErrInvalidEvent, field: "id", mention: "UTF-8"},
		{name: "raw invalid UTF-8", header: set(base(), "ce-type", "a\xffb"), wantIs: bus.ErrInvalidEvent, field: "type", mention: "UTF-8"},
		{name: "encoded lone surrogate", header: set(base(), "ce-subject", "%ED%A0%80"), wantIs: bus.ErrInvalidEvent, field: "subject", mention: "UTF-8"},
		{name: "bare percent", header: set(base(), "ce-id", "100%"), wantIs: bus.ErrInvalidEvent, field: "id", mention: "percent"},
		{name: "percent with one hex digit", header: set(base(), "ce-source", "urn:%4"), wantIs: bus.ErrInvalidEvent, field: "source", mention: "percent"},
		{name: "percent with non-hex digits", header: set(base(), "ce-type", "%zz"), wantIs: bus.ErrInvalidEvent, field: "type", mention: "percent"},
		{name: "blank id", header: set(base(), "ce-id", "%20"), wantIs: bus.ErrInvalidEvent, field: "id"},
		{name: "empty source", header: set(base(), "ce-source", ""), wantIs: bus.ErrInvalidEvent, field: "source"},
		{name: "empty type", header: set(base(), "ce-type", ""), wantIs: bus.ErrInvalidEvent, field: "type"},
		{name: "missing type", header: base("ce-type", "<del>"), wantIs: bus.ErrInvalidEvent, field: "type"},
		{name: "id with U+0000", header: set(base(), "ce-id", "a%00b"), wantIs: bus.ErrInvalidEvent, field: "id", mention: "U+0000"},
		{name: "extension with U+0000", header: base("ce-note", "a%00b"), wantIs: bus.ErrInvalidEvent, field: "note", mention: "U+0000"},
		{name: "extension with noncharacter", header: base("ce-note", "%EF%BF%BE"), wantIs: bus.ErrInvalidEvent, field: "note", mention: "noncharacter"},
		{name: "extension name with underscore", header: base("ce-foo_bar", "x"), wantIs: bus.ErrInvalidEvent, field: "foo_bar"},
		{name: "extension name of 27 characters", header: base("ce-averyveryverylongextension1", "x"), wantIs: bus.ErrInvalidEvent, field: "averyveryverylongextension1"},
		{name: "extension named data", header: base("ce-data", "x"), wantIs: bus.ErrInvalidEvent, field: "data"},
		{name: "bad time", header: base("ce-time", "yesterday"), wantIs: bus.ErrInvalidEvent, field: "time"},
		{name: "relative dataschema", header: base("ce-dataschema", "schema.json"), wantIs: bus.ErrInvalidEvent, field: "dataschema"},
		{name: "bad datacontenttype", header: base("ce-datacontenttype", "%3B%3B"), wantIs: bus.ErrInvalidEvent, field: "datacontenttype"},
		{name: "truncated structured JSON", header: structured, data: `{"specversion":"1.0","id":"1","sour`, wantIs: bus.ErrInvalidEvent, mention: "structured"},
		{name: "structured empty body", header: structured, wantIs: bus.ErrInvalidEvent, mention: "structured"},
		{name: "structured specversion 2.0", header: structured, data: `{"specversion":"2.0","id":"1","source":"s","type":"t"}`, wantIs: bus.ErrInvalidEvent, mention: "2.0"},
		{name: "structured specversion twice", header: structured, data: `{"specversion":"1.0","specversion":"1.0","id":"1","source":"s","type":"t"}`, wantIs: bus.ErrInvalidEvent, mention: "specversion"},
		{name: "structured time that is year -1 in UTC", header: structured, data: `{"specversion":"1.0","id":"1","source":"s","type":"t","time":"0000-01-01T00:00:00+01:00"}`, wantIs: bus.ErrInvalidEvent, field: "time"},
		{name: "structured blank id", header: structured, data: `{"specversion":"1.0","id":" ","source":"s","type":"t"}`, wantIs: bus.ErrInvalidEvent, field: "id"},
		{name: "structured string with U+0000", header: structured, data: `{"specversion":"1.0","id":"1","source":"s","type":"t","note":"a\u0000b"}`, wantIs: bus.ErrInvalidEvent, field: "note", mention: "U+0000"},
		{name: "structured extension named foo_bar", header: structured, data: `{"specversion":"1.0","id":"1","source":"s","type":"t","foo_bar":"x"}`, wantIs: bus.ErrInvalidEvent, mention: "attribute names"},
		{name: "structured extension of 27 characters", header: structured, data: `{"specversion":"1.0","id":"1","source":"s","type":"t","averyveryverylongextension1":"x"}`, wantIs: bus.ErrInvalidEvent, field: "averyveryverylongextension1"},
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, tt := range decodeRejections() {
		t.Run(tt.name, func(t *testing.T) {
			e, err := bus.Decode(&nats.Msg{Header: tt.header, Data: []byte(tt.data)})
			if err == nil {
				t.Fatalf("Decode: got event %v, want an error", e)
			}
			if e != nil {
				t.Errorf("Decode: got event %v along with error %v, want nil", e, err)
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("got %v, want it to wrap %v", err, tt.wantIs)
			}
			if tt.field != "" {
				if !hasFieldError(err, tt.field) {
					t.Errorf("got %v, want a *bus.FieldError for field %q", err, tt.field)
				}
				if !strings.Contains(err.Error(), tt.field) {
					t.Errorf("got %q, want it to name %q", err, tt.field)
				}
			}
			if tt.mention != "" && !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("got %q, want it to mention %q", err, tt.mention)
			}
		})
	}
}

// hasFieldError reports whether err is or joins a *bus.FieldError for
// field.
func hasFieldError(err error, field string) bool {
	var fe *bus.FieldError
	if errors.As(err, &fe) && fe.Field == field {
		return true
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			if hasFieldError(e, field) {
				return true
			}
		}
	}
	if w := errors.Unwrap(err); w != nil {
		return hasFieldError(w, field)
	}
	return false
}

func TestDecodeRejectsOverTheWire(t *testing.T) {
	// The same bad messages, sent through a server: nats.go must deliver
	// the headers as given (case and duplicates preserved) for Decode to
	// judge them.
	s := bustest.NewServer(t)
	pub, sub := bustest.Connect(t, s), bustest.Connect(t, s)
	for _, tt := range decodeRejections() {
		if tt.header == nil {
			continue // a message without headers is covered in memory
		}
		t.Run(tt.name, func(t *testing.T) {
			in := wire(t, pub, sub, &nats.Msg{Header: tt.header, Data: []byte(tt.data)})
			_, err := bus.Decode(in)
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("got %v, want it to wrap %v", err, tt.wantIs)
			}
			if tt.field != "" && !hasFieldError(err, tt.field) {
				t.Errorf("got %v, want a *bus.FieldError for field %q", err, tt.field)
			}
		})
	}
}

func TestMessageBinding(t *testing.T) {
	e := newEvent("1", "com.example.t")
	e.SetExtension("traceparent", "00-x")
	e.DataEncoded = []byte("hi")
	var msg nats.Msg
	if err := bus.Encode(e, &msg); err != nil {
		t.Fatalf("Encode: %v", err)
	}
	m := bus.NewMessage(&msg)
	if got := m.ReadEncoding(); got != binding.EncodingBinary {
		t.Errorf("ReadEncoding: got %v, want %v", got, binding.EncodingBinary)
	}
	// A Message can be read more than once.
	for i := 0; i < 2; i++ {
		got, err := binding.ToEvent(t.Context(), m)
		if err != nil {
			t.Fatalf("binding.ToEvent #%d: %v", i, err)
		}
		if d := eventDiff(got, e); d != "" {
			t.Errorf("binding.ToEvent #%d: %s", i, d)
		}
	}
	if attr, v := m.GetAttribute(spec.ID); attr == nil || v != "1" {
		t.Errorf("GetAttribute(id): got %v %v, want the id attribute and its value", attr, v)
	}
	if got := m.GetExtension("traceparent"); got != "00-x" {
		t.Errorf("GetExtension(traceparent): got %v, want 00-x", got)
	}
	if got := m.GetExtension("missing"); got != nil {
		t.Errorf("GetExtension(missing): got %v, want nil", got)
	}
	if err := m.Finish(nil); err != nil {
		t.Errorf("Finish: got %v, want nil", err)
	}
	if err := m.ReadStructured(t.Context(), nil); !errors.Is(err, binding.ErrNotStructured) {
		t.Errorf("ReadStructured on a binary message: got %v, want %v", err, binding.ErrNotStructured)
	}

	structured := bus.NewMessage(&nats.Msg{Header: nats.Header{"Content-Type": {"Application/CloudEvents+JSON"}}})
	if got := structured.ReadEncoding(); got != binding.EncodingStructured {
		t.Errorf("ReadEncoding(structured): got %v, want %v", got, binding.EncodingStructured)
	}
	if err := structured.ReadBinary(t.Context(), nil); !errors.Is(err, binding.ErrNotBinary) {
		t.Errorf("ReadBinary on a structured message: got %v, want %v", err, binding.ErrNotBinary)
	}
	if got := bus.NewMessage(&nats.Msg{Data: []byte("x")}).ReadEncoding(); got != binding.EncodingUnknown {
		t.Errorf("ReadEncoding(no headers): got %v, want %v", got, binding.EncodingUnknown)
	}
}

// TestDecodeFrom: the event and its producer from an events subject; an
// event of another type than the subject's is refused; and a message that
// is no event still names its producer, so it can be counted against it.
func TestDecodeFrom(t *testing.T) {
	msg := &nats.Msg{Subject: "plugbus.events.alice.a.b"}
	if err := bus.Encode(newEvent("1", "a.b"), msg); err != nil {
		t.Fatal(err)
	}
	e, producer, err := bus.DecodeFrom(msg, "plugbus", bus.ParseDurableSubject)
	if err != nil || producer != "alice" || e.ID() != "1" {
		t.Fatalf("got %v from %q, %v; want event 1 from alice", e, producer, err)
	}
	msg.Subject = "plugbus.events.alice.c.d"
	if _, producer, err := bus.DecodeFrom(msg, "plugbus", bus.ParseDurableSubject); !errors.Is(err, bus.ErrInvalidEvent) || producer != "alice" || !strings.Contains(err.Error(), "c.d") {
		t.Errorf("type a.b on c.d's subject: %q, %v; want an invalid event naming c.d, from alice", producer, err)
	}
	junk := &nats.Msg{Subject: "plugbus.events.mallory.a.b", Data: []byte("junk")}
	if _, producer, err := bus.DecodeFrom(junk, "plugbus", bus.ParseDurableSubject); err == nil || producer != "mallory" {
		t.Errorf("junk: %q, %v; want an error, from mallory", producer, err)
	}
	if _, producer, err := bus.DecodeFrom(&nats.Msg{Subject: "elsewhere"}, "plugbus", bus.ParseDurableSubject); err == nil || producer != "" {
		t.Errorf("another subject: %q, %v; want an error and no producer", producer, err)
	}
}
