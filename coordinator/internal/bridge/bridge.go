// Package bridge puts a program that speaks the stdio protocol of
// docs/stdio.md on the bus: it reads the program's manifest, then runs a
// plugin-kit plugin under the manifest's name whose handlers hand every event
// to the program as a line on its standard input and take the answer from a
// line on its standard output. To the bus, the bridge is the plugin: NATS
// micro discovery, queue groups, invoke endpoints, results published as
// events, durable mode.
//
// The program is whatever [Config.Stdin] and [Config.Stdout] reach: a child
// process run by the supervisor, or a WebAssembly module.
//
// # Failures
//
// A malformed line from the program is logged with a bounded quote, counted
// in [Config.Malformed] and skipped. A line longer than [Config.MaxLine]
// is skipped unread (it is never buffered whole). The bridge reads the next
// line only once it has dealt with the last one, so a program that writes
// faster than the bus takes its events blocks on its own writes instead of
// filling the coordinator's memory. A program that leaves a line unanswered
// for [Config.Timeout], or sends no manifest within it, ends the bridge with
// [ErrUnresponsive], so that its supervisor can restart it.
package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/internal/stdioproto"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// Errors that end [Run].
var (
	// ErrUnresponsive: the program did not answer a line, or send its
	// manifest, in time.
	ErrUnresponsive = errors.New("bridge: plugin stopped answering")
	// ErrClosed: the program closed its standard output (it exited).
	ErrClosed = errors.New("bridge: plugin closed its standard output")
	// ErrManifest: the program's first line is not a usable manifest.
	ErrManifest = errors.New("bridge: bad manifest")
)

// Defaults for the zero values of a [Config].
const (
	DefaultTimeout = 30 * time.Second
)

// Config says what to bridge and to which bus.
type Config struct {
	// Plugin is the plugin's name from the coordinator's spec. The
	// manifest may leave its name out; if it gives one, it must be this.
	Plugin string
	// Instance names this instance in logs, such as hello-1.
	Instance string

	// Stdin reaches the program's standard input; the bridge closes it
	// when it is done, which tells the program to exit.
	Stdin io.WriteCloser
	// Stdout reads the program's standard output.
	Stdout io.Reader

	// Conn says how to connect to NATS, as plugin-kit's WithConnConfig.
	Conn bus.ConnConfig
	// Prefix is the subject prefix; default bus.DefaultPrefix.
	Prefix string
	// Mode is what the plugin reports as its mode in its manifest:
	// bus.ModeStdio (the default) or bus.ModeWasm.
	Mode string
	// Durable runs the plugin in durable mode (see pluginkit.WithDurable).
	Durable bool

	// Timeout is how long the program may take to send its manifest and
	// to answer a line before it is taken as hung. Default 30s.
	Timeout time.Duration
	// MaxLine bounds one line from the program. Default 1 MiB.
	MaxLine int
	// DrainTimeout is how long a stopping bridge waits for the answers
	// to lines already sent. Default 10s, as plugin-kit's.
	DrainTimeout time.Duration

	// Logger receives the bridge's records. Default slog.Default().
	Logger *slog.Logger
	// Malformed, if set, counts the lines skipped as malformed or too
	// long, and the events the program sent that could not be published.
	Malformed *atomic.Uint64
	// OnManifest, if set, is called with the program's manifest before
	// the plugin starts serving.
	OnManifest func(stdioproto.Manifest)
}

// quoteLimit bounds how much of a malformed line is logged.
const quoteLimit = 200

// A bridge is one run of one program.
type bridge struct {
	cfg     Config
	log     *slog.Logger
	plugin  *pluginkit.Plugin
	slots   chan struct{} // one per line the program may hold unanswered
	dead    chan struct{} // closed once the program is gone or hung
	dieOnce sync.Once
	why     error // why dead was closed; set before

	writeMu sync.Mutex
	line    []byte // write's, reused

	mu      sync.Mutex
	next    uint64
	pending map[string]*pending
}

type pending struct {
	sent   time.Time
	answer chan *stdioproto.Out // buffered, gets at most one
}

