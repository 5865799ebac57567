package webhook

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
	"github.com/plugbus/plugbus/plugin-kit/kittest"
)

// request is what an endpoint received.
type request struct {
	at     time.Time
	method string
	header http.Header
	body   []byte
}

// endpoint is a real HTTP server that answers with the statuses it is given
// in turn (the last one from then on) and records every request.
type endpoint struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	header   http.Header // added to every answer
	reqs     []request
	got      chan struct{}
}

func newEndpoint(t *testing.T, statuses ...int) *endpoint {
	t.Helper()
	ep := &endpoint{statuses: statuses, header: http.Header{}, got: make(chan struct{}, 100)}
	ep.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ep.mu.Lock()
		ep.reqs = append(ep.reqs, request{at: time.Now(), method: r.Method, header: r.Header.Clone(), body: body})
		status := ep.statuses[0]
		if len(ep.statuses) > 1 {
			ep.statuses = ep.statuses[1:]
		}
		for k, v := range ep.header {
			w.Header()[k] = v
		}
		ep.mu.Unlock()
		w.WriteHeader(status)
		_, _ = io.WriteString(w, http.StatusText(status))
		ep.got <- struct{}{}
	}))
	t.Cleanup(ep.Close)
	return ep
}

func (ep *endpoint) requests() []request {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return append([]request(nil), ep.reqs...)
}

// start runs the webhook plugin with d on a kittest harness.
func start(t *testing.T, d *Deliverer, types ...string) *kittest.Harness {
	t.Helper()
	if len(types) == 0 {
		types = []string{"com.example.>"}
	}
	if d.MaxAttempts == 0 {
		d.MaxAttempts = 3
	}
	if d.Backoff == 0 {
		d.Backoff, d.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	}
	d.Timeout = 2 * time.Second
	d.Self = Name
	if err := validate(d, config{types: types, concurrency: 8}); err != nil {
		t.Fatal(err)
	}
	p := newPlugin()
	handle(p, d, config{types: types, concurrency: 8})
	return kittest.Start(t, p)
}

func result(t *testing.T, e *pluginkit.Event) Result {
	t.Helper()
	var r Result
	if err := json.Unmarshal(e.Data(), &r); err != nil {
		t.Fatalf("%s data %s: %v", e.Type(), e.Data(), err)
	}
	return r
}

func TestDelivered(t *testing.T) {
	ep := newEndpoint(t, http.StatusNoContent)
	h := start(t, &Deliverer{URLs: []string{ep.URL + "/hook"}, EmitDelivered: true, UserAgent: "test-agent", Header: http.Header{"Authorization": {"Bearer s3cret"}}})

	in := pluginkit.NewEvent("com.example.order.placed", map[string]any{"order": 42, "note": "two words"})
	in.SetSubject("order 42 – é") // needs percent-encoding in a header
	in.SetExtension("tenant", "acme")
	if err := h.Publish(in); err != nil {
		t.Fatal(err)
	}
	out, err := h.Next(TypeDelivered)
	if err != nil {
		t.Fatal(err)
	}
	r := result(t, out)
	if r.EventID != in.ID() || r.EventType != in.Type() || r.Attempts != 1 || r.Status != http.StatusNoContent || r.Error != "" || r.URL != ep.URL+"/hook" || r.Producer != kittest.Producer {
		t.Errorf("delivered report %+v: want one attempt of %s with status 204 from %s", r, in.ID(), kittest.Producer)
	}
	if got := out.Extensions()["causeid"]; got != in.ID() {
		t.Errorf("report causeid %v, want the trigger's id %s", got, in.ID())
	}

	reqs := ep.requests()
	if len(reqs) != 1 {
		t.Fatalf("endpoint got %d requests, want 1", len(reqs))
	}
	req := reqs[0]
	want := map[string]string{
		"Ce-Specversion": "1.0",
		"Ce-Id":          in.ID(),
		"Ce-Type":        "com.example.order.placed",
		"Ce-Source":      kittest.Source,
		"Ce-Time":        in.Time().UTC().Format(time.RFC3339Nano),
		"Ce-Subject":     "order%2042%20%E2%80%93%20%C3%A9",
		"Ce-Tenant":      "acme",
		"Content-Type":   "application/json",
		"Authorization":  "Bearer s3cret",
		"User-Agent":     "test-agent",
	}
	for k, v := range want {
		if got := req.header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("header %s = %q, want [%q]", k, got, v)
		}
	}
	if req.method != http.MethodPost {
		t.Errorf("method %s, want POST", req.method)
	}
	if string(req.body) != string(in.Data()) {
		t.Errorf("body %s, want the event's data %s", req.body, in.Data())
	}
	if _, ok := req.header["Ce-Deadline"]; ok {
		t.Error("a published (not requested) event carried a deadline")
	}
}

