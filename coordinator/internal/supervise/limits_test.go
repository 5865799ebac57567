//go:build linux

package supervise_test

import (
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/coordinator/internal/supervise"
)

// A plugin that keeps taking memory is killed once over its limit, and the
// exit says so: in the event, the status and the log.
func TestMemoryLimitKills(t *testing.T) {
	t.Parallel()
	spec := helperSpec(self(t), "hog", "hog")
	spec.Limits = supervise.Limits{Memory: 64 << 20}
	h := run(t, supervise.Config{Specs: []supervise.Spec{spec}, Backoff: fastBackoff})
	started := h.next(t, supervise.EventStarted, "hog-1")
	exited := h.next(t, supervise.EventExited, "hog-1")
	if exited.PID != started.PID || exited.Limit != "memory" || !strings.Contains(exited.Reason, "over its memory limit") || !strings.Contains(exited.Reason, "limit 64.0 MiB") {
		t.Fatalf("exit %+v: want pid %d killed over its memory limit of 64.0 MiB", exited, started.PID)
	}
	st := h.s.Status()[0]
	if st.LastExit == nil || st.LastExit.Limit != "memory" || st.LastExit.Reason != exited.Reason {
		t.Errorf("status %+v: want the last exit's reason", st.LastExit)
	}
	// Logged before the event is sent.
	if log := h.logs.String(); !strings.Contains(log, `"msg":"plugin killed: `+exited.Reason+`; restarting"`) || !strings.Contains(log, `"limit":"memory"`) {
		t.Errorf("the log does not say the plugin was killed over its memory limit:\n%s", log)
	}
	// It is restarted like any plugin that exits.
	h.next(t, supervise.EventStarted, "hog-1")
	h.stop(t)
}

// A plugin that burns processor time past its limit is killed, and the exit
// says it went over its CPU time limit.
func TestCPUSecondsLimit(t *testing.T) {
	t.Parallel()
	spec := helperSpec(self(t), "spinner", "spin")
	spec.Limits = supervise.Limits{CPUSeconds: 1}
	h := run(t, supervise.Config{Specs: []supervise.Spec{spec}, Backoff: fastBackoff})
	h.next(t, supervise.EventStarted, "spinner-1")
	// A second of processor time takes longer than that on a busy
	// machine: wait for the exit longer than next does.
	for deadline := time.Now().Add(2 * time.Minute); h.s.Status()[0].LastExit == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the spinner did not end in 2 minutes\n%s", h.logs)
		}
	}
	exited := h.next(t, supervise.EventExited, "spinner-1")
	if exited.Limit != "cpu_seconds" || !strings.Contains(exited.Reason, "over its CPU time limit") || !strings.Contains(exited.Reason, "limit 1s") {
		t.Fatalf("exit %+v (err %v): want over its CPU time limit of 1s", exited, exited.Err)
	}
	h.stop(t)
}

// Open files are limited with RLIMIT_NOFILE, and a Go program gets a
// GOMEMLIMIT below its memory limit.
func TestOpenFilesLimitAndGOMEMLIMIT(t *testing.T) {
	t.Parallel()
	spec := helperSpec(self(t), "files", "nofile")
	spec.Limits = supervise.Limits{OpenFiles: 77, Memory: 100 << 20}
	h := run(t, supervise.Config{Specs: []supervise.Spec{spec}, Backoff: fastBackoff})
	h.next(t, supervise.EventStarted, "files-1")
	h.logs.waitLine(t, "files-1", "stdout", "nofile 77")
	h.logs.waitLine(t, "files-1", "stdout", "GOMEMLIMIT=94371840")
	h.stop(t)
}

func TestLimitsValidate(t *testing.T) {
	spec := helperSpec(self(t), "tiny", "sleep")
	spec.Limits = supervise.Limits{Memory: 1 << 20}
	if _, err := supervise.New(supervise.Config{Specs: []supervise.Spec{spec}}); err == nil || !strings.Contains(err.Error(), "too little") {
		t.Errorf("a 1 MiB memory limit: %v, want an error saying it is too little", err)
	}
}
