package registry_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	"github.com/plugbus/plugbus/coordinator/internal/registry"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

type changes struct {
	mu   sync.Mutex
	list []registry.Change
}

func (c *changes) add(ch registry.Change) {
	c.mu.Lock()
	c.list = append(c.list, ch)
	c.mu.Unlock()
}

func (c *changes) types() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, ch := range c.list {
		out = append(out, ch.Type+" "+ch.Instance.Plugin)
	}
	return out
}

func startRegistry(t *testing.T, nc *nats.Conn, seen *changes) *registry.Registry {
	t.Helper()
	return runRegistry(t, registry.Config{Conn: nc, Prefix: bus.DefaultPrefix, PollInterval: 100 * time.Millisecond, GoneAfter: 500 * time.Millisecond, OnChange: seen.add})
}

// runRegistry runs a registry configured by cfg until the test ends.
func runRegistry(t *testing.T, cfg registry.Config) *registry.Registry {
	t.Helper()
	r := registry.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("registry.Run: %v", err)
		}
	})
	return r
}

// servePlugin runs a plugin on its own connection until the test ends or
// stop is called.
func servePlugin(t *testing.T, nc *nats.Conn, p *pluginkit.Plugin) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, nc) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("plugin %s: %v", p.Name(), err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitFor(t *testing.T, what string, check func() error) {
	t.Helper()
	waitForWithin(t, 5*time.Second, what, check)
}

func waitForWithin(t *testing.T, limit time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("waited %v for %s: %v", limit, what, err)
}

func find(r *registry.Registry, name string) (registry.Plugin, bool) {
	for _, p := range r.Plugins() {
		if p.Name == name {
			return p, true
		}
	}
	return registry.Plugin{}, false
}

func noop(context.Context, pluginkit.Event) (*pluginkit.Event, error) { return nil, nil }

func TestRegistryListsPluginsWithTheirManifest(t *testing.T) {
	s := bustest.NewServer(t)
	seen := &changes{}
	r := startRegistry(t, bustest.Connect(t, s), seen)
	p := pluginkit.New("greeter", "1.2.3", pluginkit.WithDescription("greets"), pluginkit.WithEmits("com.example.greet.sent"))
	p.HandleFunc("com.example.greet.requested", noop, pluginkit.Schema(`{"type":"object"}`))
	p.HandleFunc("com.example.user.>", noop)
	servePlugin(t, bustest.Connect(t, s), p)

	waitFor(t, "greeter with its description", func() error {
		got, ok := find(r, "greeter")
		if !ok || len(got.Instances) != 1 || got.Instances[0].Description == "" {
			return fmt.Errorf("got %+v", got)
		}
		return nil
	})
	got, _ := find(r, "greeter")
	in := got.Instances[0]
	checks := []struct{ field, got, want string }{
		{"state", string(got.State), "running"},
		{"version", in.Version, "1.2.3"},
		{"id", in.ID, p.ID()},
		{"protocol", in.Protocol, bus.ProtocolVersion},
		{"description", in.Description, "greets"},
		{"plugin description", got.Description, "greets"},
		{"handles", strings.Join(in.Handles, ","), "com.example.greet.requested,com.example.user.>"},
		{"emits", strings.Join(in.Emits, ","), "com.example.greet.sent"},
		{"schema", in.Schemas["com.example.greet.requested"], `{"type":"object"}`},
		{"mode", in.Mode, bus.ModeProcess},
		{"modes", strings.Join(got.Modes, ","), bus.ModeProcess},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.field, c.got, c.want)
		}
	}
	if in.PID == 0 || in.Host == "" {
		t.Errorf("pid %d host %q: want both set", in.PID, in.Host)
	}
	if len(seen.types()) != 0 {
		t.Errorf("changes %v for a healthy plugin, want none", seen.types())
	}
}

// An instance run in-process says so in its manifest, and the registry
// shows how each instance runs.
func TestRegistryShowsTheMode(t *testing.T) {
	s := bustest.NewServer(t)
	r := startRegistry(t, bustest.Connect(t, s), &changes{})
	p := pluginkit.New("linked", "1.0.0", pluginkit.WithMode(bus.ModeStatic))
	p.HandleFunc("com.example.linked.requested", noop)
	servePlugin(t, bustest.Connect(t, s), p)
	waitFor(t, "linked, static", func() error {
		got, ok := find(r, "linked")
		if !ok || len(got.Instances) != 1 || got.Instances[0].Mode != bus.ModeStatic || !slices.Equal(got.Modes, []string{bus.ModeStatic}) {
			return fmt.Errorf("got %+v", got)
		}
		return nil
	})
}

