package pluginkit

import (
	"sync"
	"time"
)

// invalidEvery is how often at most a plugin logs a rejected message: a
// flood of junk makes one line a second, each saying how many were not
// logged, and the micro stats count every one.
const invalidEvery = time.Second

// invalidWarnings limits the warnings about messages that are not valid
// events. The zero value is ready.
type invalidWarnings struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// warnInvalid logs a rejected message, unless one was logged less than
// invalidEvery ago.
func (p *Plugin) warnInvalid(subject string, err error) {
	w := &p.invalid
	w.mu.Lock()
	now := time.Now()
	if !w.last.IsZero() && now.Sub(w.last) < invalidEvery {
		w.suppressed++
		w.mu.Unlock()
		return
	}
	suppressed := w.suppressed
	w.last, w.suppressed = now, 0
	w.mu.Unlock()
	p.log.Warn("rejected a message that is not a valid event", "subject", subject, "reason", err, "not_logged_since_last", suppressed)
}
