package pluginkit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/bus"
)

// Durable configures durable delivery through JetStream ([WithDurable]):
// at least once instead of at most once. The zero value is the defaults.
type Durable struct {
	// MaxDeliver is how many times an event is tried before it becomes a
	// dead letter; default 5. A [Permanent] error, or an event that does not
	// decode, becomes a dead letter at once.
	MaxDeliver int
	// Backoff is the wait before each retry; the last one repeats. Default
	// 1s, 5s, 30s, 2m.
	Backoff []time.Duration
	// AckWait is how long the bus waits for an instance before handing the
	// event to another; default 30s. A handler running longer keeps its
	// event: plugin-kit sends in-progress signals every AckWait/3.
	AckWait time.Duration
	// MaxAckPending bounds the events handed out and not yet acknowledged,
	// across all instances; default 1000.
	MaxAckPending int
	// StartAt says where a new plugin (one with no consumer yet) starts:
	// StartNew (the default), StartAll (the stream's whole history) or
	// StartTime (events from StartTime on).
	StartAt   StartPolicy
	StartTime time.Time
	// EffectivelyOnce runs the handler once per event, across instances
	// and crashes, keyed by the event's producer, source and id, with a
	// record per event in the key-value bucket PLUGBUS_DEDUP. Before the
	// handler runs, the instance claims the event in its record; once the
	// handler has returned, it makes the record say handled, then
	// acknowledges the event. A delivery of a handled event is
	// acknowledged without running the handler; one of an event another
	// instance is handling (its claim renewed) is left to that instance,
	// held here meanwhile without counting as an attempt. A
	// claim that its instance has not renewed for a lease (the ack wait,
	// within 5s and 30s) is taken over by the instance that watched it
	// for that long. So a handler runs twice only when its instance dies
	// after the handler's effect and before the record is stored, or is
	// frozen or cut off from NATS for longer than a lease while the
	// handler runs (its context is cancelled when the instance notices; a
	// handler that goes on completes its effect). Effects that must never
	// repeat need keys of their own. Records live as long as the stream
	// keeps events. It costs two writes to the bucket per event. The
	// event is acknowledged with a plain ack (not waiting for the server to
	// confirm it): its record already says handled, so a lost ack only
	// brings a redelivery that is acknowledged without running the handler.
	EffectivelyOnce bool
	// PlainAck acknowledges each handled event without waiting for the
	// server to confirm the acknowledgement (a plain ack instead of a double
	// ack), which lets a busy plugin handle about a quarter more events per
	// second. What it gives up: an acknowledgement lost on its way (NATS
	// restarting, the connection cut, the instance stopping before it is
	// sent) goes unnoticed, and the event is redelivered after the ack wait
	// and handled again. Use it only for handlers that are idempotent.
	// With EffectivelyOnce the ack is always plain and this changes nothing.
	PlainAck bool
	// Stream is the events stream; default bus.DefaultEventsStream. When it
	// does not exist the plugin creates it with bus's defaults.
	Stream string
}

// StartPolicy is where a new durable plugin starts reading.
type StartPolicy int

// Start policies of [Durable].
const (
	StartNew StartPolicy = iota
	StartAll
	StartTime
)

// WithDurable makes the plugin durable: events wait in a JetStream stream
// while no instance runs, each is acknowledged only after its handler
// succeeds, failures are retried with backoff, and events that keep failing
// become dead letters on <prefix>.deadletter.<plugin>. Requests are still
// answered live. Handlers registered with [Broadcast] stay at most once.
func WithDurable(d Durable) Option {
	return func(p *Plugin) {
		if d.MaxDeliver <= 0 {
			d.MaxDeliver = 5
		}
		if len(d.Backoff) == 0 {
			d.Backoff = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute}
		}
		if d.AckWait <= 0 {
			d.AckWait = bus.DefaultAckWait
		}
		if d.MaxAckPending <= 0 {
			d.MaxAckPending = bus.DefaultMaxAckPending
		}
		if d.Stream == "" {
			d.Stream = bus.DefaultEventsStream
		}
		p.durable = &d
	}
}

