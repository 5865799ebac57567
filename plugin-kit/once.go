package pluginkit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Effectively once ([Durable.EffectivelyOnce]). Each event has a record in
// the key-value bucket, keyed by plugin, producer, source and id. Before
// its handler runs, an instance claims the event by creating the record
// with the value "handling <instance id>"; after the handler succeeded it
// makes the record "done" (an empty value), then acknowledges the event.
// A delivery that finds the record done acknowledges the event without
// running the handler. One that finds another instance's claim leaves the
// handler to that instance, unless the claim is stale: an instance renews
// each of its claims every lease/5 while the handler runs, so a claim
// unchanged for a whole lease, watched by an instance connected to NATS
// all that time, belongs to an instance that died, is frozen or cannot
// reach NATS, and is taken over (compare and set on its revision). The
// instance that lost it cancels its handler's context when it notices.
//
// A lease, not the ack wait alone, decides: after a restart of NATS the
// ack wait of every event that was being handled has run out (the
// in-progress signals were lost while the server was down) and the events
// come back at once, often to another instance, while their first
// handlers still run or wait to store their records.

// claimPrefix starts the value of a record while an instance handles its
// event; what follows is the instance id. An empty value means handled.
const claimPrefix = "handling "

// The lease of a claim is the ack wait, within these bounds: at least long
// enough for an instance to reconnect after a restart of NATS and renew
// its claims before another instance gives up on them, and at most as
// long as an event of a dead instance should wait, after its ack wait, for
// another instance to take it over (claims are renewed while handlers
// run, so long handlers need no long lease).
const (
	minLease = 5 * time.Second
	maxLease = 30 * time.Second
)

// claimPoll is how often an instance looks at another instance's claim
// while it waits to see whether that one is renewed.
const claimPoll = 250 * time.Millisecond

// leaseFor returns how long an unrenewed claim holds, for an ack wait.
func leaseFor(ackWait time.Duration) time.Duration { return min(max(ackWait, minLease), maxLease) }

// onceOutcome is what the record of an event says to do with a delivery.
type onceOutcome int

const (
	onceRun  onceOutcome = iota // this instance claimed the event: run the handler
	onceDone                    // the event was handled: acknowledge it
	onceBusy                    // another instance is handling it: leave it to that one
)

// claim is this instance's claim on an event's record.
type claim struct {
	key   string
	value []byte // claimPrefix and this instance's id

	mu      sync.Mutex
	rev     uint64    // the record's revision holding the claim
	renewed time.Time // when rev was written
	settled bool      // the record was made done or released
	cancel  context.CancelFunc
}

// claimOwner returns the instance whose claim a record's value is, and
// false when the value says the event was handled.
func claimOwner(value []byte) (string, bool) {
	owner, ok := strings.CutPrefix(string(value), claimPrefix)
	return owner, ok
}

// transient reports whether err may go away on its own: NATS restarting or
// unreachable, a reply lost.
func transient(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrConnectionReconnecting)
}

// errStopping ends a wait for another instance's claim when the plugin
// stops.
var errStopping = errors.New("the plugin is stopping")

