package stdioproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	jsoniter "github.com/json-iterator/go"
)

// This file reads event lines and writes result events without a general
// JSON library: a plugin built for WebAssembly runs Go code 12-15 times
// slower than natively, and a reflective or iterator-based decoder there
// costs more than the handler. Both functions handle the events the bridge
// writes and handlers return (CloudEvents 1.0, string attributes and
// extensions, JSON data) on a short path, and hand anything else to the
// CloudEvents SDK, so that their results are always the SDK's.

// errSlow: the short path does not handle this input; the SDK does.
var errSlow = errors.New("stdio: not on the short path")

// DecodeIn decodes an event line: its members and its event, as
// [ParseIn] and the CloudEvents SDK's [event.Event.UnmarshalJSON] would.
func DecodeIn(line []byte) (In, *event.Event, error) {
	var in In
	s := scanner{b: line}
	var raw []byte
	err := s.object(func(key []byte) error {
		switch string(key) {
		case "id":
			v, err := s.str()
			in.ID = v
			return err
		case "producer":
			v, err := s.str()
			in.Producer = v
			return err
		case "checked":
			v, err := s.str()
			in.Checked = v
			return err
		case "event":
			v, err := s.value()
			raw = v
			in.Event = v
			return err
		}
		_, err := s.value()
		return err
	})
	if err == nil {
		err = s.end()
	}
	if err != nil {
		return In{}, nil, fmt.Errorf("%w: %v", ErrBadLine, err)
	}
	if in.ID == "" {
		return In{}, nil, fmt.Errorf("%w: an event line needs an \"id\"", ErrBadLine)
	}
	e, err := DecodeEvent(raw)
	if err != nil {
		return in, nil, err
	}
	return in, e, nil
}

// DecodeEvent decodes the event of an event line (In.Event), as the
// CloudEvents SDK's [event.Event.UnmarshalJSON] would.
func DecodeEvent(raw []byte) (*event.Event, error) {
	e, err := decodeEvent(raw, false)
	if errors.Is(err, errSlow) {
		e = new(event.Event)
		*e = event.New()
		err = e.UnmarshalJSON(raw)
	}
	if err != nil {
		return nil, err
	}
	return e, nil
}

// decodeOut decodes an answer or an emit line as encoding/json decodes it
// into an [Out], the short way: members "id" (a string without escapes),
// "event" and "emit" (any value but null), each at most once. It returns
// errSlow for anything else (a manifest, an error, other members), and
// for any line that is not JSON, which encoding/json then reads. The
// values are copied out of line.
func decodeOut(line []byte) (*Out, error) {
	var o Out
	var seen [3]bool
	s := scanner{b: line}
	err := s.object(func(key []byte) error {
		var k int
		switch string(key) {
		case "id":
			k = 0
		case "event":
			k = 1
		case "emit":
			k = 2
		default:
			return errSlow
		}
		if seen[k] {
			return errSlow
		}
		seen[k] = true
		if k == 0 {
			v, err := s.plain()
			o.ID = string(v)
			return err
		}
		v, err := s.value()
		if err != nil {
			return err
		}
		if string(v) == "null" {
			return errSlow
		}
		if k == 1 {
			o.Event = bytes.Clone(v)
		} else {
			o.Emit = bytes.Clone(v)
		}
		return nil
	})
	if err == nil {
		err = s.end()
	}
	if err != nil {
		return nil, errSlow
	}
	return &o, nil
}

// decodeEvent decodes a structured-mode CloudEvent 1.0 whose attributes and
// extensions are strings and whose data is JSON, or returns errSlow. With
// implicitSpec the event has no specversion member, and is read as if
// "specversion":"1.0" came first. Its data is a slice of raw.
func decodeEvent(raw []byte, implicitSpec bool) (*event.Event, error) {
	s := scanner{b: raw}
	ec := &event.EventContextV1{}
	var (
		spec, source, tm string
		hasSource        bool
		seenSpec         bool
		data             []byte
		dct, schema      *string
	)
	if implicitSpec {
		spec = event.CloudEventsVersionV1
	}
	err := s.object(func(key []byte) error {
		if string(key) == "data" {
			v, err := s.value()
			data = v
			return err
		}
		v, err := s.str()
		if err != nil {
			return err
		}
		switch string(key) {
		case "specversion":
			if implicitSpec || seenSpec {
				return errSlow // the SDK refuses a second one
			}
			spec, seenSpec = v, true
		case "id":
			ec.ID = v
		case "source":
			source, hasSource = v, true
		case "type":
			ec.Type = v
		case "time":
			tm = v
		case "subject":
			if v != "" {
				ec.Subject = &v
			} else {
				ec.Subject = nil
			}
		case "datacontenttype":
			if dct != nil {
				return errSlow // the SDK says what is wrong
			}
			dct = &v
		case "dataschema":
			schema = &v
		default:
			if !extensionName(key) || ec.Extensions[string(key)] != nil {
				return errSlow
			}
			if ec.Extensions == nil {
				ec.Extensions = make(map[string]any, 2)
			}
			ec.Extensions[string(key)] = v
		}
		return nil
	})
	if err == nil {
		err = s.end()
	}
	if err != nil || spec != event.CloudEventsVersionV1 {
		return nil, errSlow
	}
	if hasSource {
		src := types.ParseURIRef(source)
		if src == nil {
			return nil, errSlow
		}
		ec.Source = *src
	}
	if tm != "" {
		t, err := types.ParseTimestamp(tm)
		if err != nil {
			return nil, errSlow
		}
		ec.Time = t
	}
	ec.DataContentType = dct
	if schema != nil {
		ec.DataSchema = types.ParseURI(*schema)
	}
	e := &event.Event{Context: ec}
	if data != nil {
		if dct != nil && !jsonMedia(*dct) || data[0] != '{' && data[0] != '[' {
			return nil, errSlow
		}
		e.DataEncoded = data
	}
	return e, nil
}

