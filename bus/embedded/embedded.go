// Package embedded runs a nats-server inside the process: the coordinator's
// default bus, and the server tests run against. It lives apart from package
// bus so that plugins, which import bus, never link a NATS server.
package embedded

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultListen is the address an embedded server listens on by default.
const DefaultListen = "127.0.0.1:4222"

// Config configures an embedded nats-server.
type Config struct {
	// Listen is the host:port clients connect to. Empty means no TCP
	// listener at all: only in-process connections (nats.InProcessServer).
	// Port 0 picks a free port.
	Listen string
	// StoreDir is where JetStream keeps its data. Empty turns JetStream off.
	StoreDir string
	// Options, when not nil, is the starting point for the server's
	// options (authentication, TLS, cluster routes...); Listen and StoreDir
	// are applied on top of it.
	Options *server.Options
	// Logger, when set, receives the server's log (server.SetLogger,
	// without debug or trace); none, the server logs nothing.
	Logger server.Logger
	// ReadyTimeout bounds the wait for the server to accept clients;
	// default 10s.
	ReadyTimeout time.Duration
}

// Server is a nats-server running inside this process.
type Server struct {
	*server.Server
}

// Start starts an embedded nats-server and waits until it accepts
// clients.
func Start(cfg Config) (*Server, error) {
	opts := &server.Options{}
	if cfg.Options != nil {
		opts = cfg.Options.Clone()
	}
	opts.NoSigs = true
	if cfg.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded: NATS listen address %q: %v; want host:port such as %s", cfg.Listen, err, DefaultListen)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return nil, fmt.Errorf("embedded: NATS listen address %q: port must be a number from 0 to 65535", cfg.Listen)
		}
		if p == 0 {
			p = server.RANDOM_PORT
		} else if err := portFree(host, p); err != nil {
			return nil, err
		}
		opts.Host, opts.Port = host, p
	}
	if cfg.StoreDir != "" {
		opts.JetStream = true
		opts.StoreDir = cfg.StoreDir
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded: NATS server: %w", err)
	}
	if cfg.Logger != nil {
		ns.SetLogger(cfg.Logger, false, false)
	}
	ns.Start()
	timeout := cfg.ReadyTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if !ns.ReadyForConnections(timeout) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded: NATS server on %q not ready after %v", cfg.Listen, timeout)
	}
	return &Server{Server: ns}, nil
}

// portFree checks that the server can listen on host:port, so that a port
// in use fails at once, naming what holds it when this system tells,
// rather than after the readiness timeout: nats-server retries its listen
// in the background.
func portFree(host string, port int) error {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln.Close()
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("embedded: cannot listen for NATS on %s: %w", addr, err)
	}
	by := holder(port)
	if by != "" {
		by = " by " + by
	}
	return fmt.Errorf("embedded: cannot listen for NATS on %s: the port is in use%s", addr, by)
}

// Close shuts the server down and waits until it has stopped.
func (s *Server) Close() {
	s.Shutdown()
	s.WaitForShutdown()
}
