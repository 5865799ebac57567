package api

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
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

// BenchmarkRateLimited measures what a request over its client's rate
// costs: in the guard alone (the 429 written to a recorder), and as a
// whole request on a keep-alive connection to a real HTTP server on
// loopback (client and server in this process: the figure is an upper
// bound of the server's share).
func BenchmarkRateLimited(b *testing.B) {
	conn := bustest.Connect(b, bustest.NewServer(b))
	const token = "a-token-of-the-usual-length-0123456789abcdef"
	reg := prometheus.NewRegistry()
	s, err := newServer(Config{Conn: conn, Registerer: reg, Gatherer: reg, Logger: slog.New(slog.DiscardHandler),
		Token: token, RateLimit: 1e-9, RateBurst: 1})
	if err != nil {
		b.Fatal(err)
	}
	guarded := s.v1(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	b.Run("guard", func(b *testing.B) {
		req := httptest.NewRequest(http.MethodPost, "/v1/events", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		b.ReportAllocs()
		var w *httptest.ResponseRecorder
		for b.Loop() {
			w = httptest.NewRecorder()
			guarded.ServeHTTP(w, req)
		}
		if w.Code != http.StatusTooManyRequests {
			b.Fatalf("%d: %s", w.Code, w.Body)
		}
	})
	b.Run("http", func(b *testing.B) {
		srv := httptest.NewServer(guarded)
		defer srv.Close()
		hc := srv.Client()
		body := `{"specversion":"1.0","id":"f","source":"flood","type":"com.example.flood"}`
		b.ReportAllocs()
		for b.Loop() {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/events", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/cloudevents+json")
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusTooManyRequests {
				b.Fatalf("%d", resp.StatusCode)
			}
		}
	})
}
