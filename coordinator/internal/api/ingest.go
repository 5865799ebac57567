package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"go.opentelemetry.io/otel/trace"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/internal/schema"
	"github.com/plugbus/plugbus/internal/tracing"
)

// Media types of the CloudEvents HTTP binding's structured and batch modes.
const (
	mediaStructured = "application/cloudevents+json"
	mediaBatch      = "application/cloudevents-batch+json"
)

// acceptedModes ends every message about a body that is not an event.
const acceptedModes = "send binary mode (ce-specversion: 1.0, ce-id, ce-source and ce-type headers, the data as the body), " +
	"structured mode (Content-Type: " + mediaStructured + ") or batch mode (Content-Type: " + mediaBatch + ", a JSON array of events)"

// mode is a content mode of the CloudEvents HTTP binding.
type mode int

const (
	modeNone       mode = iota // no ce- headers and no CloudEvents media type
	modeBinary                 // ce- headers, body = data
	modeStructured             // application/cloudevents+json
	modeBatch                  // application/cloudevents-batch+json
)

// detectMode tells the content mode of a request from its headers. It
// rejects event formats other than JSON.
func detectMode(h http.Header) (mode, *apiError) {
	mt := mediaType(h.Get("Content-Type"))
	switch {
	case mt == mediaBatch:
		return modeBatch, nil
	case mt == mediaStructured:
		return modeStructured, nil
	case strings.HasPrefix(mt, "application/cloudevents"):
		return modeNone, &apiError{
			status: http.StatusUnsupportedMediaType, reason: reasonUnsupportedMediaType, field: "Content-Type",
			msg: fmt.Sprintf("event format %q is not supported: the coordinator reads the JSON event format only; %s", mt, acceptedModes),
		}
	}
	for k := range h {
		if hasPrefixFold(k, "ce-") {
			return modeBinary, nil
		}
	}
	return modeNone, nil
}

// mediaType returns the lower-case media type of a Content-Type value,
// without parameters.
func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.ToLower(strings.TrimSpace(ct))
}

// readBody reads the whole body, at most cfg.MaxBodyBytes of it.
func (s *server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	tooLarge := func() *apiError { // made only when needed: most bodies are not
		return &apiError{
			status: http.StatusRequestEntityTooLarge, reason: reasonTooLarge,
			msg: fmt.Sprintf("request body is larger than the limit of %d bytes; send smaller events or split the batch", s.cfg.MaxBodyBytes),
		}
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return nil, tooLarge()
	}
	// A body trickling in is cut off: a client may not hold a handler for
	// longer than BodyTimeout by sending slowly.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(s.cfg.BodyTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err == nil {
		_ = rc.SetReadDeadline(time.Time{})
	} else {
		// The rest of the body is not waited for: the connection closes
		// after the answer.
		w.Header().Set("Connection", "close")
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, &apiError{status: http.StatusRequestTimeout, reason: reasonBadRequest, msg: fmt.Sprintf("the request body did not arrive within %v; send it at once", s.cfg.BodyTimeout)}
		}
		return nil, &apiError{status: http.StatusBadRequest, reason: reasonBadRequest, msg: "cannot read the request body: " + err.Error()}
	}
	return body, nil
}

