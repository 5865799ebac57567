package tracing

import (
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// receiver is an OTLP/HTTP trace receiver decoding requests with
// opentelemetry-proto's generated code; status, when set, answers each
// request in turn (then 200).
type receiver struct {
	mu       sync.Mutex
	reqs     []*coltracepb.ExportTraceServiceRequest
	headers  []http.Header
	statuses []int
}

func newReceiver(t *testing.T, statuses ...int) (*receiver, *httptest.Server) {
	rcv := &receiver{statuses: statuses}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		if len(rcv.statuses) > 0 {
			code := rcv.statuses[0]
			rcv.statuses = rcv.statuses[1:]
			w.Header().Set("Retry-After", "1")
			http.Error(w, "busy", code)
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				t.Errorf("gzip: %v", err)
				return
			}
			body = zr
		}
		data, err := io.ReadAll(body)
		req := new(coltracepb.ExportTraceServiceRequest)
		if err == nil {
			err = proto.Unmarshal(data, req)
		}
		if err != nil || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Errorf("receiver: %s %s (%s): %v", r.Method, r.URL.Path, r.Header.Get("Content-Type"), err)
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		rcv.reqs = append(rcv.reqs, req)
		rcv.headers = append(rcv.headers, r.Header.Clone())
	}))
	t.Cleanup(srv.Close)
	return rcv, srv
}

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// Every field Plugbus's spans and the SDK can carry arrives as
// opentelemetry-proto decodes it.
func TestExporterEncodesSpans(t *testing.T) {
	rcv, srv := newReceiver(t)
	exp, err := newExporter(envOf(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":           srv.URL + "/",
		"OTEL_EXPORTER_OTLP_HEADERS":            "api-key=a",
		"OTEL_EXPORTER_OTLP_TRACES_HEADERS":     "x-only=traces",
		"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT":     "20000",
		"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "gzip",
	}))
	if err != nil {
		t.Fatal(err)
	}
	res := resource.NewWithAttributes("https://opentelemetry.io/schemas/1.40.0", attribute.String("service.name", "hello"))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(res))
	tr := tp.Tracer(ScopeName, trace.WithInstrumentationVersion("1.2.3"))
	other := tp.Tracer("other")

	remote := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		SpanID:  trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}, TraceFlags: trace.FlagsSampled, Remote: true,
	})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), remote)
	start := time.Unix(1700000000, 123)
	_, span := tr.Start(ctx, "handle com.example.greet.requested", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start),
		trace.WithLinks(trace.Link{SpanContext: remote, Attributes: []attribute.KeyValue{attribute.String("why", "trigger")}}),
		trace.WithAttributes(
			attribute.Bool("b", false), attribute.Int64("i", -7), attribute.Float64("f", 0.5), attribute.String("s", ""),
			attribute.StringSlice("ss", []string{"x", "y"}), attribute.Int64Slice("is", []int64{1, 0}),
			attribute.BoolSlice("bs", []bool{true}), attribute.Float64Slice("fs", []float64{2.5}),
		))
	span.AddEvent("retry", trace.WithTimestamp(start.Add(time.Millisecond)), trace.WithAttributes(attribute.Int("attempt", 2)))
	span.SetStatus(codes.Error, "boom")
	span.End(trace.WithTimestamp(start.Add(time.Second)))
	_, plain := other.Start(context.Background(), "publish x", trace.WithSpanKind(trace.SpanKindProducer))
	plain.SetStatus(codes.Ok, "")
	plain.End()
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.reqs) != 2 {
		t.Fatalf("%d requests, want 2 (one per span, synchronous)", len(rcv.reqs))
	}
	// The signal's variable wins over the general one, whole.
	if h := rcv.headers[0]; h.Get("X-Only") != "traces" || h.Get("Api-Key") != "" || h.Get("Content-Encoding") != "gzip" {
		t.Errorf("headers %v, want x-only from OTEL_EXPORTER_OTLP_TRACES_HEADERS alone, gzip", h)
	}
	rs := rcv.reqs[0].ResourceSpans
	if len(rs) != 1 || rs[0].SchemaUrl != "https://opentelemetry.io/schemas/1.40.0" || !hasAttr(rs[0].Resource.Attributes, "service.name", "hello") {
		t.Fatalf("resource spans %v", rs)
	}
	ss := rs[0].ScopeSpans
	if len(ss) != 1 || ss[0].Scope.Name != ScopeName || ss[0].Scope.Version != "1.2.3" || len(ss[0].Spans) != 1 {
		t.Fatalf("scope spans %v", ss)
	}
	got := ss[0].Spans[0]
	sc := span.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	want := &tracepb.Span{
		TraceId: tid[:], SpanId: sid[:], ParentSpanId: []byte{1, 2, 3, 4, 5, 6, 7, 8},
		Flags: 0x301, Name: "handle com.example.greet.requested", Kind: tracepb.Span_SPAN_KIND_SERVER,
		StartTimeUnixNano: uint64(start.UnixNano()), EndTimeUnixNano: uint64(start.Add(time.Second).UnixNano()),
		Attributes: []*commonpb.KeyValue{
			kv("b", &commonpb.AnyValue_BoolValue{BoolValue: false}),
			kv("i", &commonpb.AnyValue_IntValue{IntValue: -7}),
			kv("f", &commonpb.AnyValue_DoubleValue{DoubleValue: 0.5}),
			kv("s", &commonpb.AnyValue_StringValue{StringValue: ""}),
			kv("ss", array(&commonpb.AnyValue_StringValue{StringValue: "x"}, &commonpb.AnyValue_StringValue{StringValue: "y"})),
			kv("is", array(&commonpb.AnyValue_IntValue{IntValue: 1}, &commonpb.AnyValue_IntValue{IntValue: 0})),
			kv("bs", array(&commonpb.AnyValue_BoolValue{BoolValue: true})),
			kv("fs", array(&commonpb.AnyValue_DoubleValue{DoubleValue: 2.5})),
		},
		Events: []*tracepb.Span_Event{{
			TimeUnixNano: uint64(start.Add(time.Millisecond).UnixNano()), Name: "retry",
			Attributes: []*commonpb.KeyValue{kv("attempt", &commonpb.AnyValue_IntValue{IntValue: 2})},
		}},
		Links: []*tracepb.Span_Link{{
			TraceId: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, SpanId: []byte{1, 2, 3, 4, 5, 6, 7, 8},
			Attributes: []*commonpb.KeyValue{kv("why", &commonpb.AnyValue_StringValue{StringValue: "trigger"})}, Flags: 0x301,
		}},
		Status: &tracepb.Status{Message: "boom", Code: tracepb.Status_STATUS_CODE_ERROR},
	}
	if !proto.Equal(got, want) {
		t.Errorf("span\n got %v\nwant %v", got, want)
	}
	second := rcv.reqs[1].ResourceSpans[0].ScopeSpans[0]
	if second.Scope.Name != "other" || second.Spans[0].Kind != tracepb.Span_SPAN_KIND_PRODUCER ||
		second.Spans[0].Status.GetCode() != tracepb.Status_STATUS_CODE_OK || second.Spans[0].ParentSpanId != nil || second.Spans[0].Flags != 0x101 {
		t.Errorf("second span %v", second)
	}
}

