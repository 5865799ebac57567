package coordinator_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// TestFloodDoesNotStarveInvoke floods a coordinator in secure mode from
// one client while another plugin's invoke latency is measured.
//
// Three floods, each through the protections that bound it: over HTTP,
// one client (one token) sending events back to back on 4 connections,
// held to 20 a second by the per-client rate limit (the rest are answered
// 429, each answer held until the client could make a request, which
// slows each connection to about that rate); over NATS, one plugin identity ("mallory", which may emit
// com.example.greet.requested) publishing back to back both to subjects it
// may not use (events and requests as hello: the server refuses them) and
// junk on the type hello handles, which gets it quarantined (its
// connection closed; it connects again at once, back to back, and is
// refused during its cool-down); and "junker", publishing only junk on
// that type, which the server may not refuse: every message is stored in
// the events stream and rejected by hello, until hello's report of it and
// the coordinator's own watch of junker get junker quarantined too (see
// TestJunkQuarantine); later rounds' junkers are refused at connect.
//
// The machine is shared, so one idle p99 against one flood p99 would
// measure the neighbours as much as the flood. Instead idle and flood
// phases alternate for several rounds, each round's flood p99 is divided by
// its own idle p99, and the median of those ratios is taken, for each kind
// of flood.
//
// The flood comes from a process of its own at the lowest CPU priority
// (nice 19), standing in for a client on another host: an attacker's CPU is
// not the coordinator's, while what the flood costs the server, the HTTP
// API and hello (reading, parsing and refusing every request and message)
// is paid on this machine at full priority.
//
// The issue asks for at most 2x, and the test asserts it: when a kind's
// median is over 2x it is measured again (another set of rounds), and the
// test fails only when that median is over 2x too, as a burst of other
// work on a shared machine can spoil three rounds of five.
// docs/operating.md (Security) gives the figures.
//
// It asserts too that nothing crashed (hello was never restarted, and
// answers), the rate limit answered 429, every rejection is counted (the
// 429s in plugbus_http_ingest_errors_total{reason="rate_limited"}, the
// junk hello rejected in plugbus_plugin_invalid_messages), mallory was
// refused or quarantined, and junker was quarantined for its junk.
func TestFloodDoesNotStarveInvoke(t *testing.T) {
	if testing.Short() {
		t.Skip("floods the machine for a while")
	}
	greet := "com.example.greet.requested"
	d := startSecureWith(t, func(c *coordinator.Config) {
		c.Durable = false
		c.HTTPRateLimit, c.HTTPRateBurst = 20, 20
	}, coordinator.PluginSpec{
		Name: "hello", Exec: filepath.Join(binDir, "hello"), Replicas: 1,
		Handles: []string{greet}, Answers: []string{greet}, Emits: []string{"com.example.greet.sent"},
	})
	d.waitInvoke()
	caller := d.mustDial("caller", d.add("caller", nil, nil, nil))
	mallorySeed := d.add("mallory", nil, nil, []string{greet})
	junkerSeed := d.add("junker", nil, nil, []string{greet})

	// invoke measures n invokes of hello by caller, one after the other.
	invoke := func(n int) []time.Duration {
		t.Helper()
		out := make([]time.Duration, 0, n)
		for range n {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			start := time.Now()
			_, err := bus.Request(ctx, caller.nc, "plugbus", "caller", pluginkit.NewEvent(greet, map[string]string{"name": "Ada"}))
			out = append(out, time.Since(start))
			cancel()
			if err != nil {
				t.Fatalf("invoke: %v", err)
			}
		}
		return out
	}
	invoke(100) // warm up

	var total floodCounts
	var cutOff, refused int // rounds in which the server closed mallory's connection, and told it of refusals
	const rounds, n = 5, 200
	// measure runs rounds of idle and flood phases of one kind of flood,
	// logs each round, and returns the median of the rounds' ratios.
	measure := func(kind string) float64 {
		t.Helper()
		var ratios []float64
		var report []string
		for r := range rounds {
			idle := p99(invoke(n))
			// A new flooder each round: the server closes a connection
			// that publishes what it may not faster than it reads the
			// refusals (a slow consumer), which ends its part of the flood.
			seed := mallorySeed
			if kind == "junk" {
				seed = junkerSeed
			}
			stop := startFlooder(t, kind, d.c.NATSURL(), seed, d.api)
			flooded := p99(invoke(n))
			c := stop()
			// Let hello finish what the flood queued before the next idle
			// phase measures it: after a flood of junk it still rejects
			// what it buffered for a second or two.
			time.Sleep(3 * time.Second)
			total.add(c)
			if c.CutOff && kind == "nats" {
				cutOff++
			}
			if c.Refused {
				refused++
			}
			ratio := float64(flooded) / float64(idle)
			ratios = append(ratios, ratio)
			report = append(report, fmt.Sprintf("%s round %d: idle p99 %v, flood p99 %v, ratio %.2f", kind, r+1, idle, flooded, ratio))
		}
		slices.Sort(ratios)
		median := ratios[len(ratios)/2]
		t.Logf("%s\n%s flood: median ratio %.2f", strings.Join(report, "\n"), kind, median)
		return median
	}
	for _, kind := range []string{"http", "nats", "junk"} {
		// A neighbour's burst of work can outlast three of five rounds, so
		// a median over 2x is measured once more before it counts: a flood
		// that starves hello does so in both measurements.
		if m := measure(kind); m > 2 {
			t.Logf("%s flood: median %.2fx over the bound, measuring again", kind, m)
			if m := measure(kind); m > 2 {
				t.Errorf("under the %s flood hello's invoke p99 is %.2fx its idle p99 (median over %d rounds, twice), want at most 2x", kind, m, rounds)
			}
		}
	}
	t.Logf("HTTP: %d accepted, %d answered 429, %d other; NATS: %d junk, %d forbidden publishes, mallory cut off in %d rounds, %d of its connections refused",
		total.Accepted, total.Limited, total.Other, total.Junk, total.Forbidden, cutOff, total.ConnectRefused)
	if total.Other != 0 {
		t.Errorf("%d flood requests were answered neither 202 nor 429", total.Other)
	}
	if total.Limited == 0 {
		t.Error("no flood request was answered 429: the rate limit did not bound the flood")
	}
	// Every 429 is counted, before the checks below (with the same token)
	// add their own.
	waitFor(t, "the 429s in /metrics", 30*time.Second, func() error {
		_, body := d.call("GET", "/metrics", "", nil)
		got := metric(string(body), `plugbus_http_ingest_errors_total{reason="rate_limited"}`)
		if got < total.Limited || got > total.Limited+total.Canceled {
			return fmt.Errorf("%d requests answered 429 (and %d canceled), %d counted", total.Limited, total.Canceled, got)
		}
		return nil
	})

	// Nothing crashed: hello still runs its first process, and answers.
	var body []byte
	waitFor(t, "the token's rate to allow a request again", 30*time.Second, func() error {
		var status int
		if status, body = d.call("GET", "/v1/supervised", testHTTPToken, nil); status != http.StatusOK {
			return fmt.Errorf("GET /v1/supervised: %d", status)
		}
		return nil
	})
	var sup []struct {
		Plugin   string
		Restarts int
	}
	if err := json.Unmarshal(body, &sup); err != nil || len(sup) != 1 || sup[0].Restarts != 0 {
		t.Errorf("supervised: %s (%v); want hello never restarted", body, err)
	}
	invoke(1)

	waitFor(t, "hello's rejections in /metrics", 30*time.Second, func() error {
		_, body := d.call("GET", "/metrics", "", nil)
		metrics := string(body)
		// hello rejects every junk message it reads; what it could not
		// read in time NATS dropped (a slow consumer), which the plugin
		// logs and does not see.
		if got := metric(metrics, `plugbus_plugin_invalid_messages{plugin="hello"}`); got == 0 || got > total.Junk {
			return fmt.Errorf("hello counted %d invalid messages of %d junk sent", got, total.Junk)
		}
		return nil
	})
	_, body = d.call("GET", "/metrics", "", nil)
	if got := metric(string(body), `plugbus_identity_quarantines_total{identity="mallory"}`); got == 0 && refused == 0 {
		t.Error("the server did not refuse mallory's forbidden publishes, and mallory was never quarantined")
	}
	if got := metric(string(body), `plugbus_identity_quarantines_total{identity="junker"}`); got == 0 {
		t.Error("junker, publishing junk, was never quarantined")
	}
}