// durableState is what a running durable plugin holds.
type durableState struct {
	js       jetstream.JetStream
	stopPull context.CancelFunc // ends pull
	pulled   chan struct{}      // closed when pull has returned
	dedup    jetstream.KeyValue // nil unless EffectivelyOnce
	lease    time.Duration      // how long an unrenewed claim holds (once.go)
	ttl      time.Duration

	mu      sync.Mutex
	turns   map[string]chan struct{}      // effectively-once keys of the events being handled here
	claims  map[string]*claim             // this instance's claims, renewed while their handlers run
	held    map[jetstream.Msg]bool        // events received and not settled yet: waiting for a worker or being handled
	waiting map[jetstream.Msg]*time.Timer // held events waiting for another instance's handler (waitForOther)
}

// startDurable creates or updates the plugin's consumer and starts
// consuming. Every instance shares the one consumer named after the plugin.
func (p *Plugin) startDurable(ctx context.Context) error {
	d := p.durable
	js, err := jetstream.New(p.nc)
	if err != nil {
		return err
	}
	st := &durableState{js: js, turns: map[string]chan struct{}{}, claims: map[string]*claim{}, held: map[jetstream.Msg]bool{}, waiting: map[jetstream.Msg]*time.Timer{}}
	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var filters []string
	for _, r := range p.routes {
		if !r.broadcast {
			filters = append(filters, r.subject)
		}
	}
	if len(filters) == 0 {
		return nil // only broadcast handlers: nothing is durable
	}
	filters = append(filters, p.prefix+".replay."+p.name+".>")
	// A consumer that is already as it should be is used as it is: in
	// secure mode the coordinator creates it, and the plugin may only read
	// it (info, fetch, acks), not look at the stream or change consumers.
	cons, err := js.Consumer(setup, d.Stream, p.name)
	if err != nil || !p.consumerFits(cons.CachedInfo().Config, filters) {
		var stream jetstream.Stream
		stream, err = js.Stream(setup, d.Stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			cfg := bus.StreamConfig{Prefix: p.prefix, Name: d.Stream}
			if err = bus.EnsureStreams(setup, js, cfg); err == nil {
				stream, err = js.Stream(setup, d.Stream)
			}
		}
		if err != nil {
			return fmt.Errorf("pluginkit: plugin %q: durable mode needs the stream %s (start the coordinator with durable on, or let the plugin create it; in secure mode the coordinator creates the plugin's consumer from the types its identity handles): %w", p.name, d.Stream, err)
		}
		st.ttl = stream.CachedInfo().Config.MaxAge
		if cons, err = p.ensureConsumer(setup, stream, filters); err != nil {
			return fmt.Errorf("pluginkit: plugin %q: durable consumer: %w", p.name, err)
		}
	}
	if d.EffectivelyOnce {
		ttl := st.ttl
		if ttl <= 0 {
			ttl = 24 * time.Hour
		}
		st.dedup, err = bus.DedupBucket(setup, js, ttl, 0)
		if err != nil {
			return fmt.Errorf("pluginkit: plugin %q: effectively-once bucket %s: %w", p.name, bus.DefaultDedupBucket, err)
		}
	}
	p.ds = st
	go p.keepHeld(st)
	if st.dedup != nil {
		st.lease = leaseFor(d.AckWait)
		go p.renewClaims()
	}
	pullCtx, stop := context.WithCancel(context.Background())
	st.stopPull, st.pulled = stop, make(chan struct{})
	go p.pull(pullCtx, st, cons, max(1, min(p.durableSlots(), d.MaxAckPending)))
	return nil
}

// pullWait bounds one pull request: with no events it ends after this
// long and the next one starts, so that a pull lost in an outage of NATS
// is replaced soon after.
const pullWait = 2 * time.Second

// aheadWindow bounds how long an event pulled ahead of a free worker
// waits for one: an instance pulls ahead at most as many events as its
// workers settled in the last aheadWindow.
const aheadWindow = 100 * time.Millisecond

// durableSlots returns the number of workers of the plugin's durable
// handlers.
func (p *Plugin) durableSlots() int {
	slots := 0
	for _, r := range p.routes {
		if r.broadcast {
			continue
		}
		c := r.concurrency
		if c <= 0 {
			c = p.concurrency
		}
		slots += max(1, c)
	}
	return slots
}

// aheadPerWorker bounds the events an instance pulls ahead of its workers:
// at most this many per worker. Pulled in batches this large, a plugin
// whose handlers are quick handles about a quarter more events a second
// than with one event ahead per worker (BenchmarkDurable, the async
// publisher), as a raw nats.go consumer gains from pulling more at once.
const aheadPerWorker = 8

// maxAhead returns the most events an instance with slots workers pulls
// ahead of them: aheadPerWorker per worker, within MaxAckPending.
func (p *Plugin) maxAhead(slots int) int {
	return max(0, min(aheadPerWorker*slots, p.durable.MaxAckPending-slots))
}

