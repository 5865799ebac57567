package pluginkit

import "github.com/plugbus/plugbus/bus"

// AnswerError is a failed answer to a request sent with [Invoke],
// [Plugin.Invoke] or [Call]: the code and message of the answering
// handler's error. Test for it with errors.As.
type AnswerError = bus.ServiceError

// Codes of an [AnswerError]. They follow HTTP status codes.
const (
	CodeBadEvent    = bus.CodeBadEvent    // the request was not a valid CloudEvent
	CodePermanent   = bus.CodePermanent   // the handler returned a Permanent error
	CodeFailed      = bus.CodeFailed      // the handler failed; retrying may help
	CodeUnavailable = bus.CodeUnavailable // the plugin is shutting down
	CodeTimeout     = bus.CodeTimeout     // the handler ran past the request's deadline
)

// Errors of a request that got no answer.
var (
	// ErrNoResponders: no running plugin answers the type.
	ErrNoResponders = bus.ErrNoResponders
	// ErrTimeout: no answer before the context's deadline.
	ErrTimeout = bus.ErrTimeout
)

// ExtDeadline is the extension holding a request's absolute deadline.
const ExtDeadline = bus.ExtDeadline