// decodeBinary reads a binary-mode event as the HTTP binding says: the
// header values decoded (RFC 7230 quotes removed, one round of
// percent-decoding), a ce- header given twice rejected, Content-Type as the
// datacontenttype and the body as the data. The attributes are set with
// sdk-go's own setters for CloudEvents 1.0, as its HTTP binding would set
// them, but straight from the headers: going through the binding built a
// second header map, a message and a copy of the body for every request.
func decodeBinary(h http.Header, body []byte) (*event.Event, *apiError) {
	bad := func(field, value, rule string) *apiError {
		return invalidEvent(&bus.FieldError{Field: field, Value: value, Rule: rule}, "invalid binary-mode event")
	}
	type attribute struct{ name, value string }
	attrs := make([]attribute, 0, 8)
	specVersion, sawSpecVersion := "", false
	for k, vs := range h {
		if !hasPrefixFold(k, "ce-") {
			continue
		}
		name := attributeName(k[len("ce-"):])
		switch {
		case name == "":
			return nil, bad("ce-", "", "a header named just ce- carries no attribute; name it ce-<attribute>")
		case name == "datacontenttype":
			return nil, bad(name, "", "in HTTP binary mode the data's media type travels in the Content-Type header; send Content-Type instead of ce-datacontenttype")
		case len(vs) != 1:
			return nil, bad(name, "", "header ce-"+name+" is given more than once; send it once")
		}
		if !knownAttributes[name] {
			if rule := extensionNameRule(name); rule != "" {
				return nil, bad(name, "", rule)
			}
		}
		v, err := bus.UnescapeHeader(vs[0])
		if err != nil {
			return nil, bad(name, vs[0], err.Error())
		}
		if name == "specversion" {
			specVersion, sawSpecVersion = v, true
			continue
		}
		attrs = append(attrs, attribute{name, v})
	}
	switch {
	case !sawSpecVersion:
		return nil, bad("specversion", "", "binary mode needs the header ce-specversion: 1.0 next to the other ce- headers")
	case specVersion != event.CloudEventsVersionV1:
		return nil, bad("specversion", specVersion, "Plugbus accepts CloudEvents 1.0 only; send ce-specversion: 1.0")
	}
	e := event.New(event.CloudEventsVersionV1)
	ec := e.Context.(*event.EventContextV1)
	for _, a := range attrs {
		attr := spec.V1.Attribute(a.name)
		if attr == nil {
			if err := ec.SetExtension(a.name, a.value); err != nil {
				return nil, invalidEvent(err, "invalid binary-mode event")
			}
			continue
		}
		if err := attr.Set(ec, a.value); err != nil {
			rule := err.Error()
			if attr.Kind() == spec.Time {
				rule += "; send an RFC 3339 timestamp like 2026-01-02T15:04:05Z"
			}
			return nil, invalidEvent(&bus.FieldError{Field: attr.Name(), Value: a.value, Rule: rule}, "invalid binary-mode event")
		}
	}
	if ct := h.Values("Content-Type"); len(ct) > 0 {
		if err := ec.SetDataContentType(ct[0]); err != nil {
			return nil, invalidEvent(err, "invalid binary-mode event")
		}
	}
	if len(body) > 0 {
		e.DataEncoded = body
	}
	return &e, nil
}

// attributeName returns name in lower case. The attributes of the spec come
// back without building a string: net/http hands over canonical names,
// such as Specversion of Ce-Specversion, and lower-casing them allocated
// for every header of every request.
func attributeName(name string) string {
	for _, known := range attributeNames {
		if len(name) == len(known) && strings.EqualFold(name, known) {
			return known
		}
	}
	return strings.ToLower(name)
}

// attributeNames are the lower-case names [attributeName] knows.
var attributeNames = []string{"specversion", "id", "source", "type", "subject", "time", "dataschema", "datacontenttype", "traceparent", "tracestate"}

// knownAttributes are the CloudEvents 1.0 context attributes that travel in
// ce- headers in HTTP binary mode.
var knownAttributes = map[string]bool{
	"specversion": true, "id": true, "source": true, "type": true, "subject": true, "time": true, "dataschema": true,
}

// extensionNameRule is the rule of bus.Validate for extension names, checked
// before sdk-go sees the name so the error can name the extension.
func extensionNameRule(name string) string {
	if len(name) > bus.MaxExtensionNameLength {
		return fmt.Sprintf("extension name must be 1 to %d characters", bus.MaxExtensionNameLength)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return "extension name must use only lower-case letters a-z and digits 0-9"
		}
	}
	return ""
}

// structuredMembers are the members of the JSON event format that are no
// extensions.
var structuredMembers = map[string]bool{
	"specversion": true, "id": true, "source": true, "type": true, "subject": true, "time": true,
	"datacontenttype": true, "dataschema": true, "data": true, "data_base64": true,
}

// extensionNameErrors checks the member names of a JSON event: sdk-go
// lower-cases extension names it reads, which would silently rewrite
// "myExt" into "myext"; Plugbus rejects such names instead. A body that is
// not a JSON object gives nil, for the decoder to report.
func extensionNameErrors(raw []byte) error {
	var members map[string]json.RawMessage
	if json.Unmarshal(raw, &members) != nil {
		return nil
	}
	errs := []error{duplicateMembers(raw)}
	for name := range members {
		if structuredMembers[name] {
			continue
		}
		if rule := extensionNameRule(name); rule != "" {
			errs = append(errs, &bus.FieldError{Field: name, Rule: rule})
		}
	}
	sort.Slice(errs[1:], func(i, j int) bool { return errs[i+1].(*bus.FieldError).Field < errs[j+1].(*bus.FieldError).Field })
	return errors.Join(errs...)
}

