package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/embedded"
	"github.com/plugbus/plugbus/coordinator/internal/activity"
	"github.com/plugbus/plugbus/coordinator/internal/agent"
	"github.com/plugbus/plugbus/coordinator/internal/api"
	"github.com/plugbus/plugbus/coordinator/internal/catalog"
	"github.com/plugbus/plugbus/coordinator/internal/deadletter"
	"github.com/plugbus/plugbus/coordinator/internal/lease"
	"github.com/plugbus/plugbus/coordinator/internal/registry"
	"github.com/plugbus/plugbus/coordinator/internal/supervise"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// Producer is the producer name of the events the coordinator publishes.
const Producer = "coordinator"

// Coordinator is a configured core, ready to [Coordinator.Run].
type Coordinator struct {
	cfg    Config
	log    *slog.Logger
	ready  chan struct{}
	server *embedded.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	// apiNC is the HTTP API's publisher: in secure mode a connection of
	// its own, with only the rights ingest and invoke need; c.nc otherwise.
	apiNC *nats.Conn
	apiJS jetstream.JetStream
	reg   *registry.Registry
	// catalog lists the types the registry's plugins emit, handle and
	// answer, and checks data against their schemas.
	catalog *catalog.Catalog
	lease   *lease.Lease
	sup     *supervise.Supervisor
	http    net.Listener
	sec     *security // nil unless secure mode is on

	closing atomic.Bool // set once stopBus closes the connection itself
}

