package webhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// Event types the webhook plugin emits.
const (
	// TypeFailed reports an event that could not be delivered to one
	// endpoint; its data is a [Result].
	TypeFailed = "io.plugbus.webhook.failed"
	// TypeDelivered reports an event delivered to one endpoint, when
	// [Deliverer.EmitDelivered] is set; its data is a [Result].
	TypeDelivered = "io.plugbus.webhook.delivered"

	ownTypes = "io.plugbus.webhook."
)

// A Deliverer sends each event it handles to every one of its URLs as an
// HTTP POST in the CloudEvents HTTP binding's binary content mode: the
// attributes as ce- headers, datacontenttype as Content-Type, and the data
// as the body, byte for byte.
//
// Network errors, 5xx and 429 answers are retried with capped exponential
// backoff (a Retry-After answer sets the wait, up to MaxBackoff); other
// answers that are not 2xx fail at once. When an endpoint fails for good,
// the Deliverer emits a [TypeFailed] event and the handler still succeeds:
// the failure is reported on the bus, not retried by it.
//
// The URLs of one event are served in parallel, so a slow endpoint does not
// hold up the others.
type Deliverer struct {
	// URLs are the endpoints every event goes to.
	URLs []string
	// Header holds extra request headers, such as Authorization. It must
	// not set Content-Type or ce- headers.
	Header http.Header
	// Client sends the requests. Nil means a client that does not follow
	// redirects (a redirected POST would lose its body), so a 3xx is a
	// failure that names the new location.
	Client *http.Client
	// MaxAttempts bounds the tries per endpoint, the first included;
	// values below 1 mean 1.
	MaxAttempts int
	// Timeout bounds each attempt; 0 means no limit but the handler's
	// context.
	Timeout time.Duration
	// Backoff is the wait before the second attempt; it doubles for each
	// further one, up to MaxBackoff, with jitter.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// EmitDelivered makes the Deliverer emit a [TypeDelivered] event for
	// every successful delivery.
	EmitDelivered bool
	// Self is the name of the plugin the Deliverer runs in. Events that
	// plugin produced with a type of its own (io.plugbus.webhook.*) are not
	// delivered, so that a pattern such as "io.plugbus.>" cannot turn a
	// failure report into a loop.
	Self string
	// Producers, when not empty, are the only producers whose events are
	// delivered; the others' are dropped (and acknowledged) unseen.
	Producers []string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// UserAgent is sent with every request.
	UserAgent string

	clientOnce    sync.Once
	defaultClient *http.Client
}

var _ pluginkit.Handler = (*Deliverer)(nil)

// Result is the data of a [TypeFailed] or [TypeDelivered] event.
type Result struct {
	URL         string `json:"url"` // the endpoint, with any password redacted
	EventID     string `json:"event_id"`
	EventType   string `json:"event_type"`
	EventSource string `json:"event_source"`
	Producer    string `json:"producer,omitempty"` // who sent the event, from its subject
	Attempts    int    `json:"attempts"`
	Status      int    `json:"status,omitempty"` // the last HTTP status; absent when no answer came
	Error       string `json:"error,omitempty"`  // the last error, for a failure
}

// HandleEvent delivers e to every URL, emits a [TypeFailed] event for each
// endpoint that failed for good (and a [TypeDelivered] event for each
// success when asked to), and returns no result. It returns an error only
// when it could not emit those reports. It skips, with no error, an event
// from a producer that Producers leaves out, and the plugin's own reports.
func (d *Deliverer) HandleEvent(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
	producer := pluginkit.Producer(ctx)
	if d.Self != "" && producer == d.Self && strings.HasPrefix(e.Type(), ownTypes) {
		return nil, nil
	}
	if len(d.Producers) > 0 && !slices.Contains(d.Producers, producer) {
		return nil, nil
	}
	errs := make([]error, len(d.URLs))
	var wg sync.WaitGroup
	for i, target := range d.URLs {
		wg.Go(func() {
			r, ok := d.Deliver(ctx, target, &e)
			r.Producer = producer
			var report *pluginkit.Event
			switch {
			case !ok:
				d.logger().Warn("webhook delivery failed", "url", r.URL, "id", r.EventID, "type", r.EventType, "attempts", r.Attempts, "status", r.Status, "err", r.Error)
				report = pluginkit.NewEvent(TypeFailed, r)
			case d.EmitDelivered:
				report = pluginkit.NewEvent(TypeDelivered, r)
			}
			if report != nil {
				if err := pluginkit.Emit(ctx, report); err != nil {
					errs[i] = fmt.Errorf("webhook: report on %s: %w", r.URL, err)
				}
			}
		})
	}
	wg.Wait()
	return nil, errors.Join(errs...)
}

