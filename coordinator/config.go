package coordinator

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
	"sigs.k8s.io/yaml"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator/internal/lease"
	"github.com/plugbus/plugbus/coordinator/internal/supervise"
)

// Config is everything the coordinator needs to run. The zero value, after
// [Config.SetDefaults], runs an embedded NATS server and the HTTP API on
// loopback.
type Config struct {
	// NATSListen is where the embedded NATS server listens; "" turns the
	// TCP listener off (plugins in other processes then cannot connect).
	// Ignored with NATSURLs.
	NATSListen string `json:"nats_listen"`
	// NATSURLs connects to an external NATS server or cluster instead of
	// embedding one.
	NATSURLs []string `json:"nats_urls,omitempty"`
	// HTTPListen is where the HTTP API and dashboard listen.
	HTTPListen string `json:"http_listen"`
	// DataDir holds the embedded server's JetStream data.
	DataDir string `json:"data_dir"`
	// Prefix is the subject prefix.
	Prefix string `json:"prefix"`

	// ServerName names the embedded NATS server. In a cluster every server
	// needs its own name, and the same one after a restart (JetStream knows
	// its peers by name). Default: the host name and the NATS port.
	ServerName string `json:"server_name,omitempty"`
	// Cluster joins the embedded server to a NATS cluster.
	Cluster ClusterSettings `json:"cluster,omitzero"`
	// Leaf makes the embedded server a leaf node of remote servers, or
	// lets leaf nodes connect to it.
	Leaf LeafSettings `json:"leaf,omitzero"`
	// NATSTLS turns on TLS for the embedded server's listener (clients that
	// do not speak TLS are refused), with client certificates when Verify
	// is set.
	NATSTLS TLSSettings `json:"nats_tls,omitzero"`
	// HTTPTLS serves the HTTP API and dashboard over HTTPS.
	HTTPTLS TLSSettings `json:"http_tls,omitzero"`

	// Secure turns secure mode on or off: every plugin connects to the
	// embedded server with its own nkey and may do only what its declared
	// types need (see docs/operating.md, Security). Unset, it is on
	// whenever NATSListen is not a loopback address.
	Secure *bool `json:"secure,omitempty"`

	// NATSToken, or NATSUser and NATSPassword, is what clients of the
	// embedded server must present, and what the coordinator presents to
	// an external server. Needed to listen beyond loopback.
	NATSToken    string `json:"nats_token,omitempty"`
	NATSUser     string `json:"nats_user,omitempty"`
	NATSPassword string `json:"nats_password,omitempty"`
	// NATSCreds is a credentials file for an external server.
	NATSCreds string `json:"nats_creds,omitempty"`
	// HTTPToken, when set, is the bearer token every /v1/ HTTP endpoint
	// requires. Needed to listen beyond loopback.
	HTTPToken string `json:"http_token,omitempty"`
	// HTTPTokenSHA256 is the hex SHA-256 of the HTTP token (sha256sum), so
	// that the configuration file need not hold the token itself.
	HTTPTokenSHA256 string `json:"http_token_sha256,omitempty"`
	// HTTPOpenReads serves the read-only views (plugins, types, supervised
	// processes, activity) without the HTTP token; event data, publishing,
	// invoking, dead letters and administration still need it.
	HTTPOpenReads bool `json:"http_open_reads,omitempty"`
	// HTTPRateLimit, when positive, is how many /v1/ requests a second each
	// HTTP client (per token, or per address) may send, in bursts of
	// HTTPRateBurst; more are answered 429.
	HTTPRateLimit float64 `json:"http_rate_limit,omitempty"`
	HTTPRateBurst int     `json:"http_rate_burst,omitempty"`

	// Quarantine, in secure mode, cuts off an identity whose connections
	// the server keeps refusing (see [QuarantineSettings]).
	Quarantine QuarantineSettings `json:"quarantine,omitzero"`

	// GoneAfter is how long an instance may stay silent before it is
	// marked gone; with more than 2,000 instances, longer (two missed
	// discovery polls, see docs/operating.md).
	GoneAfter Duration `json:"gone_after"`
	// LeaseTTL is how long the lease of the coordinator announcing
	// lifecycle changes lasts without renewal: when that coordinator dies,
	// another takes over within about this long.
	LeaseTTL Duration `json:"lease_ttl,omitempty"`
	// InvokeTimeout is the default wait for a reply to an invoke.
	InvokeTimeout Duration `json:"invoke_timeout"`
	// MaxBodyBytes limits HTTP request bodies.
	MaxBodyBytes int64 `json:"max_body_bytes"`

	// Durable turns on durable delivery for the whole deployment: the
	// coordinator creates the streams, events from HTTP and the CLI are
	// acknowledged only once stored, and every supervised plugin runs
	// durable. Without it, a plugin may still opt in on its own.
	Durable bool `json:"durable,omitempty"`
	// Stream configures the durable streams.
	Stream StreamSettings `json:"stream"`
	// SyncAlways makes the embedded server write every stored event to disk
	// (fsync) before acknowledging it; by default it syncs every 2 minutes.
	SyncAlways bool `json:"sync_always,omitempty"`

	// TracerProvider, when set, traces the HTTP API's ingest and invoke
	// with OpenTelemetry (coordinator serve builds one from the standard
	// OTEL_ variables); nil traces nothing. Supervised plugins inherit the
	// OTEL_ variables and trace themselves.
	TracerProvider trace.TracerProvider `json:"-"`

	// WasmCacheDir keeps the machine code compiled from WebAssembly
	// plugins, so that a restart skips the compile; default
	// <data_dir>/wasm-cache.
	WasmCacheDir string `json:"wasm_cache_dir,omitempty"`

	// Plugins are run and supervised by the coordinator.
	Plugins []PluginSpec `json:"plugins,omitempty"`
}