// New checks cfg (after filling in defaults) and returns a coordinator.
// logger may be nil for slog.Default().
func New(cfg Config, logger *slog.Logger) (*Coordinator, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("coordinator: configuration:\n%w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Coordinator{cfg: cfg, log: logger, ready: make(chan struct{})}, nil
}

// Ready is closed once the coordinator serves: NATS is up, the HTTP API
// listens, supervised plugins are starting.
func (c *Coordinator) Ready() <-chan struct{} { return c.ready }

// NATSURL returns the URL plugins use to reach the bus, with any
// credentials it holds (see [bus.RedactURLs] for logs).
func (c *Coordinator) NATSURL() string {
	if len(c.cfg.NATSURLs) > 0 {
		return strings.Join(c.cfg.NATSURLs, ",")
	}
	if c.server != nil && c.server.Addr() != nil {
		return "nats://" + c.server.Addr().String()
	}
	return ""
}

// HTTPAddr returns the address the HTTP API listens on, once ready.
func (c *Coordinator) HTTPAddr() string {
	if c.http == nil {
		return ""
	}
	return c.http.Addr().String()
}

// Plugin is a plugin as the coordinator's registry sees it: its instances,
// versions, types and health.
type Plugin = registry.Plugin

// Instance is one running copy of a plugin.
type Instance = registry.Instance

// Type is one entry of the type catalogue: who emits, handles and answers
// an event type, and the schema of its data.
type Type = catalog.Type

// HTTPURL returns the base URL of the HTTP API (https:// with TLS), once
// ready.
func (c *Coordinator) HTTPURL() string {
	if c.cfg.HTTPTLS.On() {
		return "https://" + c.HTTPAddr()
	}
	return "http://" + c.HTTPAddr()
}

// identityNames returns, in secure mode, a function listing the plugins
// with an identity, which the registry asks for their STATS by name: they
// may not hear the discovery requests sent to every service. It returns
// nil otherwise.
// onInvalidReported hands plugins' reports of invalid messages to a junk
// watch in secure mode (see junk.go), where identities can be quarantined.
func (c *Coordinator) onInvalidReported() func(map[string]uint64) {
	if c.sec == nil {
		return nil
	}
	w := &junkWatch{c: c}
	return w.reported
}

func (c *Coordinator) identityNames() func() []string {
	if c.sec == nil {
		return nil
	}
	return func() []string {
		var names []string
		for _, id := range c.sec.store.List() {
			names = append(names, id.Name)
		}
		return names
	}
}

// Plugins returns the registry's view of plugins and instances.
func (c *Coordinator) Plugins() []Plugin { return c.reg.Plugins() }

// Types returns the type catalogue, as GET /v1/types serves it.
func (c *Coordinator) Types() []Type { return c.catalog.Types() }

// Run starts everything and serves until ctx ends, then stops supervised
// plugins first (so they drain while the bus is still up), the HTTP API,
// and the bus.
func (c *Coordinator) Run(ctx context.Context) error {
	if err := c.startBus(ctx); err != nil {
		return err
	}
	defer c.stopBus()

	l, err := lease.New(lease.Config{
		JetStream: c.js, Holder: c.Name(), TTL: time.Duration(c.cfg.LeaseTTL),
		Replicas: c.cfg.Stream.Replicas, Logger: c.log,
	})
	if err != nil {
		return fmt.Errorf("coordinator: %w", err)
	}
	c.lease = l
	c.reg = registry.New(registry.Config{
		Conn: c.nc, Prefix: c.cfg.Prefix, GoneAfter: time.Duration(c.cfg.GoneAfter), Logger: c.log,
		Names: c.identityNames(), OnChange: c.onRegistryChange, OnInvalid: c.onInvalidReported(),
	})
	c.catalog = catalog.New(c.reg.Plugins, time.Second)
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), newRegistryCollector(c.reg), newLeaseCollector(c.lease))
	if c.sec != nil {
		metrics.MustRegister(newQuarantineCollector(c.sec))
	}
	// Durable plugins may run without deployment-wide durability, so the
	// consumer and dead letter figures are always collected (nothing shows
	// while the streams do not exist), and dead letters always reachable.
	streams := c.cfg.Stream.busConfig(c.cfg.Prefix)
	streams.SetDefaults()
	metrics.MustRegister(deadletter.NewCollector(c.js, c.cfg.Prefix, streams.Name, streams.DeadLetterName))
	deadLetters := deadletter.New(c.js, c.cfg.Prefix, streams.DeadLetterName)
	tracker := activity.New(activity.Config{Source: c.reg, Supervised: c.supervisedPIDs})
	streamsDone := make(chan struct{})
	fleet := c.openFleet(ctx)
	if c.sec != nil && fleet != nil {
		if err := c.serveAgents(fleet); err != nil {
			return err
		}
	}
	handler, err := api.New(api.Config{
		Conn: c.apiNC, Observe: c.nc, Prefix: c.cfg.Prefix, Token: c.cfg.HTTPToken, TokenSHA256: c.cfg.HTTPTokenSHA256,
		RateLimit: c.cfg.HTTPRateLimit, RateBurst: c.cfg.HTTPRateBurst, OpenReads: c.cfg.HTTPOpenReads,
		MaxBodyBytes: c.cfg.MaxBodyBytes, InvokeTimeout: time.Duration(c.cfg.InvokeTimeout),
		Plugins:    func() any { return c.reg.Plugins() },
		Types:      func() any { return c.catalog.Types() },
		CheckData:  c.catalog.Check,
		Answerers:  c.reg.Answerers,
		Supervised: func() any { return c.sup.Status() },
		Restart:    func(name string) (int, error) { return c.sup.Restart(name) },
		Ready: func() error {
			if !c.nc.IsConnected() {
				return errors.New("not connected to NATS")
			}
			return nil
		},
		Registerer: metrics, Gatherer: metrics, Logger: c.log,
		Identities:  c.identityAdmin(),
		DeadLetters: deadLetters,
		JetStream:   durableJS(c.cfg.Durable, c.apiJS),
		Fleet:       fleet,
		Activity:    tracker,
		Done:        streamsDone,

		TracerProvider: c.cfg.TracerProvider,
	})
	if err != nil {
		return err
	}
	c.http, err = net.Listen("tcp", c.cfg.HTTPListen)
	if err != nil {
		return fmt.Errorf("coordinator: HTTP listen on %s: %w; pick another address with --http-listen", c.cfg.HTTPListen, err)
	}
	if c.cfg.HTTPTLS.On() {
		tlsCfg, err := c.cfg.HTTPTLS.serverConfig("http_tls")
		if err != nil {
			c.http.Close()
			return fmt.Errorf("coordinator: %w", err)
		}
		c.http = tls.NewListener(c.http, tlsCfg)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second,
		// TLS handshake failures and the like come from whoever reaches the
		// port: debug, so that they cannot flood the log.
		ErrorLog: slog.NewLogLogger(c.log.Handler(), slog.LevelDebug)}
	srv.RegisterOnShutdown(func() { close(streamsDone) })
	wasmHost, err := c.wasmHost()
	if err != nil {
		return err
	}
	if wasmHost != nil {
		defer wasmHost.Close(context.Background())
	}
	c.sup, err = supervise.New(supervise.Config{
		Wasm:    wasmHost,
		Specs:   c.specs(),
		BaseEnv: c.pluginEnv(),
		Logger:  c.log,
		// Longer than plugin-kit's default drain timeout (10s), so a
		// draining plugin is not killed while it finishes its events.
		StopTimeout: 15 * time.Second,
		OnEvent:     c.onSupervisorEvent,
		Bridge:      c.runBridge,
		InProcess:   c.runInProcess,
	})
	if err != nil {
		return fmt.Errorf("coordinator: plugins: %w", err)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.reg.Run(gctx) })
	g.Go(func() error { return tracker.Run(gctx) })
	g.Go(func() error { return c.lease.Run(gctx) })
	g.Go(func() error {
		if err := srv.Serve(c.http); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("coordinator: HTTP: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shutdownCtx)
	})
	g.Go(func() error { return c.sup.Run(gctx) })

	c.publish(bus.TypeCoordinatorStarted, map[string]any{"nats_url": bus.RedactURLs(c.NATSURL()), "http": c.HTTPAddr(), "pid": os.Getpid()})
	c.log.Info("coordinator ready", "nats", bus.RedactURLs(c.NATSURL()), "http", c.HTTPURL(), "data_dir", c.cfg.DataDir, "plugins", len(c.cfg.Plugins))
	close(c.ready)
	return g.Wait()
}

