package api_test

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plugbus/plugbus/coordinator/internal/api"
)

// lockedBuffer is a log destination the test reads while the API writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Split(strings.TrimSpace(l.b.String()), "\n")
}

// TestHostileInput sends what an attacker would: every request is refused
// with a short answer and a short log line, nothing is published, and every
// rejection is counted.
func TestHostileInput(t *testing.T) {
	var log lockedBuffer
	e := newEnv(t, func(c *api.Config) {
		c.MaxBodyBytes = 2 << 20
		c.Logger = slog.New(slog.NewTextHandler(&log, nil))
	})
	sub := e.subscribe()
	huge := strings.Repeat("x", 1<<20)
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	event := func(extra string) string {
		return `{"specversion":"1.0","id":"h","source":"urn:test","type":"com.example.ok"` + extra + `}`
	}
	tests := []struct {
		name   string
		header http.Header
		body   string
		status int
	}{
		{"a 1 MB extension name", structured(), event(`,"` + huge + `":"v"`), 400},
		{"a 1 MB extension name in binary mode", merge(binary("h", "com.example.ok"), http.Header{"Ce-" + huge[:100000]: {"v"}}), `{}`, 400},
		{"a 1 MB type", binary("h", "com.example."+huge[:500000]+" x"), `{}`, 400},
		{"an upper-case extension name", structured(), event(`,"myExt":"v"`), 400},
		{"a duplicated type", structured(), event(`,"type":"com.example.other"`), 400},
		{"a duplicated id in a batch", batch(), `[` + event(`,"id":"again"`) + `]`, 400},
		{"missing attributes", structured(), `{"specversion":"1.0"}`, 400},
		{"invalid UTF-8 in a header", binary("h\xff\xfe", "com.example.ok"), `{}`, 400},
		{"a bad percent-encoding", merge(binary("h", "com.example.ok"), http.Header{"Ce-Subject": {"%zz"}}), `{}`, 400},
		{"a 10 MB body", structured(), event(`,"data":"` + strings.Repeat("y", 10<<20) + `"`), 413},
		{"deep JSON", structured(), event(`,"data":` + deep), 400},
		{"deep JSON in a batch", batch(), deep, 400},
		{"not JSON", structured(), "\x00\x01{{{", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do("POST", "/v1/events", tt.header, []byte(tt.body))
			if r.status != tt.status {
				t.Fatalf("status %d (%s), want %d", r.status, r.body[:min(len(r.body), 300)], tt.status)
			}
			if len(r.body) > 2048 {
				t.Fatalf("the answer echoes %d bytes: %.300s...", len(r.body), r.body)
			}
			none(t, sub)
		})
	}
	for _, line := range log.lines() {
		if len(line) > 4096 {
			t.Errorf("a log line of %d bytes: %.300s...", len(line), line)
		}
	}
	fams := scrape(t, e)
	var rejected float64
	for _, reason := range []string{"bad_request", "too_large"} {
		if m := find(fams, "plugbus_http_ingest_errors_total", map[string]string{"reason": reason}); m != nil {
			rejected += m.GetCounter().GetValue()
		}
	}
	if int(rejected) != len(tests) {
		t.Errorf("%v rejections counted, want %d", rejected, len(tests))
	}
}

// TestSlowBody: a body that trickles in is cut off with 408.
func TestSlowBody(t *testing.T) {
	e := newEnv(t, func(c *api.Config) { c.BodyTimeout = 300 * time.Millisecond })
	sub := e.subscribe()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\nContent-Length: 1000\r\n\r\n{\"specversion\":")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("status %s, want 408", resp.Status)
	}
	none(t, sub)
}

// TestRateLimit: a client over its rate gets 429 and publishes nothing
// more; another client is not held back by it.
func TestRateLimit(t *testing.T) {
	var log syncLog
	e := newEnv(t, func(c *api.Config) {
		c.Token = "t"
		c.RateLimit, c.RateBurst = 0.001, 2
		c.Logger = slog.New(slog.NewTextHandler(&log, nil)) // Info and above
	})
	sub := e.subscribe()
	good := []byte(`{"specversion":"1.0","id":"r","source":"urn:test","type":"com.example.ok"}`)
	for i := range 2 {
		if r := e.do("POST", "/v1/events", merge(structured(), bearer("t")), good); r.status != http.StatusAccepted {
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
		next(t, sub)
	}
	r := e.do("POST", "/v1/events", merge(structured(), bearer("t")), good)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("over the rate: %d %s, want 429 with Retry-After", r.status, r.body)
	}
	none(t, sub)
	if v := value(t, scrape(t, e), "plugbus_http_ingest_errors_total", map[string]string{"reason": "rate_limited"}); v != 1 {
		t.Errorf("rate_limited counted %v times, want 1", v)
	}
	if strings.Contains(log.String(), "status=429") {
		t.Errorf("a refused request was logged at Info:\n%s", log.String())
	}
}

