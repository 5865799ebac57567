//go:build unix

package supervise_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/plugbus/plugbus/coordinator/internal/supervise"
)

// helperEnv names the helper a re-executed test binary runs instead of the
// tests (the helper-process trick of the os/exec tests).
const helperEnv = "SUPERVISE_HELPER"

// helperLifetime bounds every helper, so that a failed test leaks nothing
// for long.
const helperLifetime = 2 * time.Minute

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		runHelper(h)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runHelper runs as a plugin (or, for "coordinator", as a coordinator).
func runHelper(name string) {
	switch name {
	case "sleep":
		// Silent: a write to the pipe of a killed coordinator would end it
		// with SIGPIPE, and hide whether the kernel killed it.
		time.Sleep(helperLifetime)
	case "exit1":
		fmt.Fprintln(os.Stderr, "crashing")
		os.Exit(1)
	case "trapterm":
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("ready")
		select {
		case <-c:
			fmt.Println("got SIGTERM")
		case <-time.After(helperLifetime):
		}
	case "ignoreterm":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		time.Sleep(helperLifetime)
	case "echoenv":
		for _, k := range []string{"PLUGBUS_URL", "PLUGBUS_INSTANCE", "X", "PLUGBUS_HTTP_TOKEN", "SECRET_OF_THE_COORDINATOR", "HOME"} {
			fmt.Printf("%s=%s\n", k, os.Getenv(k))
		}
		fmt.Fprintln(os.Stderr, "to stderr")
		fmt.Println("ready")
		time.Sleep(helperLifetime)
	case "printlines":
		fmt.Print("crlf line\r\n\n")
		fmt.Println(`{"time":"2026-01-01T00:00:00Z","level":"INFO","msg":"from slog","k":1,"timeout":10000000000}`)
		fmt.Fprint(os.Stderr, "stderr line\n")
		fmt.Print("no newline at the end")
	case "hog":
		// Takes 8 MiB more every 20ms and touches every page, so that it
		// is resident, until it is killed.
		var held [][]byte
		fmt.Println("ready")
		for range int(helperLifetime / (20 * time.Millisecond)) {
			b := make([]byte, 8<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			held = append(held, b)
			time.Sleep(20 * time.Millisecond)
		}
		fmt.Println(len(held))
	case "spin":
		fmt.Println("ready")
		for deadline := time.Now().Add(helperLifetime); time.Now().Before(deadline); {
		}
	case "nofile":
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			panic(err)
		}
		// Read after a moment: the supervisor sets limits right after
		// the start.
		time.Sleep(200 * time.Millisecond)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
		fmt.Printf("nofile %d\n", lim.Cur)
		fmt.Printf("GOMEMLIMIT=%s\n", os.Getenv("GOMEMLIMIT"))
		time.Sleep(helperLifetime)
	case "coordinator":
		fakeCoordinator()
	default:
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", name)
		os.Exit(2)
	}
}

// fakeCoordinator supervises one sleeping plugin and prints the PID of each
// process it starts to stdout.
func fakeCoordinator() {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	s, err := supervise.New(supervise.Config{
		Specs:  []supervise.Spec{helperSpec(exe, "sleeper", "sleep")},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnEvent: func(e supervise.Event) {
			if e.Kind == supervise.EventStarted {
				fmt.Printf("pid %d\n", e.PID)
			}
		},
	})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), helperLifetime)
	defer cancel()
	if err := s.Run(ctx); err != nil {
		panic(err)
	}
}

// helperSpec returns a spec running the helper of the given name.
func helperSpec(exe, plugin, helper string) supervise.Spec {
	return supervise.Spec{
		Name: plugin,
		Exec: exe,
		// The race detector otherwise waits 1s before every exit.
		Env: []string{helperEnv + "=" + helper, "GORACE=atexit_sleep_ms=0"},
	}
}

// self returns the path of the test binary.
func self(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}
