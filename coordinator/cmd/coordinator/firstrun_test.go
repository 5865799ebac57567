package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveFails runs "coordinator serve" with args, which must fail, and
// returns its standard error.
func serveFails(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args = append([]string{"serve", "--data-dir", t.TempDir()}, args...)
	cmd := exec.CommandContext(ctx, coordinatorBin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("coordinator %v: %v, want it to fail; stderr:\n%s", args, err, &stderr)
	}
	return stderr.String()
}

// TestServeOnATakenNATSPortFailsAtOnce: it waited 10s, then said
// "coordinator: coordinator: embedded: ... (is the port in use?)".
func TestServeOnATakenNATSPortFailsAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	start := time.Now()
	out := serveFails(t, "--nats-listen", addr, "--http-listen", "127.0.0.1:0")
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("failed after %v, want at once (not after the 10s readiness wait)", took)
	}
	for _, want := range []string{addr, "in use", fmt.Sprintf("by process %d", os.Getpid()), "--nats-listen"} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr %q does not say %q", out, want)
		}
	}
	if strings.Count(out, "coordinator:") != 1 {
		t.Errorf("stderr %q: want the prefix \"coordinator:\" once", out)
	}
}

// TestServeNamesTheLineAndFieldOfAConfigError: a mistyped field was
// reported as "error unmarshaling JSON: ... unknown field" with no line.
func TestServeNamesTheLineAndFieldOfAConfigError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plugbus.yaml")
	config := "http_listen: 127.0.0.1:0\nplugins:\n  - name: hello\n    exec: ./hello\n  - nmae: other\n    exec: ./other\n"
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	out := serveFails(t, "--config", path)
	for _, want := range []string{path + ":5:", `unknown field "nmae"`, `did you mean "name"`} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr %q does not say %q", out, want)
		}
	}
	for _, bad := range []string{"JSON", "coordinator: coordinator:"} {
		if strings.Contains(out, bad) {
			t.Errorf("stderr %q says %q", out, bad)
		}
	}
}

// TestServeSuggestsAnHTTPAddressForHTTPListen: the example it gave was
// the NATS port.
func TestServeSuggestsAnHTTPAddressForHTTPListen(t *testing.T) {
	out := serveFails(t, "--http-listen", "localhost")
	if !strings.Contains(out, "127.0.0.1:8090") || strings.Contains(out, "4222") {
		t.Errorf("stderr %q, want the HTTP API's default address as the example, not the NATS port", out)
	}
}