// Deliver sends e to target, retrying as the Deliverer says, until it
// succeeds, fails for good, or ctx ends. It reports whether e was delivered.
func (d *Deliverer) Deliver(ctx context.Context, target string, e *pluginkit.Event) (Result, bool) {
	r := Result{URL: redact(target), EventID: e.ID(), EventType: e.Type(), EventSource: e.Source()}
	log := d.logger()
	for {
		r.Attempts++
		status, retryAfter, err := d.attempt(ctx, target, e)
		r.Status = status
		if err == nil {
			r.Error = ""
			return r, true
		}
		r.Error = err.Error()
		if !retriable(status) || r.Attempts >= d.MaxAttempts {
			return r, false
		}
		wait := d.backoff(r.Attempts)
		if retryAfter > 0 {
			wait = min(retryAfter, max(d.MaxBackoff, d.Backoff))
		}
		log.Debug("webhook attempt failed; retrying", "url", r.URL, "id", r.EventID, "attempt", r.Attempts, "status", status, "err", err, "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			r.Error += fmt.Sprintf(" (stopped retrying: %v)", context.Cause(ctx))
			return r, false
		}
	}
}

// attempt makes one request. It returns the HTTP status (0 when no answer
// came), the wait a Retry-After header asks for, and an error unless the
// answer was 2xx.
func (d *Deliverer) attempt(ctx context.Context, target string, e *pluginkit.Event) (status int, retryAfter time.Duration, err error) {
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, nil)
	if err != nil {
		return 0, 0, err
	}
	if err := cehttp.WriteRequest(ctx, binding.ToMessage(e), req); err != nil {
		return 0, 0, fmt.Errorf("encode event: %w", err)
	}
	escapeHeaders(req.Header)
	for k, vs := range d.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	if d.UserAgent != "" {
		req.Header.Set("User-Agent", d.UserAgent)
	}
	resp, err := d.client().Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, 0, nil
	}
	msg := "HTTP " + resp.Status
	if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode >= 300 && resp.StatusCode < 400 {
		msg += ": redirected to " + loc + "; configure that URL instead"
	} else if b := strings.Join(strings.Fields(string(body)), " "); b != "" {
		msg += ": " + b
	}
	return resp.StatusCode, parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()), errors.New(msg)
}

// retriable reports whether an attempt that ended with status (0: no
// answer) may succeed when tried again.
func retriable(status int) bool {
	return status == 0 || status == http.StatusTooManyRequests || status >= 500
}

// backoff is the wait after the given failed attempt: Backoff doubled for
// each attempt after the first, capped at MaxBackoff, then jittered down by
// up to half so that many deliveries failing together do not retry
// together.
func (d *Deliverer) backoff(attempt int) time.Duration {
	w := d.Backoff
	for i := 1; i < attempt && w < d.MaxBackoff; i++ {
		w *= 2
	}
	if d.MaxBackoff > 0 && w > d.MaxBackoff {
		w = d.MaxBackoff
	}
	if w <= 1 {
		return w
	}
	return w/2 + rand.N(w/2+1)
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP
// date. It returns 0 when the header is absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// escapeHeaders percent-encodes the ce- header values as the CloudEvents
// HTTP binding requires (space, '"', '%' and anything outside U+0021-U+007E,
// byte by byte in UTF-8), which sdk-go's HTTP writer leaves undone.
func escapeHeaders(h http.Header) {
	for k, vs := range h {
		if len(k) < 3 || !strings.EqualFold(k[:3], "ce-") {
			continue
		}
		for i, v := range vs {
			vs[i] = percentEncode(v)
		}
	}
}

func percentEncode(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if mustEscape(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if mustEscape(c) {
			b = append(b, '%', hex[c>>4], hex[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

func mustEscape(c byte) bool { return c <= ' ' || c == '"' || c == '%' || c >= 0x7f }

// redact hides a password in u; a URL that does not parse is shown as is.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return p.Redacted()
}

func (d *Deliverer) client() *http.Client {
	if d.Client != nil {
		return d.Client
	}
	d.clientOnce.Do(func() {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 32
		d.defaultClient = &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	})
	return d.defaultClient
}

func (d *Deliverer) logger() *slog.Logger {
	if d.Logger != nil {
		return d.Logger
	}
	return slog.Default()
}

// checkURL reports whether u can be an endpoint: an absolute http or https
// URL with a host.
func checkURL(u string) error {
	p, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("endpoint %q: %v", u, err)
	}
	if p.Scheme != "http" && p.Scheme != "https" || p.Host == "" {
		return fmt.Errorf("endpoint %q: want an absolute http:// or https:// URL", redact(u))
	}
	return nil
}

// parseHeader reads a "Name: value" header line for Deliverer.Header.
func parseHeader(line string) (name, value string, err error) {
	name, value, ok := strings.Cut(line, ":")
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	if !ok || name == "" || strings.ContainsAny(name, " \t\r\n") || strings.ContainsAny(value, "\r\n") {
		return "", "", fmt.Errorf("header %q: want \"Name: value\"", line)
	}
	if strings.EqualFold(name, "Content-Type") || len(name) >= 3 && strings.EqualFold(name[:3], "ce-") {
		return "", "", fmt.Errorf("header %q: Content-Type and ce- headers carry the event and cannot be set", name)
	}
	return http.CanonicalHeaderKey(name), value, nil
}
