// Package bustest starts real NATS servers for tests, the way net/http/httptest
// starts real HTTP servers.
package bustest

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/embedded"
)

// NewServer starts an embedded nats-server with JetStream on a free
// loopback port, storing data under t.TempDir(), and shuts it down when the
// test ends.
func NewServer(t testing.TB) *embedded.Server {
	t.Helper()
	return NewServerOn(t, "127.0.0.1:0", t.TempDir())
}

// NewServerOn is [NewServer] on a given listen address and store directory,
// for tests that stop a server and start it again where it was.
func NewServerOn(t testing.TB, listen, storeDir string) *embedded.Server {
	t.Helper()
	s, err := embedded.Start(embedded.Config{Listen: listen, StoreDir: storeDir})
	if err != nil {
		t.Fatalf("bustest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Addr returns the host:port s listens on.
func Addr(s *embedded.Server) string {
	a := s.Addr().(*net.TCPAddr)
	return net.JoinHostPort(a.IP.String(), strconv.Itoa(a.Port))
}

// Connect opens a client connection to s that is closed when the test ends.
func Connect(t testing.TB, s *embedded.Server) *nats.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, bus.ConnConfig{URLs: []string{s.ClientURL()}, Name: t.Name()})
	if err != nil {
		t.Fatalf("bustest: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}
