package supervise

import "errors"

// Errors returned or reported by this package. Each is wrapped with the
// details; test for them with errors.Is.
var (
	ErrInvalidConfig  = errors.New("supervise: invalid configuration")
	ErrChecksum       = errors.New("supervise: executable checksum mismatch")
	ErrAlreadyStarted = errors.New("supervise: supervisor already started")
	// ErrUnknownPlugin: no plugin of that name runs under this supervisor.
	ErrUnknownPlugin = errors.New("supervise: no such plugin runs here")
	// ErrInProcess: a static or .so plugin is part of the coordinator's
	// code; restart the coordinator to run new code.
	ErrInProcess = errors.New("supervise: a static or .so plugin is part of the coordinator; restart the coordinator to change its code")
)
