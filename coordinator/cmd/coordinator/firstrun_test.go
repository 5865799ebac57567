package main

import (
	"bufio"
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

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
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

// TestTailLinesUp: tail's columns did not line up when producers and
// types differed in length.
func TestTailLinesUp(t *testing.T) {
	srv := bustest.NewServer(t)
	nc := bustest.Connect(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, coordinatorBin, "tail", "com.example.>")
	cmd.Env = append(os.Environ(), "PLUGBUS_URL="+srv.ClientURL(), "PLUGBUS_PREFIX=plugbus", "PLUGBUS_TOKEN=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if line, err := bufio.NewReader(stderr).ReadString('\n'); err != nil || !strings.HasPrefix(line, "following") {
		t.Fatalf("tail said %q, %v; want it to say what it follows", line, err)
	}
	events := []struct{ producer, typ string }{
		{"a-rather-long-producer-name", "com.example.a.rather.long.type.name.indeed.created"},
		{"x", "com.example.y"},
		{"mid", "com.example.mid.sized"},
	}
	for _, ev := range events {
		if err := bus.Publish(nc, bus.DefaultPrefix, ev.producer, pluginkit.NewEvent(ev.typ, map[string]int{"n": 1})); err != nil {
			t.Fatal(err)
		}
	}
	lines := bufio.NewScanner(stdout)
	want := -1
	for i, ev := range events {
		if !lines.Scan() {
			t.Fatalf("tail ended after %d lines: %v", i, lines.Err())
		}
		line := lines.Text()
		// The data column starts at the same place on every line.
		at := strings.Index(line, `{"n":1}`)
		if at < 0 || !strings.Contains(line, ev.typ) {
			t.Fatalf("line %q, want %s with its data", line, ev.typ)
		}
		if want < 0 {
			want = at
		} else if at != want {
			t.Errorf("line %q: data at column %d, want %d as on the first line", line, at, want)
		}
	}
}
