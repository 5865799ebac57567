package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	"github.com/plugbus/plugbus/coordinator/internal/api"
)

// BenchmarkHandler measures what the API's handler costs per request,
// called directly (ServeHTTP into a recorder, no socket) on a real NATS
// server, for a 128 B JSON event: ingest in binary mode (POST /v1/events,
// published and flushed) and invoke with plain data (POST /v1/invoke/{type},
// answered by greeter over the server). The floor rows do the same NATS
// work without the API: the body published and flushed, and bus.Request of
// an event built once.
func BenchmarkHandler(b *testing.B) {
	srv := bustest.NewServer(b)
	greeter(b, bustest.Connect(b, srv))
	conn := bustest.Connect(b, srv)
	reg := prometheus.NewRegistry()
	h, err := api.New(api.Config{
		Conn: conn, Prefix: bus.DefaultPrefix, Registerer: reg, Gatherer: reg,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	data := append([]byte(`{"name":"bench","pad":"`), bytes.Repeat([]byte("x"), 128-26)...)
	data = append(data, `"}`...)
	serve := func(b *testing.B, path string, header http.Header, want int) {
		b.ReportAllocs()
		for i := range b.N {
			req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(data))
			for k, vs := range header {
				req.Header[k] = vs
			}
			if _, ok := header["Ce-Specversion"]; ok {
				req.Header.Set("Ce-Id", strconv.Itoa(i))
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != want {
				b.Fatalf("%s: %d: %s", path, w.Code, w.Body)
			}
		}
	}
	b.Run("ingest", func(b *testing.B) {
		serve(b, "/v1/events", binary("", "com.example.bench.ingested"), http.StatusAccepted)
	})
	b.Run("ingest-parallel", func(b *testing.B) {
		// 16 requests in flight per core, as a busy ingest has.
		b.ReportAllocs()
		b.SetParallelism(16)
		header := binary("", "com.example.bench.ingested")
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req := httptest.NewRequest(http.MethodPost, "/v1/events", bytes.NewReader(data))
				for k, vs := range header {
					req.Header[k] = vs
				}
				req.Header.Set("Ce-Id", "parallel")
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusAccepted {
					b.Errorf("%d: %s", w.Code, w.Body)
					return
				}
			}
		})
	})
	b.Run("ingest-floor", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			body, err := io.ReadAll(bytes.NewReader(data))
			if err == nil {
				err = conn.Publish("bench.ingest", body)
			}
			if err == nil {
				err = conn.Flush()
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("invoke", func(b *testing.B) {
		serve(b, "/v1/invoke/com.example.greet.requested", http.Header{"Content-Type": {"application/json"}}, http.StatusOK)
	})
	b.Run("invoke-floor", func(b *testing.B) {
		b.ReportAllocs()
		e := event.New()
		e.SetID("bench")
		e.SetType("com.example.greet.requested")
		if err := e.SetData(event.ApplicationJSON, json.RawMessage(data)); err != nil {
			b.Fatal(err)
		}
		for range b.N {
			if _, err := bus.Request(context.Background(), conn, bus.DefaultPrefix, "bench", &e); err != nil {
				b.Fatal(err)
			}
		}
	})
}
