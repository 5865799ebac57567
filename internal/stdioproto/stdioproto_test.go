package stdioproto_test

import (
	"errors"
	"testing"

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

func TestParseIn(t *testing.T) {
	for _, tc := range []struct {
		name, line, id, producer, event string
		ok                              bool
	}{
		{"as the bridge writes it", `{"id":"7","producer":"web","event":{"type":"a.b","data":{"x":[1,"}"]}}}`, "7", "web", `{"type":"a.b","data":{"x":[1,"}"]}}`, true},
		{"any order, spaces, unknown fields", ` { "event" : {"type":"a.b"}, "extra": [1, {"a":2}], "id" : "x\"y" } `, `x"y`, "", `{"type":"a.b"}`, true},
		{"not JSON", `hello`, "", "", "", false},
		{"an array", `[1]`, "", "", "", false},
		{"no id", `{"event":{"type":"a.b"}}`, "", "", "", false},
		{"id not a string", `{"id":1,"event":{"type":"a.b"}}`, "", "", "", false},
		{"cut short", `{"id":"1","event":{"type":"a.b"`, "", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := stdioproto.ParseIn([]byte(tc.line))
			if !tc.ok {
				if !errors.Is(err, stdioproto.ErrBadLine) {
					t.Fatalf("got %+v, %v, want ErrBadLine", in, err)
				}
				return
			}
			if err != nil || in.ID != tc.id || in.Producer != tc.producer || string(in.Event) != tc.event {
				t.Fatalf("got id %q producer %q event %s, %v; want id %q producer %q event %s", in.ID, in.Producer, in.Event, err, tc.id, tc.producer, tc.event)
			}
		})
	}
}

func TestAppendAnswer(t *testing.T) {
	for _, tc := range []struct {
		name, id, event, want string
	}{
		{"result", "12", `{"type":"a.b","data":{"text":"hi"}}`, `{"id":"12","event":{"type":"a.b","data":{"text":"hi"}}}`},
		{"no result", "12", ``, `{"id":"12"}`},
		{"an id to escape", "a\"<b>\n", `{"type":"a.b"}`, `{"id":"a\"\u003cb\u003e\n","event":{"type":"a.b"}}`},
		{"an event on several lines is compacted", "1", "{\"type\": \"a.b\",\r\n \"data\": {\"s\": \"x\\ny\"}\n}", `{"id":"1","event":{"type":"a.b","data":{"s":"x\ny"}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line, err := stdioproto.AppendAnswer([]byte("kept"), tc.id, []byte(tc.event))
			if err != nil || string(line) != "kept"+tc.want {
				t.Fatalf("got %s, %v; want kept%s", line, err, tc.want)
			}
			o, err := stdioproto.ParseOut(line[len("kept"):])
			if err != nil || o.ID != tc.id {
				t.Fatalf("ParseOut: got %+v, %v", o, err)
			}
		})
	}
	if _, err := stdioproto.AppendAnswer(nil, "1", []byte("{\"type\":\n")); err == nil {
		t.Fatal("an event on several lines that is not JSON: got no error")
	}
}
