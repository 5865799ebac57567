package tracing

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// exporter sends spans to an OTLP/HTTP receiver as protobuf
// (ExportTraceServiceRequest to <endpoint>/v1/traces), configured by the
// standard OTEL_EXPORTER_OTLP_* variables.
//
// It writes the protobuf wire format itself. OpenTelemetry's otlptracehttp
// exporter links gRPC, grpc-gateway and the generated protobuf packages
// (its options are shared with the gRPC exporter, its request type is
// generated service code), which doubled a plugin binary (13 to 27 MB for
// plugins/hello) and cost every plugin start their package init, whether
// or not it traced (docs/benchmarks-notes.md, cold start).
type exporter struct {
	url     string
	header  http.Header
	gzip    bool
	timeout time.Duration
	client  *http.Client
}

var _ sdktrace.SpanExporter = (*exporter)(nil)

// newExporter reads the exporter's settings from getenv, the signal's
// OTEL_EXPORTER_OTLP_TRACES_* variable winning over OTEL_EXPORTER_OTLP_*:
// ENDPOINT (the base URL, /v1/traces appended; the traces one used as it
// is), HEADERS (key=value pairs, comma-separated, values percent-encoded),
// TIMEOUT (milliseconds, 10 s by default), COMPRESSION (gzip or none) and,
// for https, CERTIFICATE, CLIENT_CERTIFICATE and CLIENT_KEY (PEM files).
func newExporter(getenv func(string) string) (*exporter, error) {
	env := func(name string) (string, string) {
		if v := getenv("OTEL_EXPORTER_OTLP_TRACES_" + name); v != "" {
			return "OTEL_EXPORTER_OTLP_TRACES_" + name, v
		}
		return "OTEL_EXPORTER_OTLP_" + name, getenv("OTEL_EXPORTER_OTLP_" + name)
	}
	x := &exporter{header: http.Header{}, timeout: 10 * time.Second}
	x.header.Set("Content-Type", "application/x-protobuf")
	x.header.Set("User-Agent", "Plugbus OTLP/HTTP trace exporter")

	x.url = getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	name := "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	if x.url == "" {
		name = "OTEL_EXPORTER_OTLP_ENDPOINT"
		base := getenv(name)
		if base == "" {
			base = "http://localhost:4318"
		}
		x.url = strings.TrimSuffix(base, "/") + "/v1/traces"
	}
	u, err := url.Parse(x.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("tracing: %s=%s: want an http or https URL", name, x.url)
	}

	if name, v := env("HEADERS"); v != "" {
		for pair := range strings.SplitSeq(v, ",") {
			k, val, ok := strings.Cut(pair, "=")
			k = strings.TrimSpace(k)
			dec, err := url.PathUnescape(strings.TrimSpace(val))
			if !ok || k == "" || err != nil {
				return nil, fmt.Errorf("tracing: %s: %q is not key=value with a percent-encoded value", name, pair)
			}
			x.header.Set(k, dec)
		}
	}
	if name, v := env("TIMEOUT"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 {
			return nil, fmt.Errorf("tracing: %s=%s: want a number of milliseconds", name, v)
		}
		x.timeout = time.Duration(ms) * time.Millisecond
	}
	switch name, v := env("COMPRESSION"); v {
	case "", "none":
	case "gzip":
		x.gzip = true
		x.header.Set("Content-Encoding", "gzip")
	default:
		return nil, fmt.Errorf("tracing: %s=%s: want gzip or none", name, v)
	}

	transport := http.DefaultTransport.(*http.Transport).Clone()
	if u.Scheme == "https" {
		conf := &tls.Config{MinVersion: tls.VersionTLS12}
		if name, file := env("CERTIFICATE"); file != "" {
			pem, err := os.ReadFile(file)
			if err != nil {
				return nil, fmt.Errorf("tracing: %s: %w", name, err)
			}
			conf.RootCAs = x509.NewCertPool()
			if !conf.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("tracing: %s=%s: no PEM certificate in it", name, file)
			}
		}
		certName, cert := env("CLIENT_CERTIFICATE")
		keyName, key := env("CLIENT_KEY")
		if (cert == "") != (key == "") {
			return nil, fmt.Errorf("tracing: %s and %s go together", certName, keyName)
		}
		if cert != "" {
			pair, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				return nil, fmt.Errorf("tracing: %s, %s: %w", certName, keyName, err)
			}
			conf.Certificates = []tls.Certificate{pair}
		}
		transport.TLSClientConfig = conf
	}
	x.client = &http.Client{Transport: transport}
	return x, nil
}

