package supervise

import (
	"os/exec"
	"runtime"
)

// A starter starts processes from one goroutine locked to its OS thread.
//
// On Linux, the parent-death signal that keeps a killed coordinator from
// leaving orphans (see sysProcAttr) is sent when the thread that forked the
// child exits, not the process. Go runs goroutines on threads it creates and
// ends at will, so a child started from an ordinary goroutine could get
// SIGKILL at any time. The starter's thread lives until the starter is
// closed, which [Supervisor.Run] does only after every child is reaped.
type starter chan startRequest

type startRequest struct {
	cmd  *exec.Cmd
	done chan<- error
}

// newStarter returns a running starter; close it when no child it started
// is left.
func newStarter() starter {
	s := make(starter)
	go func() {
		// Never unlocked: when this goroutine returns, the runtime ends the
		// thread with it.
		runtime.LockOSThread()
		for r := range s {
			r.done <- r.cmd.Start()
		}
	}()
	return s
}

// start runs cmd.Start on the starter's thread.
func (s starter) start(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	s <- startRequest{cmd, done}
	return <-done
}
