package pluginkit

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"go.opentelemetry.io/otel/trace"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/internal/schema"
	"github.com/plugbus/plugbus/internal/stdioproto"
	"github.com/plugbus/plugbus/internal/tracing"
)

// A Plugin is a set of handlers with a name and a version. Register handlers
// with [Plugin.Handle] before running it with [Main], [Plugin.Run] or
// [Plugin.Serve].
type Plugin struct {
	name, version string
	description   string
	emits         []string
	schemas       map[string]string // emitted type -> JSON Schema of its data
	logger        *slog.Logger
	prefix        string
	connCfg       bus.ConnConfig
	concurrency   int
	drainTimeout  time.Duration
	middleware    []Middleware
	routes        []*route
	durable       *Durable     // nil: at most once (core NATS)
	tracer        trace.Tracer // nil: tracing off (see WithTracerProvider)
	mode          string       // how the instance runs, for its manifest: a bus.Mode constant

	// Settings and their use; see settings.go.
	flags     *flag.FlagSet
	envFlags  []envFlag
	setups    []func(*Plugin) error
	cleanups  []func() error
	setUpDone bool
	setUpErr  error

	// Set once Serve starts.
	started   atomic.Bool
	nc        *nats.Conn
	id        string
	source    string
	sourceRef types.URIRef
	ds        *durableState // set while a durable plugin serves
	log       *slog.Logger
	handlers  context.Context // handlers' base context, cancelled when draining ends
	cancel    context.CancelFunc

	stdio *stdioWriter // set while served over the stdio protocol
	// stdioShort: some handler takes the stdio short path (handleData),
	// so lines are read for it first.
	stdioShort bool

	invalid invalidWarnings // rate limit of the warnings about invalid messages

	encoders sync.Pool // of *bus.Encoder, to encode results; see encoder

	subjectsMu sync.RWMutex
	subjects   map[string]string // result type -> its event subject, see resultSubject

	quit     chan struct{} // closed when Serve returns: workers end
	mu       sync.RWMutex  // guards stopping against inflight.Add
	stopping bool
	inflight sync.WaitGroup
}

type route struct {
	pattern       string
	subject       string // P.events.*.<pattern>, where it observes events
	answerSubject string // P.invoke.*.<pattern>, where it answers requests; "" if it does not
	handler       Handler
	concurrency   int
	broadcast     bool
	answer        bool // set by the Answering option
	observeOnly   bool // set by the ObserveOnly option
	answers       bool // decided in Handle from the pattern and the options
	schema        string
	validator     *schema.Validator // the schema's, checking data before the handler runs
	data          dataHandler       // the stdio short path of a typed handler, or nil
	replyType     string            // the type of data's answer event, "" for none
	replySchema   string            // the dataschema of data's answer event
	work          chan work         // to the route's workers
	stats         routeStats
}

// routeStats is reported as the data of the endpoint's NATS micro STATS.
type routeStats struct {
	Received atomic.Uint64 `json:"received"`
	Handled  atomic.Uint64 `json:"handled"`
	Failed   atomic.Uint64 `json:"failed"`
	Invalid  atomic.Uint64 `json:"invalid"`

	// invalidFrom counts the invalid messages by producer (the subject's
	// token, which NATS permissions vouch for), for the coordinator to
	// find who sends junk; at most maxInvalidProducers of them.
	mu          sync.Mutex
	invalidFrom map[string]uint64
}

// maxInvalidProducers bounds routeStats.invalidFrom.
const maxInvalidProducers = 64

// invalid counts an invalid message from producer ("" when its subject
// does not name one).
func (s *routeStats) invalid(producer string) {
	s.Invalid.Add(1)
	if producer == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.invalidFrom == nil {
		s.invalidFrom = map[string]uint64{}
	}
	if _, ok := s.invalidFrom[producer]; ok || len(s.invalidFrom) < maxInvalidProducers {
		s.invalidFrom[producer]++
	}
}

// invalidBy returns a copy of the counts by producer, nil when there are none.
func (s *routeStats) invalidBy() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.invalidFrom) == 0 {
		return nil
	}
	return maps.Clone(s.invalidFrom)
}