// p99 is the 99th percentile of ds.
func p99(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)*99)/100]
}

// metric reads a counter's value from a Prometheus text exposition; 0 when
// it is absent.
func metric(text, name string) int64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` ([0-9.e+]+)$`).FindStringSubmatch(text)
	if m == nil {
		return 0
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	return int64(f)
}

// floodCounts is what a flooder did, as it reports it on exit.
type floodCounts struct {
	Accepted, Limited, Other, Canceled int64 // HTTP: answered 202, 429, anything else; cut short
	Junk, Forbidden                    int64 // NATS: junk on a type hello handles; publishes the server refuses
	ConnectRefused                     int64 // NATS: connections refused (a quarantine)
	CutOff                             bool  // the server closed the connection
	Refused                            bool  // the server reported a permission violation
}

func (c *floodCounts) add(o floodCounts) {
	c.Accepted += o.Accepted
	c.Limited += o.Limited
	c.Other += o.Other
	c.Canceled += o.Canceled
	c.Junk += o.Junk
	c.Forbidden += o.Forbidden
	c.ConnectRefused += o.ConnectRefused
}

// floodEnv names the flood a re-run test binary runs instead of the tests
// (see TestMain): "http" or "nats".
const floodEnv = "PLUGBUS_TEST_FLOOD"