func kv(k string, v any) *commonpb.KeyValue {
	switch v := v.(type) {
	case *commonpb.AnyValue_BoolValue:
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: v}}
	case *commonpb.AnyValue_IntValue:
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: v}}
	case *commonpb.AnyValue_DoubleValue:
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: v}}
	case *commonpb.AnyValue_StringValue:
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: v}}
	case *commonpb.AnyValue_ArrayValue:
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: v}}
	}
	panic("kv: unknown value")
}

func array(vs ...any) *commonpb.AnyValue_ArrayValue {
	a := &commonpb.ArrayValue{}
	for _, v := range vs {
		a.Values = append(a.Values, kv("", v).Value)
	}
	return &commonpb.AnyValue_ArrayValue{ArrayValue: a}
}

func hasAttr(kvs []*commonpb.KeyValue, k, v string) bool {
	for _, a := range kvs {
		if a.Key == k && a.Value.GetStringValue() == v {
			return true
		}
	}
	return false
}

// Grouping: spans of two resources and two scopes in one batch arrive as
// two ResourceSpans, the first with two ScopeSpans.
func TestEncodeRequestGroups(t *testing.T) {
	r1 := resource.NewSchemaless(attribute.String("service.name", "a"))
	r2 := resource.NewSchemaless(attribute.String("service.name", "b"))
	var spans []sdktrace.ReadOnlySpan
	for _, tc := range []struct {
		res   *resource.Resource
		scope string
	}{{r1, "s1"}, {r1, "s2"}, {r2, "s1"}, {r1, "s1"}} {
		rec := &recorder{}
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(rec), sdktrace.WithResource(tc.res))
		_, s := tp.Tracer(tc.scope).Start(context.Background(), "x")
		s.End()
		spans = append(spans, rec.spans...)
	}
	// Spans of one resource share its pointer only within one provider;
	// these four providers have four pointers with two sets of attributes.
	req := new(coltracepb.ExportTraceServiceRequest)
	if err := proto.Unmarshal(encodeRequest(spans), req); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			n += len(ss.Spans)
			if ss.Scope.Name != "s1" && ss.Scope.Name != "s2" {
				t.Errorf("scope %q", ss.Scope.Name)
			}
		}
	}
	if n != 4 {
		t.Errorf("%d spans decoded, want 4", n)
	}
	rec := &recorder{}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(rec), sdktrace.WithResource(r1))
	for _, scope := range []string{"s1", "s2", "s1"} {
		_, s := tp.Tracer(scope, trace.WithInstrumentationAttributes(attribute.String("k", "v"))).Start(context.Background(), "y")
		s.End()
	}
	req = new(coltracepb.ExportTraceServiceRequest)
	if err := proto.Unmarshal(encodeRequest(rec.spans), req); err != nil {
		t.Fatal(err)
	}
	if len(req.ResourceSpans) != 1 || len(req.ResourceSpans[0].ScopeSpans) != 2 || len(req.ResourceSpans[0].ScopeSpans[0].Spans) != 2 ||
		!hasAttr(req.ResourceSpans[0].ScopeSpans[0].Scope.Attributes, "k", "v") {
		t.Errorf("one provider, scopes s1, s2, s1: %v", req)
	}
}

