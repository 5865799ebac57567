package pluginkit

import (
	"context"
	"errors"
)

// A Handler handles events of the types it was registered for. It returns
// the result event, or nil for none, and an error when it failed.
type Handler interface {
	HandleEvent(ctx context.Context, e Event) (*Event, error)
}

// HandlerFunc adapts a function to a [Handler].
type HandlerFunc func(ctx context.Context, e Event) (*Event, error)

// HandleEvent calls f(ctx, e).
func (f HandlerFunc) HandleEvent(ctx context.Context, e Event) (*Event, error) { return f(ctx, e) }

// Middleware wraps a handler, to add logging, metrics, checks...
type Middleware func(Handler) Handler

// Permanent marks err as one that retrying cannot fix: bad data, a request
// that can never succeed. A request gets it as an error reply with code 422;
// in durable mode the event goes to the dead letters at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err, or an error it wraps, came from
// [Permanent].
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }
