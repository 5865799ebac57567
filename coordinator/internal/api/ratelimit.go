package api

import (
	"crypto/sha256"
	"fmt"
	"net"
	"net/http"
	"strconv"
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

	mu      sync.Mutex
	clients map[[sha256.Size]byte]*rate.Limiter
}

func newLimiter(perSecond float64, burst int) *limiter {
	if burst <= 0 {
		burst = max(1, int(perSecond))
	}
	return &limiter{rate: rate.Limit(perSecond), burst: burst, clients: map[[sha256.Size]byte]*rate.Limiter{}}
}

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
	w.Header().Set("Retry-After", strconv.Itoa(1))
	s.fail(w, r, &apiError{status: http.StatusTooManyRequests, reason: reasonRateLimited,
		msg: fmt.Sprintf("too many requests: at most %g a second (burst %d) per client; slow down and retry", float64(s.limiter.rate), s.limiter.burst)})
	return true
}
