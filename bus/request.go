package bus

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"
)

// Extension names Plugbus sets on events.
const (
	// ExtDeadline holds the absolute deadline (RFC 3339) of a request, so a
	// handler that invokes another plugin passes on what is left of its own
	// budget.
	ExtDeadline = "deadline"
	// ExtCauseID holds the id of the event that caused a result event.
	ExtCauseID = "causeid"
	// ExtTraceParent is the W3C trace context of the CloudEvents distributed
	// tracing extension.
	ExtTraceParent = "traceparent"
)

// Error codes carried in the Nats-Service-Error-Code header of a failed
// reply. They follow HTTP status codes so gateways can pass them on.
const (
	CodeBadEvent    = "400" // the request was not a valid CloudEvent
	CodePermanent   = "422" // the handler rejected the event for good
	CodeFailed      = "500" // the handler failed; retrying may help
	CodeUnavailable = "503" // the plugin is shutting down
	CodeTimeout     = "504" // the handler ran past the request's deadline
)

// DefaultRequestTimeout bounds [Request] when ctx has no deadline.
const DefaultRequestTimeout = 5 * time.Second

// ServiceError is a failed reply: the NATS micro error headers
// Nats-Service-Error-Code and Nats-Service-Error.
type ServiceError struct {
	Code        string
	Description string
}

func (e *ServiceError) Error() string {
	return fmt.Sprintf("bus: plugin replied with error %s: %s", e.Code, e.Description)
}

// Source returns the source Plugbus gives events from producer when they
// have none: urn:plugbus:<producer>.
func Source(producer string) string { return "urn:plugbus:" + producer }

// Publish sends e as an event from producer on
// <prefix>.events.<producer>.<e.Type()>, after setting its source to
// [Source](producer) when it has none. It does not validate e.
func Publish(nc *nats.Conn, prefix, producer string, e *event.Event) error {
	subject, err := EventSubject(prefix, producer, e.Type())
	if err != nil {
		return err
	}
	if e.Source() == "" {
		e.SetSource(Source(producer))
	}
	msg := nats.Msg{Subject: subject}
	if err := Encode(e, &msg); err != nil {
		return err
	}
	return nc.PublishMsg(&msg)
}

// Request sends e as a request from producer (setting a missing source as
// [Publish] does) and waits for the reply event
// until ctx ends (or [DefaultRequestTimeout] when ctx has no deadline). The
// deadline travels with the event in the [ExtDeadline] extension. A handler
// that returned no event gives a nil event and nil error. A failed handler
// gives a [*ServiceError]; nobody handling the type gives [ErrNoResponders];
// no reply in time gives [ErrTimeout].
func Request(ctx context.Context, nc *nats.Conn, prefix, producer string, e *event.Event) (*event.Event, error) {
	subject, err := EventSubject(prefix, producer, e.Type())
	if err != nil {
		return nil, err
	}
	if e.Source() == "" {
		e.SetSource(Source(producer))
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	msg := nats.Msg{Subject: subject}
	if err := Encode(e, &msg); err != nil {
		return nil, err
	}
	// The deadline goes into the headers as the extension would, without
	// copying e to set it: the copy cost as much as encoding the event.
	msg.Header[HeaderPrefix+ExtDeadline] = []string{deadline.UTC().Format(time.RFC3339Nano)}
	// A subscription of its own instead of nc.RequestMsg: where a JetStream
	// stream captures the events (durable mode), the stream acknowledges the
	// request on its reply subject too, and that acknowledgement must be
	// skipped to get the plugin's reply. nats.go's request keeps only the
	// first reply.
	mux, err := repliesFor(nc)
	if err != nil {
		return nil, fmt.Errorf("bus: request %s: %w", subject, err)
	}
	var replies <-chan *nats.Msg
	msg.Reply, replies = mux.await()
	defer mux.forget(msg.Reply)
	if err := nc.PublishMsg(&msg); err != nil {
		return nil, fmt.Errorf("bus: request %s: %w", subject, err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: type %q", ErrTimeout, e.Type())
		case reply := <-replies:
			switch {
			case len(reply.Data) == 0 && reply.Header.Get("Status") == "503":
				return nil, fmt.Errorf("%w: type %q (subject %s)", ErrNoResponders, e.Type(), subject)
			case isStreamAck(reply):
				continue
			}
			return DecodeReply(reply)
		}
	}
}

// isStreamAck reports whether msg is a JetStream publish acknowledgement
// (or its error) rather than a plugin's reply.
func isStreamAck(msg *nats.Msg) bool {
	return len(msg.Header) == 0 && (bytes.HasPrefix(msg.Data, []byte(`{"stream":`)) || bytes.HasPrefix(msg.Data, []byte(`{"error":`)))
}

// DecodeReply reads a reply to a request: a [*ServiceError] when the micro
// error headers are set, nil when the reply is empty (the handler returned
// no event), and the event otherwise.
func DecodeReply(reply *nats.Msg) (*event.Event, error) {
	if code := reply.Header.Get(micro.ErrorCodeHeader); code != "" {
		return nil, &ServiceError{Code: code, Description: reply.Header.Get(micro.ErrorHeader)}
	}
	if len(reply.Header) == 0 && len(reply.Data) == 0 {
		return nil, nil
	}
	return Decode(reply)
}

// Deadline reads the [ExtDeadline] extension of a request event.
func Deadline(e *event.Event) (time.Time, bool) {
	v, ok := e.Extensions()[ExtDeadline]
	if !ok {
		return time.Time{}, false
	}
	t, err := types.ToTime(v)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

// replyMux routes the replies to one connection's requests, from a single
// wildcard subscription, as nats.go's request does, but keeps a request
// waiting past a stream's acknowledgement: nats.go's hands over the first
// reply only, and a subscription per request costs a SUB and an UNSUB.
type replyMux struct {
	prefix string // <inbox>.
	mu     sync.Mutex
	// waiting maps each reply subject to its request's channel.
	waiting map[string]chan *nats.Msg
}

// muxes holds one replyMux per connection; entries for closed connections
// are dropped whenever a new one is made.
var (
	muxesMu sync.Mutex
	muxes   = map[*nats.Conn]*replyMux{}
)

func repliesFor(nc *nats.Conn) (*replyMux, error) {
	muxesMu.Lock()
	defer muxesMu.Unlock()
	if m := muxes[nc]; m != nil {
		return m, nil
	}
	for c := range muxes {
		if c.IsClosed() {
			delete(muxes, c)
		}
	}
	m := &replyMux{prefix: nc.NewInbox() + ".", waiting: map[string]chan *nats.Msg{}}
	if _, err := nc.Subscribe(m.prefix+"*", m.deliver); err != nil {
		return nil, err
	}
	muxes[nc] = m
	return m, nil
}

// await returns a fresh reply subject and the channel its replies arrive on.
func (m *replyMux) await() (string, <-chan *nats.Msg) {
	subject := m.prefix + nuid.Next()
	ch := make(chan *nats.Msg, 4)
	m.mu.Lock()
	m.waiting[subject] = ch
	m.mu.Unlock()
	return subject, ch
}

func (m *replyMux) forget(subject string) {
	m.mu.Lock()
	delete(m.waiting, subject)
	m.mu.Unlock()
}

func (m *replyMux) deliver(msg *nats.Msg) {
	m.mu.Lock()
	ch := m.waiting[msg.Subject]
	m.mu.Unlock()
	if ch == nil {
		return // a late reply to a request that gave up
	}
	select {
	case ch <- msg:
	default: // more replies than the request reads (several plugins answered)
	}
}
