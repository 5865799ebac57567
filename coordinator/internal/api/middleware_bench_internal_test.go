package api

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugbus/plugbus/bus/bustest"
)

// BenchmarkMiddleware measures what guards every /v1/ request before its
// handler runs, around a handler that does nothing: none, the bearer
// token (hashed and compared in constant time), the rate limiter (a
// bucket per client, found by the hash of its key), and both.
func BenchmarkMiddleware(b *testing.B) {
	conn := bustest.Connect(b, bustest.NewServer(b))
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"none", Config{}},
		{"token", Config{Token: "a-token-of-the-usual-length-0123456789abcdef"}},
		{"ratelimit", Config{RateLimit: 1e9}},
		{"token-ratelimit", Config{Token: "a-token-of-the-usual-length-0123456789abcdef", RateLimit: 1e9}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			reg := prometheus.NewRegistry()
			cfg := tc.cfg
			cfg.Conn, cfg.Registerer, cfg.Gatherer, cfg.Logger = conn, reg, reg, slog.New(slog.DiscardHandler)
			s, err := newServer(cfg)
			if err != nil {
				b.Fatal(err)
			}
			guarded := s.v1(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
			req := httptest.NewRequest(http.MethodPost, "/v1/events", nil)
			req.Header.Set("Authorization", "Bearer "+tc.cfg.Token)
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				guarded.ServeHTTP(w, req)
			}
			if w.Code != http.StatusNoContent {
				b.Fatalf("%d: %s", w.Code, w.Body)
			}
		})
	}
}
