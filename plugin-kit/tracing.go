package pluginkit

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/internal/tracing"
)

// noSpan is the span of work that is not traced: it does nothing.
var noSpan = trace.SpanFromContext(context.Background())

// WithTracerProvider traces the plugin with OpenTelemetry through tp: a span
// "handle <type>" for each event handled, a child of the span named by the
// event's traceparent extension (so a trace crosses processes), a span
// "result <type>" for each result it returns, "publish <type>" for each
// event it publishes with [Emit] or [Plugin.Publish], and "invoke <type>"
// for each request it sends; the event leaving carries the new span's
// context in its traceparent. Without it nothing is traced and the hot path
// does no tracing work at all; events still pass their trigger's
// traceparent on to their results. [Main] builds a provider from the
// standard OTEL_EXPORTER_OTLP_* variables when they are set.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(p *Plugin) { p.tracer = tracing.Tracer(tp) }
}

// startHandle starts the span of handling e, received from producer.
func (p *Plugin) startHandle(ctx context.Context, e *Event, producer string) (context.Context, trace.Span) {
	kind := trace.SpanKindConsumer
	if _, isRequest := e.Extensions()[bus.ExtDeadline]; isRequest {
		kind = trace.SpanKindServer
	}
	ctx = tracing.Extract(ctx, e)
	return p.tracer.Start(ctx, "handle "+e.Type(), trace.WithSpanKind(kind), trace.WithAttributes(
		tracing.AttrSystem.String("nats"), tracing.AttrType.String(e.Type()), tracing.AttrMessageID.String(e.ID()),
		tracing.AttrSource.String(e.Source()), tracing.AttrProducer.String(producer), tracing.AttrPlugin.String(p.name)))
}

// startSend starts the span of sending e (verb: result, publish or invoke)
// and writes its context into e's traceparent. With tracing off it returns
// ctx and a span that does nothing.
func (p *Plugin) startSend(ctx context.Context, verb string, e *Event) (context.Context, trace.Span) {
	if p.tracer == nil {
		return ctx, noSpan
	}
	kind := trace.SpanKindProducer
	if verb == "invoke" {
		kind = trace.SpanKindClient
	}
	ctx, span := p.tracer.Start(ctx, verb+" "+e.Type(), trace.WithSpanKind(kind), trace.WithAttributes(
		tracing.AttrSystem.String("nats"), tracing.AttrType.String(e.Type()), tracing.AttrPlugin.String(p.name)))
	tracing.Inject(ctx, e)
	return ctx, span
}

// tracerFromEnv gives p a tracer exporting to the OTLP endpoint of the
// environment when it has none and the environment names one, and returns
// what flushes it on exit.
func tracerFromEnv(p *Plugin) (flush func(), err error) {
	if p.tracer != nil {
		return func() {}, nil
	}
	tp, shutdown, err := tracing.FromEnv(p.name, p.version)
	if err != nil || tp == nil {
		return func() {}, err
	}
	p.tracer = tracing.Tracer(tp)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			p.logger.Warn("could not send the last spans", "err", err)
		}
	}, nil
}
