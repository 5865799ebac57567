package api

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"golang.org/x/time/rate"
)

// maxLimited bounds how many clients the rate limiter remembers; past it
// the limiter starts afresh (a flood of addresses costs memory no longer).
const maxLimited = 10000

// limiter holds a token bucket per client: per bearer token (hashed) when
// the request has one, per remote address otherwise.
type limiter struct {
	rate  rate.Limit
	burst int
	// body is the answer to a request over the rate, the same for all:
	// made once, so that refusing a flood costs as little as it can.
	body []byte

	mu      sync.Mutex
	clients map[[sha256.Size]byte]*rate.Limiter
}

func newLimiter(perSecond float64, burst int) *limiter {
	if burst <= 0 {
		burst = max(1, int(perSecond))
	}
	body, _ := json.Marshal(errorBody{Error: fmt.Sprintf("too many requests: at most %g a second (burst %d) per client; slow down and retry", perSecond, burst)})
	return &limiter{rate: rate.Limit(perSecond), burst: burst, body: append(body, '\n'), clients: map[[sha256.Size]byte]*rate.Limiter{}}
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

func (l *limiter) allow(key string) bool {
	sum := sha256.Sum256([]byte(key))
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.clients[sum]
	if lim == nil {
		if len(l.clients) >= maxLimited {
			clear(l.clients)
		}
		lim = rate.NewLimiter(l.rate, l.burst)
		l.clients[sum] = lim
	}
	return lim.Allow()
}

// limited answers 429, and reports true, when the client of r is over its
// rate.
func (s *server) limited(w http.ResponseWriter, r *http.Request, authenticated bool) bool {
	if s.limiter == nil || s.limiter.allow(clientKey(r, authenticated)) {
		return false
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
