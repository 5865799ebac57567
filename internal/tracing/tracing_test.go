package tracing_test

import (
	"context"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel/trace"

	"github.com/plugbus/plugbus/internal/tracing"
)

func TestEnabled(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"nothing set", nil, false},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, true},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, true},
		{"exporter none", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, false},
		{"sdk disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tracing.Enabled(func(k string) string { return tt.env[k] }); got != tt.want {
				t.Errorf("Enabled: got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFromEnvOffCostsNothing(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	tp, shutdown, err := tracing.FromEnv("x", "1.0.0")
	if err != nil || tp != nil || tracing.Tracer(tp) != nil {
		t.Fatalf("FromEnv without an endpoint: %v, %v; want no provider", tp, err)
	}
	if err := shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestFromEnvRefusesGRPC(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	if _, _, err := tracing.FromEnv("x", "1.0.0"); err == nil {
		t.Fatal("FromEnv with protocol grpc: no error")
	}
}

func TestInjectExtract(t *testing.T) {
	e := event.New()
	tracing.Inject(context.Background(), &e)
	if _, ok := e.Extensions()["traceparent"]; ok {
		t.Fatal("Inject without a span set a traceparent")
	}
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	tracing.Inject(trace.ContextWithSpanContext(context.Background(), sc), &e)
	if got := e.Extensions()["traceparent"]; got != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Errorf("traceparent %v", got)
	}
	back := trace.SpanContextFromContext(tracing.Extract(context.Background(), &e))
	if back.TraceID() != tid || back.SpanID() != sid || !back.IsRemote() {
		t.Errorf("extracted %v, want the injected span context, remote", back)
	}
	e.SetExtension("traceparent", "garbage")
	if trace.SpanContextFromContext(tracing.Extract(context.Background(), &e)).IsValid() {
		t.Error("a malformed traceparent gave a valid span context")
	}
}
