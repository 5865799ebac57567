package bus

import "errors"

// Errors returned by this package. Each is wrapped with the offending value
// and the rule it broke; test for them with errors.Is.
var (
	ErrInvalidSubject = errors.New("bus: invalid subject")
	ErrInvalidName    = errors.New("bus: invalid name")
	ErrInvalidType    = errors.New("bus: invalid type")
	ErrNotEvent       = errors.New("bus: not a CloudEvent")
	ErrInvalidEvent   = errors.New("bus: invalid event")
	ErrNoResponders   = errors.New("bus: no plugin handles this type")
	ErrTimeout        = errors.New("bus: no reply before the deadline")
)