// Name is how this coordinator is known to the others: the embedded
// server's name, or with external NATS the host name and the HTTP port.
func (c *Coordinator) Name() string {
	if c.cfg.ServerName != "" {
		return c.cfg.ServerName
	}
	host, _ := os.Hostname()
	_, port, _ := net.SplitHostPort(c.cfg.HTTPListen)
	return host + "-" + port
}

// openFleet opens the orders of the plugins managed at runtime and the
// agents' entries, in the bus's key-value store; nil, and a warning,
// when the bus has none.
func (c *Coordinator) openFleet(ctx context.Context) *agent.Store {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := agent.OpenStore(ctx, c.js, c.cfg.Prefix, c.cfg.Stream.Replicas)
	if err != nil {
		c.log.Warn("agents and runtime plugins are unavailable: the bus has no key-value store", "err", err)
		return nil
	}
	return s
}

// LeaseHeld reports whether this coordinator holds the lease that makes it
// the one announcing lifecycle changes; false before Run.
func (c *Coordinator) LeaseHeld() bool { return c.lease != nil && c.lease.Held() }

// onRegistryChange logs a plugin instance's change of health and, if this
// coordinator holds the lease, announces it on the bus: every coordinator
// sees the change, one announces it.
func (c *Coordinator) onRegistryChange(ch registry.Change) {
	what := "plugin instance " + strings.TrimPrefix(ch.Type, "io.plugbus.plugin.")
	if !c.lease.Held() {
		c.log.Info(what+" (announced by the coordinator holding the lease)", "plugin", ch.Instance.Plugin, "instance", ch.Instance.ID, "reason", ch.Instance.Reason, "lease_holder", c.lease.Holder())
		return
	}
	c.log.Warn(what, "plugin", ch.Instance.Plugin, "instance", ch.Instance.ID, "reason", ch.Instance.Reason)
	c.publish(ch.Type, ch.Instance)
}