// duplicateMembers reports a member that a JSON object holds twice: JSON
// parsers disagree on which one counts (Go's takes the last), so a checker
// and a handler could see different types or data. A body that is not a
// JSON object gives nil, for the decoder to report.
func duplicateMembers(raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil
		}
		name, _ := t.(string)
		if seen[name] {
			return &bus.FieldError{Field: name, Rule: "the member is given more than once; send it once"}
		}
		seen[name] = true
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return nil
		}
	}
	return nil
}

// decodeStructured reads a structured-mode event (JSON event format).
func decodeStructured(ctx context.Context, body []byte) (*event.Event, *apiError) {
	h := http.Header{"Content-Type": {mediaStructured}}
	msg := cehttp.NewMessage(h, io.NopCloser(bytes.NewReader(body)))
	defer msg.Finish(nil)
	e, err := binding.ToEvent(ctx, msg)
	if err != nil {
		return nil, &apiError{
			status: http.StatusBadRequest, reason: reasonBadRequest,
			msg: "structured mode: the body is not a CloudEvent in the JSON event format: " + strings.TrimSpace(err.Error()),
		}
	}
	return e, nil
}

// decodeBatch reads a batch-mode body: a JSON array of events, each decoded
// on its own so an error can name its index.
func decodeBatch(body []byte) ([]*event.Event, []json.RawMessage, *apiError) {
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field == "" {
			err = fmt.Errorf("got a JSON %s", ute.Value)
		}
		return nil, nil, &apiError{
			status: http.StatusBadRequest, reason: reasonBadRequest,
			msg: "batch mode: the body must be a JSON array of CloudEvents in the JSON event format: " + err.Error(),
		}
	}
	events := make([]*event.Event, len(raws))
	for i, raw := range raws {
		e := new(event.Event)
		err := duplicateMembers(raw)
		if err == nil {
			err = json.Unmarshal(raw, e)
		}
		if err == nil && e.Context == nil {
			err = errors.New("not a JSON object with CloudEvents attributes")
		}
		if err != nil {
			return nil, nil, &apiError{
				status: http.StatusBadRequest, reason: reasonBadRequest, index: &i,
				msg: fmt.Sprintf("batch mode: event at index %d is not a CloudEvent in the JSON event format: %s; nothing was published", i, strings.TrimSpace(err.Error())),
			}
		}
		events[i] = e
	}
	return events, raws, nil
}

// validate checks an event for publishing: bus.Validate, and a type that can
// route, and a size the NATS server accepts.
// Errors found earlier, in pre, are reported after those of bus.Validate.
// jsonChecked says that the data was found to be valid JSON already, if its
// media type says JSON, so it is not scanned again.
func (s *server) validate(e *event.Event, what string, pre error, jsonChecked bool) *apiError {
	if e.Context == nil {
		return &apiError{status: http.StatusBadRequest, reason: reasonBadRequest, msg: what + ": the body holds no CloudEvent"}
	}
	err := bus.Validate(e)
	if e.Type() != "" && (err == nil || !hasField(err, "type")) {
		if terr := bus.ValidateType(e.Type()); terr != nil {
			rule := typeDetail(terr) + "; " + typeRule
			err = errors.Join(err, &bus.FieldError{Field: "type", Rule: rule})
		}
	}
	if err = errors.Join(err, pre); err != nil {
		return invalidEvent(err, what)
	}
	if aerr := s.checkData(e, what, jsonChecked); aerr != nil {
		return aerr
	}
	// The bound first: it does not build the source's string, and most
	// events are far below the limit.
	if max := s.cfg.Conn.MaxPayload(); max > 0 && encodedSize(e, sourceBound(e)) > max {
		if size := encodedSize(e, len(e.Source())); size > max {
			return &apiError{
				status: http.StatusRequestEntityTooLarge, reason: reasonTooLarge,
				msg: fmt.Sprintf("%s: the event takes about %d bytes on the bus, more than the NATS server's max_payload of %d bytes; send less data", what, size, max),
			}
		}
	}
	return nil
}

