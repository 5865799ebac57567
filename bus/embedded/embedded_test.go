package embedded_test

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/bus/embedded"
)

// TestStartOnAPortInUseFailsAtOnce holds a port and starts a server on it:
// it waited for the readiness timeout and then asked "is the port in use?".
// It must fail at once, naming the address and, on Linux, the process that
// holds the port (this test's own).
func TestStartOnAPortInUseFailsAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	start := time.Now()
	s, err := embedded.Start(embedded.Config{Listen: addr, ReadyTimeout: time.Minute})
	if err == nil {
		s.Close()
		t.Fatalf("started a server on %s, which is in use", addr)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("failed after %v; want at once, not after the readiness timeout", took)
	}
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "in use") {
		t.Errorf("got %q, want it to name %s and say it is in use", err, addr)
	}
	if runtime.GOOS == "linux" {
		if want := fmt.Sprintf("by process %d", os.Getpid()); !strings.Contains(err.Error(), want) {
			t.Errorf("got %q, want it to say %q", err, want)
		}
	}
}