// startBus starts the embedded server (unless NATS is external) and
// connects the coordinator to it.
func (c *Coordinator) startBus(ctx context.Context) error {
	conn := bus.ConnConfig{Name: "plugbus-coordinator", Token: c.cfg.NATSToken, User: c.cfg.NATSUser, Password: c.cfg.NATSPassword, CredsFile: c.cfg.NATSCreds}
	conn.OnEvent = func(ev bus.ConnEvent) {
		switch ev.Kind {
		case bus.ConnectFailed:
			c.log.Warn("cannot reach NATS; retrying", "url", ev.URL, "err", ev.Err, "failed_attempts", ev.Failures)
		case bus.Disconnected:
			if c.closing.Load() {
				return // stopBus draining the connection, not an outage
			}
			c.log.Warn("disconnected from NATS; reconnecting", "url", ev.URL, "err", ev.Err)
		case bus.Reconnected:
			c.log.Info("reconnected to NATS", "url", ev.URL)
		case bus.AsyncError:
			c.log.Error("NATS error", "err", ev.Err)
		}
	}
	if len(c.cfg.NATSURLs) > 0 {
		conn.URLs = c.cfg.NATSURLs
	} else {
		storeDir := filepath.Join(c.cfg.DataDir, "jetstream")
		if err := os.MkdirAll(storeDir, 0o700); err != nil {
			return fmt.Errorf("coordinator: data directory: %w; pick another with --data-dir", err)
		}
		opts, err := c.cfg.serverOptions()
		if err != nil {
			return fmt.Errorf("coordinator: %w", err)
		}
		if c.cfg.NATSTLS.On() {
			if opts.TLSConfig, err = c.cfg.NATSTLS.serverConfig("nats_tls"); err != nil {
				return fmt.Errorf("coordinator: %w", err)
			}
			opts.TLS, opts.TLSVerify, opts.TLSTimeout = true, c.cfg.NATSTLS.Verify, 2
		}
		if c.cfg.IsSecure() {
			if err := c.setupSecurity(opts); err != nil {
				return err
			}
			conn.NKeySeedFile = c.sec.selfSeedFile
		}
		ec := embedded.Config{Listen: c.cfg.NATSListen, StoreDir: storeDir, Options: opts}
		if c.sec != nil {
			ec.Logger = c.sec.serverLogger()
		}
		s, err := embedded.Start(ec)
		if err != nil {
			return fmt.Errorf("coordinator: %w; pick another address with --nats-listen", err)
		}
		c.server = s
		if c.sec != nil {
			c.sec.srv.Store(s.Server)
		}
		conn.InProcess = s
		c.log.Info("embedded NATS server started", "url", c.NATSURL(), "data_dir", c.cfg.DataDir, "server_name", c.cfg.ServerName, "cluster", c.cfg.Cluster.Name, "cluster_listen", c.cfg.Cluster.Listen)
	}
	nc, err := bus.Connect(ctx, conn)
	if err != nil {
		c.stopBus()
		return fmt.Errorf("coordinator: %w", err)
	}
	c.nc = nc
	if c.js, err = jetstream.New(nc); err != nil {
		c.stopBus()
		return fmt.Errorf("coordinator: JetStream: %w", err)
	}
	if err := c.connectAPI(ctx, conn); err != nil {
		c.stopBus()
		return err
	}
	if c.cfg.Durable {
		if err := c.ensureDurable(ctx); err != nil {
			c.stopBus()
			return fmt.Errorf("coordinator: durable mode: %w (is JetStream enabled on the NATS server?)", err)
		}
		streams := c.cfg.Stream.busConfig(c.cfg.Prefix)
		streams.SetDefaults()
		c.log.Info("durable delivery on", "stream", streams.Name, "replicas", streams.Replicas, "sync_always", c.cfg.SyncAlways)
	}
	if c.sec != nil {
		setup, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := c.ensureConsumers(setup); err != nil {
			c.stopBus()
			return fmt.Errorf("coordinator: secure mode: %w", err)
		}
		c.log.Info("secure mode on: every plugin connects with its own nkey", "identities", c.sec.store.Dir(), "admin_nkey", filepath.Join(c.sec.store.Dir(), "admin.nk"))
	}
	return nil
}

