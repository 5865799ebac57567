package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/plugbus/plugbus/coordinator/internal/deadletter"
)

// Dead letter endpoints, served when [Config.DeadLetters] is set:
//
//	GET    /v1/deadletters?plugin=&type=&limit=    list (the newest limit, default 100, oldest first)
//	GET    /v1/deadletters/{seq}                   one, with its headers and data (base64)
//	POST   /v1/deadletters/{seq}/replay            replay one to its plugin, then delete it
//	POST   /v1/deadletters/replay?plugin=&type=    replay every match (plugin required)
//	DELETE /v1/deadletters/{seq}                   delete one
//	DELETE /v1/deadletters?plugin=&type=           delete every match (plugin required)
//
// type is an event type or a pattern with the NATS wildcards '*' and '>'.
// Without Config.DeadLetters every one answers 404 {"error": "durable mode
// is off: no dead letters"}.

// Time limits of the dead letter endpoints; replaying or deleting many
// letters gets longer.
const (
	deadLetterTimeout     = 30 * time.Second
	deadLetterBulkTimeout = 5 * time.Minute
)

func (s *server) routeDeadLetters(mux *http.ServeMux) {
	s.routeMethods(mux, "/v1/deadletters", s.needDeadLetters, map[string]http.HandlerFunc{
		http.MethodGet: s.handleDeadLetterList, http.MethodDelete: s.handleDeadLetterPurge,
	})
	s.routeMethods(mux, "/v1/deadletters/replay", s.needDeadLetters, map[string]http.HandlerFunc{http.MethodPost: s.handleDeadLetterReplayAll})
	s.routeMethods(mux, "/v1/deadletters/{seq}", s.needDeadLetters, map[string]http.HandlerFunc{
		http.MethodGet: s.handleDeadLetterGet, http.MethodDelete: s.handleDeadLetterDelete,
	})
	s.routeMethods(mux, "/v1/deadletters/{seq}/replay", s.needDeadLetters, map[string]http.HandlerFunc{http.MethodPost: s.handleDeadLetterReplay})
}

// routeMethods is [server.route] for a pattern served with several methods:
// one registration that dispatches on the method (ServeMux would call
// "GET /a/{x}" and "/a/b" a conflict), behind the bearer token and guard,
// and a JSON 405 for the others.
func (s *server) routeMethods(mux *http.ServeMux, pattern string, guard func(http.HandlerFunc) http.HandlerFunc, handlers map[string]http.HandlerFunc) {
	allowed := make([]string, 0, len(handlers))
	guarded := make(map[string]http.Handler, len(handlers))
	for method, h := range handlers {
		allowed = append(allowed, method)
		guarded[method] = s.v1(guard(h))
	}
	sort.Strings(allowed)
	allow := strings.Join(allowed, ", ")
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if h, ok := guarded[r.Method]; ok {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Allow", allow)
		s.fail(w, r, &apiError{
			status: http.StatusMethodNotAllowed,
			msg:    fmt.Sprintf("method %s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allowed, " or ")),
		})
	})
}

// needDeadLetters answers 404 when durable mode is off.
func (s *server) needDeadLetters(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.DeadLetters == nil {
			s.fail(w, r, &apiError{status: http.StatusNotFound, msg: "durable mode is off: no dead letters"})
			return
		}
		h(w, r)
	}
}

// handleDeadLetterList is GET /v1/deadletters.
func (s *server) handleDeadLetterList(w http.ResponseWriter, r *http.Request) {
	f, aerr := deadLetterFilter(r, false)
	if aerr != nil {
		s.fail(w, r, aerr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), deadLetterTimeout)
	defer cancel()
	letters, err := s.cfg.DeadLetters.List(ctx, f)
	if err != nil {
		s.fail(w, r, deadLetterError(err, ""))
		return
	}
	if letters == nil {
		letters = []deadletter.Letter{}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, letters)
}

// handleDeadLetterGet is GET /v1/deadletters/{seq}.
func (s *server) handleDeadLetterGet(w http.ResponseWriter, r *http.Request) {
	seq, aerr := deadLetterSeq(r)
	if aerr != nil {
		s.fail(w, r, aerr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), deadLetterTimeout)
	defer cancel()
	l, err := s.cfg.DeadLetters.Get(ctx, seq)
	if err != nil {
		s.fail(w, r, deadLetterError(err, "seq"))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, l)
}