// Run reads the program's manifest, then serves it on the bus until ctx
// ends (it returns nil after draining) or the program exits, hangs or
// breaks the protocol (it returns an error wrapping [ErrClosed],
// [ErrUnresponsive] or [ErrManifest]). It closes cfg.Stdin before it
// returns.
func Run(ctx context.Context, cfg Config) error {
	defer cfg.Stdin.Close()
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxLine <= 0 {
		cfg.MaxLine = stdioproto.MaxLine
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.Prefix == "" {
		cfg.Prefix = bus.DefaultPrefix
	}
	if cfg.Mode == "" {
		cfg.Mode = bus.ModeStdio
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Malformed == nil {
		cfg.Malformed = new(atomic.Uint64)
	}
	b := &bridge{
		cfg:     cfg,
		log:     cfg.Logger,
		dead:    make(chan struct{}),
		pending: map[string]*pending{},
	}
	lines := newLineReader(cfg.Stdout, cfg.MaxLine)

	m, err := b.readManifest(ctx, lines)
	if err != nil || m == nil {
		return err // m is nil when ctx ended first
	}
	if cfg.OnManifest != nil {
		cfg.OnManifest(*m)
	}
	if err := b.build(m); err != nil {
		return err
	}

	serveCtx, stopServing := context.WithCancel(ctx)
	defer stopServing()
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		b.die(b.read(lines))
	}()
	go b.watch(serveCtx)
	go func() {
		select {
		case <-b.dead:
			stopServing()
		case <-serveCtx.Done():
		}
	}()

	err = b.plugin.Run(serveCtx)
	select {
	case <-b.dead:
		return b.why // the program ended the run
	default:
	}
	if err != nil {
		b.die(err)
		return err
	}
	// Stopped by ctx: every handler has its answer; closing stdin tells the
	// program to exit.
	b.die(nil)
	return nil
}

// readManifest waits for the program's first line, up to the timeout.
func (b *bridge) readManifest(ctx context.Context, lines *lineReader) (*stdioproto.Manifest, error) {
	type result struct {
		m   *stdioproto.Manifest
		err error
	}
	got := make(chan result, 1)
	go func() {
		for {
			line, err := lines.next()
			if errors.Is(err, errTooLong) {
				b.malformed(line, err)
				continue
			}
			if err != nil {
				got <- result{nil, fmt.Errorf("%w before sending its manifest (%v)", ErrClosed, err)}
				return
			}
			o, err := stdioproto.ParseOut(line)
			if err == nil && o.Manifest == nil {
				err = fmt.Errorf("%w: the first line must be {\"manifest\": ...}", stdioproto.ErrBadLine)
			}
			if err != nil {
				b.malformed(line, err)
				got <- result{nil, fmt.Errorf("%w: %v; the first line must be the manifest, see docs/stdio.md", ErrManifest, err)}
				return
			}
			got <- result{o.Manifest, nil}
			return
		}
	}()
	t := time.NewTimer(b.cfg.Timeout)
	defer t.Stop()
	select {
	case r := <-got:
		return r.m, r.err
	case <-t.C:
		return nil, fmt.Errorf("%w: no manifest within %s", ErrUnresponsive, b.cfg.Timeout)
	case <-ctx.Done():
		return nil, nil
	}
}

// build checks the manifest and makes the plugin that serves it.
func (b *bridge) build(m *stdioproto.Manifest) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrManifest}, args...)...)
	}
	if m.Protocol != 0 && m.Protocol != stdioproto.Version {
		return bad("protocol %d; this coordinator speaks stdio protocol %d", m.Protocol, stdioproto.Version)
	}
	name := m.Name
	if name == "" {
		name = b.cfg.Plugin
	}
	if b.cfg.Plugin != "" && name != b.cfg.Plugin {
		return bad("the plugin calls itself %q but the coordinator's spec names it %q; make them agree", m.Name, b.cfg.Plugin)
	}
	if err := bus.ValidateProducer(name); err != nil {
		return bad("name: %v", err)
	}
	if m.Version == "" {
		return bad("version is missing; give a semantic version such as \"1.0.0\"")
	}
	if len(m.Answers)+len(m.Handles) == 0 {
		return bad("neither answers nor handles lists a type; the plugin would get nothing")
	}
	for _, t := range m.Answers {
		if err := bus.ValidateTypePattern(t); err != nil {
			return bad("answers: %v", err)
		}
	}
	for _, t := range m.Handles {
		if err := bus.ValidateTypePattern(t); err != nil {
			return bad("handles: %v", err)
		}
	}
	for _, t := range m.Emits {
		if err := bus.ValidateType(t); err != nil {
			return bad("emits: %v", err)
		}
	}
	// The bridge checks data against the manifest's schemas, natively,
	// so that a WebAssembly module need not.
	schemas := map[string]string{}                      // type pattern -> itself, when checked
	schemaOpts := map[string][]pluginkit.HandleOption{} // type pattern -> the Schema option
	for t, doc := range m.Schemas {
		if !slices.Contains(m.Answers, t) && !slices.Contains(m.Handles, t) {
			return bad("schemas: %q is in neither answers nor handles", t)
		}
		opt, err := schemaOption(doc)
		if err != nil {
			return bad("schemas: %q: %v", t, err)
		}
		schemas[t], schemaOpts[t] = t, []pluginkit.HandleOption{opt}
	}
	conc := max(m.Concurrency, 1)
	b.slots = make(chan struct{}, conc)
	conn := b.cfg.Conn
	conn.Name = name
	opts := []pluginkit.Option{
		pluginkit.WithConnConfig(conn),
		pluginkit.WithPrefix(b.cfg.Prefix),
		pluginkit.WithLogger(b.log),
		pluginkit.WithDescription(m.Description),
		pluginkit.WithEmits(m.Emits...),
		pluginkit.WithConcurrency(conc),
		pluginkit.WithDrainTimeout(b.cfg.DrainTimeout),
		pluginkit.WithMode(b.cfg.Mode),
	}
	if b.cfg.Durable {
		opts = append(opts, pluginkit.WithDurable(pluginkit.Durable{}))
	}
	b.plugin = pluginkit.New(name, m.Version, opts...)
	// A type the plugin answers is observed too; one it only handles is
	// observed alone, so that requests for it go to the plugin answering it.
	answers := map[string]bool{}
	for _, t := range m.Answers {
		if !answers[t] {
			answers[t] = true
			b.plugin.Handle(t, b.handler(schemas[t]), append(schemaOpts[t], pluginkit.Answering())...)
		}
	}
	for _, t := range m.Handles {
		if !answers[t] {
			answers[t] = true
			b.plugin.Handle(t, b.handler(schemas[t]), append(schemaOpts[t], pluginkit.ObserveOnly())...)
		}
	}
	return nil
}

