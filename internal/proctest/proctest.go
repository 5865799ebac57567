// Package proctest helps tests that run programs of this repository as
// real processes: build a main package, collect a process's output.
package proctest

import (
	"bytes"
	"net"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Build compiles the main package pkg (a path the go command understands,
// such as "." or "./plugins/hello/cmd/hello") into a temporary directory and returns
// the binary's path. It skips the test when there is no go command.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the program with")
	}
	bin := filepath.Join(t.TempDir(), filepath.Base(filepath.Clean(pkg)))
	if pkg == "." {
		bin = filepath.Join(t.TempDir(), "program")
	}
	out, err := exec.Command(gobin, "build", "-o", bin, pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// Output collects what a process writes; it is safe for concurrent use, so
// it can be a command's Stdout and Stderr while the test reads it.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

// String returns everything written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// FreeAddr returns a loopback host:port that was free a moment ago, for a
// server a test starts (and may stop and start again on the same address).
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proctest: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}
