//go:build unix

package devloop

import (
	"os"
	"syscall"
)

// sysProcAttr puts the plugin in a process group of its own: Ctrl-C in the
// terminal reaches the loop, which stops the plugin itself.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func terminate(p *os.Process) { _ = p.Signal(syscall.SIGTERM) }

func killGroup(p *os.Process) {
	_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
	_ = p.Kill()
}