// New returns a plugin named name at version version (semantic versioning,
// such as "1.2.0"). The name is one NATS token of letters, digits, '_' and
// '-'; it names the plugin's queue group, micro service and the producer of
// its events. New panics on an invalid name, as it is fixed in the program.
func New(name, version string, opts ...Option) *Plugin {
	if err := bus.ValidateProducer(name); err != nil {
		panic(fmt.Sprintf("pluginkit: New: plugin %v", err))
	}
	p := &Plugin{
		name:         name,
		version:      version,
		prefix:       bus.DefaultPrefix,
		concurrency:  DefaultConcurrency,
		drainTimeout: 10 * time.Second,
		mode:         bus.ModeProcess,
		flags:        flag.NewFlagSet(name, flag.ContinueOnError),
	}
	for _, opt := range opts {
		opt(p)
	}
	return p
}

// Name returns the plugin's name.
func (p *Plugin) Name() string { return p.name }

// Version returns the plugin's version.
func (p *Plugin) Version() string { return p.version }

// ID returns the instance id, set once the plugin is running.
func (p *Plugin) ID() string { return p.id }

// Handle registers h for events whose type matches pattern: an exact type
// such as "com.example.user.created", or one with NATS wildcards on whole
// dot-separated parts ("com.example.*.created", "com.example.>").
//
// Every handler observes the events of its types (P.events.*.<pattern>). A
// handler for an exact type also answers requests for it
// (P.invoke.*.<type>, see [Invoke]) unless registered with [ObserveOnly]; a
// handler for a pattern only observes unless registered with [Answering].
//
// It panics on an invalid or duplicate pattern, on contradicting options and
// when the plugin is already running, as net/http's ServeMux does.
func (p *Plugin) Handle(pattern string, h Handler, opts ...HandleOption) {
	if p.started.Load() {
		panic(fmt.Sprintf("pluginkit: Handle(%q) called after the plugin started", pattern))
	}
	if err := bus.ValidateTypePattern(pattern); err != nil {
		panic(fmt.Sprintf("pluginkit: Handle: %v", err))
	}
	if h == nil {
		panic(fmt.Sprintf("pluginkit: Handle(%q): nil handler", pattern))
	}
	for _, r := range p.routes {
		if r.pattern == pattern {
			panic(fmt.Sprintf("pluginkit: Handle(%q): a handler for this pattern is already registered", pattern))
		}
	}
	r := &route{pattern: pattern, handler: h}
	for _, opt := range opts {
		opt(r)
	}
	if r.answer && r.observeOnly {
		panic(fmt.Sprintf("pluginkit: Handle(%q): the options Answering and ObserveOnly contradict each other; use one", pattern))
	}
	r.answers = r.answer || !r.observeOnly && bus.ValidateType(pattern) == nil
	p.routes = append(p.routes, r)
}

// HandleFunc registers a function as the handler for pattern; see
// [Plugin.Handle].
func (p *Plugin) HandleFunc(pattern string, f func(ctx context.Context, e Event) (*Event, error), opts ...HandleOption) {
	p.Handle(pattern, HandlerFunc(f), opts...)
}

// Use adds middleware around every handler. The first one added is the
// outermost.
func (p *Plugin) Use(mw ...Middleware) { p.middleware = append(p.middleware, mw...) }