// StreamSettings configure the durable streams; zero fields take bus's
// defaults (PLUGBUS_EVENTS, 24h, no size limit, one replica, on disk).
// Replicas applies to every stream and key-value bucket the coordinator
// creates: the events, the dead letters, the effectively-once records and
// the coordinators' lease.
type StreamSettings struct {
	Name     string   `json:"name,omitempty"`
	MaxAge   Duration `json:"max_age,omitempty"`
	MaxBytes int64    `json:"max_bytes,omitempty"`
	Replicas int      `json:"replicas,omitempty"`
	Memory   bool     `json:"memory,omitempty"`
}

// busConfig returns the settings as bus wants them.
func (s StreamSettings) busConfig(prefix string) bus.StreamConfig {
	return bus.StreamConfig{Prefix: prefix, Name: s.Name, MaxAge: time.Duration(s.MaxAge), MaxBytes: s.MaxBytes, Replicas: s.Replicas, Memory: s.Memory}
}

// PluginSpec is a plugin the coordinator runs and restarts: one entry of
// the configuration's plugins list (name, exec, args, env, replicas,
// sha256, dir, stdio, timeout, wasm, memory_pages, dirs, uninterruptible,
// handles, answers, emits, limits). Its Mode method says how the plugin runs. In a
// configuration file, a relative exec or dir is taken from the file's
// directory, which is also the plugin's default working directory.
type PluginSpec = supervise.Spec

// QuarantineSettings say when secure mode quarantines an identity: after
// Refusals publishes or subscriptions refused by the server within Window,
// its connections are closed and it is refused for CoolDown, doubled on
// each repeat up to MaxCoolDown (a quarantine ending more than four
// MaxCoolDowns before the next is forgotten). Zero fields take the
// defaults: 100 refusals in 10s, 1m, 1h. Off turns quarantine off.
type QuarantineSettings struct {
	Off         bool     `json:"off,omitempty"`
	Refusals    int      `json:"refusals,omitempty"`
	Window      Duration `json:"window,omitempty"`
	CoolDown    Duration `json:"cool_down,omitempty"`
	MaxCoolDown Duration `json:"max_cool_down,omitempty"`
}

// Defaults of [QuarantineSettings].
const (
	DefaultQuarantineRefusals    = 100
	DefaultQuarantineWindow      = 10 * time.Second
	DefaultQuarantineCoolDown    = time.Minute
	DefaultQuarantineMaxCoolDown = time.Hour
)