// handler returns the handler of the manifest's type pattern: it hands
// each event to the program. checked is the pattern when the bridge's
// plugin checks the data against the schema the manifest gave for it.
func (b *bridge) handler(checked string) pluginkit.HandlerFunc {
	return func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		return b.handle(ctx, e, checked)
	}
}

// handle hands one event to the program and waits for its answer.
func (b *bridge) handle(ctx context.Context, e pluginkit.Event, checked string) (*pluginkit.Event, error) {
	select {
	case b.slots <- struct{}{}: // released when the answer comes, or never
	case <-b.dead:
		return nil, b.gone()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p := &pending{sent: time.Now(), answer: make(chan *stdioproto.Out, 1)}
	b.mu.Lock()
	b.next++
	id := strconv.FormatUint(b.next, 10)
	b.pending[id] = p
	b.mu.Unlock()
	if err := b.write(stdioproto.In{ID: id, Producer: pluginkit.Producer(ctx), Checked: checked}, &e); err != nil {
		if errors.Is(err, errEncode) {
			b.forget(id)
			return nil, pluginkit.Permanent(err)
		}
		b.die(fmt.Errorf("%w: writing to its standard input: %v", ErrClosed, err))
		return nil, b.gone()
	}
	select {
	case o := <-p.answer:
		return b.result(o)
	case <-b.dead:
		return nil, b.gone()
	case <-ctx.Done():
		// The slot stays taken until the program answers (or is restarted
		// for not answering): it is still working on the line.
		return nil, ctx.Err()
	}
}

// result turns an answer into what a plugin-kit handler returns.
func (b *bridge) result(o *stdioproto.Out) (*pluginkit.Event, error) {
	if o.Error != nil {
		err := errors.New(o.Error.Message)
		if o.Error.Permanent {
			return nil, pluginkit.Permanent(err)
		}
		return nil, err
	}
	if len(o.Event) == 0 {
		return nil, nil
	}
	e, err := stdioproto.ParseEvent(o.Event)
	if err != nil {
		return nil, fmt.Errorf("bridge: the plugin's result: %w", err)
	}
	return e, nil
}

// schemaOption returns the Schema option for a schema document, or the
// reason it is not a usable JSON Schema (Schema panics on one).
func schemaOption(doc json.RawMessage) (opt pluginkit.HandleOption, err error) {
	d := strings.TrimSpace(string(doc))
	if !strings.HasPrefix(d, "{") {
		return nil, errors.New("a schema must be a JSON object")
	}
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%v", v)
		}
	}()
	return pluginkit.Schema(d), nil
}

