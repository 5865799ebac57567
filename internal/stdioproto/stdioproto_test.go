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
