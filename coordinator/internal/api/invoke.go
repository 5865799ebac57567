package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nuid"
	"go.opentelemetry.io/otel/trace"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/internal/tracing"
)

// defaultDataContentType is the datacontenttype of plain data sent to
// invoke without a Content-Type.
const defaultDataContentType = "application/json"

// handleInvoke is POST /v1/invoke/{type}.
func (s *server) handleInvoke(w http.ResponseWriter, r *http.Request) {
	typ := r.PathValue("type")
	if err := bus.ValidateType(typ); err != nil {
		s.fail(w, r, &apiError{
			status: http.StatusBadRequest, reason: reasonBadRequest, field: "type",
			msg: typeDetail(err) + " in the URL /v1/invoke/{type}; " + typeRule,
		})
		return
	}
	var q url.Values // nil, and not parsed, without a query
	if r.URL.RawQuery != "" {
		q = r.URL.Query()
	}
	timeout, aerr := s.invokeTimeout(q)
	if aerr != nil {
		s.fail(w, r, aerr)
		return
	}
	plugin, aerr := s.invokePlugin(q, typ)
	if aerr != nil {
		s.fail(w, r, aerr)
		return
	}
	e, aerr := s.invokeEvent(w, r, typ)
	if aerr != nil {
		s.fail(w, r, aerr)
		return
	}
	var opts []bus.RequestOption
	if plugin != "" {
		opts = append(opts, bus.AnsweredBy(plugin))
	}
	label := s.m.types.label(typ)
	s.m.received.WithLabelValues(label).Inc()

	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	start := time.Now()
	ctx, span := s.sendSpan(ctx, "invoke", e, trace.SpanKindClient)
	reply, err := bus.Request(ctx, s.cfg.Conn, s.cfg.Prefix, s.cfg.Producer, e, opts...)
	tracing.End(span, err)
	outcome, aerr := s.invokeError(r, typ, timeout, err)
	s.m.invoke.WithLabelValues(label, outcome).Observe(time.Since(start).Seconds())
	if aerr != nil {
		s.fail(w, r, aerr)
		return
	}
	if reply == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	body, err := structuredReply(reply)
	if err != nil {
		s.fail(w, r, &apiError{
			status: http.StatusBadGateway, plugin: true,
			msg: fmt.Sprintf("the plugin's reply to %s cannot be encoded as a structured CloudEvent: %v", typ, err),
		})
		return
	}
	w.Header().Set("Content-Type", mediaStructured)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// structuredReply encodes a plugin's reply as a structured-mode CloudEvent.
// sdk-go writes JSON data into it as it is, so the data is checked here;
// encoding/json.Marshal checked it by scanning and compacting the whole
// event again, which took about as long as writing it.
func structuredReply(reply *event.Event) ([]byte, error) {
	body, err := reply.MarshalJSON()
	if err != nil {
		return nil, err
	}
	if len(reply.DataEncoded) > 0 && !reply.DataBase64 && writtenAsJSON(reply.DataMediaType()) && !json.Valid(reply.DataEncoded) {
		return nil, fmt.Errorf("its data is not valid JSON, yet its datacontenttype is %q", reply.DataContentType())
	}
	return body, nil
}

// writtenAsJSON tells whether sdk-go writes data of this media type into a
// structured event as JSON rather than as a string.
func writtenAsJSON(mediaType string) bool {
	switch mediaType {
	case "", event.ApplicationJSON, event.TextJSON, event.ApplicationCloudEventsJSON, event.ApplicationCloudEventsBatchJSON:
		return true
	}
	return false
}

// invokePlugin returns the plugin named by ?plugin=, after checking with the
// registry that it answers typ, or "" when the request names none; it
// refuses, naming them, when two different plugins answer typ and the
// request names none.
func (s *server) invokePlugin(q url.Values, typ string) (string, *apiError) {
	var answerers []string
	if s.cfg.Answerers != nil {
		answerers = s.cfg.Answerers(typ)
	}
	if !q.Has("plugin") {
		if len(answerers) > 1 {
			return "", &apiError{
				status: http.StatusConflict, field: "plugin",
				msg: fmt.Sprintf("type %s is answered by %d different plugins, %s; name the one to ask with ?plugin=NAME (coordinator invoke --plugin NAME)",
					typ, len(answerers), strings.Join(answerers, " and ")),
			}
		}
		return "", nil
	}
	plugin := q.Get("plugin")
	if err := bus.ValidateProducer(plugin); err != nil {
		return "", &apiError{
			status: http.StatusBadRequest, reason: reasonBadRequest, field: "plugin",
			msg: fmt.Sprintf("?plugin=%q is not a plugin name: use only A-Z, a-z, 0-9, '_' and '-'", plugin),
		}
	}
	if s.cfg.Answerers != nil && !slices.Contains(answerers, plugin) {
		who := "no running plugin answers it"
		if len(answerers) > 0 {
			who = "it is answered by " + strings.Join(answerers, ", ")
		}
		return "", &apiError{
			status: http.StatusNotFound, field: "plugin",
			msg: fmt.Sprintf("plugin %s does not answer type %s (%s); GET /v1/plugins or `coordinator plugins` show which types each plugin answers", plugin, typ, who),
		}
	}
	return plugin, nil
}

// invokeTimeout returns the request's ?timeout= or the configured default.
func (s *server) invokeTimeout(q url.Values) (time.Duration, *apiError) {
	if !q.Has("timeout") {
		return s.cfg.InvokeTimeout, nil
	}
	v := q.Get("timeout")
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d > MaxInvokeTimeout {
		return 0, &apiError{
			status: http.StatusBadRequest, reason: reasonBadRequest, field: "timeout",
			msg: fmt.Sprintf("timeout %q: want a Go duration above 0 and at most %v, like 500ms or 30s", v, MaxInvokeTimeout),
		}
	}
	return d, nil
}

// invokeEvent reads the event to send: a CloudEvent in binary or structured
// mode whose type must be typ, or plain data that becomes the data of a new
// event of typ.
func (s *server) invokeEvent(w http.ResponseWriter, r *http.Request, typ string) (*event.Event, *apiError) {
	m, aerr := detectMode(r.Header)
	if aerr != nil {
		return nil, aerr
	}
	if m == modeBatch {
		return nil, &apiError{
			status: http.StatusUnsupportedMediaType, reason: reasonUnsupportedMediaType, field: "Content-Type",
			msg: "invoke takes one event; send batches to POST /v1/events, or one event in binary or structured mode, or plain data",
		}
	}
	body, aerr := s.readBody(w, r)
	if aerr != nil {
		return nil, aerr
	}
	var e *event.Event
	switch m {
	case modeBinary:
		e, aerr = decodeBinary(r.Header, body)
	case modeStructured:
		e, aerr = decodeStructured(r.Context(), body)
	default:
		e, aerr = plainEvent(typ, s.cfg.Producer, r.Header.Get("Content-Type"), body)
	}
	if aerr != nil {
		return nil, aerr
	}
	if e.Context != nil && e.Type() != typ {
		return nil, &apiError{
			status: http.StatusBadRequest, reason: reasonBadRequest, field: "type",
			msg: fmt.Sprintf("the event's type %q differs from %q in the URL; invoke /v1/invoke/%s or change the event's type", e.Type(), typ, e.Type()),
		}
	}
	var pre error
	if m == modeStructured {
		pre = extensionNameErrors(body)
	}
	// Plain data was checked as JSON by plainEvent.
	if aerr := s.validate(e, "invalid event", pre, m == modeNone); aerr != nil {
		return nil, aerr
	}
	return e, nil
}

// plainEvent wraps a body that is not a CloudEvent as the data of a new
// event of typ.
func plainEvent(typ, producer, contentType string, body []byte) (*event.Event, *apiError) {
	if contentType == "" {
		contentType = defaultDataContentType
	}
	if len(body) > 0 && isJSON(contentType) && !json.Valid(body) {
		return nil, &apiError{
			status: http.StatusBadRequest, reason: reasonBadRequest, field: "data",
			msg: fmt.Sprintf("the body is not valid JSON but its Content-Type is %s; send JSON, set the Content-Type of the data, or send a CloudEvent", contentType),
		}
	}
	e := event.New()
	e.SetID(nuid.Next())
	e.SetSource(bus.Source(producer))
	e.SetType(typ)
	e.SetTime(time.Now())
	if len(body) > 0 {
		e.SetDataContentType(contentType)
		e.DataEncoded = body
	}
	return &e, nil
}

// invokeError maps the error of bus.Request to an answer and an outcome.
func (s *server) invokeError(r *http.Request, typ string, timeout time.Duration, err error) (string, *apiError) {
	if err == nil {
		return outcomeOK, nil
	}
	var se *bus.ServiceError
	switch {
	case errors.Is(err, bus.ErrNoResponders):
		return outcomeNoResponders, &apiError{
			status: http.StatusNotFound, field: "type",
			msg: fmt.Sprintf("no plugin answers type %s; check the type's spelling, and GET /v1/plugins or `coordinator plugins` for the types running plugins answer", typ),
		}
	case errors.Is(err, bus.ErrTimeout) && r.Context().Err() == nil:
		return outcomeTimeout, &apiError{
			status: http.StatusGatewayTimeout,
			msg:    fmt.Sprintf("no reply to %s within %v; the plugin is slow or stuck: retry, or allow more time with ?timeout= (at most %v)", typ, timeout, MaxInvokeTimeout),
		}
	case errors.As(err, &se):
		msg := se.Description
		if msg == "" {
			msg = "the plugin handling " + typ + " failed with code " + se.Code + " and gave no description"
		}
		return outcomeError, &apiError{status: pluginStatus(se.Code), code: se.Code, plugin: true, msg: msg}
	case r.Context().Err() != nil:
		// The client went away; nobody reads this answer.
		return outcomeError, &apiError{status: http.StatusServiceUnavailable, msg: "the client closed the request before the reply came"}
	default:
		return outcomeError, &apiError{
			status: http.StatusServiceUnavailable,
			msg:    fmt.Sprintf("cannot send the request to the bus: %v; retry later", err),
		}
	}
}

// pluginStatus maps a plugin's error code to the HTTP status of the answer:
// 4xx and 5xx pass through, except 500, which becomes 502 Bad Gateway
// because the failure was in the plugin, not in the coordinator; a code that
// is no HTTP error status also gives 502.
func pluginStatus(code string) int {
	n, err := strconv.Atoi(code)
	if err != nil || n < 400 || n > 599 || n == http.StatusInternalServerError {
		return http.StatusBadGateway
	}
	return n
}
