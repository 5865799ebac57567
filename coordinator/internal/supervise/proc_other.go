//go:build !unix

package supervise

import (
	"os"
	"syscall"
)

// sysProcAttr returns nil: no special attributes on this system.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// terminate ends p at once: this system has no SIGTERM to ask politely.
func terminate(p *os.Process) { _ = p.Kill() }

// kill ends p.
func kill(p *os.Process) { _ = p.Kill() }
