package coordinator_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// freeAddrs returns n loopback addresses with ports free a moment ago: the
// servers of a cluster must know each other's route ports before they
// start.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		l.Close()
	}
	return addrs
}

// runningCoordinator is a coordinator run in this process.
type runningCoordinator struct {
	*coordinator.Coordinator
	name   string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// stop stops the coordinator and waits for it, once.
func (rc *runningCoordinator) stop(t *testing.T) {
	t.Helper()
	rc.once.Do(func() { rc.stopNow(t) })
}

func (rc *runningCoordinator) stopNow(t *testing.T) {
	t.Helper()
	rc.cancel()
	select {
	case err := <-rc.done:
		if err != nil {
			t.Errorf("coordinator %s: %v", rc.name, err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("coordinator %s did not stop within 30s", rc.name)
	}
}

func startCoordinator(t *testing.T, name string, cfg coordinator.Config) *runningCoordinator {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil)).With("coordinator", name)
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(&testWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("coordinator", name)
	}
	c, err := coordinator.New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rc := &runningCoordinator{Coordinator: c, name: name, cancel: cancel, done: make(chan error, 1)}
	go func() { rc.done <- c.Run(ctx) }()
	t.Cleanup(func() { rc.stop(t) })
	return rc
}

// testWriter logs through t until the test ends.
type testWriter struct {
	t    *testing.T
	done atomic.Bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimSpace(string(b)))
	}
	return len(b), nil
}

func waitReady(t *testing.T, within time.Duration, cs ...*runningCoordinator) {
	t.Helper()
	for _, c := range cs {
		select {
		case <-c.Ready():
		case err := <-c.done:
			t.Fatalf("coordinator %s stopped before it was ready: %v", c.name, err)
		case <-time.After(within):
			t.Fatalf("coordinator %s not ready within %v", c.name, within)
		}
	}
}

func eventually(t *testing.T, what string, within time.Duration, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := check()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: still %v after %v", what, err, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func leaseHolders(cs []*runningCoordinator) []string {
	var held []string
	for _, c := range cs {
		if c.LeaseHeld() {
			held = append(held, c.name)
		}
	}
	return held
}