// checkData checks an event's data at the door: data that claims to be
// JSON must be JSON (unless jsonChecked: found so already), and data of a
// type whose plugins declare a JSON Schema must match it (see
// [Config.CheckData]).
func (s *server) checkData(e *event.Event, what string, jsonChecked bool) *apiError {
	data := e.Data()
	ct := e.DataContentType()
	if len(data) == 0 || (ct != "" && !isJSON(ct)) {
		return nil
	}
	if !jsonChecked && !json.Valid(data) {
		if ct == "" {
			return nil // no claim: the data may be anything
		}
		return &apiError{
			status: http.StatusBadRequest, reason: reasonBadRequest, field: "data",
			msg: fmt.Sprintf("%s: data: the datacontenttype %q says JSON, but the data is not valid JSON; send JSON or another content type", what, ct),
		}
	}
	if s.cfg.CheckData == nil {
		return nil
	}
	err := s.cfg.CheckData(e.Type(), data)
	if err == nil {
		return nil
	}
	field := "data"
	var se *schema.Error
	if errors.As(err, &se) && len(se.Problems) > 0 && se.Problems[0].Field != "" {
		field = "data." + se.Problems[0].Field
	}
	return &apiError{
		status: http.StatusBadRequest, reason: reasonBadRequest, field: field,
		msg: fmt.Sprintf("%s: %v (see GET /v1/types for the schema of %s)", what, err, e.Type()),
	}
}

// typeDetail words an error of bus.ValidateType without the package's
// prefix.
func typeDetail(err error) string {
	var te *bus.TypeError
	if errors.As(err, &te) {
		return te.Detail
	}
	return err.Error()
}

// typeRule is the routing rule of bus.ValidateType, worded for clients.
const typeRule = "a type must be non-empty, without whitespace, '*' or '>', and without empty dot-separated parts, like com.example.user.created"

// hasField reports whether err (from bus.Validate) names field.
func hasField(err error, field string) bool {
	for _, e := range flatten(err) {
		var fe *bus.FieldError
		if errors.As(e, &fe) && fe.Field == field {
			return true
		}
	}
	return false
}

// encodedSize estimates the size of e as a NATS message in binary mode: data
// plus one "name: value\r\n" line per attribute, with source the length of
// the source's header value.
func encodedSize(e *event.Event, source int) int64 {
	n := int64(len(e.DataEncoded)) + 16
	add := func(name, v string) {
		if v != "" {
			n += int64(len(name) + len(v) + 7)
		}
	}
	add("specversion", e.SpecVersion())
	add("id", e.ID())
	if source > 0 {
		n += int64(len("source") + source + 7)
	}
	add("type", e.Type())
	add("subject", e.Subject())
	add("datacontenttype", e.DataContentType())
	add("dataschema", e.DataSchema())
	if !e.Time().IsZero() {
		add("time", "2006-01-02T15:04:05.999999999Z07:00")
	}
	for k, v := range e.Extensions() {
		add(k, fmt.Sprint(v))
	}
	return n
}

// sourceBound is at least the length of e's source as a string, counted
// from its parts without building the string: each part as if every byte
// were percent-encoded, and room for the separators (":", "//", "@", "/",
// "?", "#").
func sourceBound(e *event.Event) int {
	ctx, ok := e.Context.(*event.EventContextV1)
	if !ok {
		return len(e.Source())
	}
	u := ctx.Source.URL
	parts := len(u.Scheme) + len(u.Opaque) + len(u.Host) + len(u.Path) + len(u.RawQuery) + len(u.Fragment)
	if u.User != nil {
		parts += len(u.User.String())
	}
	return 3*parts + 8
}

