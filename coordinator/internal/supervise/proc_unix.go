//go:build unix

package supervise

import (
	"os"
	"syscall"
)

// sysProcAttr returns the attributes of a child: a process group of its own,
// so that signals for the coordinator's terminal group (Ctrl-C) don't reach
// it, and that stopping it reaches the processes it started; on Linux also
// a parent-death signal.
func sysProcAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	setDeathSignal(a)
	return a
}

// terminate asks p and its process group to stop. The signal goes to p
// alone only if the group is gone: p gets it once, since a second SIGTERM
// may cut short a plugin's drain.
func terminate(p *os.Process) {
	// The group outlives its leader while members remain, and its ID is not
	// reused until then.
	if syscall.Kill(-p.Pid, syscall.SIGTERM) != nil {
		_ = p.Signal(syscall.SIGTERM)
	}
}

// kill ends p and its process group. p is signalled on its own too, in case
// it left the group. Errors mean the process is gone already.
func kill(p *os.Process) {
	_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
	_ = p.Kill()
}