// extensionName reports whether key is a name the SDK keeps as it is for an
// extension: lowercase letters and digits, not an attribute of 1.0.
func extensionName(key []byte) bool {
	if len(key) == 0 || len(key) > 20 {
		return false
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	switch string(key) {
	case "data_base64", "dataschema", "datacontenttype", "subject", "time", "specversion", "id", "source", "type", "data":
		return false
	}
	return true
}

// jsonMedia reports whether the content type ct is JSON, as the SDK reads
// it.
func jsonMedia(ct string) bool {
	if ct == event.ApplicationJSON {
		return true // the usual one, without lowering its case
	}
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	switch strings.TrimSpace(strings.ToLower(ct)) {
	case event.ApplicationJSON, event.TextJSON, event.ApplicationCloudEventsJSON, event.ApplicationCloudEventsBatchJSON, "":
		return true
	}
	return false
}

// AppendEvent appends e as a structured-mode CloudEvent (JSON, one line)
// to dst, as [event.Event.MarshalJSON] writes it.
func AppendEvent(dst []byte, e *event.Event) ([]byte, error) {
	if out, ok := appendEvent(dst, e); ok {
		return out, nil
	}
	raw, err := e.MarshalJSON()
	if err != nil {
		return nil, err
	}
	if bytes.ContainsAny(raw, "\r\n") {
		buf := bytes.NewBuffer(dst)
		if err := json.Compact(buf, raw); err != nil {
			return nil, fmt.Errorf("stdio: the event is not JSON: %w", err)
		}
		return buf.Bytes(), nil
	}
	return append(dst, raw...), nil
}

// appendEvent is AppendEvent's short path: a 1.0 event whose extensions are
// strings and whose data, if any, is JSON on one line.
func appendEvent(dst []byte, e *event.Event) ([]byte, bool) {
	ec, ok := e.Context.(*event.EventContextV1)
	if !ok || e.DataBase64 {
		return dst, false
	}
	if e.DataEncoded != nil && (ec.DataContentType != nil && !jsonMedia(*ec.DataContentType) ||
		len(e.DataEncoded) == 0 || bytes.ContainsAny(e.DataEncoded, "\r\n")) {
		return dst, false
	}
	var names [8]string
	exts := names[:0]
	for k, v := range ec.Extensions {
		if _, ok := v.(string); !ok {
			return dst, false
		}
		exts = append(exts, k)
	}
	slices.Sort(exts)
	dst = append(dst, `{"specversion":"1.0","id":`...)
	dst = appendString(dst, ec.ID)
	dst = append(dst, `,"source":`...)
	dst = appendString(dst, ec.Source.String())
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, ec.Type)
	if ec.Subject != nil {
		dst = append(dst, `,"subject":`...)
		dst = appendString(dst, *ec.Subject)
	}
	if ec.DataContentType != nil {
		dst = append(dst, `,"datacontenttype":`...)
		dst = appendString(dst, *ec.DataContentType)
	}
	if ec.DataSchema != nil {
		dst = append(dst, `,"dataschema":`...)
		dst = appendString(dst, ec.DataSchema.String())
	}
	if ec.Time != nil {
		dst = append(dst, `,"time":"`...)
		dst = ec.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	if e.DataEncoded != nil {
		dst = append(dst, `,"data":`...)
		dst = append(dst, e.DataEncoded...)
	}
	for _, k := range exts {
		dst = append(dst, ',')
		dst = appendString(dst, k)
		dst = append(dst, ':')
		dst = appendString(dst, ec.Extensions[k].(string))
	}
	return append(dst, '}'), true
}

// A scanner reads the JSON of one line: objects, strings, and any value as
// its bytes.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) errAt(what string) error {
	return fmt.Errorf("%s at byte %d", what, s.i)
}