// TestCluster runs three coordinators whose embedded servers form a NATS
// cluster with every stream on all three: events sent over HTTP to any
// coordinator reach a durable plugin connected to another, every
// coordinator lists the plugin, one of them holds the lease, and another
// takes it over when that one stops.
func TestCluster(t *testing.T) {
	clients, routes := freeAddrs(t, 3), freeAddrs(t, 3)
	var cs []*runningCoordinator
	for i := range 3 {
		var others []string
		for j := range 3 {
			if j != i {
				others = append(others, "nats://"+routes[j])
			}
		}
		name := fmt.Sprintf("n%d", i+1)
		cs = append(cs, startCoordinator(t, name, coordinator.Config{
			ServerName: name, NATSListen: clients[i], HTTPListen: "127.0.0.1:0", DataDir: t.TempDir(),
			Cluster: coordinator.ClusterSettings{Name: "test", Listen: routes[i], Routes: others},
			Durable: true, SyncAlways: true, Stream: coordinator.StreamSettings{Replicas: 3},
			LeaseTTL: coordinator.Duration(2 * time.Second), GoneAfter: coordinator.Duration(2 * time.Second),
		}))
	}
	waitReady(t, 2*time.Minute, cs...)

	// A durable plugin on the third server; events come through the first two.
	got := make(chan string, 16)
	p := pluginkit.New("counter", "1.0.0",
		pluginkit.WithConnConfig(bus.ConnConfig{URLs: []string{"nats://" + clients[2]}}),
		pluginkit.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		pluginkit.WithDurable(pluginkit.Durable{EffectivelyOnce: true}))
	p.HandleFunc("com.example.counted", func(_ context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		got <- e.ID()
		return nil, nil
	})
	pctx, stopPlugin := context.WithCancel(context.Background())
	pdone := make(chan error, 1)
	go func() { pdone <- p.Run(pctx) }()
	t.Cleanup(func() { stopPlugin(); <-pdone })

	for _, c := range cs {
		eventually(t, "coordinator "+c.name+" lists the plugin", 30*time.Second, func() error {
			for _, pl := range c.Plugins() {
				if pl.Name == "counter" && pl.State == "running" {
					return nil
				}
			}
			return fmt.Errorf("plugins %v", c.Plugins())
		})
	}
	for i, c := range cs[:2] {
		id := fmt.Sprintf("e%d", i)
		eventually(t, "HTTP ingest on "+c.name, 30*time.Second, func() error {
			req, _ := http.NewRequest("POST", "http://"+c.HTTPAddr()+"/v1/events", bytes.NewBufferString(`{}`))
			req.Header.Set("Ce-Specversion", "1.0")
			req.Header.Set("Ce-Id", id)
			req.Header.Set("Ce-Source", "test")
			req.Header.Set("Ce-Type", "com.example.counted")
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				return fmt.Errorf("status %d: %s", resp.StatusCode, body)
			}
			return nil
		})
		select {
		case e := <-got:
			if e != id {
				t.Errorf("the plugin got event %q, want %q", e, id)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("the plugin got no event sent to %s", c.name)
		}
	}

	// Every stream and bucket the coordinators made has three copies.
	js, _ := jetstream.New(connect(t, "nats://"+clients[1]))
	for _, stream := range []string{"PLUGBUS_EVENTS", "PLUGBUS_DEADLETTER", "KV_PLUGBUS_DEDUP", "KV_PLUGBUS_LEASE"} {
		eventually(t, stream+" on three servers", 30*time.Second, func() error {
			s, err := js.Stream(context.Background(), stream)
			if err != nil {
				return err
			}
			if r := s.CachedInfo().Config.Replicas; r != 3 {
				return fmt.Errorf("replicas %d", r)
			}
			return nil
		})
	}

	var holder *runningCoordinator
	eventually(t, "one coordinator holds the lease", 30*time.Second, func() error {
		held := leaseHolders(cs)
		if len(held) != 1 {
			return fmt.Errorf("held by %v", held)
		}
		for _, c := range cs {
			if c.name == held[0] {
				holder = c
			}
		}
		return nil
	})
	holder.stop(t)
	var rest []*runningCoordinator
	for _, c := range cs {
		if c != holder {
			rest = append(rest, c)
		}
	}
	took := eventually(t, "another coordinator takes the lease over", 20*time.Second, func() error {
		if held := leaseHolders(rest); len(held) != 1 {
			return fmt.Errorf("held by %v", held)
		}
		return nil
	})
	t.Logf("%s stopped; %v taken over after %v", holder.name, leaseHolders(rest), took)
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, bus.ConnConfig{URLs: []string{url}, Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestLeafNode runs a hub coordinator and an edge coordinator whose
// embedded server is a leaf node of the hub's: events cross between them,
// and the edge's clients keep talking to each other once the hub is gone.
func TestLeafNode(t *testing.T) {
	leaf := freeAddrs(t, 1)[0]
	hub := startCoordinator(t, "hub", coordinator.Config{
		ServerName: "hub", NATSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", DataDir: t.TempDir(),
		Leaf: coordinator.LeafSettings{Listen: leaf},
	})
	edge := startCoordinator(t, "edge", coordinator.Config{
		ServerName: "edge", NATSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", DataDir: t.TempDir(),
		Leaf: coordinator.LeafSettings{Remotes: []string{"nats-leaf://" + leaf}},
	})
	waitReady(t, time.Minute, hub, edge)
	atHub, atEdge, atEdge2 := connect(t, hub.NATSURL()), connect(t, edge.NATSURL()), connect(t, edge.NATSURL())

	sub, err := atHub.SubscribeSync("plugbus.events.>")
	if err != nil {
		t.Fatal(err)
	}
	atHub.Flush()
	e := pluginkit.NewEvent("com.example.edge.seen", nil)
	eventually(t, "an event from the edge reaches the hub", 30*time.Second, func() error {
		if err := bus.Publish(atEdge, "plugbus", "sensor", e); err != nil {
			return err
		}
		_, err := sub.NextMsg(200 * time.Millisecond)
		return err
	})

	hub.stop(t)
	local, err := atEdge2.SubscribeSync("plugbus.events.sensor.>")
	if err != nil {
		t.Fatal(err)
	}
	atEdge2.Flush()
	if err := bus.Publish(atEdge, "plugbus", "sensor", e); err != nil {
		t.Fatal(err)
	}
	if _, err := local.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("with the hub gone, an event between two clients of the edge: %v", err)
	}
}
