//go:build unix && !linux

package supervise

import "syscall"

// setDeathSignal does nothing: this system has no parent-death signal, so
// the children of a coordinator killed by SIGKILL keep running.
func setDeathSignal(*syscall.SysProcAttr) {}
