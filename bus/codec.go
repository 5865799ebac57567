package bus

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"
)

// Header names of the CloudEvents NATS binding, as Plugbus writes them.
const (
	HeaderPrefix      = "ce-"
	HeaderSpecVersion = "ce-specversion"
	HeaderContentType = "Content-Type"
)

// Encode writes e into msg in binary content mode: every attribute and
// extension becomes a lower-case ce- header holding its canonical string
// form, percent-encoded where the binding requires, and the data becomes the
// body byte for byte. It replaces msg.Header and msg.Data. The event is not
// validated; call [Validate] first for events from untrusted code.
//
// Encode writes the attributes directly instead of going through
// binding.Write: that path boxes every attribute in an interface and formats
// it through reflection-like type switches, which costs more than the rest of
// the publish for small events.
func Encode(e *event.Event, msg *nats.Msg) error {
	ctx, err := contextV1(e)
	if err != nil {
		return err
	}
	n := headerCount(ctx)
	// One backing array for all header values: one allocation instead of n.
	h := make(nats.Header, n)
	if _, err := writeHeaders(h, make([]string, 0, n), ctx, escape(ctx.Source.String())); err != nil {
		return err
	}
	msg.Header = h
	msg.Data = e.DataEncoded
	return nil
}

// An Encoder encodes events as [Encode] does into a message of its own,
// which it reuses from one event to the next with its header map, keeping
// the header value of the last source it wrote: for a sender of many
// events, such as a plugin publishing its results. The zero value is ready
// to use. An Encoder is not safe for concurrent use.
type Encoder struct {
	msg         nats.Msg
	vals        []string // backing array of the header values
	source      url.URL  // the source whose header value is sourceValue
	sourceValue string
}

// Encode encodes e for subject into the Encoder's message and returns it.
// The message and its header map are valid until the next call to Encode:
// publish it before then, as nats.go's PublishMsg copies what it sends.
func (enc *Encoder) Encode(subject string, e *event.Event) (*nats.Msg, error) {
	ctx, err := contextV1(e)
	if err != nil {
		return nil, err
	}
	if ctx.Source.URL != enc.source || enc.sourceValue == "" {
		enc.source, enc.sourceValue = ctx.Source.URL, escape(ctx.Source.String())
	}
	if enc.msg.Header == nil {
		n := headerCount(ctx) + 2 // room for extensions the sender sets
		enc.msg.Header, enc.vals = make(nats.Header, n), make([]string, 0, n)
	} else {
		clear(enc.msg.Header)
	}
	enc.vals, err = writeHeaders(enc.msg.Header, enc.vals[:0], ctx, enc.sourceValue)
	if err != nil {
		return nil, err
	}
	enc.msg.Subject, enc.msg.Data = subject, e.DataEncoded
	return &enc.msg, nil
}

// SetExtension sets extension name to value in the message last encoded,
// replacing the event's own: for an extension a sender adds to each event,
// such as [ExtCauseID], without setting it on the event first. The name
// must be valid as [Validate] says, and the value a valid string.
func (enc *Encoder) SetExtension(name, value string) {
	enc.vals = append(enc.vals, escape(value))
	enc.msg.Header[extensionHeader(name)] = enc.vals[len(enc.vals)-1 : len(enc.vals) : len(enc.vals)]
}

// contextV1 returns the context of e, which must be CloudEvents 1.0.
func contextV1(e *event.Event) (*event.EventContextV1, error) {
	ctx, ok := e.Context.(*event.EventContextV1)
	if !ok {
		return nil, fmt.Errorf("%w: specversion %s: Plugbus sends CloudEvents 1.0 only; convert with event.Context.AsV1()", ErrInvalidEvent, Quote(e.SpecVersion()))
	}
	return ctx, nil
}

// headerCount returns how many headers encoding ctx writes.
func headerCount(ctx *event.EventContextV1) int {
	n := 4 + len(ctx.Extensions)
	if ctx.Time != nil {
		n++
	}
	if ctx.DataContentType != nil {
		n++
	}
	if ctx.DataSchema != nil {
		n++
	}
	if ctx.Subject != nil {
		n++
	}
	return n
}