func TestBinaryDataIsTheBody(t *testing.T) {
	ep := newEndpoint(t, http.StatusOK)
	h := start(t, &Deliverer{URLs: []string{ep.URL}, EmitDelivered: true})
	data := []byte{0, 1, 2, 0xff, '\n', 'x'}
	in := pluginkit.NewEvent("com.example.blob.stored", data)
	if err := h.Publish(in); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Next(TypeDelivered); err != nil {
		t.Fatal(err)
	}
	req := ep.requests()[0]
	if string(req.body) != string(data) {
		t.Errorf("body %x, want %x", req.body, data)
	}
	if ct := req.header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("Content-Type %q, want application/octet-stream", ct)
	}
}

func TestRetriedAfter503(t *testing.T) {
	ep := newEndpoint(t, http.StatusServiceUnavailable, http.StatusOK)
	h := start(t, &Deliverer{URLs: []string{ep.URL}, EmitDelivered: true, MaxAttempts: 5})
	in := pluginkit.NewEvent("com.example.order.placed", map[string]int{"order": 1})
	if err := h.Publish(in); err != nil {
		t.Fatal(err)
	}
	out, err := h.Next(TypeDelivered)
	if err != nil {
		t.Fatal(err)
	}
	if r := result(t, out); r.Attempts != 2 || r.Status != http.StatusOK {
		t.Errorf("report %+v: want delivered on attempt 2 with 200", r)
	}
	reqs := ep.requests()
	if len(reqs) != 2 {
		t.Fatalf("endpoint got %d requests, want 2", len(reqs))
	}
	for i, r := range reqs {
		if r.header.Get("Ce-Id") != in.ID() || string(r.body) != string(in.Data()) {
			t.Errorf("request %d: ce-id %q body %s; want the same event every time", i, r.header.Get("Ce-Id"), r.body)
		}
	}
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	ep := newEndpoint(t, http.StatusInternalServerError)
	h := start(t, &Deliverer{URLs: []string{ep.URL}, MaxAttempts: 3})
	in := pluginkit.NewEvent("com.example.order.placed", map[string]int{"order": 2})
	if err := h.Publish(in); err != nil {
		t.Fatal(err)
	}
	out, err := h.Next(TypeFailed)
	if err != nil {
		t.Fatal(err)
	}
	r := result(t, out)
	if r.Attempts != 3 || r.Status != http.StatusInternalServerError || r.EventID != in.ID() || r.EventType != in.Type() || r.URL != ep.URL {
		t.Errorf("failed report %+v: want 3 attempts, status 500, the event's id and type, the URL", r)
	}
	if !strings.Contains(r.Error, "500") {
		t.Errorf("failed report error %q does not name the status", r.Error)
	}
	if n := len(ep.requests()); n != 3 {
		t.Errorf("endpoint got %d requests, want 3", n)
	}
}

func TestClientErrorNotRetried(t *testing.T) {
	ep := newEndpoint(t, http.StatusBadRequest, http.StatusOK)
	h := start(t, &Deliverer{URLs: []string{ep.URL}, MaxAttempts: 5})
	in := pluginkit.NewEvent("com.example.order.placed", map[string]int{"order": 3})
	if err := h.Publish(in); err != nil {
		t.Fatal(err)
	}
	out, err := h.Next(TypeFailed)
	if err != nil {
		t.Fatal(err)
	}
	if r := result(t, out); r.Attempts != 1 || r.Status != http.StatusBadRequest || !strings.Contains(r.Error, "Bad Request") {
		t.Errorf("failed report %+v: want 1 attempt with status 400 and the answer's text", r)
	}
	if n := len(ep.requests()); n != 1 {
		t.Errorf("endpoint got %d requests, want 1 (400 is not retried)", n)
	}
}

