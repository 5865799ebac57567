package api

import (
	"context"
	"net/http"
	"strconv"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/plugbus/plugbus/internal/tracing"
)

// Tracing, when [Config.TracerProvider] is set: a server span for each
// ingest and invoke request ("POST /v1/events", "POST /v1/invoke/{type}"),
// a child of the span named by the request's traceparent header when it has
// one; in it a producer span "publish <type>" for each event ingested, or a
// client span "invoke <type>" for the request sent; and that span's context
// in the traceparent extension of the event sent, so that the
// plugins' spans join the same trace. An event that came with a
// traceparent of its own keeps a link to it.

// traced runs h in a server span called route.
func (s *server) traced(route string, h http.HandlerFunc) http.HandlerFunc {
	if s.tracer == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := tracing.ExtractHeaders(r.Context(), tracing.HeaderCarrier(r.Header))
		ctx, span := s.tracer.Start(ctx, route, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
			attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
		defer span.End()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h(sw, r.WithContext(ctx))
		span.SetAttributes(attribute.Int("http.response.status_code", sw.status))
		if sw.status >= 500 {
			span.SetStatus(codes.Error, strconv.Itoa(sw.status)+" "+http.StatusText(sw.status))
		}
	}
}

// sendSpan starts the span of sending e (verb: publish or invoke) from the
// request's span in ctx, and puts its context in e's traceparent. With
// tracing off it returns ctx and a span that does nothing.
func (s *server) sendSpan(ctx context.Context, verb string, e *event.Event, kind trace.SpanKind) (context.Context, trace.Span) {
	if s.tracer == nil {
		return ctx, trace.SpanFromContext(context.Background())
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(kind), trace.WithAttributes(tracing.EventAttrs(e)...)}
	if own := trace.SpanContextFromContext(tracing.Extract(context.Background(), e)); own.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: own}))
	}
	ctx, span := s.tracer.Start(ctx, verb+" "+e.Type(), opts...)
	tracing.Inject(ctx, e)
	return ctx, span
}

// statusWriter notes the status an answer was given.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
