package stdioproto_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/plugbus/plugbus/internal/stdioproto"
)

// TestScanIn: lines on the short path give what DecodeIn gives; every
// other line is left to DecodeIn.
func TestScanIn(t *testing.T) {
	short := map[string]bool{ // which of events ScanIn reads
		events[0]: true, events[1]: true, events[2]: true, events[3]: true, events[8]: true,
		events[10]: true, // its time is not parsed: the bridge writes only valid events
	}
	for _, raw := range events {
		line := `{"id":"7","producer":"cli","checked":"a.b","event":` + raw + `}`
		l, ok := stdioproto.ScanIn([]byte(line))
		if ok != short[raw] {
			t.Errorf("%s: read the short way %v, want %v", raw, ok, short[raw])
			continue
		}
		if !ok {
			continue
		}
		in, e, err := stdioproto.DecodeIn([]byte(line))
		if raw == events[10] {
			if err == nil {
				t.Errorf("%s: DecodeIn read it", raw)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: DecodeIn: %v", raw, err)
		}
		deadline, _ := e.Extensions()["deadline"].(string)
		if l.ID != in.ID || l.Producer != in.Producer || l.Checked != in.Checked || !bytes.Equal(l.Event, in.Event) ||
			l.EventID != e.ID() || l.Type != e.Type() || l.Deadline != deadline || !bytes.Equal(l.Data, e.Data()) {
			t.Errorf("%s: got %+v, DecodeIn %+v and %v", raw, l, in, e)
		}
	}
	for _, line := range []string{
		`{"id":"1","event":{"specversion":"1.0","id":"1","source":"s","type":"a.b","type":"c.d"}}`,                             // twice
		`{"id":"1","event":{"specversion":"1.0","id":"1","source":"s","type":"a.b","ext":"x","ext":"y"}}`,                      // twice
		`{"id":"1","event":{"specversion":"1.0","id":"1","source":"s","type":"a.b","data":{},"data":{}}}`,                      // twice
		`{"id":"1","event":{"specversion":"1.0","id":"1","source":"s","type":"a.b","datacontenttype":"text/plain","data":{}}}`, // not JSON
		`{"id":"1","event":{"specversion":"1.0","id":"1","source":"s","type":"a.b","data":"text"}}`,                            // not an object or array
		`{"id":"1","event":{"specversion":"1.0","source":"s","type":"a.b"}}`,                                                   // no id
		`{"id":"1","event":{"specversion":"1.0","id":"1","type":"a.b"}}`,                                                       // no source
		`{"id":"1","event":{"specversion":"1.0","id":"1","source":"s"}}`,                                                       // no type
		`{"event":{"specversion":"1.0","id":"1","source":"s","type":"a.b"}}`,                                                   // no line id
		`{"id":"1"}`,                     // no event
		`{"id":"1","event":[]}`,          // not an object
		`{"id":"1","event":{}} trailing`, // not one value
		`{"id":1,"event":{}}`,            // a number
	} {
		if l, ok := stdioproto.ScanIn([]byte(line)); ok {
			t.Errorf("%s: read the short way as %+v", line, l)
		}
	}
}

// TestAppendDataAnswer: the short path writes the line AppendAnswer
// writes for the same event.
func TestAppendDataAnswer(t *testing.T) {
	at := time.Date(2026, 12, 7, 16, 0, 0, 123456789, time.FixedZone("x", 3600))
	for _, de := range []stdioproto.DataEvent{
		{ID: "r1", Source: "urn:plugbus:hello", Type: "a.b", DataSchema: "urn:plugbus:schema:hello:1.0.0:a.b", Time: at, Data: []byte(`{"text":"hi \u003c"}`)},
		{ID: "r\"2", Source: "urn:plugbus:hello", Type: "a.b", Time: at, Data: []byte(`[1,2]`)},
	} {
		e := event.New()
		e.SetID(de.ID)
		e.SetSource(de.Source)
		e.SetType(de.Type)
		if de.DataSchema != "" {
			e.SetDataSchema(de.DataSchema)
		}
		e.SetTime(de.Time)
		e.SetDataContentType(event.ApplicationJSON)
		e.DataEncoded = de.Data
		want, err := stdioproto.AppendAnswer(nil, "9<", &e)
		if err != nil {
			t.Fatal(err)
		}
		if got := stdioproto.AppendDataAnswer([]byte("kept"), "9<", de); string(got) != "kept"+string(want) {
			t.Errorf("got %s\nwant kept%s", got, want)
		}
	}
}

func FuzzScanIn(f *testing.F) {
	for _, raw := range events {
		f.Add(`{"id":"1","producer":"p","event":` + raw + `}`)
	}
	f.Fuzz(func(t *testing.T, line string) {
		l, ok := stdioproto.ScanIn([]byte(line))
		if !ok {
			return
		}
		in, e, err := stdioproto.DecodeIn([]byte(line))
		if err != nil {
			// Only what the short path leaves to the bridge: the source,
			// time and dataschema are not parsed.
			return
		}
		deadline, _ := e.Extensions()["deadline"].(string)
		if l.ID != in.ID || l.Producer != in.Producer || l.Checked != in.Checked || !bytes.Equal(l.Event, in.Event) ||
			l.EventID != e.ID() || l.Type != e.Type() || l.Deadline != deadline || !bytes.Equal(l.Data, e.Data()) {
			t.Fatalf("%s: got %+v, DecodeIn %+v and %v", line, l, in, e)
		}
	})
}