// startFlooder runs this test binary again as a flooder at the lowest CPU
// priority, waits until it floods, and returns a function that stops it
// and returns its counts.
func startFlooder(t *testing.T, kind, natsURL, seedFile, api string) (stop func() floodCounts) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), floodEnv+"="+kind, "FLOOD_NATS_URL="+natsURL, "FLOOD_SEED="+seedFile, "FLOOD_API="+api)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "flooding" {
		_ = cmd.Process.Kill()
		t.Fatalf("the %s flooder did not start: %q %v", kind, lines.Text(), cmd.Wait())
	}
	return func() floodCounts {
		t.Helper()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		var last string
		for lines.Scan() {
			last = lines.Text()
		}
		err := cmd.Wait()
		var c floodCounts
		if jerr := json.Unmarshal([]byte(last), &c); err != nil || jerr != nil {
			t.Fatalf("the %s flooder: %v %v; its last line: %q", kind, err, jerr, last)
		}
		return c
	}
}

// runFlooder floods until SIGTERM, then prints its counts as JSON: over
// HTTP, one token sending events back to back on 4 connections; over NATS,
// mallory's identity publishing junk on the type hello handles and, back to
// back, events and requests as hello, which the server refuses.
func runFlooder(kind string) int {
	// The lowest priority: the flood stands in for another host's CPU.
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, 0, 19); err != nil {
		fmt.Println("setpriority:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	greet := "com.example.greet.requested"
	var c floodCounts
	var accepted, limited, other, canceled, junk, forbidden atomic.Int64
	switch kind {
	case "nats", "junk":
		opt, err := nats.NkeyOptionFromSeed(os.Getenv("FLOOD_SEED"))
		if err != nil {
			fmt.Println(err)
			return 1
		}
		var refused atomic.Bool
		name := "mallory"
		if kind == "junk" {
			name = "junker"
		}
		connect := func() (*nats.Conn, error) {
			return nats.Connect(os.Getenv("FLOOD_NATS_URL"), opt, nats.Name(name), nats.MaxReconnects(0),
				nats.CustomInboxPrefix(bus.InboxPrefix(name)),
				nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
					if errors.Is(err, nats.ErrPermissionViolation) {
						refused.Store(true)
					}
				}))
		}
		fmt.Println("flooding")
		// An attacker cut off connects again at once, and floods again
		// when it may.
		for ctx.Err() == nil {
			nc, err := connect()
			if err != nil {
				c.ConnectRefused++
				continue
			}
			for ctx.Err() == nil && !nc.IsClosed() {
				_ = nc.Publish("plugbus.events."+name+"."+greet, []byte("junk"))
				junk.Add(1)
				if kind == "nats" {
					_ = nc.Publish("plugbus.events.hello.com.example.greet.sent", []byte("forged"))
					_ = nc.Publish("plugbus.invoke.hello."+greet, []byte("forged"))
					forbidden.Add(2)
				}
			}
			if nc.IsClosed() {
				c.CutOff = true
			}
			nc.Close()
		}
		c.Refused = refused.Load()
	case "http":
		api := os.Getenv("FLOOD_API")
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
		body := `{"specversion":"1.0","id":"f","source":"flood","type":"com.example.flood"}`
		var wg sync.WaitGroup
		// Flooding means over the rate: told so once the first 429 is in
		// (after the burst the bucket allows, each 429 held until the
		// bucket would allow a request).
		var overRate sync.Once
		for range 4 {
			wg.Go(func() {
				for ctx.Err() == nil {
					req, _ := http.NewRequestWithContext(ctx, "POST", api+"/v1/events", strings.NewReader(body))
					req.Header.Set("Content-Type", "application/cloudevents+json")
					req.Header.Set("Authorization", "Bearer "+testHTTPToken)
					resp, err := hc.Do(req)
					if err != nil {
						canceled.Add(1) // the flood ended mid-request, answered or not
						continue
					}
					resp.Body.Close()
					switch resp.StatusCode {
					case http.StatusAccepted:
						accepted.Add(1)
					case http.StatusTooManyRequests:
						limited.Add(1)
						overRate.Do(func() { fmt.Println("flooding") })
					default:
						other.Add(1)
					}
				}
			})
		}
		wg.Wait()
	default:
		fmt.Printf("%s=%q: want http or nats\n", floodEnv, kind)
		return 1
	}
	c.Accepted, c.Limited, c.Other, c.Canceled = accepted.Load(), limited.Load(), other.Load(), canceled.Load()
	c.Junk, c.Forbidden = junk.Load(), forbidden.Load()
	line, _ := json.Marshal(c)
	fmt.Println(string(line))
	return 0
}