// Run connects to NATS with the plugin's connection settings, serves until
// ctx ends, drains and closes the connection. The connection retries and
// reconnects forever; after a reconnect the plugin announces itself again.
//
// Before connecting, Run calls the functions given to [Plugin.Setup]; before
// it returns, the ones given to [Plugin.Cleanup].
func (p *Plugin) Run(ctx context.Context) (err error) {
	defer p.cleanUp(&err)
	if err := p.setUp(); err != nil {
		return fmt.Errorf("pluginkit: plugin %q: %w", p.name, err)
	}
	if p.logger == nil {
		p.logger = slog.Default()
	}
	cfg := p.connCfg
	if cfg.Name == "" {
		cfg.Name = p.name
	}
	if cfg.InboxPrefix == "" {
		// In secure mode only this plugin may read replies below it.
		cfg.InboxPrefix = bus.InboxPrefix(p.name)
	}
	log := p.logger.With("plugin", p.name)
	closed := make(chan struct{})
	var closeOnce sync.Once
	reconnected := make(chan struct{}, 1)
	var closing atomic.Bool // set once Run closes the connection itself
	cfg.OnEvent = func(ev bus.ConnEvent) {
		switch ev.Kind {
		case bus.Connecting:
			log.Info("connecting to NATS", "url", ev.URL)
		case bus.ConnectFailed:
			log.Warn("cannot reach NATS; retrying", "url", ev.URL, "err", ev.Err, "failed_attempts", ev.Failures)
		case bus.Connected:
			log.Info("connected to NATS", "url", ev.URL)
		case bus.Disconnected:
			if closing.Load() {
				return // the drain below closing the connection, not an outage
			}
			log.Warn("disconnected from NATS; reconnecting", "url", ev.URL, "err", ev.Err)
		case bus.Reconnected:
			log.Info("reconnected to NATS", "url", ev.URL)
			select {
			case reconnected <- struct{}{}:
			default:
			}
		case bus.Closed:
			closeOnce.Do(func() { close(closed) })
		case bus.AsyncError:
			log.Error("NATS error", "err", ev.Err)
		}
	}
	nc, err := bus.Connect(ctx, cfg)
	if err != nil {
		return fmt.Errorf("pluginkit: plugin %q: %w", p.name, err)
	}
	err = p.serve(ctx, nc, reconnected)
	closing.Store(true)
	if derr := nc.Drain(); derr != nil && !errors.Is(derr, nats.ErrConnectionClosed) {
		nc.Close()
	}
	select {
	case <-closed:
	case <-time.After(p.drainTimeout):
		nc.Close()
	}
	return err
}

// Serve runs the plugin on an existing connection until ctx ends, then
// stops taking events, waits for running handlers (up to the drain
// timeout), publishes the stopped event and returns. It leaves nc open.
// Like [Plugin.Run], it calls the functions given to [Plugin.Setup] first
// and the ones given to [Plugin.Cleanup] last.
func (p *Plugin) Serve(ctx context.Context, nc *nats.Conn) (err error) {
	defer p.cleanUp(&err)
	if err := p.setUp(); err != nil {
		return fmt.Errorf("pluginkit: plugin %q: %w", p.name, err)
	}
	return p.serve(ctx, nc, nil)
}

func (p *Plugin) serve(ctx context.Context, nc *nats.Conn, reconnected <-chan struct{}) error {
	if !p.started.CompareAndSwap(false, true) {
		return fmt.Errorf("pluginkit: plugin %q is already running; create another with New to run a second instance", p.name)
	}
	if err := bus.ValidatePrefix(p.prefix); err != nil {
		return fmt.Errorf("pluginkit: plugin %q: %w", p.name, err)
	}
	if len(p.routes) == 0 {
		return fmt.Errorf("pluginkit: plugin %q has no handlers; register one with Handle or HandleFunc before running it", p.name)
	}
	for _, t := range p.emits {
		if err := bus.ValidateType(t); err != nil {
			return fmt.Errorf("pluginkit: plugin %q: WithEmits: %w", p.name, err)
		}
	}
	if p.logger == nil {
		p.logger = slog.Default()
	}
	p.nc = nc
	p.source = bus.Source(p.name)
	if u, err := url.Parse(p.source); err == nil {
		p.sourceRef = types.URIRef{URL: *u}
	}
	p.handlers, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	defer p.cancel()
	p.quit = make(chan struct{})
	defer close(p.quit) // ends the routes' workers

	// Before the micro service exists: its STATS handler reads the routes.
	for _, r := range p.routes {
		if err := p.prepareRoute(r); err != nil {
			return err
		}
	}
	host, _ := os.Hostname()
	meta := map[string]string{
		bus.MetaProtocol: bus.ProtocolVersion,
		bus.MetaEmits:    strings.Join(p.emits, ","),
		bus.MetaHost:     host,
		bus.MetaPID:      strconv.Itoa(os.Getpid()),
		bus.MetaMode:     p.mode,
	}
	for typ, doc := range p.schemas {
		meta[bus.MetaSchemaOf(typ)] = doc
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name:         p.name,
		Version:      p.version,
		Description:  p.description,
		QueueGroup:   p.name,
		Metadata:     meta,
		StatsHandler: p.endpointStats,
	})
	if err != nil {
		if errors.Is(err, micro.ErrConfigValidation) && strings.Contains(err.Error(), "version") {
			return fmt.Errorf("pluginkit: plugin %q version %q: must be a semantic version such as 1.2.0", p.name, p.version)
		}
		return fmt.Errorf("pluginkit: plugin %q: register micro service: %w", p.name, err)
	}
	p.id = svc.Info().ID
	p.log = p.logger.With("plugin", p.name, "instance", p.id)
	if p.durable != nil {
		// Before the endpoints, so that every handler sees it.
		if err := p.startDurable(ctx); err != nil {
			_ = svc.Stop()
			return err
		}
	}
	names := map[string]bool{}
	for _, r := range p.routes {
		if err := p.addEndpoints(svc, r, names); err != nil {
			_ = svc.Stop()
			if p.ds != nil && p.ds.stopPull != nil {
				p.ds.stopPull()
			}
			return err
		}
	}
	p.announce(bus.TypePluginStarted, "")
	p.log.Info("plugin started", "version", p.version, "handles", p.patterns(), "durable", p.ds != nil)

	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case <-reconnected:
			p.announce(bus.TypePluginStarted, "reconnected")
		}
	}
	return p.shutdown(svc)
}