// pull takes events from the plugin's consumer for the workers until ctx
// ends. It holds (pulled, not settled) at most as many events as there are
// workers, plus, while handlers are quick, some pulled ahead so that the
// workers do not idle while the next pull makes its round trip, and each
// pull brings a batch: at most as many as the workers settled in the last
// aheadWindow, and at most aheadPerWorker per worker. So a quick
// handler's next events are at hand, and an instance whose handlers are
// slow holds no more than its workers run: the rest wait in the stream,
// where any instance can take them. Each event it receives is held at
// once, with in-progress signals (see keepHeld), so none waits unheld, for
// a worker or behind long handlers. It pulls when the events held drop to
// the workers' number, for all the room there is. (nats.go's
// Consume, used before, keeps a buffer of pulled events that get no
// in-progress signals while they wait for a worker, and its pull requests
// could run out under load while it believed some were open:
// nats-io/nats.go#1622.)
func (p *Plugin) pull(ctx context.Context, st *durableState, cons jetstream.Consumer, slots int) {
	defer close(st.pulled)
	var held, settledN atomic.Int64
	wake := make(chan struct{}, 1)
	release := func() {
		held.Add(-1)
		settledN.Add(1)
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	maxAhead := p.maxAhead(slots)
	ahead, since, seen := 0, time.Now(), int64(0)
	for {
		if elapsed := time.Since(since); elapsed >= aheadWindow {
			n := settledN.Load()
			ahead = min(maxAhead, int(float64(n-seen)*float64(aheadWindow)/float64(elapsed)))
			since, seen = time.Now(), n
		}
		room := slots + ahead - int(held.Load())
		if room <= 0 || room < ahead { // the workers have events at hand
			select {
			case <-wake:
			case <-ctx.Done():
				return
			}
			continue
		}
		held.Add(int64(room))
		fetchCtx, cancel := context.WithTimeout(ctx, pullWait)
		batch, err := cons.Fetch(room, jetstream.FetchContext(fetchCtx))
		got := 0
		if err == nil {
			for m := range batch.Messages() {
				got++
				p.consumeMsg(m, release)
			}
			err = batch.Error()
		}
		cancel()
		held.Add(int64(got - room))
		if err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
			p.log.Debug("durable consumer: pull failed; pulling again", "err", err)
			select { // not a busy loop while NATS is away
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// consumerFits reports whether the plugin's consumer, as it is, reads what
// the plugin handles with the settings it asks for.
func (p *Plugin) consumerFits(cfg jetstream.ConsumerConfig, filters []string) bool {
	have := cfg.FilterSubjects
	if cfg.FilterSubject != "" {
		have = append(have, cfg.FilterSubject)
	}
	if len(have) != len(filters) {
		return false
	}
	for _, f := range filters {
		if !slices.Contains(have, f) {
			return false
		}
	}
	return cfg.AckWait == p.durable.AckWait && cfg.MaxAckPending == p.durable.MaxAckPending && cfg.AckPolicy == jetstream.AckExplicitPolicy
}

// ensureConsumer updates the plugin's consumer when it exists, keeping where
// it is, and creates it otherwise, starting where Durable.StartAt says.
func (p *Plugin) ensureConsumer(ctx context.Context, stream jetstream.Stream, filters []string) (jetstream.Consumer, error) {
	d := p.durable
	for {
		cons, err := stream.Consumer(ctx, p.name)
		if err == nil {
			cfg := cons.CachedInfo().Config
			cfg.FilterSubject, cfg.FilterSubjects = "", filters
			cfg.AckWait, cfg.MaxAckPending = d.AckWait, d.MaxAckPending
			return stream.UpdateConsumer(ctx, cfg)
		}
		if !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, err
		}
		cfg := jetstream.ConsumerConfig{
			Durable:        p.name,
			Description:    "Plugbus plugin " + p.name,
			FilterSubjects: filters,
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        d.AckWait,
			MaxDeliver:     -1, // plugin-kit counts attempts and dead-letters
			MaxAckPending:  d.MaxAckPending,
			DeliverPolicy:  jetstream.DeliverNewPolicy,
		}
		switch d.StartAt {
		case StartAll:
			cfg.DeliverPolicy = jetstream.DeliverAllPolicy
		case StartTime:
			cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &d.StartTime
		}
		cons, err = stream.CreateConsumer(ctx, cfg)
		if errors.Is(err, jetstream.ErrConsumerExists) {
			continue // another instance created it first
		}
		return cons, err
	}
}

// consumeMsg takes an event from the plugin's consumer and hands it to the
// handler whose pattern matches, within that handler's concurrency, and
// calls settled once the event is settled.
func (p *Plugin) consumeMsg(m jetstream.Msg, settled func()) {
	msg := &nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}
	_, typ, _ := bus.ParseDurableSubject(p.prefix, m.Subject())
	r := p.routeFor(typ)
	if r == nil {
		p.deadLetter(m, msg, fmt.Errorf("no handler of plugin %q matches type %q", p.name, typ))
		settled()
		return
	}
	st := p.ds
	st.mu.Lock()
	st.held[m] = true
	st.mu.Unlock()
	p.dispatch(r, work{run: p.durableWork(r, m, msg, settled)})
}

// durableWork returns a worker's work on m: handle it and settle it, or,
// when another instance is handling the same event, keep holding it (see
// waitForOther) and free the worker.
func (p *Plugin) durableWork(r *route, m jetstream.Msg, msg *nats.Msg, settled func()) func() {
	return func() {
		busy := p.handleDurable(r, m, msg)
		if !busy {
			st := p.ds
			st.mu.Lock()
			delete(st.held, m)
			st.mu.Unlock()
		}
		settled()
		if busy {
			p.waitForOther(r, m, msg)
		}
	}
}

// waitForOther keeps m, an event whose record holds another instance's
// renewed claim, for a lease, with in-progress signals (it stays held),
// then hands it to a worker again to look at the record anew. The event is
// not given back to the stream meanwhile: a redelivery would count toward
// MaxDeliver, and an event that never failed could become a dead letter
// while another instance runs its handler. Not among the events that pull
// counts as held, so that this instance goes on taking other events.
func (p *Plugin) waitForOther(r *route, m jetstream.Msg, msg *nats.Msg) {
	st := p.ds
	st.mu.Lock()
	defer st.mu.Unlock()
	st.waiting[m] = time.AfterFunc(st.lease, func() {
		st.mu.Lock()
		_, ok := st.waiting[m]
		delete(st.waiting, m)
		st.mu.Unlock()
		if !ok {
			return // given back by stopWaiting
		}
		p.mu.RLock()
		if p.stopping {
			p.mu.RUnlock()
			p.giveBack(m)
			return
		}
		p.inflight.Add(1)
		p.mu.RUnlock()
		r.work <- work{run: p.durableWork(r, m, msg, func() {})}
	})
}

// stopWaiting gives the events waiting for another instance back to the
// stream, for an instance that keeps running, once the plugin is stopping.
func (st *durableState) stopWaiting(p *Plugin) {
	st.mu.Lock()
	var msgs []jetstream.Msg
	for m, t := range st.waiting {
		if t.Stop() {
			msgs = append(msgs, m)
		}
		delete(st.waiting, m)
	}
	st.mu.Unlock()
	for _, m := range msgs {
		p.giveBack(m)
	}
}

// giveBack gives a held event back to the stream at once.
func (p *Plugin) giveBack(m jetstream.Msg) {
	st := p.ds
	st.mu.Lock()
	delete(st.held, m)
	st.mu.Unlock()
	_ = m.Nak()
}

// keepHeld sends, every AckWait/3 until the plugin stops, an in-progress
// signal for each event this instance holds, waiting for a free worker of
// its handler or being handled, so that the bus does not hand the event to
// another instance (or to this one again) while a long handler runs or
// while the workers are busy with long handlers. One ticker for all of
// them: a timer per event cost more than the rest of its handling.
func (p *Plugin) keepHeld(st *durableState) {
	t := time.NewTicker(p.durable.AckWait / 3)
	defer t.Stop()
	var msgs []jetstream.Msg
	for {
		select {
		case <-p.quit:
			return
		case <-t.C:
		}
		st.mu.Lock()
		for m := range st.held {
			msgs = append(msgs, m)
		}
		st.mu.Unlock()
		for _, m := range msgs {
			_ = m.InProgress()
		}
		msgs = msgs[:0]
	}
}

// routeFor returns the durable handler whose pattern matches typ.
func (p *Plugin) routeFor(typ string) *route {
	for _, r := range p.routes {
		if !r.broadcast && matchType(r.pattern, typ) {
			return r
		}
	}
	return nil
}

// matchType reports whether typ matches a pattern with NATS wildcards.
func matchType(pattern, typ string) bool {
	for pattern != "" {
		ptok, prest, _ := strings.Cut(pattern, ".")
		if ptok == ">" {
			return typ != ""
		}
		if typ == "" {
			return false
		}
		ttok, trest, _ := strings.Cut(typ, ".")
		if ptok != "*" && ptok != ttok {
			return false
		}
		pattern, typ = prest, trest
	}
	return typ == ""
}

// handleDurable runs the handler on an event from the stream and settles
// it: acknowledged after success (and after its results are stored),
// retried later after an error, a dead letter when it cannot succeed. It
// reports busy, leaving the event unsettled, when with effectively-once
// another instance is handling the event.
func (p *Plugin) handleDurable(r *route, m jetstream.Msg, msg *nats.Msg) (busy bool) {
	r.stats.Received.Add(1)
	attempt := 1
	if meta, err := m.Metadata(); err == nil {
		attempt = int(meta.NumDelivered)
	}
	e, producer, err := bus.DecodeFrom(msg, p.prefix, bus.ParseDurableSubject)
	if err != nil {
		r.stats.invalid(producer)
		p.warnInvalid(msg.Subject, err)
		p.deadLetter(m, msg, err)
		return
	}
	ctx := p.handlers
	var c *claim
	endTurn := func() {}
	defer func() { endTurn() }()
	if p.ds.dedup != nil {
		key := p.name + "." + bus.MsgID(producer, e.Source(), e.ID())
		endTurn = p.takeTurn(key)
		outcome, cl, err := p.acquire(ctx, key)
		switch {
		case errors.Is(err, errStopping):
			_ = m.Nak() // to an instance that keeps running
			return
		case err != nil:
			// Running the handler could repeat its effect.
			delay := p.durable.Backoff[min(attempt-1, len(p.durable.Backoff)-1)]
			p.log.Warn("could not tell whether the event was handled; will retry", "type", e.Type(), "id", e.ID(), "attempt", attempt, "retry_in", delay, "err", err)
			_ = m.NakWithDelay(delay)
			return
		case outcome == onceDone:
			p.log.Debug("already handled; acknowledging the redelivery", "type", e.Type(), "id", e.ID(), "attempt", attempt)
			p.ack(m, e, nil)
			return
		case outcome == onceBusy:
			// Its handler outlived the ack wait there (its in-progress
			// signals lost in an outage of NATS): that instance settles it.
			p.log.Debug("another instance is handling the event; waiting for that one", "type", e.Type(), "id", e.ID(), "attempt", attempt)
			return true
		}
		c = cl
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		p.hold(c, cancel)
	}
	if attempt > p.durable.MaxDeliver {
		// Delivered MaxDeliver times already without success, and the last
		// delivery had no outcome at all (no error, no ack): the plugin
		// crashed or was killed while handling it. Checked before the
		// handler runs, or an event that crashes the plugin would crash
		// it forever.
		err := fmt.Errorf("gave up after %d deliveries without an outcome (the plugin stopped while handling it)", attempt-1)
		r.stats.Failed.Add(1)
		p.log.Warn("giving up on an event: dead letter", "type", e.Type(), "id", e.ID(), "attempt", attempt, "err", err)
		p.releaseClaim(c)
		p.deadLetter(m, msg, err)
		return
	}
	ctx = &delivery{Context: ctx, plugin: p, trigger: e, producer: producer}
	res, err := p.call(ctx, r, e)
	if err == nil && res != nil {
		enc := p.encoder()
		var out *nats.Msg
		if out, err = p.encodeResult(enc, res, e); err == nil {
			err = p.send(ctx, out)
		}
		p.encoders.Put(enc)
	}
	if err != nil {
		r.stats.Failed.Add(1)
		p.releaseClaim(c)
		if IsPermanent(err) || attempt >= p.durable.MaxDeliver {
			p.log.Warn("giving up on an event: dead letter", "type", e.Type(), "id", e.ID(), "attempt", attempt, "err", err)
			p.deadLetter(m, msg, err)
			return
		}
		delay := p.durable.Backoff[min(attempt-1, len(p.durable.Backoff)-1)]
		p.log.Warn("handler failed; will retry", "type", e.Type(), "id", e.ID(), "attempt", attempt, "retry_in", delay, "err", err)
		if nerr := m.NakWithDelay(delay); nerr != nil {
			p.log.Warn("could not ask for a redelivery; the bus redelivers after the ack wait", "err", nerr)
		}
		return
	}
	r.stats.Handled.Add(1)
	if c == nil {
		p.ack(m, e, nil)
		return
	}
	// The record is stored before the acknowledgement, on the same
	// goroutine, and the event's turn here ends after both.
	end := endTurn
	endTurn = func() {}
	p.ack(m, e, func() {
		p.finish(c)
		end()
	})
	return false
}

// releaseClaim releases the effectively-once claim of an event whose
// handler failed; c is nil unless effectively-once is on.
func (p *Plugin) releaseClaim(c *claim) {
	if c != nil {
		p.release(c)
	}
}

// ack acknowledges m, after running before when it is not nil (storing the
// event's effectively-once record): with a plain ack when effectively-once
// or Durable.PlainAck is on, otherwise waiting for the server to confirm it
// (double ack). What waits for a round trip (a double ack, or the record)
// runs on a goroutine of its own, so that the worker takes its next event
// meanwhile instead of idling; shutdown waits for it as for a handler.
// While stopping it runs here, as does a plain ack alone, which waits for
// nothing.
func (p *Plugin) ack(m jetstream.Msg, e *Event, before func()) {
	plain := p.durable.PlainAck || p.durable.EffectivelyOnce
	run := func() {
		if before != nil {
			before()
		}
		if plain {
			if err := m.Ack(); err != nil {
				p.log.Warn("could not acknowledge; the event will be redelivered", "type", e.Type(), "id", e.ID(), "err", err)
			}
			return
		}
		p.doubleAck(m, e)
	}
	if plain && before == nil {
		run()
		return
	}
	p.mu.RLock()
	tracked := !p.stopping
	if tracked {
		p.inflight.Add(1)
	}
	p.mu.RUnlock()
	if !tracked {
		run()
		return
	}
	go func() {
		defer p.inflight.Done()
		run()
	}()
}

func (p *Plugin) doubleAck(m jetstream.Msg, e *Event) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.DoubleAck(ctx); err != nil {
		p.log.Warn("acknowledgement not confirmed; the event may be redelivered", "type", e.Type(), "id", e.ID(), "err", err)
	}
}

// deadLetter stores the message as received, with why and after how many
// attempts, on <prefix>.deadletter.<plugin>, then terminates it. If the
// dead letter cannot be stored the event is left to be redelivered: nothing
// acknowledged is dropped.
func (p *Plugin) deadLetter(m jetstream.Msg, msg *nats.Msg, cause error) {
	attempts := 1
	if meta, err := m.Metadata(); err == nil {
		attempts = int(meta.NumDelivered)
	}
	subject, _ := bus.DeadLetterSubject(p.prefix, p.name)
	dl := &nats.Msg{Subject: subject, Header: nats.Header{}, Data: msg.Data}
	for k, v := range msg.Header {
		dl.Header[k] = v
	}
	dl.Header.Set(bus.HeaderDLError, strings.NewReplacer("\r", " ", "\n", " ").Replace(cause.Error()))
	dl.Header.Set(bus.HeaderDLAttempts, strconv.Itoa(attempts))
	dl.Header.Set(bus.HeaderDLSubject, msg.Subject)
	dl.Header.Set(bus.HeaderDLPlugin, p.name)
	dl.Header.Set(bus.HeaderDLTime, time.Now().UTC().Format(time.RFC3339Nano))
	dl.Header.Del(jetstream.MsgIDHeader)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.PublishMsgDurable(ctx, p.ds.js, dl); err != nil {
		p.log.Error("could not store a dead letter; the event will be redelivered", "subject", msg.Subject, "err", err)
		_ = m.NakWithDelay(p.durable.Backoff[len(p.durable.Backoff)-1])
		return
	}
	if err := m.TermWithReason("dead letter: " + cause.Error()); err != nil {
		p.log.Warn("could not terminate a dead-lettered event", "err", err)
	}
}

// send publishes an encoded event: acknowledged by the stream, retried, and
// stored once, when the plugin is durable; fire and forget otherwise.
func (p *Plugin) send(ctx context.Context, msg *nats.Msg) error {
	if p.ds == nil {
		return p.nc.PublishMsg(msg)
	}
	msg.Header.Set(jetstream.MsgIDHeader, bus.MsgID(p.name, p.source, msg.Header.Get("ce-id")))
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	return bus.PublishMsgDurable(ctx, p.ds.js, msg)
}
