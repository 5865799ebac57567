package stdioproto

import (
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// A Line is an event line read for a handler of JSON data (plugin-kit's
// typed handlers): the line's members and what such a handler needs of
// its event, the rest of the event left as bytes. Building a CloudEvent
// (parsing its source URI and time, a map of its extensions) and writing
// one back cost a Go plugin built for WebAssembly several times what its
// handler does; [ScanIn] and [AppendDataAnswer] skip both, and [DecodeIn]
// decodes the event whole when the handler asks for it.
type Line struct {
	In              // the line's members; Event holds the event's bytes
	EventID  string // the event's id
	Type     string // the event's type
	Deadline string // the deadline extension, "" when the event has none
	Data     []byte // the event's JSON data (an object or an array), nil when it has none
}

// ScanIn reads an event line the short way: a CloudEvent 1.0 with an id, a
// source and a type, string attributes and extensions, and JSON data (an
// object or an array, of a JSON content type or none). It reports false
// for any other line, which [DecodeIn] reads (and names what is wrong).
// The attributes it does not return (source, time, dataschema, the other
// extensions) are checked only for being strings: the bridge writes events
// that crossed the bus, which it has validated.
func ScanIn(line []byte) (Line, bool) {
	var l Line
	s := scanner{b: line}
	err := s.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "id":
			l.ID, err = s.str()
		case "producer":
			l.Producer, err = s.str()
		case "checked":
			l.Checked, err = s.str()
		case "event":
			start := s.i
			err = scanEvent(&s, &l)
			l.Event = s.b[start:s.i]
		default:
			_, err = s.value()
		}
		return err
	})
	if err != nil || s.end() != nil || l.ID == "" || len(l.Event) == 0 {
		return Line{}, false
	}
	return l, true
}

// scanEvent reads the event for ScanIn, in place: errSlow (or a JSON
// error) for one off the short path.
func scanEvent(s *scanner, l *Line) error {
	var spec, source, contentType []byte
	// Each member at most once, as the SDK wants: attributes by their bit,
	// extensions by name (a few at most on the short path; no map, which
	// would cost a WebAssembly module more than the rest of the scan).
	var seen uint16
	var exts [8][]byte
	n := 0
	err := s.object(func(key []byte) error {
		bit := attributeBit(key)
		switch {
		case bit == 0: // an extension
			if !extensionName(key) || n == len(exts) {
				return errSlow
			}
			for _, x := range exts[:n] {
				if string(x) == string(key) {
					return errSlow
				}
			}
			exts[n] = key
			n++
		case seen&bit != 0:
			return errSlow
		case bit == dataBit:
			seen |= bit
			v, err := s.value()
			l.Data = v
			return err
		}
		seen |= bit
		v, err := s.raw()
		if err != nil {
			return err
		}
		switch bit {
		case specBit:
			spec = v
		case idBit:
			l.EventID = string(v)
		case sourceBit:
			source = v
		case typeBit:
			l.Type = string(v)
		case contentTypeBit:
			contentType = v
		case 0:
			if string(key) == "deadline" {
				l.Deadline = string(v)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if string(spec) != event.CloudEventsVersionV1 || l.EventID == "" || len(source) == 0 || l.Type == "" ||
		contentType != nil && !jsonMedia(string(contentType)) ||
		l.Data != nil && l.Data[0] != '{' && l.Data[0] != '[' {
		return errSlow
	}
	return nil
}

// The bits scanEvent marks the attributes it has seen with.
const (
	specBit = 1 << iota
	idBit
	sourceBit
	typeBit
	contentTypeBit
	schemaBit
	subjectBit
	timeBit
	dataBit
)

// attributeBit gives each CloudEvents 1.0 attribute ScanIn reads, and
// data, its bit, and anything else 0 (data_base64 is not on the short
// path).
func attributeBit(key []byte) uint16 {
	switch string(key) {
	case "specversion":
		return specBit
	case "id":
		return idBit
	case "source":
		return sourceBit
	case "type":
		return typeBit
	case "datacontenttype":
		return contentTypeBit
	case "dataschema":
		return schemaBit
	case "subject":
		return subjectBit
	case "time":
		return timeBit
	case "data":
		return dataBit
	}
	return 0
}

// A DataEvent is a result event written by [AppendDataAnswer]: JSON data
// and the attributes a plugin sets on a result.
type DataEvent struct {
	ID, Source, Type string
	DataSchema       string // "" for none
	Time             time.Time
	Data             []byte // JSON on one line, as encoding/json writes it
}

// AppendDataAnswer appends the line answering the line id with the result
// e to dst, without a line break: the line [AppendAnswer] writes for the
// same event with content type application/json.
func AppendDataAnswer(dst []byte, id string, e DataEvent) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, id)
	dst = append(dst, `,"event":{"specversion":"1.0","id":`...)
	dst = appendString(dst, e.ID)
	dst = append(dst, `,"source":`...)
	dst = appendString(dst, e.Source)
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, e.Type)
	dst = append(dst, `,"datacontenttype":"application/json"`...)
	if e.DataSchema != "" {
		dst = append(dst, `,"dataschema":`...)
		dst = appendString(dst, e.DataSchema)
	}
	dst = append(dst, `,"time":"`...)
	dst = e.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","data":`...)
	dst = append(dst, e.Data...)
	return append(dst, "}}"...)
}