// writeHeaders sets the ce- headers of ctx in h, with source the header
// value of its source, appending the values to vals, whose backing array
// the headers share, and returns vals.
func writeHeaders(h nats.Header, vals []string, ctx *event.EventContextV1, source string) ([]string, error) {
	set := func(k, v string) {
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	set(HeaderSpecVersion, event.CloudEventsVersionV1)
	set("ce-id", escape(ctx.ID))
	set("ce-source", source)
	set("ce-type", escape(ctx.Type))
	if ctx.Time != nil {
		set("ce-time", ctx.Time.Time.UTC().Format(time.RFC3339Nano))
	}
	if ctx.DataContentType != nil {
		set("ce-datacontenttype", escape(*ctx.DataContentType))
	}
	if ctx.DataSchema != nil {
		set("ce-dataschema", escape(ctx.DataSchema.String()))
	}
	if ctx.Subject != nil {
		set("ce-subject", escape(*ctx.Subject))
	}
	for name, v := range ctx.Extensions {
		s, err := types.Format(v)
		if err != nil {
			return vals, fmt.Errorf("%w: extension %q: %v", ErrInvalidEvent, name, err)
		}
		set(extensionHeader(name), escape(s))
	}
	return vals, nil
}

// extensionHeader returns the header name of extension name, without
// building the string for the extensions Plugbus itself uses.
func extensionHeader(name string) string {
	switch name {
	case ExtCauseID:
		return HeaderPrefix + ExtCauseID
	case ExtTraceParent:
		return HeaderPrefix + ExtTraceParent
	case ExtDeadline:
		return HeaderPrefix + ExtDeadline
	}
	return HeaderPrefix + name
}

// DecodeFrom reads the event msg carries as a plugin reads what it
// receives: parse splits msg's subject under prefix into the producer (or
// caller) and the type ([ParseDurableSubject], [ParseInvokeSubject]),
// [Decode] reads the event, and its type must be the subject's. With an
// error it still returns the producer when the subject names one, so
// that the message can be counted against its sender.
func DecodeFrom(msg *nats.Msg, prefix string, parse func(prefix, subject string) (producer, typ string, err error)) (*event.Event, string, error) {
	producer, typ, err := parse(prefix, msg.Subject)
	if err != nil {
		return nil, "", err
	}
	e, err := Decode(msg)
	if err != nil {
		return nil, producer, err
	}
	if e.Type() != typ {
		return nil, producer, &FieldError{Field: "type", Value: e.Type(), Rule: "must equal the type in the subject, " + typ}
	}
	return e, producer, nil
}

// Decode reads the CloudEvent carried by msg and checks it with [Validate].
// It accepts binary content mode (ce- headers, matched case-insensitively),
// structured content mode (Content-Type application/cloudevents...), and what
// sdk-go's nats_jetstream binding writes. Anything else is rejected with an
// error that wraps [ErrNotEvent] or [ErrInvalidEvent] and says why.
//
// Data that is neither JSON nor valid UTF-8 text is marked DataBase64, so
// that encoding the event as JSON (structured mode) keeps it intact.
func Decode(msg *nats.Msg) (*event.Event, error) {
	if _, ok := msg.Header[HeaderSpecVersion]; ok {
		// What Plugbus sends: binary mode, unless a Content-Type header
		// makes it structured, which reading the headers finds on the way.
		// One pass over them instead of three.
		m := Message{header: msg.Header, data: msg.Data, encoding: binding.EncodingBinary}
		e, structured, err := m.decodeBinary()
		if err == nil && !structured {
			if err := Validate(e); err != nil {
				return nil, err
			}
			return e, nil
		}
		// Structured after all, or an error that the headers not read yet
		// might have made another: read it the long way.
	}
	m := newMessage(msg)
	var e *event.Event
	var err error
	switch m.encoding {
	case binding.EncodingBinary:
		e, _, err = m.decodeBinary()
	case binding.EncodingStructured:
		sm := m // only a structured message goes to sdk-go and so to the heap
		e, err = sm.decodeStructured()
	default:
		return nil, fmt.Errorf("%w: message has neither a %s header (binary mode) nor a %s: application/cloudevents+json header (structured mode)", ErrNotEvent, HeaderSpecVersion, HeaderContentType)
	}
	if err != nil {
		return nil, err
	}
	if err := Validate(e); err != nil {
		return nil, err
	}
	return e, nil
}

// binaryEvent is an event read from binary mode together with its context
// and the optional attributes the context points to, so that decoding
// allocates them at once instead of one by one.
type binaryEvent struct {
	event       event.Event
	ctx         event.EventContextV1
	subject     string
	contentType string
	time        types.Timestamp
}

// decodeBinary builds the event straight from the headers. It does what
// binding.ToEvent does with ReadBinary, without boxing every value in an
// interface and parsing it again: that halves the cost of a small event.
// It also reports whether a Content-Type header says structured mode.
func (m *Message) decodeBinary() (*event.Event, bool, error) {
	b := &binaryEvent{}
	ec := &b.ctx
	structured, err := m.walkBinary(func(name, v string) error {
		switch name {
		case "id":
			ec.ID = v
		case "type":
			ec.Type = v
		case "source":
			u, err := parseURI(v)
			if err != nil {
				return err
			}
			ec.Source = types.URIRef{URL: u}
		case "subject":
			b.subject = v
			ec.Subject = &b.subject
		case "datacontenttype":
			b.contentType = v
			ec.DataContentType = &b.contentType
		case "dataschema":
			u, err := parseURI(v)
			if err != nil {
				return err
			}
			ec.DataSchema = &types.URI{URL: u}
		case "time":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return fmt.Errorf("must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
			}
			b.time = types.Timestamp{Time: t}
			ec.Time = &b.time
		default:
			if ec.Extensions == nil {
				ec.Extensions = make(map[string]interface{}, 2)
			}
			ec.Extensions[name] = v
		}
		return nil
	})
	if err != nil {
		return nil, structured, err
	}
	e := &b.event
	e.Context = ec
	if len(m.data) > 0 {
		e.DataEncoded = m.data
		e.DataBase64 = needsBase64(ec.DataContentType, m.data)
	}
	return e, structured, nil
}

// parseURI parses a source or dataschema as url.Parse does. The common
// case, an opaque URI such as urn:plugbus:hello (a lower-case scheme, no
// '/' after it, no query, fragment or control character), is taken apart
// here without the allocation of url.Parse, with the same result.
func parseURI(s string) (url.URL, error) {
	if u, ok := parseOpaqueURI(s); ok {
		return u, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return url.URL{}, err
	}
	return *u, nil
}

// parseOpaqueURI returns the URL url.Parse makes of s, and true, when s is
// scheme:opaque with a lower-case scheme and an opaque part that does not
// start with '/' and holds no '?', '#' or control character; otherwise
// false.
func parseOpaqueURI(s string) (url.URL, bool) {
	colon := strings.IndexByte(s, ':')
	if colon <= 0 || !('a' <= s[0] && s[0] <= 'z') {
		return url.URL{}, false
	}
	for i := 1; i < colon; i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.') {
			return url.URL{}, false
		}
	}
	rest := s[colon+1:]
	if strings.HasPrefix(rest, "/") {
		return url.URL{}, false
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; c < ' ' || c == 0x7f || c == '?' || c == '#' {
			return url.URL{}, false
		}
	}
	return url.URL{Scheme: s[:colon], Opaque: rest}, true
}