// prepareRoute fills in the route's subject, concurrency and middleware.
func (p *Plugin) prepareRoute(r *route) error {
	subject, err := bus.TypeSubject(p.prefix, r.pattern)
	if err != nil {
		return fmt.Errorf("pluginkit: plugin %q: %w", p.name, err)
	}
	r.subject = subject
	if r.answers {
		if r.answerSubject, err = bus.AnswerSubject(p.prefix, r.pattern); err != nil {
			return fmt.Errorf("pluginkit: plugin %q: %w", p.name, err)
		}
	}
	if r.concurrency <= 0 {
		r.concurrency = p.concurrency
	}
	if r.concurrency <= 0 {
		r.concurrency = 1
	}
	queue := r.concurrency
	if p.durable != nil && !r.broadcast {
		// Room for every event the durable pull holds (see pull), so
		// that handing one to the workers never blocks the pull.
		slots := p.durableSlots()
		queue = slots + p.maxAhead(slots)
	}
	r.work = make(chan work, queue)
	for i := 0; i < r.concurrency; i++ {
		go p.worker(r)
	}
	h := r.handler
	for i := len(p.middleware) - 1; i >= 0; i-- {
		h = p.middleware[i](h)
	}
	r.handler = h
	return nil
}

// addEndpoints registers the route's endpoints with the micro service: one
// observing its events, and one answering requests when the route answers.
// The answering endpoint is always in the plugin's queue group, so each
// request reaches one instance.
func (p *Plugin) addEndpoints(svc micro.Service, r *route, names map[string]bool) error {
	add := func(name, subject, role string, handler micro.HandlerFunc, opts ...micro.EndpointOpt) error {
		meta := map[string]string{bus.MetaType: r.pattern, bus.MetaRole: role}
		if r.schema != "" {
			meta[bus.MetaSchema] = r.schema
		}
		unique := name
		for n := 2; names[unique]; n++ {
			unique = name + "-" + strconv.Itoa(n)
		}
		names[unique] = true
		opts = append(opts, micro.WithEndpointSubject(subject), micro.WithEndpointMetadata(meta))
		if err := svc.AddEndpoint(unique, handler, opts...); err != nil {
			return fmt.Errorf("pluginkit: plugin %q: handler for %q: %w", p.name, r.pattern, err)
		}
		return nil
	}
	var opts []micro.EndpointOpt
	if r.broadcast {
		opts = append(opts, micro.WithEndpointQueueGroupDisabled())
	}
	if err := add(endpointName(r.pattern), r.subject, bus.RoleObserve, func(req micro.Request) { p.receive(r, req) }, opts...); err != nil {
		return err
	}
	if !r.answers {
		return nil
	}
	return add("answer-"+endpointName(r.pattern), r.answerSubject, bus.RoleAnswer, func(req micro.Request) { p.answer(r, req) })
}

// endpointName turns a type pattern into a micro endpoint name, which allows
// only letters, digits, '_' and '-'.
func endpointName(pattern string) string {
	b := []byte(pattern)
	out := make([]byte, 0, len(b))
	for _, c := range b {
		switch {
		case c == '.':
			out = append(out, '_')
		case c == '*':
			out = append(out, "any"...)
		case c == '>':
			out = append(out, "all"...)
		default:
			out = append(out, c)
		}
	}
	return string(out)
}

