package coordinator

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
)

// Junk in secure mode: messages an identity may publish (on a type it
// declares) but that are not valid events pass the server's permissions,
// and only the plugins that read them know. Plugins report them by
// producer in their micro STATS (invalid_from); the registry hands the
// counts to junkWatch after each poll. A report is a lead, not evidence:
// any plugin could name another in its STATS. So the coordinator then
// watches that producer's subjects itself for a while, and counts toward
// its quarantine (identity.Guard, as refusals) only the invalid messages
// it read itself.

// junkWatchFor is how long the coordinator watches a producer after a
// report of junk from it.
const junkWatchFor = 10 * time.Second

// watchPending bounds the messages a watch holds unread.
const watchPending = 1024

// junkWatch watches reported producers, one watch per producer at a time.
type junkWatch struct {
	c *Coordinator

	mu       sync.Mutex
	watching map[string]bool
}

// reported starts a watch on each producer plugins reported invalid
// messages from that has an identity and is not watched already.
func (w *junkWatch) reported(byProducer map[string]uint64) {
	sec := w.c.sec
	for producer := range byProducer {
		id, ok := sec.store.Get(producer)
		if !ok {
			continue // not a plugin identity: the coordinator's own users, an agent's, or no one's
		}
		if _, ok := sec.guard.Quarantined(id.PublicKey); ok {
			continue // its connections are closed already
		}
		w.mu.Lock()
		if w.watching[producer] {
			w.mu.Unlock()
			continue
		}
		if w.watching == nil {
			w.watching = map[string]bool{}
		}
		w.watching[producer] = true
		w.mu.Unlock()
		go w.watch(producer, id.PublicKey)
	}
}

// watch reads what producer publishes for junkWatchFor, or until it is
// quarantined, and reports each invalid message to the guard.
func (w *junkWatch) watch(producer, key string) {
	defer func() {
		w.mu.Lock()
		delete(w.watching, producer)
		w.mu.Unlock()
	}()
	c, sec := w.c, w.c.sec
	prefix := c.cfg.Prefix
	check := func(msg *nats.Msg, parse func(prefix, subject string) (string, string, error)) {
		if _, _, err := bus.DecodeFrom(msg, prefix, parse); err != nil {
			sec.guard.Refused(key, msg.Subject+" (not a valid event: "+bus.Quote(err.Error())+")")
		}
	}
	var subs []*nats.Subscription
	defer func() {
		for _, s := range subs {
			s.Unsubscribe()
		}
	}()
	for _, s := range []struct {
		subject string
		parse   func(prefix, subject string) (string, string, error)
	}{
		{prefix + ".events." + producer + ".>", bus.ParseDurableSubject},
		{prefix + ".invoke." + producer + ".>", bus.ParseInvokeSubject},
	} {
		sub, err := c.nc.Subscribe(s.subject, func(msg *nats.Msg) { check(msg, s.parse) })
		if err != nil {
			c.log.Warn("junk: could not watch a reported producer", "producer", producer, "err", err)
			return
		}
		subs = append(subs, sub)
		// A sample is enough: during a flood, what the watch cannot read
		// in time is dropped instead of queued.
		if err := sub.SetPendingLimits(watchPending, watchPending*1024); err != nil {
			c.log.Warn("junk: could not bound the watch's queue", "producer", producer, "err", err)
		}
	}
	c.log.Info("junk: plugins report invalid messages from a producer; watching what it publishes", "producer", producer, "for", junkWatchFor.String())
	deadline := time.After(junkWatchFor)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-deadline:
			return
		case <-tick.C:
			if _, ok := sec.guard.Quarantined(key); ok || c.closing.Load() {
				return
			}
		}
	}
}