// handleEvents is POST /v1/events.
func (s *server) handleEvents(w http.ResponseWriter, r *http.Request) {
	m, aerr := detectMode(r.Header)
	if aerr != nil {
		s.fail(w, r, aerr)
		return
	}
	if m == modeNone {
		ct := r.Header.Get("Content-Type")
		if ct == "" {
			ct = "none"
		}
		s.fail(w, r, &apiError{
			status: http.StatusUnsupportedMediaType, reason: reasonUnsupportedMediaType, field: "Content-Type",
			msg: fmt.Sprintf("the request is no CloudEvent: Content-Type %q and no ce- headers; %s", ct, acceptedModes),
		})
		return
	}
	body, aerr := s.readBody(w, r)
	if aerr != nil {
		s.fail(w, r, aerr)
		return
	}
	var events []*event.Event
	switch m {
	case modeBinary:
		e, aerr := decodeBinary(r.Header, body)
		if aerr == nil {
			aerr = s.validate(e, "invalid event", nil, false)
		}
		if aerr != nil {
			s.fail(w, r, aerr)
			return
		}
		events = []*event.Event{e}
	case modeStructured:
		e, aerr := decodeStructured(r.Context(), body)
		if aerr == nil {
			aerr = s.validate(e, "invalid event", extensionNameErrors(body), false)
		}
		if aerr != nil {
			s.fail(w, r, aerr)
			return
		}
		events = []*event.Event{e}
	case modeBatch:
		var raws []json.RawMessage
		events, raws, aerr = decodeBatch(body)
		if aerr != nil {
			s.fail(w, r, aerr)
			return
		}
		// All or nothing: every event is checked before any is published.
		for i, e := range events {
			if aerr := s.validate(e, fmt.Sprintf("batch mode: invalid event at index %d (nothing was published)", i), extensionNameErrors(raws[i]), false); aerr != nil {
				aerr.index = &i
				s.fail(w, r, aerr)
				return
			}
		}
	}
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.ID()
		s.m.received.WithLabelValues(s.m.types.label(e.Type())).Inc()
	}
	for i, e := range events {
		if err := s.publish(r.Context(), e); err != nil {
			s.fail(w, r, &apiError{
				status: http.StatusServiceUnavailable, reason: reasonPublishFailed,
				msg: fmt.Sprintf("publishing to NATS failed at event %d of %d (id %q): %v; the earlier ones may have been delivered, retry later", i+1, len(events), e.ID(), err),
			})
			return
		}
	}
	// Wait for the server to confirm, so 202 means the events reached NATS.
	if err := s.flush(len(events)); err != nil {
		s.fail(w, r, &apiError{
			status: http.StatusServiceUnavailable, reason: reasonPublishFailed,
			msg: fmt.Sprintf("the NATS server did not confirm the publish within %v: %v; the events may not have been delivered, retry later", flushTimeout, err),
		})
		return
	}
	for _, e := range events {
		s.m.published.WithLabelValues(s.m.types.label(e.Type())).Inc()
	}
	writeJSONBody(w, http.StatusAccepted, acceptedBody(ids))
}

// acceptedBody is the answer of POST /v1/events, {"accepted":n,"ids":[...]},
// as encoding/json writes it. It is put together here because json.Marshal
// of the struct took more CPU than all of the event's checks: 1.6% of the
// coordinator's under load, for a body of one id.
func acceptedBody(ids []string) []byte {
	b := make([]byte, 0, 32+24*len(ids))
	b = append(b, `{"accepted":`...)
	b = strconv.AppendInt(b, int64(len(ids)), 10)
	b = append(b, `,"ids":[`...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, id)
	}
	return append(b, "]}\n"...)
}

// appendJSONString appends s as a JSON string. Printable ASCII is copied
// between quotes; a string with anything that encoding/json would escape
// goes to json.Marshal.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			quoted, _ := json.Marshal(s) // a string always encodes
			return append(b, quoted...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// publish sends one event: stored and acknowledged by the events stream in
// durable mode, handed to NATS otherwise.
func (s *server) publish(ctx context.Context, e *event.Event) (err error) {
	ctx, span := s.sendSpan(ctx, "publish", e, trace.SpanKindProducer)
	defer func() { tracing.End(span, err) }()
	if s.cfg.JetStream == nil {
		return bus.Publish(s.cfg.Conn, s.cfg.Prefix, s.cfg.Producer, e)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return bus.PublishDurable(ctx, s.cfg.JetStream, s.cfg.Prefix, s.cfg.Producer, e)
}

// flush waits for the server to confirm n publishes; none need no round
// trip, and stored events are confirmed already. Requests in flight share
// the round trips (see flushGroup).
func (s *server) flush(n int) error {
	if n == 0 || s.cfg.JetStream != nil {
		return nil
	}
	return s.flushes.flush(flushTimeout)
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// isJSON reports whether a media type is JSON (application/json or a +json
// suffix).
func isJSON(contentType string) bool {
	if contentType == "application/json" {
		return true // the usual one, without parsing
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt = mediaType(contentType)
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json") || mt == "text/json"
}