func (p *Plugin) patterns() []string {
	out := make([]string, len(p.routes))
	for i, r := range p.routes {
		out[i] = r.pattern
	}
	return out
}

// receive takes an event from the observing endpoint's subscription. With
// a concurrency of one, or while draining, it handles the event right here;
// otherwise it hands it to a goroutine, waiting while the handler is at its
// concurrency limit. Events are never answered: a reply subject on an
// events subject (a publish waiting for the stream's acknowledgement, or a
// request sent to the wrong subject) is ignored.
func (p *Plugin) receive(r *route, req micro.Request) {
	if p.durable != nil && !r.broadcast {
		return // a durable plugin takes its events from the stream
	}
	if r.concurrency == 1 {
		msg := requestMsg(req)
		p.handleTracked(r, &msg, nil)
		return
	}
	p.dispatch(r, work{req: req})
}

// requestMsg returns the message a micro request carries.
func requestMsg(req micro.Request) nats.Msg {
	return nats.Msg{Subject: req.Subject(), Header: nats.Header(req.Headers()), Data: req.Data()}
}

// answer takes a request from the answering endpoint's subscription and
// answers it before returning, so that NATS micro counts the request, its
// processing time and, when the handler failed, the error. A request that
// names another plugin in its [bus.HeaderPlugin] header is left to that one.
func (p *Plugin) answer(r *route, req micro.Request) {
	if to := req.Headers().Get(bus.HeaderPlugin); to != "" && to != p.name {
		return
	}
	msg := requestMsg(req)
	p.handleTracked(r, &msg, req)
}

// handleTracked handles msg on the calling goroutine, counted in inflight
// like the workers' events, so that shutdown waits for it too.
func (p *Plugin) handleTracked(r *route, msg *nats.Msg, req micro.Request) {
	p.mu.RLock()
	tracked := !p.stopping
	if tracked {
		p.inflight.Add(1)
	}
	p.mu.RUnlock()
	if tracked {
		defer p.inflight.Done()
	}
	p.handle(r, msg, req)
}

// work is an event for a route's workers: one received on the route's
// observing endpoint, or, for a durable plugin, a function handling one
// pulled from the stream. A received event travels as its micro request,
// not in a closure, so that handing it over allocates nothing.
type work struct {
	req micro.Request // the event received, when run is nil
	run func()
}

// do handles the event of w.
func (p *Plugin) do(r *route, w work) {
	if w.run != nil {
		w.run()
		return
	}
	msg := requestMsg(w.req)
	p.handle(r, &msg, nil)
}

// dispatch hands w to one of the route's workers, waiting while all of
// them are busy, which is the handler's concurrency limit. While draining
// it handles w right here instead. A fixed set of workers costs less per
// event than a goroutine for each.
func (p *Plugin) dispatch(r *route, w work) {
	p.mu.RLock()
	if p.stopping {
		p.mu.RUnlock()
		p.do(r, w)
		return
	}
	p.inflight.Add(1)
	p.mu.RUnlock()
	r.work <- w
}

// worker runs a route's work until the plugin has stopped.
func (p *Plugin) worker(r *route) {
	for {
		select {
		case w := <-r.work:
			p.do(r, w)
			p.inflight.Done()
		case <-p.quit:
			return
		}
	}
}

// delivery is what a handler's context knows about the event being handled.
// It is the handler's context itself, the one it extends answering
// ctx.Value(deliveryKey{}): one allocation per event where
// context.WithValue and a delivery were two.
type delivery struct {
	context.Context
	plugin   *Plugin
	trigger  *Event
	producer string
	checked  string // the pattern whose schema the stdio bridge checked the data against

	// On the stdio short path (Plugin.handleData) the event stays the
	// bytes of its line until a handler asks for it: decoded once, by
	// triggerEvent, into trigger.
	raw    []byte
	decode sync.Once
	err    error // decoding raw

	// deadline is the event's deadline (zero for none), which the context
	// reports. Its Done channel, and the timer behind it, are made only
	// when something asks for them (timed): most handlers never do, and a
	// timer for every event cost a plugin built for WebAssembly about a
	// tenth of an event.
	deadline time.Time
	timing   sync.Once
	timed    context.Context
	cancel   context.CancelFunc
}