func TestRegistryMarksStoppedAndGoneInstances(t *testing.T) {
	s := bustest.NewServer(t)
	seen := &changes{}
	r := startRegistry(t, bustest.Connect(t, s), seen)

	polite := pluginkit.New("polite", "1.0.0")
	polite.HandleFunc("com.example.a", noop)
	stopPolite := servePlugin(t, bustest.Connect(t, s), polite)

	// rude's connection closes under it: no stopped event, no answers.
	rude := pluginkit.New("rude", "1.0.0")
	rude.HandleFunc("com.example.b", noop)
	rudeConn := bustest.Connect(t, s)
	servePlugin(t, rudeConn, rude)

	waitFor(t, "both plugins running", func() error {
		for _, name := range []string{"polite", "rude"} {
			if p, _ := find(r, name); p.Running != 1 {
				return fmt.Errorf("%s: %+v", name, p)
			}
		}
		return nil
	})
	stopPolite()
	rudeConn.Close()
	waitFor(t, "polite stopped and rude gone", func() error {
		p, _ := find(r, "polite")
		q, _ := find(r, "rude")
		if p.State != registry.Stopped || q.State != registry.Gone {
			return fmt.Errorf("polite %s, rude %s", p.State, q.State)
		}
		return nil
	})
	if got := seen.types(); len(got) != 1 || got[0] != bus.TypePluginUnhealthy+" rude" {
		t.Errorf("changes %v, want one unhealthy for rude", got)
	}
}

