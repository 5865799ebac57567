package api_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/plugbus/plugbus/bus/bustest"
	"github.com/plugbus/plugbus/coordinator/internal/api"
)

// scrape reads /metrics as Prometheus text.
func scrape(t *testing.T, e *env) map[string]*dto.MetricFamily {
	t.Helper()
	resp := e.do("GET", "/metrics", http.Header{"Accept": {"text/plain"}}, nil)
	if resp.status != http.StatusOK {
		t.Fatalf("GET /metrics: status %d: %s", resp.status, resp.body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(resp.body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, resp.body)
	}
	return fams
}

// find returns the metric of family name whose labels include labels.
func find(fams map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
	for _, m := range f.Metric {
		match := 0
		for _, lp := range m.Label {
			if v, ok := labels[lp.GetName()]; ok && v == lp.GetValue() {
				match++
			}
		}
		if match == len(labels) {
			return m
		}
	}
	return nil
}

// value returns a counter's value, 0 when the series does not exist.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	m := find(fams, name, labels)
	if m == nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

func histCount(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) uint64 {
	t.Helper()
	m := find(fams, name, labels)
	if m == nil {
		return 0
	}
	return m.GetHistogram().GetSampleCount()
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, nil)
	greeter(t, e.nc)

	for _, id := range []string{"m-1", "m-2"} {
		if resp := e.do("POST", "/v1/events", binary(id, "com.example.metered"), []byte(`{}`)); resp.status != http.StatusAccepted {
			t.Fatalf("status %d: %s", resp.status, resp.body)
		}
	}
	batchBody := `[{"specversion":"1.0","id":"1","source":"urn:test","type":"com.example.metered"},{"specversion":"1.0","id":"2","source":"urn:test","type":"com.example.other"}]`
	if resp := e.do("POST", "/v1/events", batch(), []byte(batchBody)); resp.status != http.StatusAccepted {
		t.Fatalf("status %d: %s", resp.status, resp.body)
	}
	e.do("POST", "/v1/events", binary("", "com.example.metered"), []byte(`{}`))          // bad_request
	e.do("POST", "/v1/events", http.Header{"Content-Type": {"text/plain"}}, []byte(`x`)) // unsupported_media_type
	e.do("POST", "/v1/invoke/com.example.greet.requested", nil, []byte(`{"name":"ann"}`))
	e.do("POST", "/v1/invoke/com.example.greet.requested", nil, []byte(`{}`))
	e.do("POST", "/v1/invoke/com.example.nobody", nil, []byte(`{}`))

	fams := scrape(t, e)
	counters := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"plugbus_http_events_received_total", map[string]string{"type": "com.example.metered"}, 3},
		{"plugbus_http_events_received_total", map[string]string{"type": "com.example.other"}, 1},
		{"plugbus_http_events_received_total", map[string]string{"type": "com.example.greet.requested"}, 2},
		{"plugbus_events_published_total", map[string]string{"type": "com.example.metered"}, 3},
		{"plugbus_events_published_total", map[string]string{"type": "com.example.other"}, 1},
		{"plugbus_events_published_total", map[string]string{"type": "com.example.greet.requested"}, 0},
		{"plugbus_http_ingest_errors_total", map[string]string{"reason": "bad_request"}, 1},
		{"plugbus_http_ingest_errors_total", map[string]string{"reason": "unsupported_media_type"}, 1},
		{"plugbus_http_ingest_errors_total", map[string]string{"reason": "too_large"}, 0},
		{"plugbus_http_ingest_errors_total", map[string]string{"reason": "publish_failed"}, 0},
	}
	for _, c := range counters {
		if got := value(t, fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Every reason is exported from the start, at zero.
	if find(fams, "plugbus_http_ingest_errors_total", map[string]string{"reason": "publish_failed"}) == nil {
		t.Error("reason publish_failed is not exported before its first error")
	}
	hist := []struct {
		typ, outcome string
		want         uint64
	}{
		{"com.example.greet.requested", "ok", 1},
		{"com.example.greet.requested", "error", 1},
		{"com.example.nobody", "no_responders", 1},
	}
	for _, h := range hist {
		if got := histCount(t, fams, "plugbus_invoke_duration_seconds", map[string]string{"type": h.typ, "outcome": h.outcome}); got != h.want {
			t.Errorf("invoke duration {type=%s,outcome=%s} count = %d, want %d", h.typ, h.outcome, got, h.want)
		}
	}
}

func TestMetricsTypeCap(t *testing.T) {
	e := newEnv(t, nil)
	// 1000 distinct types fill the cap; the ones after count as "other".
	var b strings.Builder
	b.WriteString("[")
	const n = 1005
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"specversion":"1.0","id":"x","source":"urn:test","type":"com.example.t` + strings.Repeat("x", i%3) + "." + itoa(i) + `"}`)
	}
	b.WriteString("]")
	if resp := e.do("POST", "/v1/events", batch(), []byte(b.String())); resp.status != http.StatusAccepted {
		t.Fatalf("status %d: %s", resp.status, resp.body)
	}
	fams := scrape(t, e)
	if got := len(fams["plugbus_http_events_received_total"].Metric); got != 1001 {
		t.Errorf("%d series, want 1000 types and other", got)
	}
	if got := value(t, fams, "plugbus_http_events_received_total", map[string]string{"type": "other"}); got != 5 {
		t.Errorf("other = %v, want 5", got)
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

func TestHealthAndReady(t *testing.T) {
	var notReady error
	e := newEnv(t, func(c *api.Config) { c.Ready = func() error { return notReady } })

	check := func(path string, status int, contains string) {
		t.Helper()
		resp := e.do("GET", path, nil, nil)
		if resp.status != status || !strings.Contains(string(resp.body), contains) {
			t.Errorf("GET %s: %d %s, want %d with %q", path, resp.status, resp.body, status, contains)
		}
		if ct := resp.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET %s: Content-Type %q", path, ct)
		}
	}
	check("/healthz", 200, `"status":"ok"`)
	check("/readyz", 200, `"status":"ready"`)
	notReady = errors.New("not connected to NATS")
	check("/readyz", 503, "not connected to NATS")
	check("/healthz", 200, `"status":"ok"`)
}

func TestPluginsAndDashboard(t *testing.T) {
	type plugin struct {
		Name  string `json:"name"`
		State string `json:"state"`
	}
	e := newEnv(t, func(c *api.Config) {
		c.Plugins = func() any { return []plugin{{Name: "greeter", State: "running"}} }
	})
	resp := e.do("GET", "/v1/plugins", nil, nil)
	var got []plugin
	if err := json.Unmarshal(resp.body, &got); resp.status != 200 || err != nil || len(got) != 1 || got[0].Name != "greeter" {
		t.Errorf("GET /v1/plugins: %d %s (%v)", resp.status, resp.body, err)
	}

	// What the page does is tested in a browser (dashboard_browser_test.go);
	// here, that each file is served with its type and the policy.
	for _, f := range []struct{ path, ctype, want string }{
		{"/", "text/html", `<table id="plugins">`},
		{"/dashboard/app.js", "text/javascript", `"/v1/overview"`},
		{"/dashboard/app.css", "text/css", "svg.spark"},
		{"/favicon.svg", "image/svg+xml", "<svg"},
		{"/favicon.ico", "image/svg+xml", "<svg"},
	} {
		resp = e.do("GET", f.path, nil, nil)
		if resp.status != 200 || !strings.HasPrefix(resp.header.Get("Content-Type"), f.ctype) || !bytes.Contains(resp.body, []byte(f.want)) {
			t.Errorf("GET %s: %d %s, want 200 %s with %s", f.path, resp.status, resp.header.Get("Content-Type"), f.ctype, f.want)
		}
		if csp := resp.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: Content-Security-Policy %q, want scripts from the page's origin only", f.path, csp)
		}
	}
}

func TestPluginsDefault(t *testing.T) {
	e := newEnv(t, nil)
	if resp := e.do("GET", "/v1/plugins", nil, nil); resp.status != 200 || strings.TrimSpace(string(resp.body)) != "[]" {
		t.Errorf("GET /v1/plugins without a snapshot: %d %s", resp.status, resp.body)
	}
}

func TestRouting(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/v1/events", 405, "POST"},
		{"PUT", "/v1/invoke/com.example.x", 405, "POST"},
		{"DELETE", "/v1/plugins", 405, "GET"},
		{"POST", "/healthz", 405, "GET"},
		{"POST", "/", 405, "GET"},
		{"GET", "/v2/nothing", 404, ""},
		{"POST", "/v1/invoke/", 404, ""},
	}
	for _, tt := range tests {
		resp := e.do(tt.method, tt.path, nil, nil)
		if resp.status != tt.status || resp.header.Get("Allow") != tt.allow {
			t.Errorf("%s %s: %d Allow %q, want %d %q", tt.method, tt.path, resp.status, resp.header.Get("Allow"), tt.status, tt.allow)
			continue
		}
		resp.errorBody(t)
	}
}

func TestNewConfig(t *testing.T) {
	if _, err := api.New(api.Config{}); !errors.Is(err, api.ErrInvalidConfig) || !strings.Contains(err.Error(), "Conn") {
		t.Errorf("New without Conn: %v", err)
	}
	nc := bustest.Connect(t, bustest.NewServer(t))
	reg := prometheus.NewRegistry()
	srvCfg := func() api.Config {
		return api.Config{Conn: nc, Registerer: reg, Gatherer: reg, Producer: "bad.name", InvokeTimeout: -1}
	}
	_, err := api.New(srvCfg())
	if err == nil || !strings.Contains(err.Error(), "bad.name") || !strings.Contains(err.Error(), "InvokeTimeout") {
		t.Errorf("New with bad producer and timeout: %v", err)
	}
	// Two handlers on one registry share the metrics instead of failing.
	for range 2 {
		if _, err := api.New(api.Config{Conn: nc, Registerer: reg, Gatherer: reg}); err != nil {
			t.Fatalf("New: %v", err)
		}
	}
}

func TestPublishFailed(t *testing.T) {
	var apiConn *nats.Conn
	e := newEnv(t, func(c *api.Config) { apiConn = c.Conn })
	apiConn.Close()

	resp := e.do("POST", "/v1/events", binary("x", "com.example.x"), []byte(`{}`))
	if resp.status != http.StatusServiceUnavailable {
		t.Fatalf("events with NATS closed: status %d: %s", resp.status, resp.body)
	}
	if eb := resp.errorBody(t); !strings.Contains(eb.Error, "retry") {
		t.Errorf("error %q does not say what to do", eb.Error)
	}
	resp = e.do("POST", "/v1/invoke/com.example.x", nil, []byte(`{}`))
	if resp.status != http.StatusServiceUnavailable {
		t.Fatalf("invoke with NATS closed: status %d: %s", resp.status, resp.body)
	}
	resp.errorBody(t)
	fams := scrape(t, e)
	if got := value(t, fams, "plugbus_http_ingest_errors_total", map[string]string{"reason": "publish_failed"}); got != 1 {
		t.Errorf("publish_failed = %v, want 1", got)
	}
	if got := histCount(t, fams, "plugbus_invoke_duration_seconds", map[string]string{"type": "com.example.x", "outcome": "error"}); got != 1 {
		t.Errorf("invoke errors = %v, want 1", got)
	}
}

func TestLargerThanMaxPayload(t *testing.T) {
	e := newEnv(t, func(c *api.Config) { c.MaxBodyBytes = 4 << 20 })
	sub := e.subscribe()
	max := e.nc.MaxPayload()
	data := []byte(`"` + strings.Repeat("a", int(max)) + `"`)
	resp := e.do("POST", "/v1/events", binary("big", "com.example.big"), data)
	if resp.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413: %s", resp.status, resp.body)
	}
	if eb := resp.errorBody(t); !strings.Contains(eb.Error, "max_payload") {
		t.Errorf("error %q does not name the NATS limit", eb.Error)
	}
	none(t, sub)

	// The size is first bounded from the source's parts as if each byte
	// were percent-encoded; an event over that bound but within the limit
	// passes, counted at its real size.
	source := "urn:" + strings.Repeat("s", int(max)/4)
	body := fmt.Sprintf(`{"specversion":"1.0","id":"long-source","source":%q,"type":"com.example.big","data":%q}`,
		source, strings.Repeat("d", int(max)/2))
	resp = e.do("POST", "/v1/events", structured(), []byte(body))
	if resp.status != http.StatusAccepted {
		t.Fatalf("event of about %d bytes, under max_payload %d: status %d, want 202: %s", len(body), max, resp.status, resp.body)
	}
	if msg := next(t, sub); msg.Header.Get("ce-source") != source {
		t.Errorf("published source of %d bytes, want %d", len(msg.Header.Get("ce-source")), len(source))
	}
}
