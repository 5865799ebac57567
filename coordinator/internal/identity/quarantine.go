package identity

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Policy says when a [Guard] quarantines an identity: after Refusals
// refused publishes or subscriptions within Window, for CoolDown, doubled
// for each quarantine that follows the last one's end within Forget, up
// to MaxCoolDown.
type Policy struct {
	Refusals    int // 0: never quarantine
	Window      time.Duration
	CoolDown    time.Duration
	MaxCoolDown time.Duration
	// Forget is how long after a quarantine ends another one no longer
	// counts as a repeat; 0 means 4×MaxCoolDown.
	Forget time.Duration
}

// Quarantine is one identity's quarantine, as a [Guard] reports it.
type Quarantine struct {
	Key      string    `json:"public_key"`
	Since    time.Time `json:"since"`
	Until    time.Time `json:"until"`
	Refusals int       `json:"refusals"` // counted within the window that set it
	Strike   int       `json:"strike"`   // 1 for the first, 2 for a repeat...
	// Subject is the last subject refused before it, truncated.
	Subject string `json:"last_refused"`
}

// CoolDown is how long the quarantine lasts.
func (q Quarantine) CoolDown() time.Duration { return q.Until.Sub(q.Since) }

// KeyStats are a guard's counts for one key.
type KeyStats struct {
	Refusals    uint64 // refused publishes and subscriptions seen
	Quarantines uint64
	Quarantine  *Quarantine // in force now, or nil
	Last        string      // the last subject refused, truncated
}

// Guard counts, per nkey, what the server refused an identity's
// connections, and quarantines an identity that goes past its [Policy]:
// [Users.Check] refuses it until the quarantine ends. OnQuarantine is
// called once for each quarantine (without the guard's lock held), to
// close the identity's connections and tell the operators.
//
// The server reports refusals to its logger: [Guard.Logger] is one for
// the embedded server that counts them instead of formatting and writing
// a line for each.
type Guard struct {
	policy       Policy
	exempt       map[string]bool
	onQuarantine func(Quarantine)
	now          func() time.Time

	mu   sync.Mutex
	keys map[string]*record
}

type record struct {
	start   time.Time // of the current window
	count   int       // refusals in it
	total   uint64
	times   uint64    // quarantines so far
	strikes int       // quarantines that count as repeats
	until   time.Time // end of the quarantine, zero when none
	since   time.Time
	subject string // that set the quarantine
	last    string // refused last
}

// NewGuard returns a guard applying p to every key but exempt (the
// coordinator's own users).
func NewGuard(p Policy, onQuarantine func(Quarantine), exempt ...string) *Guard {
	if p.Forget == 0 {
		p.Forget = 4 * p.MaxCoolDown
	}
	g := &Guard{policy: p, exempt: map[string]bool{}, onQuarantine: onQuarantine, now: time.Now, keys: map[string]*record{}}
	for _, k := range exempt {
		g.exempt[k] = true
	}
	return g
}

// maxSubject bounds the refused subject a quarantine quotes.
const maxSubject = 128

// Refused counts one refusal of key's connection (subject is what it was
// refused), and quarantines key when that passes the policy.
func (g *Guard) Refused(key, subject string) {
	if g == nil || key == "" || g.exempt[key] {
		return
	}
	now := g.now()
	g.mu.Lock()
	r := g.keys[key]
	if r == nil {
		r = &record{start: now}
		g.keys[key] = r
	}
	r.total++
	if len(subject) > maxSubject {
		subject = subject[:maxSubject] + "..."
	}
	r.last = subject
	if now.Before(r.until) || g.policy.Refusals <= 0 {
		g.mu.Unlock() // already quarantined: its connections are being closed
		return
	}
	if now.Sub(r.start) > g.policy.Window {
		r.start, r.count = now, 0
	}
	r.count++
	if r.count < g.policy.Refusals {
		g.mu.Unlock()
		return
	}
	if !r.until.IsZero() && now.Sub(r.until) > g.policy.Forget {
		r.strikes = 0
	}
	r.strikes++
	cool := g.policy.CoolDown
	for i := 1; i < r.strikes && cool < g.policy.MaxCoolDown; i++ {
		cool *= 2
	}
	cool = min(cool, g.policy.MaxCoolDown)
	r.since, r.until, r.subject = now, now.Add(cool), subject
	r.times++
	q := Quarantine{Key: key, Since: now, Until: r.until, Refusals: r.count, Strike: r.strikes, Subject: subject}
	r.start, r.count = now, 0
	g.mu.Unlock()
	if g.onQuarantine != nil {
		g.onQuarantine(q)
	}
}