func TestRedirectIsAFailure(t *testing.T) {
	target := newEndpoint(t, http.StatusOK)
	ep := newEndpoint(t, http.StatusFound)
	ep.header.Set("Location", target.URL)
	h := start(t, &Deliverer{URLs: []string{ep.URL}})
	if err := h.Publish(pluginkit.NewEvent("com.example.order.placed", nil)); err != nil {
		t.Fatal(err)
	}
	out, err := h.Next(TypeFailed)
	if err != nil {
		t.Fatal(err)
	}
	if r := result(t, out); r.Attempts != 1 || r.Status != http.StatusFound || !strings.Contains(r.Error, target.URL) {
		t.Errorf("failed report %+v: want 1 attempt, status 302, the new location named", r)
	}
	if n := len(target.requests()); n != 0 {
		t.Errorf("the redirect was followed: its target got %d requests", n)
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	ep := newEndpoint(t, http.StatusTooManyRequests, http.StatusOK)
	ep.header.Set("Retry-After", "1")
	h := start(t, &Deliverer{URLs: []string{ep.URL}, EmitDelivered: true, Backoff: time.Millisecond, MaxBackoff: 5 * time.Second})
	if err := h.Publish(pluginkit.NewEvent("com.example.order.placed", nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Next(TypeDelivered); err != nil {
		t.Fatal(err)
	}
	reqs := ep.requests()
	if len(reqs) != 2 {
		t.Fatalf("endpoint got %d requests, want 2", len(reqs))
	}
	if gap := reqs[1].at.Sub(reqs[0].at); gap < 900*time.Millisecond {
		t.Errorf("retried %v after a 429 with Retry-After: 1; want about 1s", gap)
	}
}

func TestNetworkErrorRetried(t *testing.T) {
	ep := newEndpoint(t, http.StatusOK)
	dead := ep.URL
	ep.Close() // nothing listens there any more
	h := start(t, &Deliverer{URLs: []string{dead}, MaxAttempts: 2})
	if err := h.Publish(pluginkit.NewEvent("com.example.order.placed", nil)); err != nil {
		t.Fatal(err)
	}
	out, err := h.Next(TypeFailed)
	if err != nil {
		t.Fatal(err)
	}
	if r := result(t, out); r.Attempts != 2 || r.Status != 0 || r.Error == "" {
		t.Errorf("failed report %+v: want 2 attempts, no status, the connection error", r)
	}
}

// A slow endpoint must not hold up delivery to a fast one, neither for the
// same event nor for the next events.
func TestSlowEndpointDoesNotBlockOthers(t *testing.T) {
	release := make(chan struct{})
	var slowHits sync.WaitGroup
	slowHits.Add(2)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slowHits.Done()
		<-release
	}))
	t.Cleanup(slow.Close)
	fast := newEndpoint(t, http.StatusOK)
	h := start(t, &Deliverer{URLs: []string{slow.URL, fast.URL}})
	t.Cleanup(func() { close(release) }) // before the plugin drains
	for range 2 {
		if err := h.Publish(pluginkit.NewEvent("com.example.order.placed", nil)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		select {
		case <-fast.got:
		case <-time.After(3 * time.Second):
			t.Fatalf("fast endpoint got %d of 2 events while the slow one hangs", i)
		}
	}
	slowHits.Wait() // both events are being delivered to the slow one at once
}

// A pattern that also matches the plugin's own reports must not make it
// deliver (and possibly fail on) its own failure reports.
func TestOwnReportsNotDelivered(t *testing.T) {
	ep := newEndpoint(t, http.StatusBadRequest)
	h := start(t, &Deliverer{URLs: []string{ep.URL}}, "com.example.>", "io.plugbus.webhook.>")
	if err := h.Publish(pluginkit.NewEvent("com.example.order.placed", nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Next(TypeFailed); err != nil {
		t.Fatal(err)
	}
	// A report from another producer is delivered like any event...
	other := pluginkit.NewEvent(TypeFailed, Result{URL: "x"})
	if err := h.Publish(other); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Next(TypeFailed); err != nil {
		t.Fatal(err)
	}
	// ...but the plugin's own reports are not: a loop would keep failing
	// and reporting, reaching the endpoint again and again.
	time.Sleep(300 * time.Millisecond)
	reqs := ep.requests()
	if len(reqs) != 2 {
		t.Fatalf("endpoint got %d requests, want 2 (the event and the outside report)", len(reqs))
	}
	if got := reqs[1].header.Get("Ce-Id"); got != other.ID() {
		t.Errorf("second request carried %s, want the outside report %s", got, other.ID())
	}
}

// With -producers, events from other producers are acknowledged and
// dropped. The settings are the demo's (examples/demo.yaml): hello's
// greetings go to the coordinator's HTTP ingest, whose own publishes
// (producer "http") are not delivered again, so they cannot loop.
func TestProducersFlag(t *testing.T) {
	ep := newEndpoint(t, http.StatusAccepted)
	p := New()
	if err := p.Flags().Parse([]string{"-types", "com.example.greet.sent", "-producers", "hello", "-url", ep.URL + "/v1/events"}); err != nil {
		t.Fatal(err)
	}
	h := kittest.Start(t, p)
	for _, tt := range []struct {
		producer string
		want     bool
	}{
		{"hello", true},
		{"http", false},
		{kittest.Producer, false},
		{"hello-2", false},
		{"hello", true},
	} {
		before := len(ep.requests())
		e := pluginkit.NewEvent("com.example.greet.sent", map[string]string{"text": "hello, Ada"})
		// A request, so that the handler is done when the reply comes.
		reply, err := h.RequestAs(tt.producer, e)
		if err != nil || reply != nil {
			t.Fatalf("event from %s: reply %v, %v; want an empty reply", tt.producer, reply, err)
		}
		reqs := ep.requests()
		if got := len(reqs) > before; got != tt.want {
			t.Errorf("event from %s delivered: %v, want %v", tt.producer, got, tt.want)
		} else if got && reqs[len(reqs)-1].header.Get("Ce-Id") != e.ID() {
			t.Errorf("event from %s: the endpoint got %s, want %s", tt.producer, reqs[len(reqs)-1].header.Get("Ce-Id"), e.ID())
		}
	}
}

// When the event was a request, the caller gets an empty reply after the
// delivery (and its report) are done.
func TestRequestWaitsForDelivery(t *testing.T) {
	ep := newEndpoint(t, http.StatusAccepted)
	// An exact type: a handler for a pattern only observes.
	h := start(t, &Deliverer{URLs: []string{ep.URL}}, "com.example.order.placed")
	reply, err := h.Request(pluginkit.NewEvent("com.example.order.placed", nil))
	if err != nil || reply != nil {
		t.Fatalf("reply %v, %v; want an empty reply", reply, err)
	}
	reqs := ep.requests()
	if len(reqs) != 1 {
		t.Fatalf("endpoint got %d requests when the reply came, want 1", len(reqs))
	}
	if reqs[0].header.Get("Ce-Deadline") == "" {
		t.Error("the request's deadline extension was not passed on as ce-deadline")
	}
}

func TestValidate(t *testing.T) {
	ok := func() *Deliverer {
		return &Deliverer{URLs: []string{"https://example.com/hook"}, MaxAttempts: 1, Backoff: time.Second, MaxBackoff: time.Second}
	}
	good := config{types: []string{"com.example.>"}, concurrency: 1}
	if err := validate(ok(), good); err != nil {
		t.Fatalf("valid configuration rejected: %v", err)
	}
	tests := []struct {
		name string
		edit func(*Deliverer, *config)
		want string
	}{
		{"no url", func(d *Deliverer, c *config) { d.URLs = nil }, "no endpoint"},
		{"relative url", func(d *Deliverer, c *config) { d.URLs = []string{"/hook"} }, "absolute"},
		{"ftp url", func(d *Deliverer, c *config) { d.URLs = []string{"ftp://example.com"} }, "absolute"},
		{"no types", func(d *Deliverer, c *config) { c.types = nil }, "-types"},
		{"zero attempts", func(d *Deliverer, c *config) { d.MaxAttempts = 0 }, "-max-attempts"},
		{"backoff above max", func(d *Deliverer, c *config) { d.MaxBackoff = time.Millisecond }, "-max-backoff"},
		{"zero concurrency", func(d *Deliverer, c *config) { c.concurrency = 0 }, "-concurrency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, c := ok(), good
			tt.edit(d, &c)
			err := validate(d, c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

func TestAddHeaders(t *testing.T) {
	h := http.Header{}
	if err := addHeaders(h, "authorization: Bearer x\nX-Team:  blue "); err != nil {
		t.Fatal(err)
	}
	if h.Get("Authorization") != "Bearer x" || h.Get("X-Team") != "blue" {
		t.Errorf("got %v", h)
	}
	for _, bad := range []string{"no colon", "Content-Type: text/plain", "ce-id: 1", ": x"} {
		if err := addHeaders(h, bad); err == nil {
			t.Errorf("addHeaders(%q) succeeded; want an error", bad)
		}
	}
}

func TestList(t *testing.T) {
	if got, want := list(" hello, ,shop,\tbilling "), []string{"hello", "shop", "billing"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := list(""); len(got) != 0 {
		t.Errorf("empty setting gave %q, want nothing", got)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{"-1", 0},
		{"soon", 0},
		{now.Add(7 * time.Second).Format(http.TimeFormat), 7 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestBackoffCapped(t *testing.T) {
	d := &Deliverer{Backoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	for attempt, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 50: time.Second} {
		for range 20 {
			if got := d.backoff(attempt); got < want/2 || got > want {
				t.Fatalf("backoff(%d) = %v, want between %v and %v", attempt, got, want/2, want)
			}
		}
	}
}

func TestPercentEncode(t *testing.T) {
	for in, want := range map[string]string{
		"plain-value_1.0": "plain-value_1.0",
		`a "b" 100%`:      "a%20%22b%22%20100%25",
		"Euro € 😀":        "Euro%20%E2%82%AC%20%F0%9F%98%80",
	} {
		if got := percentEncode(in); got != want {
			t.Errorf("percentEncode(%q) = %q, want %q", in, got, want)
		}
	}
}
