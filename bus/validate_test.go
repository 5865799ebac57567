package bus_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/plugbus/plugbus/bus"
)

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name  string
		given func(e *event.Event)
	}{
		{name: "required attributes only", given: func(*event.Event) {}},
		{name: "every attribute", given: func(e *event.Event) {
			e.SetTime(time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC))
			e.SetDataContentType("application/json; charset=utf-8")
			e.SetDataSchema("https://example.com/s.json")
			e.SetSubject("x")
		}},
		{name: "year 0000 in UTC", given: func(e *event.Event) { e.SetTime(time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)) }},
		{name: "non-ASCII, U+FFFD and a private-use character", given: func(e *event.Event) {
			e.SetID("Euro € 😀 \uFFFD \uE000 \uFDF0")
		}},
		{name: "extensions of every kind", given: func(e *event.Event) {
			e.SetExtension("s", "v")
			e.SetExtension("i", int32(1))
			e.SetExtension("b", false)
			e.SetExtension("bin", []byte{0})
			e.SetExtension("ts", types.Timestamp{Time: time.Now()})
			e.SetExtension("abcdefghij0123456789", "twenty characters")
		}},
		{name: "empty string extension", given: func(e *event.Event) { e.SetExtension("empty", "") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEvent("1", "com.example.t")
			tt.given(e)
			if err := bus.Validate(e); err != nil {
				t.Errorf("got %v, want nil", err)
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	v1 := func(e *event.Event) *event.EventContextV1 { return e.Context.(*event.EventContextV1) }
	str := func(s string) *string { return &s }
	tests := []struct {
		name    string
		given   func(e *event.Event)
		field   string
		mention string
	}{
		// Event.SetID and friends trim or refuse some values, so the
		// context is set directly where that matters.
		{name: "empty id", given: func(e *event.Event) { v1(e).ID = "" }, field: "id", mention: "required"},
		{name: "blank id", given: func(e *event.Event) { v1(e).ID = " " }, field: "id"},
		{name: "empty source", given: func(e *event.Event) { v1(e).Source = types.URIRef{} }, field: "source", mention: "required"},
		{name: "empty type", given: func(e *event.Event) { e.SetType("") }, field: "type", mention: "required"},
		{name: "blank type", given: func(e *event.Event) { e.SetType("   ") }, field: "type"},
		{name: "empty subject", given: func(e *event.Event) { v1(e).Subject = str("") }, field: "subject"},
		{name: "id with U+0000", given: func(e *event.Event) { e.SetID("a\x00b") }, field: "id", mention: "U+0000"},
		{name: "type with a tab", given: func(e *event.Event) { e.SetType("a\tb") }, field: "type", mention: "U+0009"},
		{name: "subject with a C1 control", given: func(e *event.Event) { v1(e).Subject = str("a\u0085") }, field: "subject", mention: "U+0085"},
		{name: "id with DEL", given: func(e *event.Event) { e.SetID("a\x7f") }, field: "id", mention: "U+007F"},
		{name: "id with invalid UTF-8", given: func(e *event.Event) { e.SetID("a\xffb") }, field: "id", mention: "UTF-8"},
		{name: "id with an overlong encoding", given: func(e *event.Event) { e.SetID("\xc0\xa0") }, field: "id", mention: "UTF-8"},
		{name: "id with a truncated rune", given: func(e *event.Event) { e.SetID("\xe2\x82") }, field: "id", mention: "UTF-8"},
		{name: "type with a lone surrogate", given: func(e *event.Event) { e.SetType("t\xed\xa0\x80") }, field: "type", mention: "UTF-8"},
		{name: "noncharacter U+FFFE", given: func(e *event.Event) { e.SetID("\uFFFE") }, field: "id", mention: "noncharacter U+FFFE"},
		{name: "noncharacter U+FFFF", given: func(e *event.Event) { e.SetID("\uFFFF") }, field: "id", mention: "noncharacter"},
		{name: "noncharacter U+FDD0", given: func(e *event.Event) { e.SetID("\uFDD0") }, field: "id", mention: "noncharacter"},
		{name: "noncharacter U+FDEF", given: func(e *event.Event) { e.SetID("\uFDEF") }, field: "id", mention: "noncharacter"},
		{name: "noncharacter U+1FFFE", given: func(e *event.Event) { e.SetID("\U0001FFFE") }, field: "id", mention: "noncharacter"},
		{name: "noncharacter U+10FFFF", given: func(e *event.Event) { e.SetID("\U0010FFFF") }, field: "id", mention: "noncharacter"},
		{name: "bad datacontenttype", given: func(e *event.Event) { e.SetDataContentType(";;") }, field: "datacontenttype"},
		{name: "relative dataschema", given: func(e *event.Event) {
			v1(e).DataSchema = &types.URI{URL: mustURIRef(t, "s.json").URL}
		}, field: "dataschema"},
		{name: "time after year 9999", given: func(e *event.Event) { e.SetTime(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)) }, field: "time", mention: "9999"},
		{name: "time in year 0000 east of UTC", given: func(e *event.Event) {
			e.SetTime(time.Date(0, 1, 1, 0, 0, 0, 0, time.FixedZone("", 3600)))
		}, field: "time", mention: "0000"},
		{name: "timestamp extension after year 9999", given: func(e *event.Event) {
			v1(e).Extensions = map[string]interface{}{"ts": types.Timestamp{Time: time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)}}
		}, field: "ts", mention: "9999"},
		// sdk-go lower-cases names in SetExtension, so set them directly:
		// an event built in code can still carry them.
		{name: "extension name Foo", given: func(e *event.Event) { v1(e).Extensions = map[string]interface{}{"Foo": "x"} }, field: "Foo", mention: "lower-case"},
		{name: "extension name foo_bar", given: func(e *event.Event) { v1(e).Extensions = map[string]interface{}{"foo_bar": "x"} }, field: "foo_bar", mention: "lower-case"},
		{name: "extension name of 27 characters", given: func(e *event.Event) {
			e.SetExtension("averyveryverylongextension1", "x")
		}, field: "averyveryverylongextension1", mention: "1 to 20"},
		{name: "extension name of 21 characters", given: func(e *event.Event) {
			e.SetExtension("abcdefghij01234567890", "x")
		}, field: "abcdefghij01234567890", mention: "1 to 20"},
		{name: "extension named data", given: func(e *event.Event) { v1(e).Extensions = map[string]interface{}{"data": "x"} }, field: "data", mention: "reserved"},
		{name: "extension named data_base64", given: func(e *event.Event) {
			v1(e).Extensions = map[string]interface{}{"data_base64": "x"}
		}, field: "data_base64", mention: "reserved"},
		{name: "extension named id", given: func(e *event.Event) { v1(e).Extensions = map[string]interface{}{"id": "x"} }, field: "id", mention: "reserved"},
		{name: "empty extension name", given: func(e *event.Event) { v1(e).Extensions = map[string]interface{}{"": "x"} }, field: "", mention: "1 to 20"},
		{name: "extension with U+0000", given: func(e *event.Event) { e.SetExtension("note", "a\x00") }, field: "note", mention: "U+0000"},
		{name: "extension with a lone surrogate", given: func(e *event.Event) { e.SetExtension("note", "\xed\xb0\x80") }, field: "note", mention: "UTF-8"},
		{name: "extension with a noncharacter", given: func(e *event.Event) { e.SetExtension("note", "\uFFFF") }, field: "note", mention: "noncharacter"},
		{name: "extension of an unsupported type", given: func(e *event.Event) {
			v1(e).Extensions = map[string]interface{}{"weird": struct{}{}}
		}, field: "weird"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEvent("1", "com.example.t")
			tt.given(e)
			err := bus.Validate(e)
			if !errors.Is(err, bus.ErrInvalidEvent) {
				t.Fatalf("got %v, want an error wrapping %v", err, bus.ErrInvalidEvent)
			}
			if !hasFieldError(err, tt.field) {
				t.Errorf("got %v, want a *bus.FieldError for field %q", err, tt.field)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("got %q, want it to name %q", err, tt.field)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("got %q, want it to mention %q", err, tt.mention)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	e := event.New()
	e.SetID("")
	e.SetType("a\x00")
	e.SetExtension("note", "\uFFFE")
	e.Context.(*event.EventContextV1).Extensions["Bad_Name"] = "x"
	err := bus.Validate(&e)
	for _, field := range []string{"id", "source", "type", "note", "Bad_Name"} {
		if !hasFieldError(err, field) {
			t.Errorf("got %v, want a *bus.FieldError for %q among them", err, field)
		}
	}
	// A field reported by our own checks is not reported again from
	// sdk-go's.
	if n := strings.Count(err.Error(), "id:"); n != 1 {
		t.Errorf("got %q, want id reported once, not %d times", err, n)
	}
}

func TestValidateRejectsOtherSpecVersions(t *testing.T) {
	e := event.New(event.CloudEventsVersionV03)
	e.SetID("1")
	e.SetSource("urn:s")
	e.SetType("t")
	err := bus.Validate(&e)
	if !hasFieldError(err, "specversion") || !strings.Contains(err.Error(), "0.3") {
		t.Errorf("got %v, want a *bus.FieldError for specversion naming 0.3", err)
	}
}

func TestFieldError(t *testing.T) {
	tests := []struct {
		given *bus.FieldError
		want  string
	}{
		{&bus.FieldError{Field: "id", Rule: "is required"}, "bus: invalid event: id: is required"},
		{&bus.FieldError{Field: "id", Value: "a\x00", Rule: "contains U+0000"}, `bus: invalid event: id "a\x00": contains U+0000`},
	}
	for _, tt := range tests {
		if got := tt.given.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
		if !errors.Is(tt.given, bus.ErrInvalidEvent) {
			t.Errorf("%v: want it to wrap %v", tt.given, bus.ErrInvalidEvent)
		}
	}
}