func TestRegistryReportsIncompatibleProtocol(t *testing.T) {
	s := bustest.NewServer(t)
	// The service exists before the registry polls: nats.go's micro
	// AddService sets the start time after it subscribes, without a lock,
	// and a STATS request in between is a data race (nats.go v1.55.0).
	svc, err := micro.AddService(bustest.Connect(t, s), micro.Config{
		Name: "future", Version: "9.0.0",
		Metadata: map[string]string{bus.MetaProtocol: "9.0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	r := startRegistry(t, bustest.Connect(t, s), &changes{})
	waitFor(t, "future listed as incompatible", func() error {
		p, _ := find(r, "future")
		if len(p.Instances) != 1 || p.Instances[0].State != registry.Incompatible {
			return fmt.Errorf("got %+v", p)
		}
		if reason := p.Instances[0].Reason; !strings.Contains(reason, "9.0") || !strings.Contains(reason, bus.ProtocolVersion) {
			return fmt.Errorf("reason %q does not show both versions", reason)
		}
		return nil
	})
}

func TestRegistryIgnoresOtherMicroServicesAndForgedLifecycle(t *testing.T) {
	s := bustest.NewServer(t)
	nc := bustest.Connect(t, s)
	svc, err := micro.AddService(nc, micro.Config{Name: "not-a-plugin", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	r := startRegistry(t, bustest.Connect(t, s), &changes{}) // after AddService: see above
	// mallory announces an instance of "hello": the subject says mallory
	// sent it, so it must not be believed.
	forged := pluginkit.NewEvent(bus.TypePluginStarted, bus.Instance{Plugin: "hello", ID: "forged", Version: "1.0.0", Protocol: bus.ProtocolVersion})
	if err := bus.Publish(nc, bus.DefaultPrefix, "mallory", forged); err != nil {
		t.Fatal(err)
	}
	honest := pluginkit.New("honest", "1.0.0")
	honest.HandleFunc("com.example.c", noop)
	servePlugin(t, bustest.Connect(t, s), honest)
	waitFor(t, "honest listed", func() error {
		if p, _ := find(r, "honest"); p.Running != 1 {
			return fmt.Errorf("got %+v", p)
		}
		return nil
	})
	for _, p := range r.Plugins() {
		if p.Name != "honest" {
			t.Errorf("listed %q (%+v); want only the plugin", p.Name, p)
		}
	}
}

// TestRegistryListsAndDescribesHundredsOfInstances runs 300 instances, each
// on its own connection, over 30 plugins with 3 types of its own each, and
// waits for the registry to list all of them with their descriptions: it
// asked new instances for their INFO one at a time, waiting for a quiet
// period after each, which took a minute for these.
func TestRegistryListsAndDescribesHundredsOfInstances(t *testing.T) {
	const instances, plugins, types = 300, 30, 3
	s := bustest.NewServer(t)
	// Gone only after a minute: this test is about listing, and a busy
	// machine can keep 300 instances from answering a poll for longer than
	// startRegistry's half a second.
	r := runRegistry(t, registry.Config{Conn: bustest.Connect(t, s), Prefix: bus.DefaultPrefix,
		PollInterval: 100 * time.Millisecond, GoneAfter: time.Minute})
	for i := range instances {
		p := pluginkit.New(fmt.Sprintf("many-%d", i%plugins), "1.0.0",
			pluginkit.WithDescription(fmt.Sprintf("instance %d", i)), pluginkit.WithConcurrency(1),
			pluginkit.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		for j := range types {
			p.HandleFunc(fmt.Sprintf("com.example.many.i%d.t%d", i, j), noop)
		}
		servePlugin(t, bustest.Connect(t, s), p)
	}
	waitForWithin(t, time.Minute, "every instance listed and described", func() error {
		listed, described := 0, 0
		for _, p := range r.Plugins() {
			for _, in := range p.Instances {
				if in.State == registry.Running {
					listed++
				}
				if in.Description != "" {
					described++
				}
			}
		}
		if listed != instances || described != instances {
			return fmt.Errorf("%d of %d listed, %d described", listed, instances, described)
		}
		return nil
	})
	got := r.Plugins()
	if len(got) != plugins {
		t.Fatalf("%d plugins, want %d", len(got), plugins)
	}
	for _, p := range got {
		if want := instances / plugins * types; len(p.Handles) != want || !slices.IsSorted(p.Handles) {
			t.Errorf("%s handles %d types (sorted: %v), want %d, sorted", p.Name, len(p.Handles), slices.IsSorted(p.Handles), want)
		}
		if len(p.Versions) != 1 || p.Versions[0] != "1.0.0" {
			t.Errorf("%s versions %v, want [1.0.0]", p.Name, p.Versions)
		}
	}
}

// TestRegistryCallsOnChangeWithoutItsLock checks that OnChange runs outside
// the registry's lock (it may read the registry), which also keeps the
// registry readable while thousands of changes are logged and published.
func TestRegistryCallsOnChangeWithoutItsLock(t *testing.T) {
	s := bustest.NewServer(t)
	var r *registry.Registry
	listed := make(chan int, 10)
	r = registry.New(registry.Config{Conn: bustest.Connect(t, s), Prefix: bus.DefaultPrefix,
		PollInterval: 100 * time.Millisecond, GoneAfter: 500 * time.Millisecond,
		OnChange: func(registry.Change) { listed <- len(r.Plugins()) }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	p := pluginkit.New("vanishing", "1.0.0")
	p.HandleFunc("com.example.v", noop)
	nc := bustest.Connect(t, s)
	servePlugin(t, nc, p)
	waitFor(t, "vanishing listed", func() error {
		if got, _ := find(r, "vanishing"); got.Running != 1 {
			return fmt.Errorf("got %+v", got)
		}
		return nil
	})
	nc.Close() // gone without a word: unhealthy
	select {
	case n := <-listed:
		if n != 1 {
			t.Errorf("OnChange saw %d plugins, want 1", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no change within 5s: OnChange blocked on the registry's lock?")
	}
}

// TestRegistrySpacesPollsWithManyInstances checks that with more instances
// than PollRate asks for per PollInterval, the polls are spaced to keep to
// PollRate, that the instances stay running although they now answer less
// often than GoneAfter, and that one that vanishes is still marked gone.
func TestRegistrySpacesPollsWithManyInstances(t *testing.T) {
	s := bustest.NewServer(t)
	seen := &changes{}
	// 6 instances at 2 a second: a poll every 3 s, gone after 2 × 3 s +
	// the longest gather (3 s, the interval) = 9 s instead of 300 ms.
	r := runRegistry(t, registry.Config{Conn: bustest.Connect(t, s), Prefix: bus.DefaultPrefix,
		PollInterval: 100 * time.Millisecond, PollRate: 2, GoneAfter: 300 * time.Millisecond, OnChange: seen.add})
	const n = 6
	var conns []*nats.Conn
	for i := range n {
		p := pluginkit.New(fmt.Sprintf("many-%d", i), "1.0.0")
		p.HandleFunc(fmt.Sprintf("com.example.many%d", i), noop)
		nc := bustest.Connect(t, s)
		conns = append(conns, nc)
		servePlugin(t, nc, p)
	}
	running := func() int {
		k := 0
		for _, p := range r.Plugins() {
			k += p.Running
		}
		return k
	}
	waitFor(t, "every instance running", func() error {
		if k := running(); k != n {
			return fmt.Errorf("%d of %d running", k, n)
		}
		return nil
	})

	// Count the polls (STATS asked of every service at once) for a while.
	watch := bustest.Connect(t, s)
	polls, err := watch.SubscribeSync("$SRV.STATS")
	if err != nil {
		t.Fatal(err)
	}
	if err := watch.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(7 * time.Second)
	count, _, err := polls.Pending()
	if err != nil {
		t.Fatal(err)
	}
	// At 3 s apart, 7 s hold 3 polls at most; at PollInterval, 70.
	if count < 1 || count > 4 {
		t.Errorf("%d polls in 7 s; want 2 or 3 (one every 3 s)", count)
	}
	if k := running(); k != n {
		t.Errorf("%d of %d instances running after 7 s of spaced polls; changes %v", k, n, seen.types())
	}

	// An instance whose connection closes is still marked gone.
	conns[0].Close()
	waitForWithin(t, 60*time.Second, "the closed instance gone", func() error {
		if p, _ := find(r, "many-0"); p.State != registry.Gone {
			return fmt.Errorf("many-0 %s", p.State)
		}
		return nil
	})
	if got := seen.types(); len(got) != 1 || got[0] != bus.TypePluginUnhealthy+" many-0" {
		t.Errorf("changes %v, want one unhealthy for many-0", got)
	}
}

// TestRegistryWaitsForLateAnswers checks that a poll waits for an
// instance whose STATS answer comes well after the others' (as on a busy
// host, where the coordinator or the instance is not scheduled for a
// moment) instead of ending at the first quiet gap and marking it gone.
func TestRegistryWaitsForLateAnswers(t *testing.T) {
	s := bustest.NewServer(t)
	seen := &changes{}
	r := runRegistry(t, registry.Config{Conn: bustest.Connect(t, s), Prefix: bus.DefaultPrefix,
		PollInterval: 100 * time.Millisecond, GoneAfter: 3 * time.Second, OnChange: seen.add})
	fast := pluginkit.New("fast", "1.0.0")
	fast.HandleFunc("com.example.fast", noop)
	servePlugin(t, bustest.Connect(t, s), fast)

	// A micro service that answers STATS half a second late: longer than
	// the quiet gap after which a poll used to stop gathering.
	var slow sync.Map // "on" once the instance is listed
	svc, err := micro.AddService(bustest.Connect(t, s), micro.Config{
		Name: "slow", Version: "1.0.0",
		Metadata: map[string]string{bus.MetaProtocol: bus.ProtocolVersion},
		StatsHandler: func(*micro.Endpoint) any {
			if _, on := slow.Load("on"); on {
				time.Sleep(500 * time.Millisecond)
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.AddEndpoint("x", micro.HandlerFunc(func(micro.Request) {}), micro.WithEndpointSubject("plugbus.events.*.com.example.slow")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	waitFor(t, "both listed", func() error {
		for _, name := range []string{"fast", "slow"} {
			if p, _ := find(r, name); p.Running != 1 {
				return fmt.Errorf("%s: %d running", name, p.Running)
			}
		}
		return nil
	})
	slow.Store("on", true)
	time.Sleep(6 * time.Second) // twice GoneAfter, dozens of polls
	if p, _ := find(r, "slow"); p.Running != 1 {
		t.Errorf("the late answerer is %s (%+v), want running; changes %v", p.State, p.Instances, seen.types())
	}
	if got := seen.types(); len(got) != 0 {
		t.Errorf("changes %v, want none", got)
	}
}

// TestRegistryReportsInvalidByProducer: a plugin counts the invalid
// messages it gets by producer; the registry hands the counts new since
// the last poll to OnInvalid, once, and lists them in the instance's
// stats.
func TestRegistryReportsInvalidByProducer(t *testing.T) {
	s := bustest.NewServer(t)
	var mu sync.Mutex
	reported := map[string]uint64{}
	r := runRegistry(t, registry.Config{Conn: bustest.Connect(t, s), Prefix: bus.DefaultPrefix, PollInterval: 100 * time.Millisecond,
		OnInvalid: func(by map[string]uint64) {
			mu.Lock()
			defer mu.Unlock()
			for producer, n := range by {
				reported[producer] += n
			}
		}})
	p := pluginkit.New("reader", "1.0.0")
	p.HandleFunc("com.example.thing.done", noop)
	servePlugin(t, bustest.Connect(t, s), p)
	waitFor(t, "reader listed", func() error {
		if _, ok := find(r, "reader"); !ok {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	nc := bustest.Connect(t, s)
	send := func(producer string, n int) {
		for range n {
			if err := nc.Publish("plugbus.events."+producer+".com.example.thing.done", []byte("junk")); err != nil {
				t.Fatal(err)
			}
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	total := func() (map[string]uint64, error) {
		mu.Lock()
		defer mu.Unlock()
		got := maps.Clone(reported)
		if got["junker"] != 7 || got["sloppy"] != 2 || len(got) != 2 {
			return got, fmt.Errorf("reported %v, want junker 7 and sloppy 2", got)
		}
		return got, nil
	}
	send("junker", 7)
	send("sloppy", 2)
	waitFor(t, "the reports", func() error { _, err := total(); return err })
	time.Sleep(500 * time.Millisecond) // several more polls: nothing new to report
	if got, err := total(); err != nil {
		t.Fatalf("after more polls: %v (%v)", got, err)
	}
	got, _ := find(r, "reader")
	if from := got.Instances[0].Stats.InvalidFrom; from["junker"] != 7 || from["sloppy"] != 2 {
		t.Errorf("instance stats invalid_from %v, want junker 7 and sloppy 2", from)
	}
}
