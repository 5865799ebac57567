package api_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	"github.com/plugbus/plugbus/coordinator/internal/api"
)

// env is the API served over real HTTP on a real NATS server.
type env struct {
	t       *testing.T
	url     string               // base URL of the API
	nc      *nats.Conn           // the test's own connection, for subscribers and responders
	reg     *prometheus.Registry // where the API registered its metrics
	handler http.Handler
}

// newEnv starts NATS and the API; edit, when not nil, changes the config
// before New.
func newEnv(t *testing.T, edit func(*api.Config)) *env {
	t.Helper()
	srv := bustest.NewServer(t)
	reg := prometheus.NewRegistry()
	cfg := api.Config{
		Conn:       bustest.Connect(t, srv),
		Prefix:     bus.DefaultPrefix,
		Registerer: reg,
		Gatherer:   reg,
		Logger:     slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(&cfg)
	}
	h, err := api.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return &env{t: t, url: hs.URL, nc: bustest.Connect(t, srv), reg: reg, handler: h}
}

// testWriter sends the API's log to t.Log, so a failing test shows it.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// response is an HTTP answer read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

// errorJSON is the API's error body.
type errorJSON struct {
	Error       string `json:"error"`
	Field       string `json:"field"`
	Index       *int   `json:"index"`
	Code        string `json:"code"`
	PluginError bool   `json:"plugin_error"`
}

func (r response) errorBody(t *testing.T) errorJSON {
	t.Helper()
	var e errorJSON
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("status %d: body is not JSON: %v: %s", r.status, err, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
	if e.Error == "" {
		t.Errorf("status %d: error body has no message: %s", r.status, r.body)
	}
	return e
}

// do sends a request to the API.
func (e *env) do(method, path string, header http.Header, body []byte) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// subscribe returns a synchronous subscription to every event the API
// publishes as producer http.
func (e *env) subscribe() *nats.Subscription {
	e.t.Helper()
	sub, err := e.nc.SubscribeSync("plugbus.events.http.>")
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	return sub
}

// next waits for the next message on sub.
func next(t *testing.T, sub *nats.Subscription) *nats.Msg {
	t.Helper()
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no event published: %v", err)
	}
	return msg
}

// none checks that sub got nothing.
func none(t *testing.T, sub *nats.Subscription) {
	t.Helper()
	msg, err := sub.NextMsg(50 * time.Millisecond)
	if err == nil {
		t.Fatalf("unexpected event published on %s: %v", msg.Subject, msg.Header)
	}
	if !errors.Is(err, nats.ErrTimeout) {
		t.Fatal(err)
	}
}

// binary returns the headers of a binary-mode event.
func binary(id, typ string) http.Header {
	return http.Header{
		"Ce-Specversion": {"1.0"},
		"Ce-Id":          {id},
		"Ce-Source":      {"urn:test"},
		"Ce-Type":        {typ},
		"Content-Type":   {"application/json"},
	}
}

func structured() http.Header {
	return http.Header{"Content-Type": {"application/cloudevents+json"}}
}

func batch() http.Header {
	return http.Header{"Content-Type": {"application/cloudevents-batch+json"}}
}

func bearer(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}}
}

func merge(hs ...http.Header) http.Header {
	out := http.Header{}
	for _, h := range hs {
		for k, vs := range h {
			out[k] = append(out[k], vs...)
		}
	}
	return out
}
