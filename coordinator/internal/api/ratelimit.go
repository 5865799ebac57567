package api

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxLimited bounds how many clients the rate limiter remembers; past it
// the limiter starts afresh (a flood of addresses costs memory no longer).
const maxLimited = 10000

// limiter holds a token bucket per client: per bearer token (hashed) when
// the request has one, per remote address otherwise.
//
// A request over the rate is answered 429, but not at once: the answer is
// held until the client's bucket would let a request through (at most
// maxHold). A 429 answered at once costs the server an HTTP parse and an
// answer, and a client sending back to back on a connection then makes
// thousands a second; held, each of its connections sends at about the
// rate it is allowed. At most maxHeld requests of one client, and
// maxHeldAll in all, are held at a time; more are answered at once.
type limiter struct {
	rate  rate.Limit
	burst int
	// body is the answer to a request over the rate, the same for all:
	// made once, so that refusing a flood costs as little as it can.
	body []byte

	mu      sync.Mutex
	clients map[[sha256.Size]byte]*bucket
	held    int // 429s being held, all clients'
}

// bucket is one client's.
type bucket struct {
	*rate.Limiter
	held int // its 429s being held
}

const (
	maxHold    = time.Second
	maxHeld    = 64
	maxHeldAll = 1024
)

func newLimiter(perSecond float64, burst int) *limiter {
	if burst <= 0 {
		burst = max(1, int(perSecond))
	}
	body, _ := json.Marshal(errorBody{Error: fmt.Sprintf("too many requests: at most %g a second (burst %d) per client; slow down and retry", perSecond, burst)})
	return &limiter{rate: rate.Limit(perSecond), burst: burst, body: append(body, '\n'), clients: map[[sha256.Size]byte]*bucket{}}
}

// Header values of a 429, shared by every answer (net/http only reads
// them).
var (
	retryAfter  = []string{"1"}
	contentJSON = []string{"application/json"}
	noSniff     = []string{"nosniff"}
)

// clientKey names the client of r for the limiter: its (checked) bearer
// token when the API has one, its address otherwise.
func clientKey(r *http.Request, authenticated bool) string {
	if authenticated {
		return "token " + r.Header.Get("Authorization")
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	return "addr " + host
}

// allow reports whether the client named key may make a request now.
// When it may not, hold is how long to hold its 429 (0: answer at once),
// and release must be called once it is answered.
func (l *limiter) allow(key string) (ok bool, hold time.Duration, release func()) {
	sum := sha256.Sum256([]byte(key))
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.clients[sum]
	if b == nil {
		if len(l.clients) >= maxLimited {
			clear(l.clients)
		}
		b = &bucket{Limiter: rate.NewLimiter(l.rate, l.burst)}
		l.clients[sum] = b
	}
	now := time.Now()
	r := b.ReserveN(now, 1)
	if r.OK() && r.DelayFrom(now) == 0 {
		return true, 0, nil
	}
	hold = min(r.DelayFrom(now), maxHold)
	r.CancelAt(now) // the request is refused: it takes no token
	if b.held >= maxHeld || l.held >= maxHeldAll {
		return false, 0, func() {}
	}
	b.held++
	l.held++
	return false, hold, func() {
		l.mu.Lock()
		b.held--
		l.held--
		l.mu.Unlock()
	}
}

// limited answers 429, and reports true, when the client of r is over its
// rate (after holding the answer: see limiter).
func (s *server) limited(w http.ResponseWriter, r *http.Request, authenticated bool) bool {
	if s.limiter == nil {
		return false
	}
	ok, hold, release := s.limiter.allow(clientKey(r, authenticated))
	if ok {
		return false
	}
	defer release()
	if hold > 0 {
		t := time.NewTimer(hold)
		select {
		case <-t.C:
		case <-r.Context().Done(): // the client left: answer to no one, at once
			t.Stop()
		}
	}
	// What s.fail does for a 429, without its formatting: a client over
	// its rate sends these back to back.
	s.m.rateLimited.Inc()
	if s.log.Enabled(r.Context(), slog.LevelDebug) {
		s.log.Debug("HTTP request rejected", "method", r.Method, "path", r.URL.Path, "status", http.StatusTooManyRequests, "reason", "too many requests", "remote", r.RemoteAddr)
	}
	h := w.Header()
	h["Retry-After"], h["Content-Type"], h["X-Content-Type-Options"] = retryAfter, contentJSON, noSniff
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write(s.limiter.body)
	return true
}
