package pluginkit_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
	"github.com/plugbus/plugbus/plugin-kit/kittest"
)

// A traced plugin handles an event in a span that continues the event's
// trace, and its results and emitted events carry spans of their own.
func TestTracerProvider(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())

	p := newPlugin("traced", "1.0.0", pluginkit.WithTracerProvider(tp))
	p.HandleFunc("com.example.trace.requested", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		if !trace.SpanContextFromContext(ctx).IsValid() {
			t.Error("the handler's context has no span")
		}
		if err := pluginkit.Emit(ctx, pluginkit.NewEvent("com.example.trace.noted", nil)); err != nil {
			return nil, err
		}
		return pluginkit.NewEvent("com.example.trace.answered", nil), nil
	})
	h := kittest.Start(t, p)
	req := pluginkit.NewEvent("com.example.trace.requested", nil)
	req.SetExtension("traceparent", traceParent)
	reply, err := h.Request(req)
	if err != nil {
		t.Fatal(err)
	}

	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans.Ended() {
		byName[s.Name()] = s
	}
	handle, result, emit := byName["handle com.example.trace.requested"], byName["result com.example.trace.answered"], byName["publish com.example.trace.noted"]
	if handle == nil || result == nil || emit == nil {
		t.Fatalf("spans %v, want handle, result and publish", byName)
	}
	if got := handle.SpanContext().TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("the handle span is in trace %s, want the request's", got)
	}
	if got := handle.Parent().SpanID().String(); got != "00f067aa0ba902b7" || !handle.Parent().IsRemote() {
		t.Errorf("the handle span's parent is %s, want the request's span 00f067aa0ba902b7", got)
	}
	if handle.SpanKind() != trace.SpanKindServer {
		t.Errorf("handle span of a request: kind %v, want server", handle.SpanKind())
	}
	for _, s := range []sdktrace.ReadOnlySpan{result, emit} {
		if s.Parent().SpanID() != handle.SpanContext().SpanID() {
			t.Errorf("%s: parent %s, want the handle span", s.Name(), s.Parent().SpanID())
		}
	}
	want := "00-" + result.SpanContext().TraceID().String() + "-" + result.SpanContext().SpanID().String() + "-01"
	if got := reply.Extensions()["traceparent"]; got != want {
		t.Errorf("the reply's traceparent is %v, want the result span's %s", got, want)
	}
}