func (q *QuarantineSettings) setDefaults() {
	if q.Refusals == 0 {
		q.Refusals = DefaultQuarantineRefusals
	}
	if q.Window == 0 {
		q.Window = Duration(DefaultQuarantineWindow)
	}
	if q.CoolDown == 0 {
		q.CoolDown = Duration(DefaultQuarantineCoolDown)
	}
	if q.MaxCoolDown == 0 {
		q.MaxCoolDown = max(Duration(DefaultQuarantineMaxCoolDown), q.CoolDown)
	}
}

func (q *QuarantineSettings) validate(bad func(string, ...any)) {
	if q.Off {
		return
	}
	if q.Refusals < 1 {
		bad("quarantine.refusals %d: must be at least 1 (or set quarantine.off: true)", q.Refusals)
	}
	if q.Window < Duration(100*time.Millisecond) || q.Window > Duration(time.Hour) {
		bad("quarantine.window %v: must be from 100ms to 1h", time.Duration(q.Window))
	}
	if q.CoolDown < Duration(time.Second) {
		bad("quarantine.cool_down %v is too short; use at least 1s", time.Duration(q.CoolDown))
	}
	if q.MaxCoolDown < q.CoolDown {
		bad("quarantine.max_cool_down %v is shorter than quarantine.cool_down %v", time.Duration(q.MaxCoolDown), time.Duration(q.CoolDown))
	}
}

// Duration is a time.Duration written as "10s" or "1m30s" in configuration.
type Duration = supervise.Duration

// Defaults for [Config].
const (
	DefaultNATSListen = "127.0.0.1:4222"
	DefaultHTTPListen = "127.0.0.1:8090"
)

// SetDefaults fills every unset field with its default.
func (c *Config) SetDefaults() {
	if c.NATSListen == "" && len(c.NATSURLs) == 0 {
		c.NATSListen = DefaultNATSListen
	}
	if c.HTTPListen == "" {
		c.HTTPListen = DefaultHTTPListen
	}
	if c.DataDir == "" {
		c.DataDir = filepath.Join(os.TempDir(), "plugbus")
	}
	if c.Prefix == "" {
		c.Prefix = bus.DefaultPrefix
	}
	if c.ServerName == "" && len(c.NATSURLs) == 0 {
		c.ServerName = defaultServerName(c.NATSListen)
	}
	if c.Cluster.Name == "" && c.Cluster.Listen != "" {
		c.Cluster.Name = "plugbus"
	}
	if c.GoneAfter == 0 {
		c.GoneAfter = Duration(5 * time.Second)
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = Duration(lease.DefaultTTL)
	}
	if c.InvokeTimeout == 0 {
		c.InvokeTimeout = Duration(10 * time.Second)
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	c.Quarantine.setDefaults()
	for i := range c.Plugins {
		if c.Plugins[i].Replicas == 0 {
			c.Plugins[i].Replicas = 1
		}
	}
}

// Validate reports every problem in the configuration, each naming the
// setting and how to fix it.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := bus.ValidatePrefix(c.Prefix); err != nil {
		bad("prefix: %v", err)
	}
	natsAuth := c.NATSToken != "" || c.NATSUser != ""
	if len(c.NATSURLs) == 0 && c.NATSListen != "" {
		if err := checkAddr(c.NATSListen, DefaultNATSListen); err != nil {
			bad("nats_listen: %v", err)
		} else if !isLoopback(c.NATSListen) && !natsAuth && !c.IsSecure() {
			bad("nats_listen %q is not a loopback address and NATS has no authentication: leave secure mode on (--secure), or set --nats-token (PLUGBUS_NATS_TOKEN) or --nats-user and PLUGBUS_NATS_PASSWORD, or listen on 127.0.0.1", c.NATSListen)
		}
	}
	c.validateServer(bad)
	if c.Secure != nil && *c.Secure && len(c.NATSURLs) > 0 {
		bad("secure: secure mode manages the users of the embedded NATS server; with an external server (nats_urls) configure its users instead (coordinator plugins permissions NAME prints them)")
	}
	if c.IsSecure() && natsAuth {
		bad("secure mode gives every plugin its own nkey and cannot be combined with nats_token or nats_user; drop them, or set secure: false")
	}
	c.NATSTLS.validate("nats_tls", bad)
	c.HTTPTLS.validate("http_tls", bad)
	if err := checkAddr(c.HTTPListen, DefaultHTTPListen); err != nil {
		bad("http_listen: %v", err)
	} else if !isLoopback(c.HTTPListen) && c.HTTPToken == "" && c.HTTPTokenSHA256 == "" {
		bad("http_listen %q is not a loopback address and the HTTP API has no authentication: set --http-token (PLUGBUS_HTTP_TOKEN), or listen on 127.0.0.1", c.HTTPListen)
	}
	if c.NATSUser != "" && c.NATSPassword == "" {
		bad("nats_user %q needs a nats_password (PLUGBUS_NATS_PASSWORD)", c.NATSUser)
	}
	if c.GoneAfter < Duration(time.Second) {
		bad("gone_after %v is too short; use at least 1s", time.Duration(c.GoneAfter))
	}
	if c.LeaseTTL < Duration(time.Second) {
		bad("lease_ttl %v is too short; use at least 1s", time.Duration(c.LeaseTTL))
	}
	if c.Stream.Replicas < 0 || c.Stream.Replicas > 5 {
		bad("stream.replicas %d: must be 1 to 5", c.Stream.Replicas)
	}
	if c.Stream.MaxAge < 0 {
		bad("stream.max_age %v: must be positive", time.Duration(c.Stream.MaxAge))
	}
	c.Quarantine.validate(bad)
	if c.MaxBodyBytes < 1024 {
		bad("max_body_bytes %d is too small; use at least 1024", c.MaxBodyBytes)
	}
	names := map[string]bool{}
	for i, p := range c.Plugins {
		where := fmt.Sprintf("plugins[%d]", i)
		if bus.ValidateProducer(p.Name) == nil {
			where += " (" + p.Name + ")"
		}
		if err := p.Validate(); err != nil {
			for _, e := range unjoin(err) {
				bad("%s.%v", where, e)
			}
		} else if p.Static {
			if err := checkStatic(p); err != nil {
				bad("%s.%v", where, err)
			}
		}
		if p.Name != "" && names[p.Name] {
			bad("%s.name %q: listed twice; use replicas for more instances", where, p.Name)
		}
		names[p.Name] = true
	}
	return errors.Join(errs...)
}