// Deadline returns the earlier of the event's deadline and the parent's.
func (d *delivery) Deadline() (time.Time, bool) {
	parent, ok := d.Context.Deadline()
	if d.deadline.IsZero() || ok && parent.Before(d.deadline) {
		return parent, ok
	}
	return d.deadline, true
}

// Done is closed when the event's deadline passes or the parent is done.
func (d *delivery) Done() <-chan struct{} {
	if d.deadline.IsZero() {
		return d.Context.Done()
	}
	return d.timedContext().Done()
}

// Err reports why Done is closed.
func (d *delivery) Err() error {
	if d.deadline.IsZero() {
		return d.Context.Err()
	}
	return d.timedContext().Err()
}

func (d *delivery) timedContext() context.Context {
	d.timing.Do(func() {
		d.timed, d.cancel = context.WithDeadline(d.Context, d.deadline)
	})
	return d.timed
}

// release stops the deadline's timer, if one was made, once the event has
// been handled; the context then ends.
func (d *delivery) release() {
	if d.deadline.IsZero() {
		return
	}
	d.timing.Do(func() { d.timed, d.cancel = context.WithCancel(d.Context) })
	d.cancel()
}

// triggerEvent returns the event being handled.
func (d *delivery) triggerEvent() (*Event, error) {
	if d.raw != nil {
		d.decode.Do(func() {
			d.trigger, d.err = stdioproto.DecodeEvent(d.raw)
		})
	}
	return d.trigger, d.err
}

type deliveryKey struct{}

// Value returns d for deliveryKey{}, and what d's parent holds otherwise.
func (d *delivery) Value(key any) any {
	if key == (deliveryKey{}) {
		return d
	}
	return d.Context.Value(key)
}

// handle runs the handler on an event, or on a request when req is not nil,
// publishes its result and, for a request, answers it.
func (p *Plugin) handle(r *route, msg *nats.Msg, req micro.Request) {
	r.stats.Received.Add(1)
	parse := bus.ParseDurableSubject
	if req != nil {
		parse = bus.ParseInvokeSubject
	}
	e, producer, err := bus.DecodeFrom(msg, p.prefix, parse)
	if err != nil {
		r.stats.invalid(producer)
		p.warnInvalid(msg.Subject, err)
		p.respondError(req, bus.CodeBadEvent, err.Error())
		return
	}
	ctx := &delivery{Context: p.handlers, plugin: p, trigger: e, producer: producer}
	ctx.deadline, _ = bus.Deadline(e)
	defer ctx.release()
	res, err := p.call(ctx, r, e)
	if err != nil {
		r.stats.Failed.Add(1)
		code := bus.CodeFailed
		switch {
		case IsPermanent(err):
			code = bus.CodePermanent
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			code = bus.CodeTimeout
		}
		p.log.Warn("handler failed", "type", e.Type(), "id", e.ID(), "producer", producer, "code", code, "err", err)
		p.respondError(req, code, err.Error())
		return
	}
	r.stats.Handled.Add(1)
	if res == nil {
		if req != nil {
			if err := req.Respond(nil); err != nil {
				p.log.Warn("could not send the empty reply", "type", e.Type(), "err", err)
			}
		}
		return
	}
	enc := p.encoder()
	defer p.encoders.Put(enc) // once the result has been sent
	out, err := p.encodeResult(enc, res, e)
	if err != nil {
		p.log.Error("could not encode the handler's result", "type", e.Type(), "result_type", res.Type(), "err", err)
		p.respondError(req, bus.CodeFailed, "result not sent: "+err.Error())
		return
	}
	if p.ds == nil {
		// At most once: the reply goes first, since the caller waits for
		// it and nobody waits for the published result.
		p.reply(req, out, e)
		if err := p.send(ctx, out); err != nil {
			p.log.Error("could not publish the handler's result", "type", e.Type(), "result_type", res.Type(), "err", err)
		}
		return
	}
	// Durable: the reply says the result is stored, so it waits for the
	// stream's acknowledgement.
	if err := p.send(ctx, out); err != nil {
		p.log.Error("could not publish the handler's result", "type", e.Type(), "result_type", res.Type(), "err", err)
		p.respondError(req, bus.CodeFailed, "result not sent: "+err.Error())
		return
	}
	p.reply(req, out, e)
}