// acquire claims the event with record key for this instance, or tells
// that it was handled or that another instance is handling it. The caller
// holds the key's turn (takeTurn), so no other delivery here claims it
// meanwhile. An error means the record could not be read or written.
func (p *Plugin) acquire(ctx context.Context, key string) (onceOutcome, *claim, error) {
	kv := p.ds.dedup
	c := &claim{key: key, value: []byte(claimPrefix + p.id)}
	seenLive := false // another instance's claim was renewed while we watched
	for range 10 {
		rev, err := kv.Create(ctx, key, c.value)
		if err == nil {
			c.rev, c.renewed = rev, time.Now()
			return onceRun, c, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, nil, err
		}
		entry, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // released meanwhile
		}
		if err != nil {
			return 0, nil, err
		}
		owner, claimed := claimOwner(entry.Value())
		if !claimed {
			return onceDone, nil, nil
		}
		if owner != p.id {
			if seenLive {
				return onceBusy, nil, nil
			}
			p.log.Debug("another instance is handling the event; watching its claim", "key", key, "owner", owner)
			changed, err := p.watchClaim(ctx, entry)
			if err != nil {
				return 0, nil, err
			}
			if changed {
				seenLive = true
				continue
			}
		}
		// A stale claim, or this instance's own from an earlier delivery
		// whose release did not get through: take it over.
		rev, err = kv.Update(ctx, key, c.value, entry.Revision())
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return 0, nil, err
		}
		if owner != p.id {
			p.log.Warn("took over an event whose claim was not renewed for a lease: its instance died, is frozen or cannot reach NATS", "key", key, "owner", owner, "lease", p.ds.lease)
		}
		c.rev, c.renewed = rev, time.Now()
		return onceRun, c, nil
	}
	return 0, nil, errors.New("the event's record kept changing")
}

// watchClaim watches another instance's claim (entry) for a lease, and
// reports whether it changed: renewed, made done or released. Time in
// which the record cannot be read does not count.
func (p *Plugin) watchClaim(ctx context.Context, entry jetstream.KeyValueEntry) (changed bool, err error) {
	lease := p.ds.lease
	deadline := time.Now().Add(lease)
	t := time.NewTicker(claimPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-t.C:
		}
		p.mu.RLock()
		stopping := p.stopping
		p.mu.RUnlock()
		if stopping {
			return false, errStopping
		}
		get, cancel := context.WithTimeout(ctx, 2*time.Second)
		cur, err := p.ds.dedup.Get(get, entry.Key())
		cancel()
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			return true, nil
		case err != nil:
			deadline = time.Now().Add(lease) // blind meanwhile
		case cur.Revision() != entry.Revision():
			return true, nil
		case time.Now().After(deadline):
			return false, nil
		}
	}
}

// hold registers c for renewal while its handler runs; cancel ends the
// handler's context if another instance takes the event over.
func (p *Plugin) hold(c *claim, cancel context.CancelFunc) {
	c.cancel = cancel
	st := p.ds
	st.mu.Lock()
	st.claims[c.key] = c
	st.mu.Unlock()
}

// unhold stops renewing c.
func (p *Plugin) unhold(c *claim) {
	st := p.ds
	st.mu.Lock()
	delete(st.claims, c.key)
	st.mu.Unlock()
}

// renewClaims renews, every lease/5 until the plugin stops, the claims of
// the handlers running here for longer than that, so that other instances
// see them alive.
func (p *Plugin) renewClaims() {
	every := p.ds.lease / 5
	t := time.NewTicker(every)
	defer t.Stop()
	var due []*claim
	for {
		select {
		case <-p.quit:
			return
		case <-t.C:
		}
		p.ds.mu.Lock()
		for _, c := range p.ds.claims {
			due = append(due, c)
		}
		p.ds.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), every)
		for _, c := range due {
			if ctx.Err() == nil {
				p.renew(ctx, c, every)
			}
		}
		cancel()
		clear(due)
		due = due[:0]
	}
}

// renew rewrites c's record unless it was written less than every ago,
// and cancels its handler if another instance has taken the event over.
func (p *Plugin) renew(ctx context.Context, c *claim, every time.Duration) {
	if !c.mu.TryLock() {
		return // being settled
	}
	defer c.mu.Unlock()
	if c.settled || time.Since(c.renewed) < every {
		return
	}
	rev, err := p.ds.dedup.Update(ctx, c.key, c.value, c.rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		rev, err = p.reread(ctx, c)
		if errors.Is(err, errRecordDone) {
			// Handled: by this instance, finishing (a write whose reply
			// was lost), or by one that took the event over.
			c.cancel()
			c.settled = true
			return
		}
		if errors.Is(err, errClaimLost) {
			p.log.Warn("another instance took over the event this one is handling (this one could not reach NATS, or was frozen, for longer than a lease): cancelling its handler", "key", c.key, "err", err)
			c.cancel()
			c.settled = true
			return
		}
	}
	if err != nil {
		p.log.Debug("could not renew a claim; will try again", "key", c.key, "err", err)
		return
	}
	c.rev, c.renewed = rev, time.Now()
}

