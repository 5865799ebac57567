package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator/internal/activity"
	"github.com/plugbus/plugbus/coordinator/internal/agent"
	"github.com/plugbus/plugbus/coordinator/internal/deadletter"
	"github.com/plugbus/plugbus/coordinator/internal/supervise"
	"github.com/plugbus/plugbus/internal/tracing"
)

// Defaults and limits of [Config].
const (
	DefaultProducer      = "http"
	DefaultMaxBodyBytes  = 1 << 20
	DefaultInvokeTimeout = 10 * time.Second
	// MaxInvokeTimeout caps both [Config.InvokeTimeout] and ?timeout=.
	MaxInvokeTimeout = 5 * time.Minute
)

// flushTimeout bounds the wait for the NATS server to confirm an ingest's
// publishes.
const flushTimeout = 5 * time.Second

// Config configures the handler built by [New]. Conn is required; every
// other field has a default.
type Config struct {
	// Conn is where events are published and requests sent: it needs only
	// to publish events and requests as Producer and read its inboxes.
	Conn *nats.Conn
	// Observe is where GET /v1/stream subscribes to the events it streams;
	// default Conn.
	Observe *nats.Conn
	// Prefix is the subject prefix; default bus.DefaultPrefix.
	Prefix string
	// Producer is the producer name events from HTTP are published under;
	// default "http".
	Producer string
	// Token, when set, is required on every /v1/ endpoint as
	// "Authorization: Bearer <Token>". Only its hash is kept.
	Token string
	// TokenSHA256 is the hex SHA-256 of the token, for a configuration
	// that should not hold the token itself; it wins over Token.
	TokenSHA256 string
	// MaxBodyBytes limits request bodies; default 1 MiB. Larger bodies are
	// answered 413.
	MaxBodyBytes int64
	// BodyTimeout is how long a client may take to send a request body;
	// default 30s. A slower body is answered 408.
	BodyTimeout time.Duration
	// OpenReads serves the read-only views of plugins, types, supervised
	// processes and activity (GET /v1/plugins, /v1/types, /v1/supervised,
	// /v1/overview, /v1/plugins/{name}/instances) without the token. Event
	// data (/v1/stream, dead letters) and everything that publishes,
	// invokes or administers still needs it.
	OpenReads bool
	// RateLimit, when positive, is how many /v1/ requests a second each
	// client may send (per bearer token, or per address without one),
	// with bursts of RateBurst (default: RateLimit); more are answered 429.
	RateLimit float64
	RateBurst int
	// InvokeTimeout is how long an invoke waits for its reply unless the
	// request asks otherwise with ?timeout=; default 10s, at most
	// [MaxInvokeTimeout].
	InvokeTimeout time.Duration
	// Plugins returns the snapshot served by GET /v1/plugins, marshalled
	// as JSON as is. Nil serves an empty list.
	Plugins func() any
	// Types returns the catalogue served by GET /v1/types. Nil serves an
	// empty list.
	Types func() any
	// CheckData, when set, checks the data of an event of type typ before
	// it is published or sent as a request; its error, naming the field
	// and the rule (a *schema.Error), answers 400 and nothing is sent.
	CheckData func(typ string, data []byte) error
	// Answerers returns the names of the plugins with a running instance
	// that answers requests for typ (from the registry). Invoke refuses a
	// type that two plugins answer unless the caller names one, and a
	// named plugin that does not answer the type. Nil checks nothing: every
	// invoke is sent, and NATS finds who answers.
	Answerers func(typ string) []string
	// Supervised returns the snapshot served by GET /v1/supervised: the
	// processes the coordinator runs itself, with their restarts. Nil
	// serves an empty list.
	Supervised func() any
	// Restart restarts every instance of a plugin the coordinator runs
	// itself (POST /v1/supervised/{name}/restart): drained, then started
	// again from its executable or module file as it is now. It returns how
	// many instances it restarts. Nil answers 404.
	Restart func(name string) (int, error)
	// Ready returns nil when the coordinator is ready to serve; /readyz
	// answers 503 with its error otherwise. Nil means always ready.
	Ready func() error
	// Registerer is where the API registers its metrics; default
	// prometheus.DefaultRegisterer. Metrics already registered there by an
	// earlier New are reused.
	Registerer prometheus.Registerer
	// Gatherer is what /metrics serves; default prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// Logger hears about rejected requests; default slog.Default().
	Logger *slog.Logger
	// DeadLetters serves /v1/deadletters (see deadletter.go); nil, when
	// durable mode is off, answers those endpoints 404.
	DeadLetters *deadletter.Store
	// JetStream, when set (durable mode), makes POST /v1/events wait until
	// the events stream has stored each event before answering 202.
	JetStream jetstream.JetStream
	// Activity feeds the dashboard's plugin overview (GET /v1/overview and
	// /v1/plugins/{name}/instances); nil answers those endpoints 404.
	Activity *activity.Tracker
	// Done, once closed, ends the streams (server-sent events) still open,
	// so that a graceful shutdown of the HTTP server does not wait for
	// them; close it from [http.Server.RegisterOnShutdown]. Nil: streams
	// end only when their clients leave.
	Done <-chan struct{}
	// Fleet, when set, serves /v1/agents and /v1/run (see fleet.go): the
	// agents and the plugins they run on orders; nil answers 404.
	Fleet *agent.Store
	// Identities, in secure mode, serves /v1/identities (see
	// identities.go); nil answers those endpoints 404.
	Identities Identities
	// TracerProvider, when set, traces ingest and invoke (see tracing.go);
	// nil traces nothing.
	TracerProvider trace.TracerProvider
}

