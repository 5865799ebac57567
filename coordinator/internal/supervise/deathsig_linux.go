package supervise

import "syscall"

// setDeathSignal makes the kernel send the child SIGKILL when its parent
// thread exits, which happens at the latest when the coordinator dies, even
// by SIGKILL: a crashed coordinator leaves no orphans. See [starter] for why
// the thread matters. SIGKILL rather than SIGTERM so that a plugin that hangs
// on shutdown cannot outlive the coordinator.
func setDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