// gone is the error of a handler whose program went away.
func (b *bridge) gone() error {
	return fmt.Errorf("bridge: plugin %q (%s) is restarting: %w", b.cfg.Plugin, b.cfg.Instance, b.why)
}

// errEncode: the event could not be written as a line.
var errEncode = errors.New("bridge: encoding the event for the plugin")

// write sends the event line for e to the program.
func (b *bridge) write(in stdioproto.In, e *pluginkit.Event) error {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	line, err := stdioproto.AppendIn(b.line[:0], in, e)
	if err != nil {
		return fmt.Errorf("%w: %v", errEncode, err)
	}
	b.line = append(line, '\n')
	_, err = b.cfg.Stdin.Write(b.line) // one write: one system call to a process
	return err
}

// forget drops a pending line and frees its slot.
func (b *bridge) forget(id string) *pending {
	b.mu.Lock()
	p := b.pending[id]
	delete(b.pending, id)
	b.mu.Unlock()
	if p != nil {
		<-b.slots
	}
	return p
}

// read takes the program's lines until its output ends, and returns why.
func (b *bridge) read(lines *lineReader) error {
	for {
		line, err := lines.next()
		if errors.Is(err, errTooLong) {
			b.malformed(line, err)
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return ErrClosed
			}
			return fmt.Errorf("%w: %v", ErrClosed, err)
		}
		o, err := stdioproto.ParseOut(line)
		if err != nil {
			b.malformed(line, err)
			continue
		}
		switch {
		case o.Manifest != nil:
			b.malformed(line, errors.New("a second manifest; it is sent once, first"))
		case o.ID != "":
			p := b.forget(o.ID)
			if p == nil {
				b.malformed(line, fmt.Errorf("id %q answers no line that is waiting for an answer", o.ID))
				continue
			}
			p.answer <- o
		default:
			b.emit(line, o.Emit)
		}
	}
}

// emit publishes an event the program sent on its own account. It returns
// once the event is handed to NATS, so a program that emits faster than the
// bus takes events waits on its own writes.
func (b *bridge) emit(line []byte, raw json.RawMessage) {
	e, err := stdioproto.ParseEvent(raw)
	if err != nil {
		b.malformed(line, err)
		return
	}
	if err := b.plugin.Publish(e); err != nil {
		b.cfg.Malformed.Add(1)
		b.log.Warn("could not publish an event the plugin emitted", "type", e.Type(), "err", err)
		return
	}
}

// malformed reports a line that was skipped.
func (b *bridge) malformed(line []byte, why error) {
	n := b.cfg.Malformed.Add(1)
	quote := string(line)
	if len(quote) > quoteLimit {
		quote = quote[:quoteLimit] + "…"
	}
	b.log.Warn("skipped a malformed line from the plugin", "reason", why, "line", quote, "malformed_lines", n)
}

// watch ends the bridge when a line has waited too long for its answer.
func (b *bridge) watch(ctx context.Context) {
	t := time.NewTicker(max(b.cfg.Timeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-b.dead:
			return
		case <-ctx.Done():
			return
		}
		var oldest time.Time
		b.mu.Lock()
		for _, p := range b.pending {
			if oldest.IsZero() || p.sent.Before(oldest) {
				oldest = p.sent
			}
		}
		b.mu.Unlock()
		if !oldest.IsZero() && time.Since(oldest) > b.cfg.Timeout {
			b.die(fmt.Errorf("%w: a line has waited %s for its answer (timeout %s)", ErrUnresponsive, time.Since(oldest).Round(time.Millisecond), b.cfg.Timeout))
			return
		}
	}
}

// die marks the program gone for why (nil: stopped on purpose) and closes
// its standard input. Only the first call counts.
func (b *bridge) die(why error) {
	b.dieOnce.Do(func() {
		b.why = why
		close(b.dead)
		b.cfg.Stdin.Close()
	})
}
