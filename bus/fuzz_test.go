package bus_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
)

// fuzzMsg turns fuzz input into a message: headers holds one "name: value"
// per line (a name may repeat; a line without ':' is a name with an empty
// value), body is the data.
func fuzzMsg(headers string, body []byte) *nats.Msg {
	msg := &nats.Msg{Subject: "plugbus.events.fuzz.t", Data: body}
	if headers == "" {
		return msg
	}
	msg.Header = nats.Header{}
	for _, line := range strings.Split(headers, "\n") {
		name, value, _ := strings.Cut(line, ":")
		msg.Header.Add(name, strings.TrimPrefix(value, " "))
	}
	return msg
}

const fuzzBase = "ce-specversion: 1.0\nce-id: 1\nce-source: urn:s\nce-type: com.example.t"

func fuzzSeeds() []struct {
	headers string
	body    string
} {
	structured := "Content-Type: application/cloudevents+json"
	ev := func(extra string) string {
		return `{"specversion":"1.0","id":"1","source":"urn:s","type":"t"` + extra + `}`
	}
	return []struct {
		headers string
		body    string
	}{
		// Binary mode, valid.
		{fuzzBase, ""},
		{fuzzBase, "hello"},
		{fuzzBase + "\nce-time: 2026-03-04T05:06:07.123456789Z\nce-datacontenttype: application/json\nce-dataschema: https://example.com/s.json\nce-subject: a/b", `{"a":1}`},
		{fuzzBase + "\nce-str: x\nce-num: 42\nce-flag: true\nce-uri: https://example.com/\nce-bin: AQID/w==\nce-stamp: 2026-03-04T05:06:07Z", "\x00\xff\xfe"},
		{fuzzBase + "\nce-note: Euro%20%E2%82%AC%20%F0%9F%98%80", ""},
		{fuzzBase + "\nce-note: euro%20%e2%82%ac", ""},
		{fuzzBase + "\nce-note: \"quoted \\\"value\\\"\"", ""},
		{"CE-SpecVersion: 1.0\nCe-Id: 1\nCE-Source: urn:s\nCE-Type: t", ""},
		{fuzzBase + "\ncontent-type: text/plain", "hi"},
		{fuzzBase + "\nce-time: 0000-01-01T00:00:00+01:00", ""},
		{fuzzBase + "\nce-time: 9999-12-31T23:59:59-01:00", ""},
		{strings.Replace(fuzzBase, "urn:s", "http://[::1]:80/a/../b?c=%20#frag", 1) + "\nce-dataschema: https://user@x/%2F?q", ""},
		{strings.Replace(fuzzBase, "urn:s", "%2541//host", 1) + "\nce-uri: mailto:a@b", ""},
		{fuzzBase + "\nce-traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", ""},
		// Binary mode, invalid (tests 16-19 of the reliability plan).
		{"ce-id: 1\nce-source: urn:s\nce-type: t", ""},
		{fuzzBase + "\nce-id: 2", ""},
		{fuzzBase + "\nCE-ID: 2", ""},
		{strings.Replace(fuzzBase, "ce-id: 1", "ce-id: %C0%A0", 1), ""},
		{strings.Replace(fuzzBase, "ce-id: 1", "ce-id: 100%", 1), ""},
		{strings.Replace(fuzzBase, "1.0", "0.3", 1), ""},
		{strings.Replace(fuzzBase, "1.0", "2.0", 1), ""},
		{strings.Replace(fuzzBase, "1.0", "", 1), ""},
		{fuzzBase + "\nce-specversion: 1.0", ""},
		{strings.Replace(fuzzBase, "ce-id: 1", "ce-id:  ", 1), ""},
		{strings.Replace(fuzzBase, "urn:s", "", 1), ""},
		{fuzzBase + "\nce-Foo: x\nce-foo_bar: y", ""},
		{fuzzBase + "\nce-averyveryverylongextension1: x", ""},
		{fuzzBase + "\nce-data: x", ""},
		{fuzzBase + "\nce-note: a%00b", ""},
		{fuzzBase + "\nce-note: %EF%BF%BE", ""},
		{fuzzBase + "\nce-note: %ED%A0%80", ""},
		{fuzzBase + "\nce-note: \xff", ""},
		{fuzzBase + "\nce-dataschema: rel", ""},
		{fuzzBase + "\nce-: x\nce", ""},
		// Structured mode.
		{structured, ev(`,"data":{"a":[1,2,{"b":null}]},"datacontenttype":"application/json"`)},
		{structured, ev(`,"datacontenttype":"application/octet-stream","data_base64":"AP/+"`)},
		{structured, ev(`,"ext":"v","num":3,"flag":false,"time":"2026-01-01T00:00:00+02:00"`)},
		{structured, ev(`,"data":"text","datacontenttype":"text/plain"`)},
		{structured, `{"specversion":"1.0","id":"1","sour`},
		{structured, ev(`,"note":"a\u0000b"`)},
		{structured, ev(`,"note":"\ud800"`)},
		{structured, ev(`,"Foo":"x"`)},
		{structured, `{"specversion":"2.0","id":"1","source":"s","type":"t"}`},
		{structured, `{"specversion":"1.0","specversion":"1.0","id":"1","source":"s","type":"t"}`},
		{structured, ev(`,"data":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000))},
		{structured, ev(`,"data":"` + strings.Repeat("x", 1<<20) + `"`)},
		{"content-type: Application/CloudEvents+JSON; charset=utf-8\n" + fuzzBase, ev("")},
		{structured, "[]"},
		{structured, ""},
		// Neither.
		{"", "hello"},
		{"Content-Type: application/json", ev("")},
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s.headers, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, headers string, body []byte) {
		msg := fuzzMsg(headers, body)
		e, err := bus.Decode(msg)
		checkLongWay(t, msg, e, err)
		if err != nil {
			if e != nil {
				t.Fatalf("Decode returned an event along with error %v", err)
			}
			if !errors.Is(err, bus.ErrNotEvent) && !errors.Is(err, bus.ErrInvalidEvent) {
				t.Fatalf("Decode: got %v, want an error wrapping ErrNotEvent or ErrInvalidEvent", err)
			}
			return
		}
		if e == nil {
			t.Fatal("Decode returned neither an event nor an error")
		}
		// What Decode accepts, Encode can send and Decode reads back the same.
		var out nats.Msg
		if err := bus.Encode(e, &out); err != nil {
			t.Fatalf("Encode of a decoded event: %v\nevent: %v", err, e)
		}
		again, err := bus.Decode(&out)
		if err != nil {
			t.Fatalf("Decode of the re-encoded event: %v\nheaders:\n%s", err, sortedHeader(out.Header))
		}
		if d := eventDiff(again, e); d != "" {
			t.Fatalf("re-encoded event differs: %s\nheaders:\n%s", d, sortedHeader(out.Header))
		}
	})
}

// checkLongWay decodes msg again with its ce-specversion header spelled in
// upper case, which Decode reads the long way (content mode first, then the
// attributes), and checks that the result is the same as the one of its
// single pass over the headers, e and err.
func checkLongWay(t *testing.T, msg *nats.Msg, e *event.Event, err error) {
	t.Helper()
	if _, ok := msg.Header[bus.HeaderSpecVersion]; !ok {
		return
	}
	upper := nats.Header{}
	for k, vs := range msg.Header {
		if k != bus.HeaderSpecVersion && strings.EqualFold(k, bus.HeaderSpecVersion) {
			return // spelled twice: the new spelling would merge them
		}
		upper[k] = vs
	}
	upper["CE-SPECVERSION"] = upper[bus.HeaderSpecVersion]
	delete(upper, bus.HeaderSpecVersion)
	e2, err2 := bus.Decode(&nats.Msg{Subject: msg.Subject, Header: upper, Data: msg.Data})
	if (err == nil) != (err2 == nil) {
		t.Fatalf("Decode in one pass: %v; the long way: %v", err, err2)
	}
	if err == nil {
		if d := eventDiff(e2, e); d != "" {
			t.Fatalf("Decode in one pass and the long way differ: %s", d)
		}
	}
}