// handleDeadLetterReplay is POST /v1/deadletters/{seq}/replay.
func (s *server) handleDeadLetterReplay(w http.ResponseWriter, r *http.Request) {
	seq, aerr := deadLetterSeq(r)
	if aerr != nil {
		s.fail(w, r, aerr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), deadLetterTimeout)
	defer cancel()
	if err := s.cfg.DeadLetters.Replay(ctx, seq); err != nil {
		s.fail(w, r, deadLetterError(err, "seq"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"replayed": 1, "seq": seq})
}

// handleDeadLetterReplayAll is POST /v1/deadletters/replay.
func (s *server) handleDeadLetterReplayAll(w http.ResponseWriter, r *http.Request) {
	f, aerr := deadLetterFilter(r, true)
	if aerr != nil {
		s.fail(w, r, aerr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), deadLetterBulkTimeout)
	defer cancel()
	n, err := s.cfg.DeadLetters.ReplayAll(ctx, f)
	if err != nil {
		aerr := deadLetterError(err, "")
		aerr.msg = fmt.Sprintf("replayed %d dead letters, then: %s", n, aerr.msg)
		s.fail(w, r, aerr)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"replayed": n})
}

// handleDeadLetterDelete is DELETE /v1/deadletters/{seq}.
func (s *server) handleDeadLetterDelete(w http.ResponseWriter, r *http.Request) {
	seq, aerr := deadLetterSeq(r)
	if aerr != nil {
		s.fail(w, r, aerr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), deadLetterTimeout)
	defer cancel()
	if err := s.cfg.DeadLetters.Delete(ctx, seq); err != nil {
		s.fail(w, r, deadLetterError(err, "seq"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"purged": 1, "seq": seq})
}

// handleDeadLetterPurge is DELETE /v1/deadletters.
func (s *server) handleDeadLetterPurge(w http.ResponseWriter, r *http.Request) {
	f, aerr := deadLetterFilter(r, true)
	if aerr != nil {
		s.fail(w, r, aerr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), deadLetterBulkTimeout)
	defer cancel()
	n, err := s.cfg.DeadLetters.Purge(ctx, f)
	if err != nil {
		aerr := deadLetterError(err, "")
		if n > 0 {
			aerr.msg = fmt.Sprintf("deleted %d dead letters, then: %s", n, aerr.msg)
		}
		s.fail(w, r, aerr)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"purged": n})
}

// deadLetterFilter reads ?plugin=&type=&limit=; needPlugin makes plugin
// required, for the endpoints that change many letters.
func deadLetterFilter(r *http.Request, needPlugin bool) (deadletter.Filter, *apiError) {
	q := r.URL.Query()
	f := deadletter.Filter{Plugin: q.Get("plugin"), Type: q.Get("type")}
	if needPlugin && f.Plugin == "" {
		return f, &apiError{
			status: http.StatusBadRequest, field: "plugin",
			msg: fmt.Sprintf("%s %s needs ?plugin=NAME (and optionally &type=PATTERN): it acts on every dead letter of one plugin", r.Method, r.URL.Path),
		}
	}
	if v := q.Get("limit"); v != "" && !needPlugin {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > deadletter.MaxLimit {
			return f, &apiError{
				status: http.StatusBadRequest, field: "limit",
				msg: fmt.Sprintf("limit %q: want a whole number from 1 to %d (default %d)", v, deadletter.MaxLimit, deadletter.DefaultLimit),
			}
		}
		f.Limit = n
	}
	return f, nil
}

// deadLetterSeq reads {seq}.
func deadLetterSeq(r *http.Request) (uint64, *apiError) {
	v := r.PathValue("seq")
	seq, err := strconv.ParseUint(v, 10, 64)
	if err != nil || seq == 0 {
		return 0, &apiError{
			status: http.StatusBadRequest, field: "seq",
			msg: fmt.Sprintf("%q in %s is no dead letter sequence: want a whole number from 1, as listed by GET /v1/deadletters", v, r.URL.Path),
		}
	}
	return seq, nil
}

// deadLetterError maps the store's errors to answers; field names the
// parameter at fault for a bad or unknown sequence.
func deadLetterError(err error, field string) *apiError {
	msg := err.Error()
	switch {
	case errors.Is(err, deadletter.ErrNotFound):
		return &apiError{status: http.StatusNotFound, msg: msg, field: field}
	case errors.Is(err, deadletter.ErrNoStream):
		return &apiError{status: http.StatusNotFound, msg: msg}
	case errors.Is(err, deadletter.ErrInvalid):
		if field == "" { // the store's filter errors start with the field
			for _, name := range []string{"plugin", "type", "limit"} {
				if strings.HasPrefix(msg, name+" ") || strings.HasPrefix(msg, name+":") {
					field = name
				}
			}
		}
		return &apiError{status: http.StatusBadRequest, msg: msg, field: field}
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{status: http.StatusGatewayTimeout, msg: "NATS did not answer in time: " + msg}
	default:
		return &apiError{status: http.StatusServiceUnavailable, msg: "the bus could not do it: " + msg}
	}
}