// Quarantined returns key's quarantine in force now, if any.
func (g *Guard) Quarantined(key string) (Quarantine, bool) {
	if g == nil {
		return Quarantine{}, false
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.keys[key]
	if r == nil || !now.Before(r.until) {
		return Quarantine{}, false
	}
	return Quarantine{Key: key, Since: r.since, Until: r.until, Strike: r.strikes, Subject: r.subject}, true
}

// Stats returns the counts of every key that was refused something.
func (g *Guard) Stats() map[string]KeyStats {
	if g == nil {
		return nil
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]KeyStats, len(g.keys))
	for k, r := range g.keys {
		s := KeyStats{Refusals: r.total, Quarantines: r.times, Last: r.last}
		if now.Before(r.until) {
			s.Quarantine = &Quarantine{Key: k, Since: r.since, Until: r.until, Strike: r.strikes, Subject: r.subject}
		}
		out[k] = s
	}
	return out
}

// Logger returns a logger for the embedded server (server.SetLogger)
// that reports the server's refusals of a client's publish or
// subscription to g, taking the client's key from srv, and drops every
// other line, as the server without a logger does. It never formats a
// refusal's line: under a flood of refused publishes the server calls it
// for each.
func (g *Guard) Logger(srv func() *server.Server) server.Logger {
	return &violationLog{g: g, srv: srv, keys: map[uint64]string{}}
}

// violationLog is the embedded server's logger (see [Guard.Logger]).
type violationLog struct {
	g   *Guard
	srv func() *server.Server

	mu   sync.Mutex
	keys map[uint64]string // client id -> nkey, of clients that were refused something
}

// maxCachedClients bounds violationLog's cache of client keys.
const maxCachedClients = 4096

func (l *violationLog) Noticef(string, ...any) {}
func (l *violationLog) Warnf(string, ...any)   {}
func (l *violationLog) Fatalf(string, ...any)  {}
func (l *violationLog) Debugf(string, ...any)  {}
func (l *violationLog) Tracef(string, ...any)  {}

// Errorf takes the server's refusals: nats-server 2.x logs them as
// "<client> - Publish Violation - Subject %q" (and "- Reply %q",
// "Subscription Violation - Subject %q, SID %s"), where <client> starts
// with "<address> - cid:<id> - ".
func (l *violationLog) Errorf(format string, v ...any) {
	at := strings.Index(format, " Violation - ")
	if at < 0 {
		return
	}
	// Every plugin's micro service subscribes to the $SRV.STATS sent to
	// all services, which secure mode refuses it (see PluginRules): a
	// refusal of each instance's start, not a misdeed.
	if strings.Contains(format, `Subscription Violation - Subject "$SRV.STATS",`) {
		return
	}
	cid, ok := clientID(format)
	if !ok {
		return
	}
	key := l.key(cid)
	if key == "" {
		return
	}
	// Refused subscriptions come formatted already.
	subject := format[at+len(" Violation - "):]
	subject = strings.TrimPrefix(subject, "Subject ")
	if len(v) > 0 {
		switch s := v[0].(type) {
		case []byte:
			subject = string(s[:min(len(s), maxSubject+1)])
		case string:
			subject = s
		}
	}
	l.g.Refused(key, subject)
}

// clientID reads the client id out of a client's log prefix: the first
// " - cid:<digits> - " (the address before it holds no such text).
func clientID(format string) (uint64, bool) {
	const mark = " - cid:"
	i := strings.Index(format, mark)
	if i < 0 {
		return 0, false
	}
	rest := format[i+len(mark):]
	j := strings.IndexByte(rest, ' ')
	if j < 0 {
		return 0, false
	}
	cid, err := strconv.ParseUint(rest[:j], 10, 64)
	return cid, err == nil
}

// key returns the nkey the client with id cid authenticated with, "" if
// it has none or is gone.
func (l *violationLog) key(cid uint64) string {
	l.mu.Lock()
	key, ok := l.keys[cid]
	l.mu.Unlock()
	if ok {
		return key
	}
	srv := l.srv()
	if srv == nil {
		return ""
	}
	c := srv.GetClient(cid)
	if c == nil {
		return ""
	}
	if o := c.GetOpts(); o != nil {
		key = o.Nkey
	}
	l.mu.Lock()
	if len(l.keys) >= maxCachedClients {
		clear(l.keys) // client ids are never reused: old ones are of closed clients, mostly
	}
	l.keys[cid] = key
	l.mu.Unlock()
	return key
}
