package supervise

import "time"

// An EventKind says what happened to an instance.
type EventKind string

// The kinds of [Event].
const (
	// EventStarted: a process was started for the instance.
	EventStarted EventKind = "started"
	// EventExited: the process exited while the supervisor was running; it
	// will be started again after NextRestartIn.
	EventExited EventKind = "exited"
	// EventCrashLooping: the process exited quickly CrashLoopAfter times in a
	// row; it follows the EventExited of the last exit, and the instance is
	// retried every Backoff.Max until a run lasts longer than ResetAfter.
	EventCrashLooping EventKind = "crashlooping"
	// EventStopped: the supervisor stopped the instance. PID is 0 when no
	// process was running (the instance was waiting to restart).
	EventStopped EventKind = "stopped"
	// EventFailed: the instance could not be started (Err says why) and will
	// not be retried.
	EventFailed EventKind = "failed"
)

// An Event reports a change in an instance's life to [Config.OnEvent].
type Event struct {
	Kind     EventKind
	Time     time.Time // when it happened
	Plugin   string    // the plugin's name
	Instance string    // <plugin>-<n>, n from 1
	PID      int       // the process, or 0 if there is none

	// ExitCode is the exit status of the process, for EventExited,
	// EventCrashLooping and EventStopped; -1 if a signal ended it.
	ExitCode int
	// Err is why the process ended (as returned by exec.Cmd.Wait; nil after
	// exit status 0) or, for EventFailed, why it could not start.
	Err error

	// Restarts is how many times the instance has been restarted so far.
	Restarts int
	// NextRestartIn is the delay before the next start, for EventExited and
	// EventCrashLooping.
	NextRestartIn time.Duration

	// Reason and Limit are the exit's [ExitStatus.Reason] and
	// [ExitStatus.Limit], for EventExited: set when the process went over
	// one of its limits.
	Reason, Limit string
}

// A State is what an instance is doing.
type State string

// The states of an instance.
const (
	StateRunning State = "running" // a process is running
	StateBackoff State = "backoff" // waiting to restart after an exit
	StateStopped State = "stopped" // not started yet, or stopped by the supervisor
	StateFailed  State = "failed"  // could not be started; not retried
)

// InstanceStatus is a snapshot of one instance, from [Supervisor.Status].
type InstanceStatus struct {
	Plugin       string      `json:"plugin"`
	Instance     string      `json:"instance"`
	Mode         string      `json:"mode"` // how it runs: Spec.Mode
	PID          int         `json:"pid,omitempty"`
	State        State       `json:"state"`
	Restarts     int         `json:"restarts"`
	CrashLooping bool        `json:"crashlooping,omitempty"`
	Started      time.Time   `json:"started,omitzero"`    // when the current or last process started
	LastExit     *ExitStatus `json:"last_exit,omitempty"` // the last process's end, nil if none ended yet
	Error        string      `json:"error,omitempty"`     // why the instance failed, in StateFailed

	// MalformedLines counts the lines of a stdio program that its bridge
	// skipped as malformed (docs/stdio.md), over all its runs.
	MalformedLines uint64 `json:"malformed_lines,omitempty"`
}

// ExitStatus describes how a process ended.
type ExitStatus struct {
	Time  time.Time `json:"time"`
	Code  int       `json:"code"`            // exit status; -1 if a signal ended it
	Error string    `json:"error,omitempty"` // e.g. "exit status 1", "signal: killed"
	// Reason says why the process ended when the supervisor knows better
	// than its exit status: it went over one of its [Limits], such as
	// "over its memory limit: 80.0 MiB resident, limit 64.0 MiB".
	Reason string `json:"reason,omitempty"`
	// Limit names the limit it went over: "memory" or "cpu_seconds".
	Limit string `json:"limit,omitempty"`
}
