// Package stdioproto holds the lines of the stdio plugin protocol that
// docs/stdio.md describes: the JSON objects a plugin and the coordinator's
// bridge exchange, one per line, on the plugin's standard input and output.
// The bridge (coordinator/internal/bridge) and plugin-kit's stdio side both
// use it, so the two cannot drift apart.
package stdioproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cloudevents/sdk-go/v2/event"
)

// Version is the protocol version this package speaks, sent in the
// manifest's "protocol" field.
const Version = 1

// MaxLine is the default limit on the length of one line, newline
// included: 1 MiB.
const MaxLine = 1 << 20

// Manifest is the first line a plugin writes, as {"manifest": {...}}.
type Manifest struct {
	// Protocol is the protocol version the plugin speaks; 0 means 1.
	Protocol int `json:"protocol,omitempty"`
	// Name is the plugin's name; when the coordinator's spec names the
	// plugin too, the two must agree. Empty takes the spec's.
	Name string `json:"name,omitempty"`
	// Version is the plugin's semantic version, such as "1.2.0".
	Version string `json:"version"`
	// Description is shown by discovery tools.
	Description string `json:"description,omitempty"`
	// Answers lists the exact types the plugin answers as requests (and
	// handles as events).
	Answers []string `json:"answers,omitempty"`
	// Handles lists type patterns (NATS wildcards allowed) the plugin
	// observes as events, without answering requests for them.
	Handles []string `json:"handles,omitempty"`
	// Emits lists the types of the events the plugin sends.
	Emits []string `json:"emits,omitempty"`
	// Concurrency is how many lines the plugin takes before it has
	// answered the earlier ones; 0 means 1 (one at a time).
	Concurrency int `json:"concurrency,omitempty"`
	// Schemas holds JSON Schemas of the data of the types in Answers and
	// Handles, by type as written there. The bridge checks an event's
	// data against its type's schema before it sends the line (data that
	// does not match gets a permanent error, and the line is not sent),
	// marks the line [In.Checked], and shows the schemas in discovery.
	Schemas map[string]json.RawMessage `json:"schemas,omitempty"`
}

// In is a line to the plugin: an event to handle. Every In gets exactly one
// answer, an [Out] with the same ID.
type In struct {
	// ID names this delivery; the answer carries it back. The bridge
	// writes it first on the line.
	ID string `json:"id"`
	// Producer is who sent the event: the producer token of its subject,
	// which NATS permissions vouch for.
	Producer string `json:"producer,omitempty"`
	// Checked names the type in the manifest's Answers or Handles whose
	// schema (from [Manifest.Schemas]) the bridge checked the event's
	// data against; a plugin need not check it again.
	Checked string `json:"checked,omitempty"`
	// Event is the event, a structured-mode CloudEvent (JSON format).
	Event json.RawMessage `json:"event"`
}

// Out is a line from the plugin: the manifest, an answer or an event
// sent on the plugin's own account. Exactly one of Manifest, ID and Emit is
// set.
type Out struct {
	Manifest *Manifest `json:"manifest,omitempty"`

	// ID answers the In with this ID: with Error, it failed; with
	// Event, the event is its result; with neither, it was handled and
	// has no result.
	ID    string          `json:"id,omitempty"`
	Event json.RawMessage `json:"event,omitempty"`
	Error *Error          `json:"error,omitempty"`

	// Emit is an event the plugin sends, not the answer to any line.
	Emit json.RawMessage `json:"emit,omitempty"`
}

// Error says why a plugin failed to handle an event.
type Error struct {
	// Message says what went wrong; it reaches the caller of an invoke.
	Message string `json:"message"`
	// Permanent means trying again cannot help (bad data): the event is
	// not retried, and goes to the dead letters at once in durable mode.
	Permanent bool `json:"permanent,omitempty"`
}

// ErrBadLine is wrapped by the errors of [ParseOut].
var ErrBadLine = errors.New("stdio: malformed line")

// ParseOut reads one line from a plugin and checks its shape: one of
// manifest, id or emit, and an error only with an id. The result does not
// share memory with line.
func ParseOut(line []byte) (*Out, error) {
	o, err := decodeOut(line)
	if errors.Is(err, errSlow) {
		o, err = parseOutJSON(line)
	}
	if err != nil {
		return nil, err
	}
	return o, checkOut(o)
}