// TestRateLimitHoldsRefusals: a client sending back to back over its rate
// gets its 429s held until its bucket would let a request through, so it
// makes about its rate in requests, not as many as it can send; the
// server answers others meanwhile.
func TestRateLimitHoldsRefusals(t *testing.T) {
	e := newEnv(t, func(c *api.Config) {
		c.Token = "t"
		c.RateLimit, c.RateBurst = 10, 1
	})
	good := []byte(`{"specversion":"1.0","id":"r","source":"urn:test","type":"com.example.ok"}`)
	var accepted, limited, other int
	done := make(chan struct{})
	go func() {
		defer close(done)
		for start := time.Now(); time.Since(start) < time.Second; {
			switch e.do("POST", "/v1/events", merge(structured(), bearer("t")), good).status {
			case http.StatusAccepted:
				accepted++
			case http.StatusTooManyRequests:
				limited++
			default:
				other++
			}
		}
	}()
	for range 5 {
		if r := e.do("GET", "/healthz", nil, nil); r.status != http.StatusOK {
			t.Errorf("GET /healthz during the flood: %d %s", r.status, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	<-done
	// 10 a second: about 10 accepted and 10 refused, each refusal held
	// until the next token; answered at once, thousands.
	if accepted == 0 || limited == 0 || other != 0 || accepted+limited > 40 {
		t.Errorf("back to back for 1s: %d accepted, %d answered 429, %d other; want about 10 of each, at most 40 in all", accepted, limited, other)
	}
}

// syncLog is a log destination safe for the handlers' goroutines.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestOpenReads: with OpenReads the plugin list needs no token, while event
// data and publishing still do.
func TestOpenReads(t *testing.T) {
	e := newEnv(t, func(c *api.Config) { c.Token, c.OpenReads = "t", true })
	sub := e.subscribe()
	if r := e.do("GET", "/v1/plugins", nil, nil); r.status != http.StatusOK {
		t.Errorf("GET /v1/plugins without the token: %d %s, want 200", r.status, r.body)
	}
	if r := e.do("GET", "/v1/stream", nil, nil); r.status != http.StatusUnauthorized {
		t.Errorf("GET /v1/stream without the token: %d, want 401", r.status)
	}
	good := []byte(`{"specversion":"1.0","id":"o","source":"urn:test","type":"com.example.ok"}`)
	if r := e.do("POST", "/v1/events", structured(), good); r.status != http.StatusUnauthorized {
		t.Errorf("POST /v1/events without the token: %d, want 401", r.status)
	}
	none(t, sub)
}

// TestRejectionsAreLoggedBriefly: a client guessing tokens gets a 401 for
// every request and every one is counted, but the log gets a few lines a
// second, the next of which says how many it left out.
func TestRejectionsAreLoggedBriefly(t *testing.T) {
	var log syncLog
	e := newEnv(t, func(c *api.Config) {
		c.Token = "t"
		c.Logger = slog.New(slog.NewTextHandler(&log, nil)) // Info and above
	})
	const guesses = 300
	for i := range guesses {
		if r := e.do("POST", "/v1/events", merge(structured(), bearer(fmt.Sprint("guess-", i))), []byte(`{}`)); r.status != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d %s, want 401", i, r.status, r.body)
		}
	}
	if v := value(t, scrape(t, e), "plugbus_http_ingest_errors_total", map[string]string{"reason": "unauthorized"}); v != guesses {
		t.Errorf("unauthorized counted %v times, want %d", v, guesses)
	}
	lines := strings.Count(log.String(), "HTTP request rejected")
	if lines >= guesses/2 {
		t.Errorf("%d log lines for %d refused requests, want a few a second", lines, guesses)
	}
	// Once the limit lets a line through again, it says what it left out.
	time.Sleep(time.Second)
	e.do("POST", "/v1/events", merge(structured(), bearer("one more")), []byte(`{}`))
	if !strings.Contains(log.String(), "not_logged_since_last=") {
		t.Errorf("no line says how many rejections were not logged:\n%s", log.String())
	}
}
