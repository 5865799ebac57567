package api

import (
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons of plugbus_http_ingest_errors_total: a small fixed set.
const (
	reasonBadRequest           = "bad_request"
	reasonTooLarge             = "too_large"
	reasonUnsupportedMediaType = "unsupported_media_type"
	reasonUnauthorized         = "unauthorized"
	reasonPublishFailed        = "publish_failed"
	reasonRateLimited          = "rate_limited"
)

// Outcomes of plugbus_invoke_duration_seconds.
const (
	outcomeOK           = "ok"
	outcomeError        = "error"
	outcomeTimeout      = "timeout"
	outcomeNoResponders = "no_responders"
)

// maxTypeLabels caps the distinct values of the type label. Event types come
// from HTTP clients, and every new value is a new time series (times 4
// outcomes times the buckets for the histogram), so a client sending random
// types could otherwise exhaust the coordinator's and Prometheus's memory.
// Types seen after the cap are counted under otherTypeLabel.
const (
	maxTypeLabels  = 1000
	otherTypeLabel = "other"
)

type metrics struct {
	received     *prometheus.CounterVec
	published    *prometheus.CounterVec
	ingestErrors *prometheus.CounterVec
	rateLimited  prometheus.Counter // ingestErrors{reason="rate_limited"}
	invoke       *prometheus.HistogramVec
	streams      prometheus.Gauge
	streamDrop   prometheus.Counter
	types        typeLabels
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{types: typeLabels{seen: make(map[string]struct{})}}
	var errs []error
	m.received = register(reg, &errs, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "plugbus_http_events_received_total",
		Help: "Valid events received over the HTTP API (ingest and invoke), by type.",
	}, []string{"type"}))
	m.published = register(reg, &errs, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "plugbus_events_published_total",
		Help: "Events published to the bus, by type.",
	}, []string{"type"}))
	m.ingestErrors = register(reg, &errs, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "plugbus_http_ingest_errors_total",
		Help: "HTTP requests rejected by the API, by reason: bad_request, too_large, unsupported_media_type, unauthorized, publish_failed.",
	}, []string{"reason"}))
	m.invoke = register(reg, &errs, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "plugbus_invoke_duration_seconds",
		Help:    "Round trip of invokes through the HTTP API, by type and outcome (ok, error, timeout, no_responders).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	}, []string{"type", "outcome"}))
	m.streams = register(reg, &errs, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "plugbus_http_streams",
		Help: "Server-sent event streams open (the dashboard's live events and overview).",
	}))
	m.streamDrop = register(reg, &errs, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "plugbus_stream_dropped_total",
		Help: "Events not sent to a live stream's client because it did not keep up.",
	}))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// Start every reason at zero so dashboards and alerts see the series
	// before the first error.
	for _, r := range []string{reasonBadRequest, reasonTooLarge, reasonUnsupportedMediaType, reasonUnauthorized, reasonPublishFailed} {
		m.ingestErrors.WithLabelValues(r)
	}
	m.rateLimited = m.ingestErrors.WithLabelValues(reasonRateLimited)
	return m, nil
}

// register registers c, or returns the identical collector registered
// before (a second New on the same registry shares the metrics).
func register[C prometheus.Collector](reg prometheus.Registerer, errs *[]error, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	*errs = append(*errs, fmt.Errorf("api: register metrics: %w", err))
	return c
}

// typeLabels hands out type label values, at most maxTypeLabels distinct
// ones.
type typeLabels struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

func (t *typeLabels) label(typ string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.seen[typ]; ok {
		return typ
	}
	if len(t.seen) >= maxTypeLabels {
		return otherTypeLabel
	}
	t.seen[typ] = struct{}{}
	return typ
}