// ErrInvalidConfig is returned by [New] for settings that can never work.
var ErrInvalidConfig = errors.New("api: invalid config")

func (c *Config) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = bus.DefaultPrefix
	}
	if c.Observe == nil {
		c.Observe = c.Conn
	}
	if c.Producer == "" {
		c.Producer = DefaultProducer
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.InvokeTimeout == 0 {
		c.InvokeTimeout = DefaultInvokeTimeout
	}
	if c.BodyTimeout <= 0 {
		c.BodyTimeout = 30 * time.Second
	}
	if c.Supervised == nil {
		c.Supervised = func() any { return []any{} }
	}
	if c.Plugins == nil {
		c.Plugins = func() any { return []any{} }
	}
	if c.Types == nil {
		c.Types = func() any { return []any{} }
	}
	if c.Ready == nil {
		c.Ready = func() error { return nil }
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.DefaultRegisterer
	}
	if c.Gatherer == nil {
		c.Gatherer = prometheus.DefaultGatherer
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.Conn == nil {
		errs = append(errs, fmt.Errorf("%w: Conn is nil; pass the coordinator's NATS connection", ErrInvalidConfig))
	}
	if err := bus.ValidatePrefix(c.Prefix); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrInvalidConfig, err))
	}
	if err := bus.ValidateProducer(c.Producer); err != nil {
		errs = append(errs, fmt.Errorf("%w: Producer: %w", ErrInvalidConfig, err))
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("%w: MaxBodyBytes %d is negative; use 0 for the default of %d", ErrInvalidConfig, c.MaxBodyBytes, DefaultMaxBodyBytes))
	}
	if c.InvokeTimeout < 0 || c.InvokeTimeout > MaxInvokeTimeout {
		errs = append(errs, fmt.Errorf("%w: InvokeTimeout %v must be between 0 (default %v) and %v", ErrInvalidConfig, c.InvokeTimeout, DefaultInvokeTimeout, MaxInvokeTimeout))
	}
	return errors.Join(errs...)
}

// server holds what the handlers share.
type server struct {
	cfg    Config
	log    *slog.Logger
	m      *metrics
	token  [sha256.Size]byte // hash of cfg.Token, compared in constant time
	tracer trace.Tracer      // nil: tracing off

	hasToken bool        // the API requires a bearer token
	limiter  *limiter    // nil without a rate limit
	flushes  *flushGroup // the confirmations of ingests without durability

	// rejectLog bounds the log lines about refused client requests (each
	// is counted in the metrics all the same): a client sending junk or
	// guessing tokens would otherwise write a line per request.
	rejectLog  *rate.Limiter
	suppressed atomic.Int64 // rejections not logged since the last line
}

