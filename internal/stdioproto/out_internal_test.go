package stdioproto

import (
	"bytes"
	"reflect"
	"testing"
)

// outLines are lines a plugin writes: answers and emits as plugin-kit and
// the examples write them, and lines that take encoding/json's path.
var outLines = []string{
	`{"id":"17","event":{"type":"com.example.greet.sent","data":{"text":"hello, Ada"}}}`,
	`{"id":"17"}`,
	` { "event" : {"type":"a.b"} , "id" : "x" } `,
	`{"emit":{"type":"com.example.tick","data":{"n":1}}}`,
	`{"id":"1","error":{"message":"no","permanent":true}}`,
	`{"manifest":{"version":"1.0.0","answers":["a.b"]}}`,
	`{"id":"1","event":null}`,
	`{"id":"1","emit":{"type":"a.b"}}`,
	`{"ID":"1","Event":{"type":"a.b"}}`,
	`{"id":"1","id":"2"}`,
	`{"id":"a\"b\u00e9","event":{"type":"a\tb"}}`,
	`{"id":"\xff","event":{}}`,
	`{"id":1}`,
	`{"id":"1","event":[1,"\x"]}`,
	`{"id":"1","event":"\u12"}`,
	`{"id":"1","event":{"type":"a.b"},"extra":true}`,
	`{"id":"1","event":{"type":"a.b"}} x`,
	`[]`,
	`null`,
	`{}`,
}

// FuzzParseOut holds ParseOut's short path equal to encoding/json's
// reading of the same line.
func FuzzParseOut(f *testing.F) {
	for _, l := range outLines {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, line string) {
		got, err := ParseOut([]byte(line))
		want, werr := parseOutJSON([]byte(line))
		if werr == nil {
			werr = checkOut(want)
		}
		if (err != nil) != (werr != nil) {
			t.Fatalf("%q: got %+v, %v; encoding/json: %+v, %v", line, got, err, want, werr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: got %+v, encoding/json %+v", line, got, want)
		}
	})
}

func TestParseOutAsEncodingJSON(t *testing.T) {
	for _, l := range outLines {
		got, err := ParseOut([]byte(l))
		want, werr := parseOutJSON([]byte(l))
		if werr == nil {
			werr = checkOut(want)
		}
		if (err != nil) != (werr != nil) || err == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v, %v; encoding/json: %+v, %v", l, got, err, want, werr)
		}
	}
}

// resultEvents are events as plugins write them in answers and emits: the
// type alone and the rest filled in, or whole.
var resultEvents = []string{
	`{"type":"com.example.greet.sent","data":{"text":"hello, Ada"}}`,
	`{"type":"a.b"}`,
	`{}`,
	`{"type":"a.b","id":"1","source":"urn:x","time":"2026-12-06T20:45:01.123Z","subject":"s","causeid":"7","data":[1]}`,
	`{"type":"a.b","datacontenttype":"text/plain","data":"hi"}`,
	`{"type":"a.b","data":"not an object"}`,
	`{"type":"a.b","data_base64":"aGk="}`,
	`{"type":"a.b","source":""}`,
	`{"type":"a.b","n":1}`,
	`{"type":"a.b","x":"1","x":"2"}`,
	`{"type":"a.b","data":{"note":"specversion"}}`,
	`{"type":"a.b","data":{"specversion":"0.3"}}`,
	`{"spec\u0076ersion":"1.0","type":"a.b"}`,
	`{"specversion":"1.0","specversion":"1.0","type":"a.b"}`,
	`{"specversion":"0.3","type":"a.b"}`,
	`{"type":"a.b","time":"soon"}`,
	`{"type":"a.b","data":null}`,
	`{"type":"a\"b","id":"\u00e9"}`,
}

// FuzzParseEvent holds ParseEvent's short path equal to the CloudEvents
// SDK's reading of the same event.
func FuzzParseEvent(f *testing.F) {
	for _, e := range append(resultEvents, events...) {
		f.Add(e)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		trimmed := bytes.TrimSpace([]byte(raw))
		if len(trimmed) == 0 || trimmed[0] != '{' {
			return // refused before either reads it
		}
		got, err := ParseEvent([]byte(raw))
		want, werr := parseEventSDK(trimmed)
		if werr == nil && want.DataContentType() == "" && len(want.Data()) > 0 && !want.DataBase64 {
			want.SetDataContentType("application/json")
		}
		if (err != nil) != (werr != nil) {
			t.Fatalf("%q: got %v, %v; the SDK: %v, %v", raw, got, err, want, werr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\ngot     %#v %#v\nthe SDK %#v %#v", raw, got.Context, got, want.Context, want)
		}
	})
}

func TestParseEventAsTheSDK(t *testing.T) {
	for _, raw := range append(resultEvents, events...) {
		got, err := ParseEvent([]byte(raw))
		want, werr := parseEventSDK([]byte(raw))
		if werr == nil && want.DataContentType() == "" && len(want.Data()) > 0 && !want.DataBase64 {
			want.SetDataContentType("application/json")
		}
		if (err != nil) != (werr != nil) || err == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\ngot     %v, %v\nthe SDK %v, %v", raw, got, err, want, werr)
		}
	}
}

// events are CloudEvents in the JSON format, as the bridge writes them.
var events = []string{
	`{"specversion":"1.0","id":"9f2c","source":"urn:plugbus:cli","type":"com.example.greet.requested","time":"2026-12-06T20:45:01.123Z","datacontenttype":"application/json","deadline":"2026-12-06T20:45:11.123Z","data":{"name":"Ada"}}`,
	`{"specversion":"1.0","id":"1","source":"urn:plugbus:cli","type":"a.b","subject":"s","dataschema":"urn:x:y","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","causeid":"7","data":[1,2]}`,
	`{"data":{"a":1},"type":"a.b","id":"2","specversion":"1.0","source":"s","datacontenttype":"application/json; charset=utf-8"}`,
}
