// Package tracing is OpenTelemetry for Plugbus: a TracerProvider built from
// the standard OTEL_ environment variables, and the W3C trace context
// carried in an event's traceparent (and tracestate) extension, the
// CloudEvents distributed tracing extension, so that one trace follows an
// event across processes.
//
// Nothing here is process-wide: [FromEnv] returns a provider for the caller
// to pass on (plugin-kit's WithTracerProvider, the coordinator's Config),
// and never sets OpenTelemetry's global one.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// Attribute keys of Plugbus spans, after OpenTelemetry's messaging
// conventions where they have one.
const (
	AttrSystem      = attribute.Key("messaging.system")           // always "nats"
	AttrDestination = attribute.Key("messaging.destination.name") // the NATS subject
	AttrMessageID   = attribute.Key("messaging.message.id")       // the event's id
	AttrType        = attribute.Key("cloudevents.event_type")     // the event's type
	AttrSource      = attribute.Key("cloudevents.event_source")   // the event's source
	AttrProducer    = attribute.Key("plugbus.producer")           // the producer in the subject
	AttrPlugin      = attribute.Key("plugbus.plugin")             // the plugin handling or sending
	AttrCode        = attribute.Key("plugbus.error_code")         // an answer's error code
)

// ScopeName is the instrumentation scope of Plugbus's tracers.
const ScopeName = "github.com/plugbus/plugbus"

// Enabled reports whether the environment asks for traces to be exported:
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set,
// and OTEL_TRACES_EXPORTER and OTEL_SDK_DISABLED do not turn it off.
func Enabled(getenv func(string) string) bool {
	if getenv == nil {
		getenv = os.Getenv
	}
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	if exp := getenv("OTEL_TRACES_EXPORTER"); exp != "" && !strings.EqualFold(exp, "otlp") {
		return false
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// FromEnv returns a TracerProvider that exports spans in batches with OTLP
// over HTTP (protobuf) as the standard OTEL_EXPORTER_OTLP_* variables say,
// for the service named service (OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES win), and shutdown, which flushes what is
// buffered and stops it. When [Enabled] is false it returns nil and a
// shutdown that does nothing: no provider, no cost. Only the http/protobuf
// protocol is built in; asking for grpc is an error that says so. The
// exporter is Plugbus's own (see newExporter for the variables it reads),
// so that plugins do not link gRPC.
func FromEnv(service, version string) (trace.TracerProvider, func(context.Context) error, error) {
	none := func(context.Context) error { return nil }
	if !Enabled(os.Getenv) {
		return nil, none, nil
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := os.Getenv(name); v != "" {
			if v != "http/protobuf" {
				return nil, none, fmt.Errorf("tracing: %s=%s: only http/protobuf is built in; unset it or set it to http/protobuf", name, v)
			}
			break
		}
	}
	exp, err := newExporter(os.Getenv)
	if err != nil {
		return nil, none, err
	}
	// Later resources win: the environment's over the defaults given here.
	res, err := resource.Merge(
		resource.NewSchemaless(semconv.ServiceName(service), semconv.ServiceVersion(version)),
		resource.Environment(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, none, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}

// Tracer returns the Plugbus tracer of tp, or nil when tp is nil: callers
// test for nil and skip all tracing work when it is off.
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer(ScopeName)
}

// propagator reads and writes the W3C trace context.
var propagator = propagation.TraceContext{}

// carrier reads and writes the trace context in an event's extensions.
type carrier struct{ e *event.Event }

func (c carrier) Get(key string) string {
	v, _ := c.e.Extensions()[key].(string)
	return v
}

func (c carrier) Set(key, value string) { c.e.SetExtension(key, value) }

func (c carrier) Keys() []string { return []string{"traceparent", "tracestate"} }

// Extract returns ctx with the remote span context the event carries in its
// traceparent extension, when it carries a valid one.
func Extract(ctx context.Context, e *event.Event) context.Context {
	return propagator.Extract(ctx, carrier{e})
}

// Inject writes the span context of ctx into the event's traceparent (and
// tracestate) extension, replacing what was there; with no valid span in
// ctx it leaves the event as it is.
func Inject(ctx context.Context, e *event.Event) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	propagator.Inject(ctx, carrier{e})
}

// HeaderCarrier reads the trace context of an HTTP request's headers.
type HeaderCarrier = propagation.HeaderCarrier

// ExtractHeaders returns ctx with the remote span context of an HTTP
// request's traceparent header.
func ExtractHeaders(ctx context.Context, h HeaderCarrier) context.Context {
	return propagator.Extract(ctx, h)
}

// EventAttrs are the attributes of a span about event e.
func EventAttrs(e *event.Event) []attribute.KeyValue {
	return []attribute.KeyValue{
		AttrSystem.String("nats"), AttrMessageID.String(e.ID()), AttrType.String(e.Type()), AttrSource.String(e.Source()),
	}
}

// End ends span, recording err as its error when not nil.
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