// Log lines about refused client requests: a burst of rejectLogBurst, then
// rejectLogRate a second.
const (
	rejectLogRate  = 5
	rejectLogBurst = 20
)

// New builds the API handler described in the package documentation. It
// fails on a config that can never work and when its metrics clash with
// others already registered on cfg.Registerer.
func New(cfg Config) (http.Handler, error) {
	s, err := newServer(cfg)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	s.route(mux, "POST", "/v1/events", s.v1(s.traced("POST /v1/events", s.handleEvents)))
	s.route(mux, "POST", "/v1/invoke/{type}", s.v1(s.traced("POST /v1/invoke/{type}", s.handleInvoke)))
	s.route(mux, "GET", "/v1/plugins", s.read(s.snapshot("plugin list", s.cfg.Plugins)))
	s.route(mux, "GET", "/v1/types", s.read(s.snapshot("type catalogue", s.cfg.Types)))
	s.route(mux, "GET", "/v1/supervised", s.read(s.snapshot("supervised processes", s.cfg.Supervised)))
	s.route(mux, "POST", "/v1/supervised/{name}/restart", s.v1(s.handleRestartSupervised))
	s.routeDeadLetters(mux)
	s.routeIdentities(mux)
	s.routeFleet(mux)
	s.route(mux, "GET", "/healthz", http.HandlerFunc(s.handleHealth))
	s.route(mux, "GET", "/readyz", http.HandlerFunc(s.handleReady))
	s.route(mux, "GET", "/metrics", promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	s.route(mux, "GET", "/v1/stream", s.v1(s.handleStream))
	s.route(mux, "GET", "/v1/overview", s.read(s.needActivity(s.handleOverview)))
	s.route(mux, "GET", "/v1/plugins/{name}/instances", s.read(s.needActivity(s.handleInstances)))
	s.routeDashboard(mux)
	mux.HandleFunc("/", s.handleNotFound)
	return s.recover(mux), nil
}

// newServer checks and completes cfg and builds what the handlers share.
func newServer(cfg Config) (*server, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	tokenSum, err := hex.DecodeString(cfg.TokenSHA256)
	if err != nil || cfg.TokenSHA256 != "" && len(tokenSum) != sha256.Size {
		return nil, fmt.Errorf("%w: TokenSHA256 must be the 64 hex digits of the token's SHA-256 (sha256sum)", ErrInvalidConfig)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &server{cfg: cfg, log: cfg.Logger, m: m, token: sha256.Sum256([]byte(cfg.Token)), hasToken: cfg.Token != "", tracer: tracing.Tracer(cfg.TracerProvider),
		rejectLog: rate.NewLimiter(rejectLogRate, rejectLogBurst)}
	if cfg.TokenSHA256 != "" {
		copy(s.token[:], tokenSum)
		s.hasToken = true
	}
	s.cfg.Token, s.cfg.TokenSHA256 = "", "" // only the hash is kept
	if cfg.RateLimit > 0 {
		s.limiter = newLimiter(cfg.RateLimit, cfg.RateBurst)
	}
	s.flushes = newFlushGroup(cfg.Conn.FlushTimeout)
	return s, nil
}

// route registers h for method and pattern, and a JSON 405 for the same
// pattern with any other method (ServeMux's own 405 is plain text, and the
// catch-all "/" would otherwise turn it into a 404).
func (s *server) route(mux *http.ServeMux, method, pattern string, h http.Handler) {
	mux.Handle(method+" "+pattern, h)
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", method)
		s.fail(w, r, &apiError{
			status: http.StatusMethodNotAllowed,
			msg:    fmt.Sprintf("method %s is not allowed on %s; use %s", r.Method, r.URL.Path, method),
		})
	})
}

