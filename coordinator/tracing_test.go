package coordinator_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/plugbus/plugbus/internal/proctest"
)

// receivedSpan is a span an OTLP exporter sent, with the service that sent
// it.
type receivedSpan struct {
	service string
	span    *tracepb.Span
}

// otlpReceiver is an OTLP/HTTP trace receiver: a real HTTP server decoding
// the protobuf requests exporters send to /v1/traces.
type otlpReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans []receivedSpan
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	rcv := &otlpReceiver{}
	rcv.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Errorf("OTLP receiver: %s %s (%s), want POST /v1/traces in protobuf", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
			http.Error(w, "want POST /v1/traces", http.StatusBadRequest)
			return
		}
		body, err := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &req)
		}
		if err != nil {
			t.Errorf("OTLP receiver: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rcv.mu.Lock()
		for _, rs := range req.ResourceSpans {
			service := ""
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.Key == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					rcv.spans = append(rcv.spans, receivedSpan{service, s})
				}
			}
		}
		rcv.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(rcv.Close)
	return rcv
}

// find returns the span called name from service, if one came.
func (rcv *otlpReceiver) find(service, name string) (*tracepb.Span, bool) {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for _, s := range rcv.spans {
		if s.service == service && s.span.Name == name {
			return s.span, true
		}
	}
	return nil, false
}

func (rcv *otlpReceiver) list() string {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	var b strings.Builder
	for _, s := range rcv.spans {
		fmt.Fprintf(&b, "  %s: %q trace %x span %x parent %x\n", s.service, s.span.Name, s.span.TraceId, s.span.SpanId, s.span.ParentSpanId)
	}
	return b.String()
}

// TestTracingOneInvoke runs a real coordinator and a real hello plugin
// process, both exporting to an OTLP receiver as the standard OTEL_
// variables say (the plugin inherits them from the coordinator), and checks
// that one HTTP invoke makes one trace across both processes.
func TestTracingOneInvoke(t *testing.T) {
	rcv := newOTLPReceiver(t)
	dir := t.TempDir()
	config := filepath.Join(dir, "plugbus.yaml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf("data_dir: %s/data\nplugins:\n  - name: hello\n    exec: %s/hello\n", dir, binDir)), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &deployment{t: t, config: config, natsAddr: proctest.FreeAddr(t), httpAddr: proctest.FreeAddr(t),
		env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + rcv.URL, "OTEL_BSP_SCHEDULE_DELAY=100", "OTEL_TRACES_EXPORTER=",
			// The coordinator's name, which its plugins must not take over.
			"OTEL_SERVICE_NAME=plugbus-coordinator"}}
	d.start()
	d.waitRunning(map[string]int{"hello": 1}, 30*time.Second)

	// The caller's own trace, which everything joins.
	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest(http.MethodPost, "http://"+d.httpAddr+"/v1/invoke/com.example.greet.requested", strings.NewReader(`{"name":"tracer"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+callerTrace+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "hello, tracer") {
		t.Fatalf("invoke: %s %s", resp.Status, body)
	}

	want := []struct{ service, name string }{
		{"plugbus-coordinator", "POST /v1/invoke/{type}"},
		{"plugbus-coordinator", "invoke com.example.greet.requested"},
		{"hello", "handle com.example.greet.requested"},
		{"hello", "result com.example.greet.sent"},
	}
	spans := map[string]*tracepb.Span{}
	d.waitFor("the spans of the invoke", 30*time.Second, func() error {
		for _, w := range want {
			s, ok := rcv.find(w.service, w.name)
			if !ok {
				return fmt.Errorf("no span %q from %s yet; received:\n%s", w.name, w.service, rcv.list())
			}
			spans[w.name] = s
		}
		return nil
	})
	for _, w := range want {
		if got := fmt.Sprintf("%x", spans[w.name].TraceId); got != callerTrace {
			t.Errorf("span %q from %s is in trace %s, want the caller's %s\n%s", w.name, w.service, got, callerTrace, rcv.list())
		}
	}
	parent := func(child, of string) {
		t.Helper()
		if c, p := spans[child], spans[of]; string(c.ParentSpanId) != string(p.SpanId) {
			t.Errorf("%q has parent %x, want %q (%x)", child, c.ParentSpanId, of, p.SpanId)
		}
	}
	parent("invoke com.example.greet.requested", "POST /v1/invoke/{type}")
	parent("handle com.example.greet.requested", "invoke com.example.greet.requested") // across the process boundary
	parent("result com.example.greet.sent", "handle com.example.greet.requested")
	if k := spans["handle com.example.greet.requested"].Kind; k != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("the handle span of a request has kind %v, want server", k)
	}
}