// unjoin returns the errors joined in err, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// LoadConfig reads a YAML (or JSON) configuration file. Unknown fields are
// errors. Relative paths in it (data_dir, a plugin's exec, wasm, dirs and dir) are taken
// from the file's directory, which is also the plugins' default working
// directory.
func LoadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return c, configError(path, b, err)
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	resolve := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	c.DataDir = resolve(c.DataDir)
	c.WasmCacheDir = resolve(c.WasmCacheDir)
	for _, t := range []*TLSSettings{&c.NATSTLS, &c.HTTPTLS} {
		t.Cert, t.Key, t.CA = resolve(t.Cert), resolve(t.Key), resolve(t.CA)
	}
	for i, p := range c.Plugins {
		c.Plugins[i].So = resolve(p.So)
		if p.InProcess() {
			continue // no program, so no working directory
		}
		if strings.ContainsRune(p.Exec, filepath.Separator) {
			c.Plugins[i].Exec = resolve(p.Exec)
		}
		c.Plugins[i].Wasm = resolve(p.Wasm)
		for j, d := range p.Dirs {
			c.Plugins[i].Dirs[j].Host = resolve(d.Host)
		}
		c.Plugins[i].Dir = resolve(p.Dir)
		if p.Dir == "" {
			c.Plugins[i].Dir = dir
		}
	}
	return c, nil
}

// checkAddr checks a host:port setting whose usual value is example.
func checkAddr(addr, example string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: %v; write it as host:port, such as %s", addr, err, example)
	}
	if port == "" {
		return fmt.Errorf("%q: the port is missing; write it as host:port", addr)
	}
	return nil
}

func isLoopback(addr string) bool {
	host, _, _ := net.SplitHostPort(addr)
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
