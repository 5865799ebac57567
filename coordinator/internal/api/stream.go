package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
)

// Server-sent event streams:
//
//	GET /v1/stream?type=&producer=   the events on the bus as they pass, live
//	GET /v1/overview                 plugin summaries and rates (see overview.go)
//
// Each is a text/event-stream (the HTML living standard's server-sent
// events). A browser's EventSource cannot send the bearer token, so the
// dashboard reads them with fetch; curl -N reads them too.
//
// /v1/stream subscribes to <prefix>.events.<producer>.<type> for as long as
// the client stays, type being a type or a pattern with NATS wildcards
// (default every type) and producer a producer name (default every
// producer). Between the bus and a slow client sit streamBuffer events; what
// does not fit is dropped, never queued without bound, and counted: the
// client hears the total in a "dropped" event at most once a second, and
// plugbus_stream_dropped_total counts them all. Its events:
//
//	event: subscribed   {"subject": ..., "buffer": n}
//	event: event        a streamEvent
//	event: dropped      {"dropped": total for this client}
const (
	streamBuffer    = 256
	streamDataBytes = 1024 // data longer than this is cut in the stream
	streamDropEvery = time.Second
	streamHeartbeat = 15 * time.Second
)

// streamEvent is one event as /v1/stream shows it: the attributes, and the
// data as text when it is text, cut at streamDataBytes.
type streamEvent struct {
	Subject     string `json:"subject"`
	Producer    string `json:"producer"`
	Type        string `json:"type"`
	ID          string `json:"id,omitempty"`
	Source      string `json:"source,omitempty"`
	Time        string `json:"time,omitempty"`
	ContentType string `json:"datacontenttype,omitempty"`
	Traceparent string `json:"traceparent,omitempty"`
	Size        int    `json:"size"`
	Data        string `json:"data,omitempty"`
	Truncated   bool   `json:"truncated,omitempty"`
	Binary      bool   `json:"binary,omitempty"`
	// Error says why a message on the events subjects is not an event.
	Error string `json:"error,omitempty"`
}

// sse writes server-sent events.
type sse struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func startSSE(w http.ResponseWriter) (*sse, error) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // tell a proxy in front not to buffer
	w.WriteHeader(http.StatusOK)
	s := &sse{w: w, rc: http.NewResponseController(w)}
	return s, s.rc.Flush()
}

// send writes one event with v as JSON data, and flushes.
func (s *sse) send(event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", event, b); err != nil {
		return err
	}
	return s.rc.Flush()
}

// ping writes a comment, which keeps proxies from closing an idle stream
// and finds out that a client has gone.
func (s *sse) ping() error {
	if _, err := s.w.Write([]byte(": ping\n\n")); err != nil {
		return err
	}
	return s.rc.Flush()
}

func (s *server) handleStream(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	typ, producer := q.Get("type"), q.Get("producer")
	if typ == "" {
		typ = ">"
	} else if err := bus.ValidateTypePattern(typ); err != nil {
		s.fail(w, r, &apiError{status: http.StatusBadRequest, msg: "type: " + err.Error() + "; give a type such as com.example.greet.requested or a pattern such as com.example.>", field: "type"})
		return
	}
	if producer == "" {
		producer = "*"
	} else if err := bus.ValidateProducer(producer); err != nil {
		s.fail(w, r, &apiError{status: http.StatusBadRequest, msg: "producer: " + err.Error(), field: "producer"})
		return
	}
	subject := s.cfg.Prefix + ".events." + producer + "." + typ

	buf := make(chan *nats.Msg, streamBuffer)
	var dropped atomic.Uint64
	sub, err := s.cfg.Observe.Subscribe(subject, func(m *nats.Msg) {
		select {
		case buf <- m:
		default:
			dropped.Add(1)
			s.m.streamDrop.Inc()
		}
	})
	if err == nil {
		// "subscribed" promises that every event published from now on is
		// shown: the server must have the subscription before it is sent.
		err = s.cfg.Observe.FlushTimeout(10 * time.Second)
		if err != nil {
			_ = sub.Unsubscribe()
		}
	}
	if err != nil {
		s.fail(w, r, &apiError{status: http.StatusServiceUnavailable, msg: "cannot subscribe to " + subject + ": " + err.Error()})
		return
	}
	defer func() { _ = sub.Unsubscribe() }()
	s.m.streams.Inc()
	defer s.m.streams.Dec()

	out, err := startSSE(w)
	if err == nil {
		err = out.send("subscribed", map[string]any{"subject": subject, "buffer": streamBuffer})
	}
	dropTick := time.NewTicker(streamDropEvery)
	defer dropTick.Stop()
	heartbeat := time.NewTicker(streamHeartbeat)
	defer heartbeat.Stop()
	var told uint64
	for err == nil {
		select {
		case <-r.Context().Done():
			return
		case <-s.cfg.Done:
			return
		case m := <-buf:
			err = out.send("event", s.view(m))
		case <-dropTick.C:
			if n := dropped.Load(); n != told {
				told = n
				err = out.send("dropped", map[string]uint64{"dropped": n})
			}
		case <-heartbeat.C:
			err = out.ping()
		}
	}
}

// view turns a message from the events subjects into what the stream shows.
func (s *server) view(m *nats.Msg) streamEvent {
	v := streamEvent{Subject: m.Subject, Size: len(m.Data)}
	v.Producer, v.Type, _ = bus.ParseEventSubject(s.cfg.Prefix, m.Subject)
	e, err := bus.Decode(m)
	if err != nil {
		v.Error = err.Error()
		return v
	}
	v.Type, v.ID, v.Source, v.ContentType = e.Type(), e.ID(), e.Source(), e.DataContentType()
	if !e.Time().IsZero() {
		v.Time = e.Time().Format(time.RFC3339Nano)
	}
	if tp, ok := e.Extensions()["traceparent"].(string); ok {
		v.Traceparent = tp
	}
	data := e.Data()
	v.Size = len(data)
	if !utf8.Valid(data) {
		v.Binary = true
		v.Data = strconv.Itoa(len(data)) + " bytes of binary data"
		return v
	}
	if len(data) > streamDataBytes {
		cut := streamDataBytes
		for cut > 0 && !utf8.RuneStart(data[cut]) {
			cut--
		}
		data, v.Truncated = data[:cut], true
	}
	v.Data = string(data)
	return v
}