// ensureDurable creates or updates the streams and the effectively-once
// bucket. In a cluster that is still forming (servers starting together
// elect JetStream's leader first) JetStream answers "temporarily
// unavailable" for a while, so it tries again for up to a minute.
func (c *Coordinator) ensureDurable(ctx context.Context) error {
	setup, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	streams := c.cfg.Stream.busConfig(c.cfg.Prefix)
	streams.SetDefaults()
	for {
		// Each try has its own deadline: JetStream may not answer at all
		// while it has no leader.
		try, cancelTry := context.WithTimeout(setup, 5*time.Second)
		err := bus.EnsureStreams(try, c.js, streams)
		if err == nil {
			_, err = bus.DedupBucket(try, c.js, streams.MaxAge, streams.Replicas)
		}
		cancelTry()
		if err == nil {
			return nil
		}
		if setup.Err() != nil {
			return err
		}
		c.log.Info("JetStream not ready; trying again", "err", err)
		select {
		case <-setup.Done():
			return err
		case <-time.After(time.Second):
		}
	}
}

// connectAPI makes the HTTP API's publisher: in secure mode its own
// connection, as user "http" (see identity.HTTPRules), and otherwise the
// coordinator's.
func (c *Coordinator) connectAPI(ctx context.Context, conn bus.ConnConfig) error {
	c.apiNC, c.apiJS = c.nc, c.js
	if c.sec == nil {
		return nil
	}
	conn.Name, conn.NKeySeedFile = "plugbus-coordinator-http", c.sec.httpSeedFile
	conn.InboxPrefix = bus.InboxPrefix(api.DefaultProducer) // the only inboxes it may read
	nc, err := bus.Connect(ctx, conn)
	if err != nil {
		return fmt.Errorf("coordinator: the HTTP API's connection: %w", err)
	}
	c.apiNC = nc
	if c.apiJS, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("coordinator: JetStream: %w", err)
	}
	return nil
}

func (c *Coordinator) stopBus() {
	c.closing.Store(true)
	if c.apiNC != nil && c.apiNC != c.nc {
		c.apiNC.Close()
	}
	if c.nc != nil {
		_ = c.nc.Drain()
		for i := 0; i < 50 && !c.nc.IsClosed(); i++ {
			time.Sleep(20 * time.Millisecond)
		}
		c.nc.Close()
	}
	if c.server != nil {
		c.server.Close()
	}
}

// publish sends a lifecycle event from the coordinator.
func (c *Coordinator) publish(typ string, data any) {
	e := pluginkit.NewEvent(typ, data)
	if err := bus.Publish(c.nc, c.cfg.Prefix, Producer, e); err != nil {
		c.log.Warn("could not publish a lifecycle event", "type", typ, "err", err)
	}
}

// pluginEnv is the connection settings every supervised plugin gets.
func (c *Coordinator) pluginEnv() []string {
	env := []string{"PLUGBUS_URL=" + c.NATSURL(), "PLUGBUS_PREFIX=" + c.cfg.Prefix}
	if c.cfg.Durable {
		env = append(env, "PLUGBUS_DURABLE=1")
	}
	if c.cfg.NATSToken != "" {
		env = append(env, "PLUGBUS_TOKEN="+c.cfg.NATSToken)
	}
	if c.cfg.NATSUser != "" {
		env = append(env, "PLUGBUS_USER="+c.cfg.NATSUser, "PLUGBUS_PASSWORD="+c.cfg.NATSPassword)
	}
	if c.cfg.NATSCreds != "" {
		env = append(env, "PLUGBUS_CREDS="+c.cfg.NATSCreds)
	}
	if c.cfg.NATSTLS.CA != "" {
		env = append(env, "PLUGBUS_TLS_CA="+c.cfg.NATSTLS.CA)
	}
	return env
}

// identityAdmin is what serves the HTTP API's identity endpoints: nil
// unless secure mode is on.
func (c *Coordinator) identityAdmin() api.Identities {
	if c.sec == nil {
		return nil
	}
	return identityAdmin{c}
}

// durableJS is js in durable mode and nil otherwise, for the API.
func durableJS(durable bool, js jetstream.JetStream) jetstream.JetStream {
	if durable {
		return js
	}
	return nil
}