// errClaimLost says a record holds another instance's claim, or none.
var errClaimLost = errors.New("the record no longer holds this instance's claim")

// errRecordDone says a record says handled.
var errRecordDone = errors.New("the record says handled")

// reread returns the revision of c's record after a write found it changed:
// a write whose reply was lost may have got through. It fails with
// errRecordDone or errClaimLost when the record no longer holds c.
func (p *Plugin) reread(ctx context.Context, c *claim) (uint64, error) {
	entry, err := p.ds.dedup.Get(ctx, c.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, fmt.Errorf("%w: it was deleted", errClaimLost)
	}
	if err != nil {
		return 0, err
	}
	owner, claimed := claimOwner(entry.Value())
	switch {
	case !claimed:
		return 0, errRecordDone
	case owner != p.id:
		return 0, fmt.Errorf("%w: instance %s holds it", errClaimLost, owner)
	}
	return entry.Revision(), nil
}

// finish makes c's record say handled, retrying while NATS does not answer
// (a restart, a reconnect) until the plugin's handlers are cancelled; the
// event is held meanwhile, so that a redelivery finds the record.
func (p *Plugin) finish(c *claim) {
	defer p.unhold(c)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.settled {
		return // lost: renew said so
	}
	ctx := p.handlers
	wait := 50 * time.Millisecond
	for {
		try, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := p.ds.dedup.Update(try, c.key, nil, c.rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			var rev uint64
			if rev, err = p.reread(try, c); err == nil {
				c.rev = rev // a renewal whose reply was lost got through
				cancel()
				continue
			}
		}
		cancel()
		switch {
		case err == nil || errors.Is(err, errRecordDone):
			c.settled = true
			return
		case errors.Is(err, errClaimLost):
			c.settled = true
			p.log.Warn("another instance took the event over while this one handled it (this one could not reach NATS, or was frozen, for longer than a lease): both ran the handler", "key", c.key, "err", err)
			return
		case !transient(err) || ctx.Err() != nil:
			c.settled = true
			p.log.Warn("could not record the event as handled; a redelivery may run it again", "key", c.key, "err", err)
			return
		}
		c.mu.Unlock() // let renew keep the claim meanwhile
		select {
		case <-ctx.Done():
		case <-time.After(wait):
			wait = min(2*wait, time.Second)
		}
		c.mu.Lock()
		if c.settled {
			return // renew found the record done or taken over
		}
	}
}

// release gives up c after its handler failed, so that a redelivery, here
// or in another instance, runs it again at once. If the release does not
// get through, this instance takes its own claim over on a redelivery,
// and another one after a lease.
func (p *Plugin) release(c *claim) {
	defer p.unhold(c)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.settled {
		return
	}
	c.settled = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.ds.dedup.Delete(ctx, c.key, jetstream.LastRevision(c.rev)); err != nil {
		p.log.Debug("could not release a claim", "key", c.key, "err", err)
	}
}

// takeTurn makes the deliveries of one event in this instance take turns:
// a redelivery that comes while an earlier delivery of the same event is
// still being handled here (as after a NATS restart) waits, keeping its
// event, for that one's outcome. The returned func ends the turn.
func (p *Plugin) takeTurn(key string) (end func()) {
	st := p.ds
	for {
		st.mu.Lock()
		busy, ok := st.turns[key]
		if !ok {
			done := make(chan struct{})
			st.turns[key] = done
			st.mu.Unlock()
			return func() {
				st.mu.Lock()
				delete(st.turns, key)
				st.mu.Unlock()
				close(done)
			}
		}
		st.mu.Unlock()
		<-busy // the event is held: keepHeld keeps it
	}
}