func (m *Message) decodeStructured() (*event.Event, error) {
	e, err := binding.ToEvent(context.Background(), m)
	if err != nil {
		return nil, fmt.Errorf("%w: structured mode body: %s", ErrInvalidEvent, bounded(err.Error()))
	}
	if !e.DataBase64 && len(e.DataEncoded) > 0 {
		ct := e.DataContentType()
		e.DataBase64 = needsBase64(&ct, e.DataEncoded)
	}
	return e, nil
}

// needsBase64 reports whether data must travel as data_base64 in JSON:
// anything but JSON (as labelled, or unlabelled) and valid UTF-8 text.
func needsBase64(contentType *string, data []byte) bool {
	if contentType == nil || *contentType == "" {
		return false
	}
	ct := *contentType
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = strings.TrimSpace(ct[:i])
	}
	switch {
	case strings.EqualFold(ct, "application/json") || hasSuffixFold(ct, "+json") || strings.EqualFold(ct, "text/json"):
		return false
	case hasPrefixFold(ct, "text/"):
		return !utf8.Valid(data)
	}
	return true
}

func hasSuffixFold(s, suffix string) bool {
	return len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}

// Message is a NATS message read as a CloudEvents binding.Message, so that
// sdk-go's binding.ToEvent, binding.Write and its HTTP writers can consume it
// directly. It can be read several times.
type Message struct {
	header   nats.Header
	data     []byte
	encoding binding.Encoding
}