// object reads an object, calling member for each key with the scanner at
// its value, which member must read.
func (s *scanner) object(member func(key []byte) error) error {
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return s.errAt("expected a JSON object")
	}
	s.i++
	s.space()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return nil
	}
	for {
		s.space()
		key, err := s.raw()
		if err != nil {
			return err
		}
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return s.errAt("expected ':'")
		}
		s.i++
		s.space()
		if err := member(key); err != nil {
			return err
		}
		if end, err := s.separator('}'); end || err != nil {
			return err
		}
	}
}

// end checks that nothing but space follows the value read.
// separator reads what follows an object's member or an array's element:
// ',' (more follow) or closing, which ends it (end is true).
func (s *scanner) separator(closing byte) (end bool, err error) {
	s.space()
	if s.i >= len(s.b) {
		return false, s.errAt("unexpected end")
	}
	switch s.b[s.i] {
	case ',':
		s.i++
		return false, nil
	case closing:
		s.i++
		return true, nil
	}
	return false, s.errAt("expected ',' or '" + string(closing) + "'")
}

func (s *scanner) end() error {
	s.space()
	if s.i != len(s.b) {
		return s.errAt("unexpected data after the object")
	}
	return nil
}

// str reads a string.
func (s *scanner) str() (string, error) {
	b, err := s.raw()
	return string(b), err
}

// raw reads a string and returns its bytes, without copying them when it
// has no escapes.
func (s *scanner) raw() ([]byte, error) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, s.errAt("expected a string")
	}
	start := s.i
	escaped := false
	for j := s.i + 1; j < len(s.b); j++ {
		c := s.b[j]
		if !stringStops[c] {
			continue // most bytes: one load and one test
		}
		switch {
		case c == '\\':
			escaped = true
			n := escapeLen(s.b[j+1:])
			if n == 0 {
				s.i = j
				return nil, s.errAt("bad escape in a string")
			}
			j += n
		case c == '"':
			s.i = j + 1
			if !escaped {
				return s.b[start+1 : j], nil
			}
			// As the SDK reads strings, with its JSON library.
			it := jsoniter.ParseBytes(jsoniter.ConfigDefault, s.b[start:s.i])
			if v := it.ReadString(); it.Error == nil {
				return []byte(v), nil
			}
			return nil, s.errAt("bad string")
		case c < 0x20:
			return nil, s.errAt("control character in a string")
		}
	}
	return nil, s.errAt("unterminated string")
}

// stringStops marks the bytes raw stops at in a string: the quote, the
// backslash and the control characters.
var stringStops = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// escapeLen returns the length of the valid JSON escape that b starts
// with, after its backslash, or 0.
func escapeLen(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	switch b[0] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 1
	case 'u':
		if len(b) < 5 {
			return 0
		}
		for _, c := range b[1:5] {
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
				return 0
			}
		}
		return 5
	}
	return 0
}

// plain reads a string that has no escapes and is valid UTF-8, and
// returns its bytes as they are in the input; any other string is errSlow.
func (s *scanner) plain() ([]byte, error) {
	start := s.i
	b, err := s.raw()
	if err != nil {
		return nil, err
	}
	if bytes.IndexByte(s.b[start:s.i], '\\') >= 0 || !utf8.Valid(b) {
		return nil, errSlow
	}
	return b, nil
}

// value reads any JSON value and returns its bytes.
func (s *scanner) value() ([]byte, error) {
	start := s.i
	if err := s.skip(0); err != nil {
		return nil, err
	}
	return s.b[start:s.i], nil
}

// maxDepth bounds the nesting of a value, as encoding/json's does.
const maxDepth = 10000

// skip reads one JSON value at nesting depth.
func (s *scanner) skip(depth int) error {
	if depth > maxDepth {
		return s.errAt("nested too deeply")
	}
	if s.i >= len(s.b) {
		return s.errAt("expected a value")
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, err := s.raw()
		return err
	case c == '{':
		return s.object(func([]byte) error { return s.skip(depth + 1) })
	case c == '[':
		s.i++
		s.space()
		if s.i < len(s.b) && s.b[s.i] == ']' {
			s.i++
			return nil
		}
		for {
			s.space()
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			if end, err := s.separator(']'); end || err != nil {
				return err
			}
		}
	case c == 't':
		return s.word("true")
	case c == 'f':
		return s.word("false")
	case c == 'n':
		return s.word("null")
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	}
	return s.errAt("expected a value")
}

func (s *scanner) word(w string) error {
	if !bytes.HasPrefix(s.b[s.i:], []byte(w)) {
		return s.errAt("expected " + w)
	}
	s.i += len(w)
	return nil
}

// number reads a JSON number.
func (s *scanner) number() error {
	start := s.i
	digits := func() bool {
		n := s.i
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
		}
		return s.i > n
	}
	if s.b[s.i] == '-' {
		s.i++
	}
	if s.i < len(s.b) && s.b[s.i] == '0' {
		s.i++
	} else if !digits() {
		return s.errAt("bad number")
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if !digits() {
			return s.errAt("bad number")
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if !digits() {
			return s.errAt("bad number")
		}
	}
	if s.i == start {
		return s.errAt("bad number")
	}
	return nil
}
