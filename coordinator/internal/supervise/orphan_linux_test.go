package supervise_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNoOrphansWhenCoordinatorKilled runs a coordinator in a process of its
// own, kills it with SIGKILL, and checks that its plugin dies with it.
func TestNoOrphansWhenCoordinatorKilled(t *testing.T) {
	t.Parallel()
	coord := exec.Command(self(t))
	coord.Env = append(os.Environ(), helperEnv+"=coordinator")
	var stderr bytes.Buffer
	coord.Stderr = &stderr
	out, err := coord.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := coord.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		coord.Process.Kill()
		coord.Wait()
	})

	pids := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var pid int
			if _, err := fmt.Sscanf(sc.Text(), "pid %d", &pid); err == nil {
				pids <- pid
				return
			}
		}
	}()
	var pid int
	select {
	case pid = <-pids:
	case <-time.After(waitTimeout):
		coord.Process.Kill()
		coord.Wait()
		t.Fatalf("the coordinator printed no plugin PID in %s; stderr:\n%s", waitTimeout, &stderr)
	}
	if !alive(pid) {
		t.Fatalf("plugin PID %d is not running", pid)
	}
	t.Cleanup(func() {
		if !gone(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	if err := coord.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	coord.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for !gone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("plugin PID %d still running 5s after its coordinator was killed", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gone reports whether pid has died: no such process, or a zombie waiting for
// its new parent to reap it. When that parent is this process (a subreaper),
// it reaps it.
func gone(pid int) bool {
	var ws syscall.WaitStatus
	if wpid, _ := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); wpid == pid {
		return true
	}
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses.
	i := strings.LastIndexByte(string(stat), ')')
	return i >= 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X')
}