var (
	_ binding.Message               = (*Message)(nil)
	_ binding.MessageMetadataReader = (*Message)(nil)
)

var specV1 = spec.WithPrefix(HeaderPrefix).Version(event.CloudEventsVersionV1)

// NewMessage wraps msg. Structured mode is a Content-Type header starting
// with application/cloudevents; binary mode is a ce-specversion header;
// anything else has encoding binding.EncodingUnknown.
func NewMessage(msg *nats.Msg) *Message {
	m := newMessage(msg)
	return &m
}

func newMessage(msg *nats.Msg) Message {
	m := Message{header: msg.Header, data: msg.Data, encoding: binding.EncodingUnknown}
	if ct, ok := lookup(msg.Header, HeaderContentType); ok && hasPrefixFold(ct, "application/cloudevents") {
		m.encoding = binding.EncodingStructured
	} else if _, ok := lookup(msg.Header, HeaderSpecVersion); ok {
		m.encoding = binding.EncodingBinary
	}
	return m
}

// ReadEncoding returns the content mode found by [NewMessage].
func (m *Message) ReadEncoding() binding.Encoding { return m.encoding }

// ReadStructured passes a structured-mode body to w as JSON.
func (m *Message) ReadStructured(ctx context.Context, w binding.StructuredWriter) error {
	if m.encoding != binding.EncodingStructured {
		return binding.ErrNotStructured
	}
	return w.SetStructuredEvent(ctx, format.JSON, bytes.NewReader(m.data))
}

// ReadBinary passes the attributes, extensions and data of a binary-mode
// message to w. Header names match case-insensitively; values are unquoted
// and percent-decoded; a header given twice is an error. An unprefixed
// content-type header is read as datacontenttype when ce-datacontenttype is
// absent, as sdk-go's nats_jetstream binding writes it.
func (m *Message) ReadBinary(ctx context.Context, w binding.BinaryWriter) error {
	if m.encoding != binding.EncodingBinary {
		return binding.ErrNotBinary
	}
	_, err := m.walkBinary(func(name, v string) error {
		if attr := specV1.Attribute(HeaderPrefix + name); attr != nil {
			return w.SetAttribute(attr, v)
		}
		return w.SetExtension(name, v)
	})
	if err != nil {
		return err
	}
	if len(m.data) > 0 {
		return w.SetData(bytes.NewBuffer(m.data))
	}
	return nil
}

// walkBinary checks ce-specversion and calls set with the lower-case name
// (without "ce-") and decoded value of every other ce- header, then of an
// unprefixed content-type when there was no ce-datacontenttype. An error
// from set or from decoding comes back as a [*FieldError]. It reports
// whether a Content-Type header, in any case, says structured mode, among
// the headers read before an error.
func (m *Message) walkBinary(set func(name, value string) error) (structured bool, err error) {
	sv, _ := lookup(m.header, HeaderSpecVersion)
	if u, err := UnescapeHeader(sv); err == nil {
		sv = u // the binding allows quoting and unnecessary percent-encoding
	}
	if sv != event.CloudEventsVersionV1 {
		return false, &FieldError{Field: "specversion", Value: sv, Rule: "Plugbus reads CloudEvents 1.0 only; send ce-specversion: 1.0"}
	}
	var seenBuf [16]string
	seen := seenBuf[:0] // lower-case names already set: duplicates are errors
	contentType, hasCT := "", false
	for k, vs := range m.header {
		if len(k) <= len(HeaderPrefix) || !strings.EqualFold(k[:len(HeaderPrefix)], HeaderPrefix) {
			if len(vs) > 0 && strings.EqualFold(k, HeaderContentType) {
				structured = structured || hasPrefixFold(vs[0], "application/cloudevents")
				if !hasCT || k == "content-type" {
					contentType, hasCT = vs[0], true // sdk-go's exact lower-case key wins over other spellings
				}
			}
			continue
		}
		name := k[len(HeaderPrefix):]
		if !isLower(name) {
			name = strings.ToLower(name)
		}
		if len(vs) != 1 || contains(seen, name) {
			return structured, &FieldError{Field: name, Rule: "header " + HeaderPrefix + name + " is given more than once; send it once"}
		}
		seen = append(seen, name)
		if name == "specversion" {
			continue
		}
		v, err := UnescapeHeader(vs[0])
		if err != nil {
			return structured, &FieldError{Field: name, Value: vs[0], Rule: err.Error()}
		}
		if err := set(name, v); err != nil {
			return structured, &FieldError{Field: name, Value: v, Rule: err.Error()}
		}
	}
	if hasCT && !contains(seen, "datacontenttype") {
		if err := set("datacontenttype", contentType); err != nil {
			return structured, &FieldError{Field: "datacontenttype", Value: contentType, Rule: err.Error()}
		}
	}
	return structured, nil
}

