package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/plugbus/plugbus/bus"
)

// apiError is a rejected request: the status, the message for the client,
// and what the metrics and the log need.
type apiError struct {
	status int
	reason string // plugbus_http_ingest_errors_total reason; "" counts nothing
	msg    string
	field  string
	index  *int   // position of the bad event in a batch
	code   string // a plugin's error code
	plugin bool   // the error came from a plugin, not the coordinator
}

// errorBody is the JSON of every error answer.
type errorBody struct {
	Error       string `json:"error"`
	Field       string `json:"field,omitempty"`
	Index       *int   `json:"index,omitempty"`
	Code        string `json:"code,omitempty"`
	PluginError bool   `json:"plugin_error,omitempty"`
}

// fail answers e, counts it and logs it: client errors at Info, at most
// rejectLogRate lines a second with the number left out since the last
// line, 429s at Debug (a client over its rate would otherwise write a line
// for each request the limit refuses; they are counted), the rest at Warn.
func (s *server) fail(w http.ResponseWriter, r *http.Request, e *apiError) {
	if e.reason != "" {
		s.m.ingestErrors.WithLabelValues(e.reason).Inc()
	}
	level := slog.LevelInfo
	switch {
	case e.status == http.StatusTooManyRequests:
		level = slog.LevelDebug
	case e.status >= 500:
		level = slog.LevelWarn
	}
	defer writeJSON(w, e.status, errorBody{Error: e.msg, Field: e.field, Index: e.index, Code: e.code, PluginError: e.plugin})
	attrs := []any{"method", r.Method, "path", r.URL.Path, "status", e.status, "reason", e.msg, "remote", r.RemoteAddr}
	if level == slog.LevelInfo {
		if !s.rejectLog.Allow() {
			s.suppressed.Add(1)
			return
		}
		if n := s.suppressed.Swap(0); n > 0 {
			attrs = append(attrs, "not_logged_since_last", n)
		}
	}
	if e.field != "" {
		attrs = append(attrs, "field", e.field)
	}
	if e.index != nil {
		attrs = append(attrs, "index", *e.index)
	}
	s.log.Log(r.Context(), level, "HTTP request rejected", attrs...)
}

// writeJSON answers with status and v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":"cannot encode the answer as JSON"}`)
	}
	writeJSONBody(w, status, append(body, '\n'))
}

// writeJSONBody answers with status and body, a JSON document ending in a
// newline. The headers are set under their canonical names directly,
// which Header().Set would work out again for every answer.
func writeJSONBody(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// invalidEvent turns the error of bus.Validate (an errors.Join of
// *bus.FieldError) or of a decoder into a 400 that reports every message and
// the first field.
func invalidEvent(err error, what string) *apiError {
	var msgs []string
	field := ""
	for _, e := range flatten(err) {
		var fe *bus.FieldError
		if errors.As(e, &fe) {
			if field == "" {
				field = fe.Field
				if len(field) > bus.MaxQuoted {
					field = bus.Quote(field)
				}
			}
			msgs = append(msgs, fieldMessage(fe))
			continue
		}
		msgs = append(msgs, strings.TrimPrefix(e.Error(), "bus: "))
	}
	return &apiError{status: http.StatusBadRequest, reason: reasonBadRequest, msg: what + ": " + strings.Join(msgs, "; "), field: field}
}

// fieldMessage words a FieldError for HTTP clients, without the Go
// package's prefix.
func fieldMessage(fe *bus.FieldError) string {
	field := fe.Field
	if len(field) > bus.MaxQuoted {
		field = bus.Quote(field)
	}
	if fe.Value == "" {
		return field + ": " + fe.Rule
	}
	return field + " " + bus.Quote(fe.Value) + ": " + fe.Rule
}

// flatten undoes errors.Join, also nested ones.
func flatten(err error) []error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, flatten(e)...)
	}
	return out
}
