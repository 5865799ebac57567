package api

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// flushGroup shares the server's confirmations among the requests waiting
// for one. A flush (PING, then the server's PONG) confirms every publish
// written on the connection before its PING, so a request may take the
// confirmation of any flush started after its publishes, not only its own:
// the requests that arrive while a flush is under way wait for it to end
// and then share the next one. With many ingests in flight that is one
// round trip to the server for many requests instead of one each, and what
// 202 promises (the events reached the NATS server) holds for every one.
// No request waits longer than the timeout it asked for: a shared flush
// gets the time left to the first request that joined it, which is the
// least time left to any of them.
type flushGroup struct {
	flushTimeout func(time.Duration) error // the connection's FlushTimeout

	mu      sync.Mutex
	changed sync.Cond // a flush ended
	running bool      // a flush is under way
	next    *flushRound
}

// flushRound is one flush and the requests it confirms.
type flushRound struct {
	deadline time.Time // of the first request to join
	done     bool
	err      error
}

func newFlushGroup(flushTimeout func(time.Duration) error) *flushGroup {
	g := &flushGroup{flushTimeout: flushTimeout}
	g.changed.L = &g.mu
	return g
}

// flush returns once a flush of the connection started after the call has
// ended, with its error, or nats.ErrTimeout after timeout; one of the
// requests sharing the flush makes it.
func (g *flushGroup) flush(timeout time.Duration) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.next == nil {
		g.next = &flushRound{deadline: time.Now().Add(timeout)}
	}
	r := g.next
	for !r.done {
		if g.running {
			g.changed.Wait()
			continue
		}
		// r has not started (it is still g.next): start it, and let the
		// requests arriving from now on gather for the one after it.
		g.running, g.next = true, nil
		g.mu.Unlock()
		err := nats.ErrTimeout
		if left := time.Until(r.deadline); left > 0 {
			err = g.flushTimeout(left)
		}
		g.mu.Lock()
		r.done, r.err, g.running = true, err, false
		g.changed.Broadcast()
	}
	return r.err
}
