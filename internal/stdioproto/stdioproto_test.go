package stdioproto_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/plugbus/plugbus/internal/stdioproto"
)

func TestParseOut(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		ok         bool
	}{
		{"manifest", `{"manifest":{"version":"1.0.0","answers":["a.b"]}}`, true},
		{"result", `{"id":"1","event":{"type":"a.b"}}`, true},
		{"no result", `{"id":"1"}`, true},
		{"error", `{"id":"1","error":{"message":"no","permanent":true}}`, true},
		{"emit", `{"emit":{"type":"a.b"}}`, true},
		{"not JSON", `hello`, false},
		{"nothing", `{"x":1}`, false},
		{"two things", `{"id":"1","emit":{"type":"a.b"}}`, false},
		{"event without id", `{"event":{"type":"a.b"}}`, false},
		{"event and error", `{"id":"1","event":{"type":"a.b"},"error":{"message":"no"}}`, false},
		{"error without message", `{"id":"1","error":{}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := stdioproto.ParseOut([]byte(tc.line))
			if tc.ok && err != nil {
				t.Fatalf("got %v, want no error", err)
			}
			if !tc.ok && !errors.Is(err, stdioproto.ErrBadLine) {
				t.Fatalf("got %v, want ErrBadLine", err)
			}
		})
	}
}

func TestParseEventFillsIn(t *testing.T) {
	e, err := stdioproto.ParseEvent([]byte(`{"type":"a.b","data":{"x":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	if e.SpecVersion() != "1.0" || e.DataContentType() != "application/json" || string(e.Data()) != `{"x":1}` {
		t.Fatalf("got specversion %q, datacontenttype %q, data %s", e.SpecVersion(), e.DataContentType(), e.Data())
	}
	if _, err := stdioproto.ParseEvent([]byte(`[1]`)); !errors.Is(err, stdioproto.ErrBadLine) {
		t.Fatalf("an array: got %v, want ErrBadLine", err)
	}
}

func TestDecodeInLine(t *testing.T) {
	for _, tc := range []struct {
		name, line, id, producer, checked, event string
		ok                                       bool
	}{
		{"as the bridge writes it", `{"id":"7","producer":"web","checked":"a.b","event":{"specversion":"1.0","id":"1","source":"s","type":"a.b","data":{"x":[1,"}"]}}}`, "7", "web", "a.b", `{"specversion":"1.0","id":"1","source":"s","type":"a.b","data":{"x":[1,"}"]}}`, true},
		{"any order, spaces, unknown fields", ` { "event" : {"specversion":"1.0","id":"1","source":"s","type":"a.b"}, "extra": [1, {"a":"]"}, true, -1.5e3], "id" : "x\"y" } `, `x"y`, "", "", `{"specversion":"1.0","id":"1","source":"s","type":"a.b"}`, true},
		{"not JSON", `hello`, "", "", "", "", false},
		{"an array", `[1]`, "", "", "", "", false},
		{"no id", `{"event":{"type":"a.b"}}`, "", "", "", "", false},
		{"id not a string", `{"id":1,"event":{"type":"a.b"}}`, "", "", "", "", false},
		{"cut short", `{"id":"1","event":{"type":"a.b"`, "", "", "", "", false},
		{"something after it", `{"id":"1","event":{}} x`, "", "", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, e, err := stdioproto.DecodeIn([]byte(tc.line))
			if !tc.ok {
				if !errors.Is(err, stdioproto.ErrBadLine) || in.ID != "" {
					t.Fatalf("got %+v, %v, want ErrBadLine and no id", in, err)
				}
				return
			}
			if err != nil || in.ID != tc.id || in.Producer != tc.producer || in.Checked != tc.checked || string(in.Event) != tc.event || e.Type() != "a.b" {
				t.Fatalf("got id %q producer %q checked %q event %s (%v), %v; want id %q producer %q checked %q event %s", in.ID, in.Producer, in.Checked, in.Event, e, err, tc.id, tc.producer, tc.checked, tc.event)
			}
		})
	}
	// A line whose event does not decode keeps its id, to be answered.
	in, _, err := stdioproto.DecodeIn([]byte(`{"id":"9","event":{"specversion":"0.1"}}`))
	if err == nil || in.ID != "9" {
		t.Fatalf("an event that does not decode: got id %q, %v; want id 9 and an error", in.ID, err)
	}
}

// events are CloudEvents in the JSON format, as the bridge and plugins
// write them, and some that take the SDK's path.
var events = []string{
	`{"specversion":"1.0","id":"9f2c","source":"urn:plugbus:cli","type":"com.example.greet.requested","time":"2026-12-06T20:45:01.123Z","datacontenttype":"application/json","deadline":"2026-12-06T20:45:11.123Z","data":{"name":"Ada"}}`,
	`{"specversion":"1.0","id":"1","source":"urn:plugbus:cli","type":"a.b","subject":"s","dataschema":"urn:x:y","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","causeid":"7","data":[1,2]}`,
	`{"specversion":"1.0","id":"1","source":"/x","type":"a.b","subject":""}`,
	`{"data":{"a":1},"type":"a.b","id":"2","specversion":"1.0","source":"s","datacontenttype":"application/json; charset=utf-8"}`,
	`{"specversion":"1.0","id":"1","source":"s","type":"a.b","datacontenttype":"text/plain","data":"hi\nthere"}`,
	`{"specversion":"1.0","id":"1","source":"s","type":"a.b","data_base64":"aGk="}`,
	`{"specversion":"1.0","id":"1","source":"s","type":"a.b","count":3,"flag":true}`,
	`{"specversion":"1.0","id":"1","source":"s","type":"a.b","Upper":"x"}`,
	`{"specversion":"1.0","id":"a\"\u00e9","source":"s","type":"a.b","ext":"x\ty"}`,
	`{"specversion":"0.3","id":"1","source":"s","type":"a.b"}`,
	`{"specversion":"1.0","id":"1","source":"s","type":"a.b","time":"yesterday"}`,
	`{"specversion":"1.0","id":"1","source":"","type":"a.b"}`,
	`{"specversion":"1.0","id":"1","source":"s","type":"a.b","data":null}`,
	`{"specversion":"1.0","id":"1","source":"s","type":"a.b","datacontenttype":"a","datacontenttype":"b"}`,
	`{"id":"1","source":"s","type":"a.b"}`,
	`{"specversion":"1.0","id":"1","source":"s","type":"a.b","data":{"a":1}`,
}

// TestDecodeInAsTheSDK checks that an event line's event decodes as the
// CloudEvents SDK decodes it, on the short path and off it.
func TestDecodeInAsTheSDK(t *testing.T) {
	for _, raw := range events {
		want := event.New()
		wantErr := want.UnmarshalJSON([]byte(raw))
		_, got, err := stdioproto.DecodeIn([]byte(`{"id":"1","event":` + raw + `}`))
		if (err != nil) != (wantErr != nil) {
			t.Errorf("%s: got error %v, want %v", raw, err, wantErr)
			continue
		}
		if err == nil && !reflect.DeepEqual(*got, want) {
			t.Errorf("%s:\ngot  %#v %#v\nwant %#v %#v", raw, got.Context, got, want.Context, want)
		}
	}
}

// TestAppendEventAsTheSDK checks that events written by AppendEvent read
// back as those the SDK writes.
func TestAppendEventAsTheSDK(t *testing.T) {
	for _, raw := range events {
		e := event.New()
		if err := e.UnmarshalJSON([]byte(raw)); err != nil {
			continue
		}
		got, err := stdioproto.AppendEvent([]byte("kept"), &e)
		if err != nil || !bytes.HasPrefix(got, []byte("kept")) || bytes.ContainsAny(got, "\r\n") {
			t.Fatalf("%s: got %s, %v", raw, got, err)
		}
		back, want := event.New(), event.New()
		sdk, _ := e.MarshalJSON()
		if err := back.UnmarshalJSON(got[4:]); err != nil {
			t.Fatalf("%s: written as %s, which does not decode: %v", raw, got[4:], err)
		}
		want.UnmarshalJSON(sdk)
		if !reflect.DeepEqual(back, want) {
			t.Errorf("%s: written as %s, the SDK writes %s", raw, got[4:], sdk)
		}
	}
}

func TestAppendAnswer(t *testing.T) {
	e := event.New()
	e.SetID("r1")
	e.SetSource("urn:plugbus:p")
	e.SetType("a.b")
	e.SetData("application/json", map[string]string{"text": "hi"})
	spread := event.New()
	spread.SetID("r2")
	spread.SetSource("urn:plugbus:p")
	spread.SetType("a.b")
	spread.DataEncoded = []byte("{\"s\": \"x\\ny\",\r\n \"t\": 1\n}")
	for _, tc := range []struct {
		name, id string
		event    *event.Event
		want     string
	}{
		{"result", "12", &e, `{"id":"12","event":{"specversion":"1.0","id":"r1","source":"urn:plugbus:p","type":"a.b","datacontenttype":"application/json","data":{"text":"hi"}}}`},
		{"no result", "12", nil, `{"id":"12"}`},
		{"an id to escape", "a\"<b>\n", nil, `{"id":"a\"\u003cb\u003e\n"}`},
		{"data on several lines is compacted", "1", &spread, `{"id":"1","event":{"specversion":"1.0","id":"r2","source":"urn:plugbus:p","type":"a.b","data":{"s":"x\ny","t":1}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line, err := stdioproto.AppendAnswer([]byte("kept"), tc.id, tc.event)
			if err != nil || string(line) != "kept"+tc.want {
				t.Fatalf("got %s, %v; want kept%s", line, err, tc.want)
			}
			o, err := stdioproto.ParseOut(line[len("kept"):])
			if err != nil || o.ID != tc.id {
				t.Fatalf("ParseOut: got %+v, %v", o, err)
			}
		})
	}
}

func TestAppendIn(t *testing.T) {
	e := event.New()
	e.SetID("e1")
	e.SetSource("urn:plugbus:cli")
	e.SetType("a.b")
	e.SetExtension("deadline", "2026-12-06T20:45:11.123Z")
	e.SetData("application/json", map[string]string{"name": "Ada"})
	line, err := stdioproto.AppendIn(nil, stdioproto.In{ID: "3", Producer: "cli", Checked: "a.b"}, &e)
	want := `{"id":"3","producer":"cli","checked":"a.b","event":{"specversion":"1.0","id":"e1","source":"urn:plugbus:cli","type":"a.b","datacontenttype":"application/json","data":{"name":"Ada"},"deadline":"2026-12-06T20:45:11.123Z"}}`
	if err != nil || string(line) != want {
		t.Fatalf("got %s, %v; want %s", line, err, want)
	}
	in, got, err := stdioproto.DecodeIn(line)
	if err != nil || in.ID != "3" || in.Producer != "cli" || in.Checked != "a.b" || !reflect.DeepEqual(*got, e) {
		t.Fatalf("read back: got %+v %v, %v", in, got, err)
	}
}

func FuzzDecodeIn(f *testing.F) {
	for _, raw := range events {
		f.Add(`{"id":"1","event":` + raw + `}`)
	}
	f.Fuzz(func(t *testing.T, line string) {
		in, e, err := stdioproto.DecodeIn([]byte(line))
		if err != nil {
			return
		}
		want := event.New()
		if werr := want.UnmarshalJSON(in.Event); werr != nil {
			t.Fatalf("%s: decoded as %v, the SDK says %v", line, e, werr)
		}
		if !reflect.DeepEqual(*e, want) {
			t.Fatalf("%s: got %#v, the SDK %#v", line, *e, want)
		}
	})
}