// GetAttribute returns the attribute of kind k and its raw header value, or
// the attribute and nil when the message does not carry it.
func (m *Message) GetAttribute(k spec.Kind) (spec.Attribute, interface{}) {
	attr := specV1.AttributeFromKind(k)
	if v, ok := lookup(m.header, attr.PrefixedName()); ok {
		return attr, v
	}
	return attr, nil
}

// GetExtension returns the raw header value of extension name, or nil.
func (m *Message) GetExtension(name string) interface{} {
	if v, ok := lookup(m.header, HeaderPrefix+name); ok {
		return v
	}
	return nil
}

// Finish does nothing: a NATS message needs no acknowledgement here.
func (m *Message) Finish(error) error { return nil }

// lookup finds a header by name, trying the exact name first and then any
// case, as the binding says names are case-insensitive while nats.go's
// Header.Get is not.
func lookup(h nats.Header, name string) (string, bool) {
	if vs, ok := h[name]; ok && len(vs) > 0 {
		return vs[0], true
	}
	for k, vs := range h {
		if len(k) == len(name) && len(vs) > 0 && strings.EqualFold(k, name) {
			return vs[0], true
		}
	}
	return "", false
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func isLower(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

const upperHex = "0123456789ABCDEF"

// escape percent-encodes what the binding says must be: space, '"', '%' and
// every byte outside U+0021-U+007E (control characters included).
func escape(s string) string {
	i := 0
	for i < len(s) && !mustEscape(s[i]) {
		i++
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		if mustEscape(c) {
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&15])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func mustEscape(c byte) bool { return c <= ' ' || c == '"' || c == '%' || c >= 0x7f }

// UnescapeHeader decodes a ce- header value as the CloudEvents NATS and
// HTTP bindings say: it first removes RFC 7230 double quotes, then decodes
// one round of percent-encoding (either case of hex), and rejects malformed
// escapes and invalid UTF-8.
func UnescapeHeader(s string) (string, error) {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		var b strings.Builder
		for i := 1; i < len(s)-1; i++ {
			if s[i] == '\\' && i+1 < len(s)-1 {
				i++
			}
			b.WriteByte(s[i])
		}
		s = b.String()
	}
	if strings.IndexByte(s, '%') < 0 {
		if !utf8.ValidString(s) {
			return "", fmt.Errorf("value is not valid UTF-8")
		}
		return s, nil
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			out = append(out, s[i])
			continue
		}
		if i+2 >= len(s) || unhex(s[i+1]) < 0 || unhex(s[i+2]) < 0 {
			return "", fmt.Errorf("bad percent-encoding at byte %d: '%%' must be followed by two hex digits (send %%25 for a literal '%%')", i)
		}
		out = append(out, byte(unhex(s[i+1])<<4|unhex(s[i+2])))
		i += 2
	}
	if !utf8.Valid(out) {
		return "", fmt.Errorf("value is not valid UTF-8 after percent-decoding")
	}
	return string(out), nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// bounded cuts an error message from a library that may quote input at
// 4 * MaxQuoted bytes.
func bounded(msg string) string {
	if len(msg) <= 4*MaxQuoted {
		return msg
	}
	cut := 4 * MaxQuoted
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + "... (" + strconv.Itoa(len(msg)) + " bytes)"
}