// ExportSpans sends spans in one request, trying again while the receiver
// answers that it is busy (429, 502, 503, 504, waiting as its Retry-After
// says or 1 s, doubling up to 30 s) or cannot be reached, until the
// exporter's timeout or ctx ends.
func (x *exporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if len(spans) == 0 {
		return nil
	}
	body := encodeRequest(spans)
	if x.gzip {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(body); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		body = buf.Bytes()
	}
	ctx, cancel := context.WithTimeout(ctx, x.timeout)
	defer cancel()
	wait := time.Second
	for {
		again, retryAfter, err := x.send(ctx, body)
		if !again {
			return err
		}
		if retryAfter > 0 {
			wait = retryAfter
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-t.C:
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// send posts body once. again says whether the failure is one to try
// again after, retryAfter how long the receiver asked to wait.
func (x *exporter) send(ctx context.Context, body []byte) (again bool, retryAfter time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, x.url, bytes.NewReader(body))
	if err != nil {
		return false, 0, fmt.Errorf("tracing: %w", err)
	}
	req.Header = x.header.Clone()
	resp, err := x.client.Do(req)
	if err != nil {
		// Refused or reset connections, DNS failures: the receiver may
		// come back; a cancelled ctx ends the loop in ExportSpans.
		return ctx.Err() == nil, 0, fmt.Errorf("tracing: sending spans: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return false, 0, nil
	}
	err = fmt.Errorf("tracing: sending spans to %s: %s (%s)", x.url, resp.Status, strings.TrimSpace(string(msg)))
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		if s, convErr := strconv.Atoi(resp.Header.Get("Retry-After")); convErr == nil && s > 0 {
			retryAfter = time.Duration(s) * time.Second
		}
		return true, retryAfter, err
	}
	return false, 0, err
}

// Shutdown closes the exporter's idle connections; the batch processor
// has flushed what it held before calling it.
func (x *exporter) Shutdown(context.Context) error {
	x.client.CloseIdleConnections()
	return nil
}

// The protobuf encoding of opentelemetry-proto's
// collector/trace/v1.ExportTraceServiceRequest and the messages in it: each
// field is its number and wire type, then a varint, 8 or 4 little-endian
// bytes, or a length and that many bytes (strings, bytes, messages).
// Fields with their type's zero value are left out, except in a oneof.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

func appendTag(b []byte, field, wire int) []byte {
	return binary.AppendUvarint(b, uint64(field)<<3|uint64(wire))
}

func appendVarint(b []byte, field int, v uint64) []byte {
	if v == 0 {
		return b
	}
	return binary.AppendUvarint(appendTag(b, field, wireVarint), v)
}

func appendFixed64(b []byte, field int, v uint64) []byte {
	if v == 0 {
		return b
	}
	return binary.LittleEndian.AppendUint64(appendTag(b, field, wireFixed64), v)
}

func appendFixed32(b []byte, field int, v uint32) []byte {
	if v == 0 {
		return b
	}
	return binary.LittleEndian.AppendUint32(appendTag(b, field, wireFixed32), v)
}

func appendBytes(b []byte, field int, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	return append(binary.AppendUvarint(appendTag(b, field, wireBytes), uint64(len(v))), v...)
}

func appendString(b []byte, field int, v string) []byte {
	if v == "" {
		return b
	}
	return append(binary.AppendUvarint(appendTag(b, field, wireBytes), uint64(len(v))), v...)
}

// appendMessage appends a message field whose encoding enc appends; an
// empty message is still written (it says the field is set).
func appendMessage(b []byte, field int, enc func([]byte) []byte) []byte {
	m := enc(nil)
	return append(binary.AppendUvarint(appendTag(b, field, wireBytes), uint64(len(m))), m...)
}

// scopeKey groups spans by instrumentation scope.
type scopeKey struct {
	name, version, schemaURL string
	attrs                    attribute.Distinct
}

// encodeRequest encodes an ExportTraceServiceRequest holding spans, grouped
// by resource (ResourceSpans) and instrumentation scope (ScopeSpans).
func encodeRequest(spans []sdktrace.ReadOnlySpan) []byte {
	type scopeGroup struct {
		scope instrumentation.Scope
		spans []sdktrace.ReadOnlySpan
	}
	type resourceGroup struct {
		res    *resource.Resource
		scopes []*scopeGroup
		byKey  map[scopeKey]*scopeGroup
	}
	var groups []*resourceGroup
	byRes := map[*resource.Resource]*resourceGroup{}
	for _, s := range spans {
		rg := byRes[s.Resource()]
		if rg == nil {
			rg = &resourceGroup{res: s.Resource(), byKey: map[scopeKey]*scopeGroup{}}
			byRes[s.Resource()] = rg
			groups = append(groups, rg)
		}
		sc := s.InstrumentationScope()
		k := scopeKey{sc.Name, sc.Version, sc.SchemaURL, sc.Attributes.Equivalent()}
		sg := rg.byKey[k]
		if sg == nil {
			sg = &scopeGroup{scope: sc}
			rg.byKey[k] = sg
			rg.scopes = append(rg.scopes, sg)
		}
		sg.spans = append(sg.spans, s)
	}
	var b []byte
	for _, rg := range groups {
		b = appendMessage(b, 1, func(b []byte) []byte { // ResourceSpans
			b = appendMessage(b, 1, func(b []byte) []byte { // Resource
				return appendAttrs(b, 1, rg.res.Attributes())
			})
			for _, sg := range rg.scopes {
				b = appendMessage(b, 2, func(b []byte) []byte { // ScopeSpans
					b = appendMessage(b, 1, func(b []byte) []byte { // InstrumentationScope
						b = appendString(b, 1, sg.scope.Name)
						b = appendString(b, 2, sg.scope.Version)
						return appendAttrs(b, 3, sg.scope.Attributes.ToSlice())
					})
					for _, s := range sg.spans {
						b = appendMessage(b, 2, func(b []byte) []byte { return appendSpan(b, s) })
					}
					return appendString(b, 3, sg.scope.SchemaURL)
				})
			}
			return appendString(b, 3, rg.res.SchemaURL())
		})
	}
	return b
}

// appendSpan appends the fields of a Span.
func appendSpan(b []byte, s sdktrace.ReadOnlySpan) []byte {
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	b = appendBytes(b, 1, tid[:])
	b = appendBytes(b, 2, sid[:])
	b = appendString(b, 3, sc.TraceState().String())
	if p := s.Parent(); p.SpanID().IsValid() {
		psid := p.SpanID()
		b = appendBytes(b, 4, psid[:])
	}
	b = appendString(b, 5, s.Name())
	b = appendVarint(b, 6, uint64(s.SpanKind())) // otel-go's kinds are numbered as OTLP's
	b = appendFixed64(b, 7, unixNano(s.StartTime()))
	b = appendFixed64(b, 8, unixNano(s.EndTime()))
	b = appendAttrs(b, 9, s.Attributes())
	b = appendVarint(b, 10, uint64(max(0, s.DroppedAttributes())))
	for _, e := range s.Events() {
		b = appendMessage(b, 11, func(b []byte) []byte { // Span.Event
			b = appendFixed64(b, 1, unixNano(e.Time))
			b = appendString(b, 2, e.Name)
			b = appendAttrs(b, 3, e.Attributes)
			return appendVarint(b, 4, uint64(max(0, e.DroppedAttributeCount)))
		})
	}
	b = appendVarint(b, 12, uint64(max(0, s.DroppedEvents())))
	for _, l := range s.Links() {
		b = appendMessage(b, 13, func(b []byte) []byte { // Span.Link
			ltid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
			b = appendBytes(b, 1, ltid[:])
			b = appendBytes(b, 2, lsid[:])
			b = appendString(b, 3, l.SpanContext.TraceState().String())
			b = appendAttrs(b, 4, l.Attributes)
			b = appendVarint(b, 5, uint64(max(0, l.DroppedAttributeCount)))
			return appendFixed32(b, 6, spanFlags(l.SpanContext.TraceFlags(), l.SpanContext.IsRemote()))
		})
	}
	b = appendVarint(b, 14, uint64(max(0, s.DroppedLinks())))
	st := s.Status()
	b = appendMessage(b, 15, func(b []byte) []byte { // Status
		b = appendString(b, 2, st.Description)
		code := 0 // STATUS_CODE_UNSET
		switch st.Code {
		case codes.Ok:
			code = 1
		case codes.Error:
			code = 2
		}
		return appendVarint(b, 3, uint64(code))
	})
	return appendFixed32(b, 16, spanFlags(sc.TraceFlags(), s.Parent().IsRemote()))
}

// spanFlags are a span's or link's flags: the W3C trace flags, and whether
// the parent (or linked span) is remote, with the bit that says this is
// known (SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK, _IS_REMOTE_MASK).
func spanFlags(tf trace.TraceFlags, remote bool) uint32 {
	f := uint32(tf) | 0x100
	if remote {
		f |= 0x200
	}
	return f
}

func unixNano(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(max(0, t.UnixNano()))
}

// appendAttrs appends each of kvs as a KeyValue in field.
func appendAttrs(b []byte, field int, kvs []attribute.KeyValue) []byte {
	for _, kv := range kvs {
		b = appendMessage(b, field, func(b []byte) []byte {
			b = appendString(b, 1, string(kv.Key))
			return appendMessage(b, 2, func(b []byte) []byte { return appendValue(b, kv.Value) })
		})
	}
	return b
}

// appendValue appends the fields of an AnyValue. Its value is a oneof, so
// false, 0 and "" are written too.
func appendValue(b []byte, v attribute.Value) []byte {
	array := func(b []byte, n int, item func(b []byte, i int) []byte) []byte {
		return appendMessage(b, 5, func(b []byte) []byte { // ArrayValue
			for i := range n {
				b = appendMessage(b, 1, func(b []byte) []byte { return item(b, i) })
			}
			return b
		})
	}
	switch v.Type() {
	case attribute.BOOL:
		return oneofBool(b, v.AsBool())
	case attribute.INT64:
		return oneofInt(b, v.AsInt64())
	case attribute.FLOAT64:
		return oneofDouble(b, v.AsFloat64())
	case attribute.STRING:
		return oneofString(b, v.AsString())
	case attribute.BYTESLICE:
		return append(binary.AppendUvarint(appendTag(b, 7, wireBytes), uint64(len(v.AsByteSlice()))), v.AsByteSlice()...)
	case attribute.BOOLSLICE:
		s := v.AsBoolSlice()
		return array(b, len(s), func(b []byte, i int) []byte { return oneofBool(b, s[i]) })
	case attribute.INT64SLICE:
		s := v.AsInt64Slice()
		return array(b, len(s), func(b []byte, i int) []byte { return oneofInt(b, s[i]) })
	case attribute.FLOAT64SLICE:
		s := v.AsFloat64Slice()
		return array(b, len(s), func(b []byte, i int) []byte { return oneofDouble(b, s[i]) })
	case attribute.STRINGSLICE:
		s := v.AsStringSlice()
		return array(b, len(s), func(b []byte, i int) []byte { return oneofString(b, s[i]) })
	case attribute.SLICE:
		s := v.AsSlice()
		return array(b, len(s), func(b []byte, i int) []byte { return appendValue(b, s[i]) })
	case attribute.MAP:
		return appendMessage(b, 6, func(b []byte) []byte { return appendAttrs(b, 1, v.AsMap()) }) // KeyValueList
	}
	return b // EMPTY: no value set
}

func oneofBool(b []byte, v bool) []byte {
	var n uint64
	if v {
		n = 1
	}
	return binary.AppendUvarint(appendTag(b, 2, wireVarint), n)
}

func oneofInt(b []byte, v int64) []byte {
	return binary.AppendUvarint(appendTag(b, 3, wireVarint), uint64(v)) // int64: two's complement, not zigzag
}

func oneofDouble(b []byte, v float64) []byte {
	return binary.LittleEndian.AppendUint64(appendTag(b, 4, wireFixed64), math.Float64bits(v))
}

func oneofString(b []byte, v string) []byte {
	return append(binary.AppendUvarint(appendTag(b, 1, wireBytes), uint64(len(v))), v...)
}
