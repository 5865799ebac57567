package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator/internal/activity"
	"github.com/plugbus/plugbus/coordinator/internal/api"
	"github.com/plugbus/plugbus/coordinator/internal/registry"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// sseClient reads server-sent events from one GET.
type sseClient struct {
	t    *testing.T
	resp *http.Response
	sc   *bufio.Scanner
}

func openSSE(t *testing.T, ctx context.Context, url string, header http.Header) *sseClient {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET %s: %s %s", url, resp.Status, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	return &sseClient{t: t, resp: resp, sc: sc}
}

// next returns the next event's name and data.
func (c *sseClient) next() (string, []byte) {
	c.t.Helper()
	name, data := "", ""
	for c.sc.Scan() {
		line := c.sc.Text()
		switch {
		case line == "":
			if data != "" {
				return name, []byte(data)
			}
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data += strings.TrimPrefix(line, "data: ")
		}
	}
	c.t.Fatalf("stream ended: %v", c.sc.Err())
	return "", nil
}

// expect returns the data of the next event, which must be called name.
func (c *sseClient) expect(name string) []byte {
	c.t.Helper()
	got, data := c.next()
	if got != name {
		c.t.Fatalf("got event %q (%s), want %q", got, data, name)
	}
	return data
}

type streamEvent struct {
	Subject, Producer, Type, ID, Data, Error string
	Size                                     int
	Truncated, Binary                        bool
}

func TestStreamFiltersAndShowsEvents(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := openSSE(t, ctx, e.url+"/v1/stream?type=com.example.>&producer=alice", nil)
	var sub struct{ Subject string }
	if err := json.Unmarshal(c.expect("subscribed"), &sub); err != nil || sub.Subject != "plugbus.events.alice.com.example.>" {
		t.Fatalf("subscribed to %q (%v)", sub.Subject, err)
	}

	publish := func(producer, typ string, data any) string {
		ev := pluginkit.NewEvent(typ, data)
		if err := bus.Publish(e.nc, bus.DefaultPrefix, producer, ev); err != nil {
			t.Fatal(err)
		}
		return ev.ID()
	}
	publish("bob", "com.example.a", "from bob: filtered out")
	publish("alice", "org.other.a", "other type: filtered out")
	id := publish("alice", "com.example.a", map[string]string{"text": strings.Repeat("x", 3000)})
	if err := e.nc.Publish("plugbus.events.alice.com.example.raw", []byte("no headers")); err != nil {
		t.Fatal(err)
	}

	var got streamEvent
	if err := json.Unmarshal(c.expect("event"), &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != id || got.Producer != "alice" || got.Type != "com.example.a" || !got.Truncated || len(got.Data) != 1024 || got.Size < 3000 {
		t.Errorf("event %+v (data %d bytes), want id %s from alice, data cut at 1024 bytes", got, len(got.Data), id)
	}
	if err := json.Unmarshal(c.expect("event"), &got); err != nil {
		t.Fatal(err)
	}
	if got.Error == "" || got.Type != "com.example.raw" {
		t.Errorf("a message that is no event: %+v, want it shown with the reason", got)
	}
}

func TestStreamRejectsBadFilters(t *testing.T) {
	e := newEnv(t, nil)
	for _, q := range []string{"type=com..x", "type=a.>.b", "producer=a.b", "producer=*"} {
		resp := e.do("GET", "/v1/stream?"+q, nil, nil)
		if resp.status != 400 {
			t.Errorf("GET /v1/stream?%s: %d %s, want 400", q, resp.status, resp.body)
			continue
		}
		resp.errorBody(t)
	}
}

func TestStreamNeedsTheToken(t *testing.T) {
	e := newEnv(t, func(c *api.Config) { c.Token = "s3cret" })
	if resp := e.do("GET", "/v1/stream", nil, nil); resp.status != 401 {
		t.Errorf("without the token: %d, want 401", resp.status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := openSSE(t, ctx, e.url+"/v1/stream", http.Header{"Authorization": {"Bearer s3cret"}})
	c.expect("subscribed")
}

// A client that reads nothing loses events beyond the buffers between it
// and the bus, and hears how many once it reads again; the coordinator
// neither blocks nor grows.
func TestStreamDropsForASlowClient(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := openSSE(t, ctx, e.url+"/v1/stream?type=com.example.flood", nil)
	c.expect("subscribed")
	data := strings.Repeat("y", 8000)
	for range 5000 { // 40 MB: more than the socket buffers hold
		if err := bus.Publish(e.nc, bus.DefaultPrefix, "flood", pluginkit.NewEvent("com.example.flood", data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		name, body := c.next()
		if name == "dropped" {
			var d struct{ Dropped uint64 }
			if err := json.Unmarshal(body, &d); err != nil || d.Dropped == 0 {
				t.Fatalf("dropped %s (%v)", body, err)
			}
			break
		}
	}
	if v := value(t, scrape(t, e), "plugbus_stream_dropped_total", nil); v == 0 {
		t.Error("plugbus_stream_dropped_total is 0")
	}
}

func TestOverviewAndInstances(t *testing.T) {
	src := &fixedSource{plugins: []registry.Plugin{{Name: "greeter", State: registry.Running, Running: 1,
		Instances: []registry.Instance{{Plugin: "greeter", ID: "g1", State: registry.Running, Description: "says hello"}}}}}
	tracker := activity.New(activity.Config{Source: src, Interval: 50 * time.Millisecond})
	done := make(chan struct{})
	e := newEnv(t, func(c *api.Config) { c.Activity = tracker; c.Done = done })
	tracker.Sample()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := openSSE(t, ctx, e.url+"/v1/overview", nil)
	var snap activity.Snapshot
	if err := json.Unmarshal(c.expect("snapshot"), &snap); err != nil || len(snap.Plugins) != 1 || snap.Plugins[0].Description != "says hello" {
		t.Fatalf("snapshot %+v (%v)", snap, err)
	}
	tracker.Sample()
	c.expect("update")

	resp := e.do("GET", "/v1/plugins/greeter/instances?limit=10", nil, nil)
	var page activity.InstancePage
	if err := json.Unmarshal(resp.body, &page); resp.status != 200 || err != nil || page.Total != 1 || page.Instances[0].ID != "g1" {
		t.Errorf("instances: %d %s (%v)", resp.status, resp.body, err)
	}
	for _, tt := range []struct {
		path   string
		status int
	}{
		{"/v1/plugins/nobody/instances", 404},
		{"/v1/plugins/greeter/instances?limit=0", 400},
		{"/v1/plugins/greeter/instances?offset=-1", 400},
	} {
		if resp := e.do("GET", tt.path, nil, nil); resp.status != tt.status {
			t.Errorf("GET %s: %d %s, want %d", tt.path, resp.status, resp.body, tt.status)
		}
	}

	// Closing Done (the server shutting down) ends the stream.
	close(done)
	for {
		if !c.sc.Scan() {
			break
		}
	}
}

type fixedSource struct{ plugins []registry.Plugin }

func (s *fixedSource) Plugins() []registry.Plugin                 { return s.plugins }
func (s *fixedSource) TypeCounters() map[string]registry.Counters { return nil }
func (s *fixedSource) Version() uint64                            { return 0 }