type recorder struct{ spans []sdktrace.ReadOnlySpan }

func (r *recorder) ExportSpans(_ context.Context, s []sdktrace.ReadOnlySpan) error {
	r.spans = append(r.spans, s...)
	return nil
}
func (r *recorder) Shutdown(context.Context) error { return nil }

// A busy receiver (503, then 429) gets the spans again after waiting; one
// that refuses them (400) does not; a receiver that stays busy past the
// timeout gets an error.
func TestExporterRetries(t *testing.T) {
	span := func() []sdktrace.ReadOnlySpan {
		rec := &recorder{}
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(rec))
		_, s := tp.Tracer("t").Start(context.Background(), "x")
		s.End()
		return rec.spans
	}
	rcv, srv := newReceiver(t, http.StatusServiceUnavailable, http.StatusTooManyRequests)
	exp, err := newExporter(envOf(map[string]string{
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": srv.URL + "/v1/traces", "OTEL_EXPORTER_OTLP_TIMEOUT": "60000",
		"OTEL_EXPORTER_OTLP_HEADERS": "api-key=a%20b%2Cc, x-tenant = t1",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := exp.ExportSpans(context.Background(), span()); err != nil {
		t.Fatalf("after two busy answers: %v", err)
	}
	rcv.mu.Lock()
	if len(rcv.reqs) != 1 {
		t.Errorf("%d requests received, want 1", len(rcv.reqs))
	} else if h := rcv.headers[0]; h.Get("Api-Key") != "a b,c" || h.Get("X-Tenant") != "t1" || h.Get("Content-Encoding") != "" {
		t.Errorf("headers %v, want api-key and x-tenant from OTEL_EXPORTER_OTLP_HEADERS, no compression", h)
	}
	rcv.mu.Unlock()

	_, srv = newReceiver(t, http.StatusBadRequest)
	exp, err = newExporter(envOf(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": srv.URL + "/v1/traces"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := exp.ExportSpans(context.Background(), span()); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("refused: %v, want an error naming 400", err)
	}

	_, srv = newReceiver(t, slices.Repeat([]int{http.StatusServiceUnavailable}, 100)...)
	exp, err = newExporter(envOf(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": srv.URL + "/v1/traces", "OTEL_EXPORTER_OTLP_TIMEOUT": "1500"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := exp.ExportSpans(context.Background(), span()); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "503") {
		t.Errorf("busy past the timeout: %v, want the deadline and the last 503", err)
	}
}

func TestExporterSettings(t *testing.T) {
	for _, tc := range []struct {
		env     map[string]string
		wantURL string
		wantErr string
	}{
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "http://c:4318/v1/traces", ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c/otlp/"}, "https://c/otlp/v1/traces", ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:1/custom"}, "http://t:1/custom", ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "c:4318"}, "", "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, "", "OTEL_EXPORTER_OTLP_TIMEOUT"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "zstd"}, "", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, "", "OTEL_EXPORTER_OTLP_HEADERS"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c", "OTEL_EXPORTER_OTLP_CERTIFICATE": "/no/such/file"}, "", "OTEL_EXPORTER_OTLP_CERTIFICATE"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c", "OTEL_EXPORTER_OTLP_CLIENT_KEY": "/k.pem"}, "", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"},
	} {
		x, err := newExporter(envOf(tc.env))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: error %v, want one naming %s", tc.env, err, tc.wantErr)
			}
			continue
		}
		if err != nil || x.url != tc.wantURL {
			t.Errorf("%v: %v, url %q, want %q", tc.env, err, x.url, tc.wantURL)
		}
	}
}