// parseOutJSON is ParseOut with encoding/json, for the lines decodeOut
// leaves to it; it is what ParseOut returns.
func parseOutJSON(line []byte) (*Out, error) {
	var o Out
	if err := json.Unmarshal(line, &o); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadLine, err)
	}
	if string(o.Event) == "null" {
		o.Event = nil
	}
	return &o, nil
}

// checkOut checks the shape of a line from a plugin.
func checkOut(o *Out) error {
	n := 0
	if o.Manifest != nil {
		n++
	}
	if o.ID != "" {
		n++
	}
	if len(o.Emit) > 0 {
		n++
	}
	switch {
	case n == 0:
		return fmt.Errorf("%w: none of \"manifest\", \"id\" or \"emit\" is set", ErrBadLine)
	case n > 1:
		return fmt.Errorf("%w: only one of \"manifest\", \"id\" and \"emit\" may be set", ErrBadLine)
	case o.ID == "" && (o.Error != nil || len(o.Event) > 0):
		return fmt.Errorf("%w: \"event\" and \"error\" answer a line and need its \"id\"", ErrBadLine)
	case o.Error != nil && len(o.Event) > 0:
		return fmt.Errorf("%w: an answer has \"event\" or \"error\", not both", ErrBadLine)
	case o.Error != nil && o.Error.Message == "":
		return fmt.Errorf("%w: \"error\" needs a \"message\"", ErrBadLine)
	}
	return nil
}

// ParseEvent reads a structured-mode CloudEvent from a plugin. A missing
// specversion is taken as "1.0", and JSON data without a datacontenttype as
// application/json; id, source and time are left for the sender to fill.
// The event does not share memory with raw.
func ParseEvent(raw json.RawMessage) (*event.Event, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, fmt.Errorf("%w: an event must be a JSON object", ErrBadLine)
	}
	e, err := decodeEvent(raw, !bytes.Contains(raw, []byte(`"specversion"`)))
	if err == nil {
		if e.DataEncoded != nil {
			e.DataEncoded = bytes.Clone(e.DataEncoded)
		}
	} else if e, err = parseEventSDK(raw); err != nil {
		return nil, err
	}
	if e.DataContentType() == "" && len(e.Data()) > 0 && !e.DataBase64 {
		e.SetDataContentType(event.ApplicationJSON)
	}
	return e, nil
}

// parseEventSDK is ParseEvent's reading with the CloudEvents SDK, for the
// events decodeEvent leaves to it; it is what ParseEvent returns.
func parseEventSDK(raw []byte) (*event.Event, error) {
	if !bytes.Contains(raw, []byte(`"specversion"`)) {
		raw = append([]byte(`{"specversion":"1.0",`), raw[1:]...)
		if bytes.Equal(bytes.TrimSpace(raw[len(`{"specversion":"1.0",`):]), []byte("}")) {
			raw = []byte(`{"specversion":"1.0"}`)
		}
	}
	e := event.New()
	if err := e.UnmarshalJSON(raw); err != nil {
		return nil, fmt.Errorf("%w: event: %v", ErrBadLine, err)
	}
	return &e, nil
}

// AppendAnswer appends the line answering the line id with the result e
// (none when nil) to dst, without a line break.
func AppendAnswer(dst []byte, id string, e *event.Event) ([]byte, error) {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, id)
	if e != nil {
		var err error
		dst = append(dst, `,"event":`...)
		if dst, err = AppendEvent(dst, e); err != nil {
			return nil, err
		}
	}
	return append(dst, '}'), nil
}

// AppendIn appends the event line for e to dst, without a line break: in's
// ID, Producer and Checked, in this order (docs/stdio.md promises id
// first, then producer), and e as its event (in.Event is not used).
func AppendIn(dst []byte, in In, e *event.Event) ([]byte, error) {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, in.ID)
	if in.Producer != "" {
		dst = append(dst, `,"producer":`...)
		dst = appendString(dst, in.Producer)
	}
	if in.Checked != "" {
		dst = append(dst, `,"checked":`...)
		dst = appendString(dst, in.Checked)
	}
	dst = append(dst, `,"event":`...)
	dst, err := AppendEvent(dst, e)
	if err != nil {
		return nil, err
	}
	return append(dst, '}'), nil
}

// appendString appends s as a JSON string, as encoding/json writes it.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // escapes needed: rare
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