func (s *server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	s.fail(w, r, &apiError{
		status: http.StatusNotFound,
		msg: fmt.Sprintf("no endpoint %s %s; the API has POST /v1/events, POST /v1/invoke/{type}, GET /v1/plugins, GET /v1/plugins/{name}/instances, GET /v1/types, GET /v1/supervised, POST /v1/supervised/{name}/restart, GET /v1/stream, GET /v1/overview, /v1/deadletters, GET /v1/agents, /v1/run, GET /healthz, GET /readyz, GET /metrics and the dashboard at GET /",
			r.Method, r.URL.Path),
	})
}

// v1 guards an endpoint with the bearer token when one is configured.
func (s *server) v1(h http.HandlerFunc) http.Handler {
	if !s.hasToken {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !s.limited(w, r, false) {
				h(w, r)
			}
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearer(r.Header.Get("Authorization"))
		// Hashing first makes the comparison constant-time in the length
		// of the token too.
		if sum := sha256.Sum256([]byte(got)); !ok || subtle.ConstantTimeCompare(sum[:], s.token[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="plugbus"`)
			msg := "missing bearer token; send the header Authorization: Bearer <token> with the coordinator's HTTP token"
			if ok {
				msg = "wrong bearer token; send the coordinator's HTTP token as Authorization: Bearer <token>"
			}
			s.fail(w, r, &apiError{status: http.StatusUnauthorized, reason: reasonUnauthorized, msg: msg, field: "Authorization"})
			return
		}
		if !s.limited(w, r, true) {
			h(w, r)
		}
	})
}

// read guards a read-only view: open with [Config.OpenReads] (rate-limited
// per address), behind the token otherwise.
func (s *server) read(h http.HandlerFunc) http.Handler {
	if !s.cfg.OpenReads {
		return s.v1(h)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.limited(w, r, false) {
			h(w, r)
		}
	})
}

func bearer(header string) (string, bool) {
	const scheme = "bearer "
	if len(header) <= len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		return "", false
	}
	return strings.TrimSpace(header[len(scheme):]), true
}

// snapshot serves what get returns as JSON: GET /v1/plugins, GET /v1/types
// and GET /v1/supervised.
func (s *server) snapshot(what string, get func() any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := json.Marshal(get())
		if err != nil {
			s.fail(w, r, &apiError{status: http.StatusInternalServerError, msg: "cannot encode the " + what + " as JSON: " + err.Error()})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
		_, _ = w.Write([]byte("\n"))
	}
}

func (s *server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *server) handleReady(w http.ResponseWriter, r *http.Request) {
	if err := s.cfg.Ready(); err != nil {
		// Debug: probes ask every few seconds while the coordinator starts.
		s.log.Debug("not ready", "path", r.URL.Path, "reason", err.Error())
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// recover turns a panic into a 500 as a last resort; handlers report bad
// input as errors and never rely on it.
func (s *server) recover(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic in HTTP handler", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v))
			writeJSON(w, http.StatusInternalServerError, errorBody{Error: "internal error in the coordinator; the request was not processed (see its log)"})
		}()
		next.ServeHTTP(w, r)
	})
}

// handleRestartSupervised restarts the instances of a plugin the
// coordinator runs itself.
func (s *server) handleRestartSupervised(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if s.cfg.Restart == nil {
		s.fail(w, r, &apiError{status: http.StatusNotFound, msg: "this coordinator runs no plugins itself"})
		return
	}
	n, err := s.cfg.Restart(name)
	switch {
	case errors.Is(err, supervise.ErrUnknownPlugin):
		s.fail(w, r, &apiError{status: http.StatusNotFound, msg: err.Error() + "; GET /v1/supervised lists the plugins this coordinator runs (a plugin started with `coordinator run` restarts with POST /v1/run/{name}/restart)"})
		return
	case err != nil:
		s.fail(w, r, &apiError{status: http.StatusConflict, msg: err.Error()})
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"plugin": name, "instances": n})
}