// reply sends the encoded result out as the answer to req, when there is a
// request.
func (p *Plugin) reply(req micro.Request, out *nats.Msg, trigger *Event) {
	if req == nil {
		return
	}
	if err := req.Respond(out.Data, micro.WithHeaders(micro.Headers(out.Header))); err != nil {
		p.log.Warn("could not send the reply", "type", trigger.Type(), "err", err)
	}
}

// call runs the handler, turning a panic into an error. With tracing on,
// the handler runs in a span of its own, and its result leaves with a
// result span's context.
func (p *Plugin) call(ctx context.Context, r *route, e *Event) (res *Event, err error) {
	if p.tracer != nil {
		var span trace.Span
		ctx, span = p.startHandle(ctx, e, Producer(ctx))
		defer func() {
			if err == nil && res != nil {
				_, rs := p.startSend(ctx, "result", res)
				rs.End()
			}
			tracing.End(span, err)
		}()
	}
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("pluginkit: handler for %q panicked: %v", r.pattern, v)
			p.log.Error("handler panicked", "type", e.Type(), "id", e.ID(), "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	}()
	return r.handler.HandleEvent(ctx, *e)
}

// encoder returns an encoder for a result from the plugin's pool; put it
// back once the result has been sent. Reusing an encoder's message and
// header map saves about a third of the allocations of sending a result.
func (p *Plugin) encoder() *bus.Encoder {
	if enc, ok := p.encoders.Get().(*bus.Encoder); ok {
		return enc
	}
	return new(bus.Encoder)
}

// encodeResult fills in what a result event needs (source, id, time),
// validates it and encodes it with enc for its event subject, linked to
// its trigger when there is one: the trigger's id as causeid, and its
// traceparent when the result has none. The links go into the headers
// only, not into res's extensions: the trigger's attributes were checked
// when it was decoded, and setting them on res allocated an extension map
// for every result.
func (p *Plugin) encodeResult(enc *bus.Encoder, res, trigger *Event) (*nats.Msg, error) {
	p.stamp(res, nil)
	if err := bus.Validate(res); err != nil {
		return nil, err
	}
	subject, err := p.resultSubject(res.Type())
	if err != nil {
		return nil, err
	}
	msg, err := enc.Encode(subject, res)
	if err != nil || trigger == nil {
		return msg, err
	}
	enc.SetExtension(bus.ExtCauseID, trigger.ID())
	if tp, ok := trigger.Extensions()[bus.ExtTraceParent]; ok {
		if _, set := res.Extensions()[bus.ExtTraceParent]; !set {
			s, err := types.Format(tp)
			if err != nil {
				return nil, fmt.Errorf("%w: the trigger's %s: %v", bus.ErrInvalidEvent, bus.ExtTraceParent, err)
			}
			enc.SetExtension(bus.ExtTraceParent, s)
		}
	}
	return msg, nil
}

// resultSubject returns the subject of this plugin's events of type typ.
// It remembers the subjects of up to maxSubjects types, since handlers
// return the same few types over and over, and checking and joining the
// names again cost as much as the rest of encoding a small result.
func (p *Plugin) resultSubject(typ string) (string, error) {
	p.subjectsMu.RLock()
	subject, ok := p.subjects[typ]
	p.subjectsMu.RUnlock()
	if ok {
		return subject, nil
	}
	subject, err := bus.EventSubject(p.prefix, p.name, typ)
	if err != nil {
		return "", err
	}
	p.subjectsMu.Lock()
	if p.subjects == nil {
		p.subjects = map[string]string{}
	}
	if len(p.subjects) < maxSubjects {
		p.subjects[typ] = subject
	}
	p.subjectsMu.Unlock()
	return subject, nil
}

// maxSubjects bounds the result subjects a plugin remembers.
const maxSubjects = 256

// stamp sets the plugin as the event's source, fills in a missing id and
// time, and links the event to trigger when there is one.
func (p *Plugin) stamp(e, trigger *Event) {
	if ec, ok := e.Context.(*event.EventContextV1); ok {
		ec.Source = p.sourceRef // parsed once: SetSource parses it every time
	} else {
		e.SetSource(p.source)
	}
	if e.ID() == "" {
		e.SetID(NewID())
	}
	if e.Time().IsZero() {
		e.SetTime(time.Now())
	}
	if trigger == nil {
		return
	}
	e.SetExtension(bus.ExtCauseID, trigger.ID())
	if tp, ok := trigger.Extensions()[bus.ExtTraceParent]; ok {
		if _, set := e.Extensions()[bus.ExtTraceParent]; !set {
			e.SetExtension(bus.ExtTraceParent, tp)
		}
	}
}

// respondError answers req, when there is a request, with the NATS micro
// error headers, which also counts the error in the endpoint's micro STATS.
// A request without a reply subject (published, not requested: junk, as a
// flood sends it) has no one to answer, and is not worth a log line each.
func (p *Plugin) respondError(req micro.Request, code, description string) {
	if req == nil || req.Reply() == "" {
		return
	}
	// Header values cannot hold line breaks, and micro wants a description.
	description = strings.NewReplacer("\r", " ", "\n", " ").Replace(description)
	if description == "" {
		description = "failed with code " + code
	}
	if err := req.Error(code, description, nil); err != nil {
		p.log.Warn("could not send the error reply", "err", err)
	}
}

// endpointCounts is the data of an observing endpoint's micro STATS.
type endpointCounts struct {
	Received    uint64            `json:"received"`
	Handled     uint64            `json:"handled"`
	Failed      uint64            `json:"failed"`
	Invalid     uint64            `json:"invalid"`
	InvalidFrom map[string]uint64 `json:"invalid_from,omitempty"` // by producer
}

// endpointStats is the data of an endpoint's micro STATS: the counters of
// its handler, on the observing endpoint only (they count the handler's
// requests too), so that summing the endpoints counts each event once.
func (p *Plugin) endpointStats(ep *micro.Endpoint) any {
	for _, r := range p.routes {
		if r.subject == ep.Subject {
			return endpointCounts{
				Received:    r.stats.Received.Load(),
				Handled:     r.stats.Handled.Load(),
				Failed:      r.stats.Failed.Load(),
				Invalid:     r.stats.Invalid.Load(),
				InvalidFrom: r.stats.invalidBy(),
			}
		}
	}
	// An answering endpoint: NATS micro's own counts of its requests and
	// errors say it all.
	return struct{}{}
}

// announce publishes a lifecycle event about this instance.
func (p *Plugin) announce(typ, reason string) {
	host, _ := os.Hostname()
	e := NewEvent(typ, bus.Instance{
		Plugin: p.name, Version: p.version, ID: p.id, Host: host, PID: os.Getpid(), Mode: p.mode,
		Protocol: bus.ProtocolVersion, Handles: p.patterns(), Emits: p.emits, Reason: reason,
	})
	if err := p.publish(e, nil); err != nil {
		p.log.Warn("could not announce", "type", typ, "err", err)
	}
}

// shutdown stops taking events, waits for running handlers up to the drain
// timeout, cancels the ones still running, and announces the stop.
func (p *Plugin) shutdown(svc micro.Service) error {
	if p.ds != nil && p.ds.stopPull != nil {
		// No more events from the stream; the ones already pulled are
		// handed to handlers.
		p.ds.stopPull()
		select {
		case <-p.ds.pulled:
		case <-time.After(p.drainTimeout):
		}
	}
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	if p.ds != nil {
		p.ds.stopWaiting(p)
	}
	p.log.Info("plugin stopping: no new events; waiting for running handlers", "timeout", p.drainTimeout)
	if err := svc.Stop(); err != nil {
		p.log.Warn("stopping the micro service", "err", err)
	}
	done := make(chan struct{})
	go func() {
		p.inflight.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-time.After(p.drainTimeout):
		p.log.Warn("drain timeout: cancelling handlers still running")
		p.cancel()
		select {
		case <-done:
		case <-time.After(time.Second):
			err = fmt.Errorf("pluginkit: plugin %q: handlers still running after the drain timeout and cancellation", p.name)
		}
	}
	p.cancel()
	p.announce(bus.TypePluginStopped, "shutdown")
	if ferr := p.nc.FlushTimeout(2 * time.Second); ferr != nil && err == nil && !errors.Is(ferr, nats.ErrConnectionClosed) {
		p.log.Warn("flush on stop", "err", ferr)
	}
	p.log.Info("plugin stopped")
	return err
}
