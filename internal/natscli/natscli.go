// Package natscli builds the real nats CLI (github.com/nats-io/natscli) for
// interoperability tests, once per machine: the binary is cached under the
// user cache directory, keyed by version.
package natscli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Version is the release of the nats CLI the interop test runs.
const Version = "v0.5.0"

// Path returns the path of the nats CLI, building it with go install
// into the user cache directory the first time. When the build fails for
// want of the network (no module proxy), the test is skipped, unless CI is
// set: CI must run it.
func Path(t testing.TB) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "plugbus-test", "natscli-"+Version)
	bin := filepath.Join(dir, "nats")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build the nats CLI with: %v", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "natscli-build-")
	if os.IsNotExist(err) {
		if err = os.MkdirAll(filepath.Dir(dir), 0o755); err == nil {
			tmp, err = os.MkdirTemp(filepath.Dir(dir), "natscli-build-")
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)

	// About a minute from an empty module and build cache on a quiet
	// 2-core machine; the margin is for a busy one (go test runs packages
	// in parallel).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, gobin, "install", "github.com/nats-io/natscli/nats@"+Version)
	cmd.Dir = tmp // outside the module: go install pkg@version ignores go.mod anyway
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=-mod=mod")
	out, err := cmd.CombinedOutput()
	if err != nil {
		why := fmt.Sprintf("building the nats CLI %s (go install, %v): %v\n%s", Version, time.Since(start).Round(time.Second), err, out)
		if os.Getenv("CI") == "" && unreachable(string(out)) {
			t.Skip("no module proxy: " + why)
		}
		t.Fatal(why)
	}
	t.Logf("built the nats CLI %s in %v", Version, time.Since(start).Round(time.Second))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A rename within one directory tree is atomic: a concurrent run sees
	// the whole binary or none.
	if err := os.Rename(filepath.Join(tmp, "nats"), bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// unreachable reports whether go command output says the network or the
// module proxy could not be reached.
func unreachable(out string) bool {
	for _, s := range []string{"dial tcp", "no such host", "connection refused", "i/o timeout", "TLS handshake", "proxyconnect", "network is unreachable", "Temporary failure in name resolution", "403 Forbidden", "502 Bad Gateway", "503 Service Unavailable", "GOPROXY=off"} {
		if strings.Contains(out, s) {
			return true
		}
	}
	return false
}
