package supervise

import "errors"

// Errors returned or reported by this package. Each is wrapped with the
// details; test for them with errors.Is.
var (
	ErrInvalidConfig  = errors.New("supervise: invalid configuration")
	ErrChecksum       = errors.New("supervise: executable checksum mismatch")
	ErrAlreadyStarted = errors.New("supervise: supervisor already started")
)
