package bus

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
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
	if noSource(e) {
		e.SetSource(Source(producer))
	}
	enc := encoders.Get().(*Encoder)
	defer encoders.Put(enc)
	msg, err := enc.Encode(subject, e)
	if err != nil {
		return err
	}
	err = nc.PublishMsg(msg)
	msg.Data = nil // the pool keeps the header map, not the event's data
	return err
}

// encoders lends [Publish] and [Request] an Encoder, so that a publish
// reuses a header map instead of allocating one: a map and its values are
// a third of the allocations of publishing a small event. nats.go has
// copied what it sends before the Encoder goes back.
var encoders = sync.Pool{New: func() any { return new(Encoder) }}

// noSource reports whether e has no source, without building the string
// of the source it has.
func noSource(e *event.Event) bool {
	if ctx, ok := e.Context.(*event.EventContextV1); ok {
		return ctx.Source.URL == url.URL{}
	}
	return e.Source() == ""
}

// HeaderPlugin names the one plugin that should answer a request on an
// invoke subject. Every plugin answering the type receives the request (each
// in its own queue group); a plugin whose name is not this header's value
// does not answer. Without it, every plugin answering the type may answer and
// the caller takes the first reply, which is why callers name one when two
// different plugins answer a type.
const HeaderPlugin = "Plugbus-Plugin"

// A RequestOption configures one [Request].
type RequestOption func(*nats.Msg)

// AnsweredBy asks that only plugin answer the request: it sets the
// [HeaderPlugin] header. A request naming a plugin that does not run waits
// until its deadline, so check first that the plugin answers the type.
func AnsweredBy(plugin string) RequestOption {
	return func(m *nats.Msg) { m.Header.Set(HeaderPlugin, plugin) }
}

// Request sends e as a request from caller on
// <prefix>.invoke.<caller>.<e.Type()> (setting a missing source as [Publish]
// does) and waits for the reply event until ctx ends (or
// [DefaultRequestTimeout] when ctx has no deadline). The deadline travels
// with the event in the [ExtDeadline] extension. A handler that returned no
// event gives a nil event and nil error. A failed handler gives a
// [*ServiceError]; nobody answering the type gives [ErrNoResponders] at
// once; no reply in time gives [ErrTimeout].
func Request(ctx context.Context, nc *nats.Conn, prefix, caller string, e *event.Event, opts ...RequestOption) (*event.Event, error) {
	subject, err := InvokeSubject(prefix, caller, e.Type())
	if err != nil {
		return nil, err
	}
	if noSource(e) {
		e.SetSource(Source(caller))
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	enc := encoders.Get().(*Encoder)
	defer encoders.Put(enc)
	msg, err := enc.Encode(subject, e)
	if err != nil {
		return nil, err
	}
	defer func() { msg.Data = nil }() // the pool keeps the header map, not the event's data
	// The deadline goes into the headers as the extension would, without
	// copying e to set it: the copy cost as much as encoding the event.
	enc.SetExtension(ExtDeadline, deadline.UTC().Format(time.RFC3339Nano))
	for _, opt := range opts {
		opt(msg)
	}
	reply, err := nc.RequestMsgWithContext(ctx, msg)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, fmt.Errorf("%w: type %q (subject %s)", ErrNoResponders, e.Type(), subject)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return nil, fmt.Errorf("%w: type %q", ErrTimeout, e.Type())
	case err != nil:
		return nil, fmt.Errorf("bus: request %s: %w", subject, err)
	}
	return DecodeReply(reply)
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
