package registry_test

import (
	"context"
	"fmt"
	"log/slog"
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

// logLines records what the registry logs at Info and above.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Enabled(_ context.Context, level slog.Level) bool { return level >= slog.LevelInfo }
func (l *logLines) WithAttrs([]slog.Attr) slog.Handler               { return l }
func (l *logLines) WithGroup(string) slog.Handler                    { return l }
func (l *logLines) Handle(_ context.Context, rec slog.Record) error {
	l.mu.Lock()
	l.lines = append(l.lines, rec.Message)
	l.mu.Unlock()
	return nil
}

func (l *logLines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func (l *logLines) count(part string) int {
	n := 0
	for _, line := range l.all() {
		if strings.Contains(line, part) {
			n++
		}
	}
	return n
}

// startQuietRegistry runs a registry that polls discovery once, at start,
// and then not for an hour: whatever it learns comes from lifecycle events
// (and the INFO requests they cause), so a test can tell what those events
// did. (The first poll may find services that already run, or on a busy
// machine miss some: tests list theirs with announce.)
func startQuietRegistry(t *testing.T, nc *nats.Conn, seen *changes, logs *logLines) *registry.Registry {
	t.Helper()
	return runRegistry(t, registry.Config{Conn: nc, Prefix: bus.DefaultPrefix,
		PollInterval: time.Hour, GoneAfter: time.Hour, OnChange: seen.add, Logger: slog.New(logs)})
}

// addService registers a bare micro service that speaks the wire protocol,
// as a plugin's instance does, and returns its instance id.
func addService(t *testing.T, nc *nats.Conn, name string) string {
	t.Helper()
	svc, err := micro.AddService(nc, micro.Config{Name: name, Version: "1.0.0",
		Metadata: map[string]string{bus.MetaProtocol: bus.ProtocolVersion}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	return svc.Info().ID
}

// lifecycle publishes a lifecycle event of type typ on nc, from producer,
// with the given data and source.
func lifecycle(t *testing.T, nc *nats.Conn, producer, typ, source string, data bus.Instance) {
	t.Helper()
	e := pluginkit.NewEvent(typ, data)
	e.SetSource(source)
	if err := bus.Publish(nc, bus.DefaultPrefix, producer, e); err != nil {
		t.Fatal(err)
	}
}

func instanceOf(r *registry.Registry, id string) (registry.Instance, bool) {
	for _, p := range r.Plugins() {
		for _, in := range p.Instances {
			if in.ID == id {
				return in, true
			}
		}
	}
	return registry.Instance{}, false
}

// idOf waits for the registry to list one running instance of plugin and
// returns its id.
func idOf(t *testing.T, r *registry.Registry, plugin string) string {
	t.Helper()
	var id string
	waitForWithin(t, 15*time.Second, plugin+" listed", func() error {
		p, _ := find(r, plugin)
		if p.Running != 1 {
			return fmt.Errorf("got %+v", p)
		}
		id = p.Instances[0].ID
		return nil
	})
	return id
}

// announce lists the bare micro service of plugin whose instance is id,
// as its own started events do, repeated until the registry confirms it.
func announce(t *testing.T, r *registry.Registry, nc *nats.Conn, plugin, id string) {
	t.Helper()
	in := bus.Instance{Plugin: plugin, ID: id, Protocol: bus.ProtocolVersion}
	waitForWithin(t, 15*time.Second, plugin+" confirmed running", func() error {
		if got, _ := instanceOf(r, id); got.State != registry.Running {
			lifecycle(t, nc, plugin, bus.TypePluginStarted, plugin, in)
			return fmt.Errorf("%s %q", plugin, got.State)
		}
		return nil
	})
}

func waitState(t *testing.T, r *registry.Registry, id string, want registry.State) {
	t.Helper()
	waitForWithin(t, 15*time.Second, fmt.Sprintf("instance %s %s", id, want), func() error {
		if in, ok := instanceOf(r, id); !ok || in.State != want {
			return fmt.Errorf("got %+v (listed: %v)", in, ok)
		}
		return nil
	})
}

// drain waits until the registry has handled every lifecycle event nc
// published before: witness's own stopped event, published after them on
// the same connection and handled by the same subscription, marks it
// stopped; then its own started event, repeated in case a flood filled the
// set of instances awaiting confirmation, has it confirmed by INFO and
// running again. The registry must not poll meanwhile.
func drain(t *testing.T, r *registry.Registry, nc *nats.Conn, witness string) {
	t.Helper()
	in := bus.Instance{Plugin: "witness", ID: witness, Protocol: bus.ProtocolVersion}
	lifecycle(t, nc, "witness", bus.TypePluginStopped, "witness", in)
	waitState(t, r, witness, registry.Stopped)
	announce(t, r, nc, "witness", witness)
}

// TestRegistryBelievesLifecycleOnlyFromTheInstancesPlugin forges stopped
// and started events about hello's instance from producer evil, whatever
// their data and source claim, and checks that none changes the registry;
// a plugin's own started event lists it once its INFO confirms it.
func TestRegistryBelievesLifecycleOnlyFromTheInstancesPlugin(t *testing.T) {
	s := bustest.NewServer(t)
	nc := bustest.Connect(t, s)
	witness := addService(t, nc, "witness")
	seen, logs := &changes{}, &logLines{}
	r := startQuietRegistry(t, bustest.Connect(t, s), seen, logs)
	announce(t, r, nc, "witness", witness)

	// A plugin that starts after the registry's poll is listed from its
	// started event and its INFO answer.
	hello := pluginkit.New("hello", "1.0.0", pluginkit.WithDescription("greets"))
	hello.HandleFunc("com.example.greet.requested", noop)
	servePlugin(t, bustest.Connect(t, s), hello)
	id := idOf(t, r, "hello")
	if in, _ := instanceOf(r, id); in.Description != "greets" || in.Plugin != "hello" {
		t.Errorf("hello listed as %+v, want plugin hello with its description", in)
	}

	for _, claim := range []bus.Instance{
		{Plugin: "hello", ID: id, Protocol: bus.ProtocolVersion, Reason: "forged"},
		{Plugin: "evil", ID: id, Protocol: bus.ProtocolVersion, Reason: "forged"},
	} {
		for _, source := range []string{"hello", "evil"} {
			lifecycle(t, nc, "evil", bus.TypePluginStopped, source, claim)
			lifecycle(t, nc, "evil", bus.TypePluginStarted, source, claim)
		}
	}
	// An instance nobody runs, announced by its "own" producer: only
	// discovery can list it.
	lifecycle(t, nc, "ghost", bus.TypePluginStarted, "ghost", bus.Instance{Plugin: "ghost", ID: "ghost1", Protocol: bus.ProtocolVersion})
	drain(t, r, nc, witness)

	in, ok := instanceOf(r, id)
	if !ok || in.Plugin != "hello" || in.State != registry.Running {
		t.Errorf("hello's instance after forged events: %+v (listed: %v), want plugin hello running", in, ok)
	}
	for _, p := range r.Plugins() {
		if p.Name != "hello" && p.Name != "witness" {
			t.Errorf("listed %q (%+v), which no discovery answer confirmed", p.Name, p)
		}
	}
	if got := seen.types(); len(got) != 0 {
		t.Errorf("changes %v, want none", got)
	}
	if n := logs.count("another plugin's instance"); n == 0 {
		t.Errorf("nothing logged about the forged events; log: %q", logs.all())
	}
}

// TestRegistryBoundsAForgedLifecycleFlood publishes 5,000 forged started
// events for instances nobody runs, and 5,000 forged stopped events about
// a running instance, and checks that the registry lists none of them,
// announces no change, keeps its log short, and still believes a real
// plugin's own events afterwards.
func TestRegistryBoundsAForgedLifecycleFlood(t *testing.T) {
	const flood = 5000
	s := bustest.NewServer(t)
	nc := bustest.Connect(t, s)
	witness := addService(t, nc, "witness")
	target := addService(t, bustest.Connect(t, s), "target")
	seen, logs := &changes{}, &logLines{}
	r := startQuietRegistry(t, bustest.Connect(t, s), seen, logs)
	announce(t, r, nc, "witness", witness)
	announce(t, r, nc, "target", target)

	for i := range flood {
		lifecycle(t, nc, "evil", bus.TypePluginStarted, "evil",
			bus.Instance{Plugin: "evil", ID: fmt.Sprintf("forged%d", i), Protocol: bus.ProtocolVersion})
		lifecycle(t, nc, "evil", bus.TypePluginStopped, "target",
			bus.Instance{Plugin: "target", ID: target, Protocol: bus.ProtocolVersion})
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	drain(t, r, nc, witness)

	plugins := r.Plugins()
	if len(plugins) != 2 {
		t.Errorf("%d plugins listed after the flood, want witness and target only", len(plugins))
	}
	if in, _ := instanceOf(r, target); in.State != registry.Running {
		t.Errorf("target %s after forged stopped events, want running", in.State)
	}
	if got := seen.types(); len(got) != 0 {
		t.Errorf("%d changes announced, want none", len(got))
	}
	// One line per kind of forgery at most, within the throttle's period.
	if lines := logs.all(); len(lines) > 5 {
		t.Errorf("%d log lines for the flood, want a few: first ones %q", len(lines), lines[:5])
	}
}

// TestRegistryRevivesAStoppedInstanceThatStillAnswers checks that an
// instance whose own stopped event was not the truth (it keeps answering
// discovery) is running again at the next poll, not stopped for minutes.
func TestRegistryRevivesAStoppedInstanceThatStillAnswers(t *testing.T) {
	s := bustest.NewServer(t)
	nc := bustest.Connect(t, s)
	hello := pluginkit.New("hello", "1.0.0")
	hello.HandleFunc("com.example.greet.requested", noop)
	servePlugin(t, bustest.Connect(t, s), hello)
	seen, logs := &changes{}, &logLines{}
	r := registry.New(registry.Config{Conn: bustest.Connect(t, s), Prefix: bus.DefaultPrefix,
		PollInterval: 100 * time.Millisecond, GoneAfter: 10 * time.Second, OnChange: seen.add, Logger: slog.New(logs)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	id := idOf(t, r, "hello")
	lifecycle(t, nc, "hello", bus.TypePluginStopped, "hello",
		bus.Instance{Plugin: "hello", ID: id, Protocol: bus.ProtocolVersion, Reason: "shutdown"})
	waitForWithin(t, 15*time.Second, "hello stopped and running again", func() error {
		if logs.count("still answers discovery") == 0 {
			return fmt.Errorf("not revived yet; log %q", logs.all())
		}
		if in, _ := instanceOf(r, id); in.State != registry.Running {
			return fmt.Errorf("hello %s", in.State)
		}
		return nil
	})
	if got := seen.types(); len(got) != 0 {
		t.Errorf("changes %v, want none", got)
	}
}

// pollsLogged signals on polled each time the registry logs the end of a
// discovery poll.
type pollsLogged struct{ polled chan struct{} }

func (l pollsLogged) Enabled(context.Context, slog.Level) bool { return true }
func (l pollsLogged) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l pollsLogged) WithGroup(string) slog.Handler            { return l }
func (l pollsLogged) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message == "discovery poll" {
		select {
		case l.polled <- struct{}{}:
		default:
		}
	}
	return nil
}

// TestRegistryPollsAfterDroppedStartedEvents checks that instances whose
// started events were dropped, because the ids awaiting confirmation
// were too many, are listed soon after the started events stop coming,
// not at the next regular poll (an hour away here): ids announced by
// started events whose INFO requests are held unanswered fill the set,
// the real instances' started events are then dropped, and once the held
// requests are answered the registry polls at once and lists them.
func TestRegistryPollsAfterDroppedStartedEvents(t *testing.T) {
	s := bustest.NewServer(t)
	nc := bustest.Connect(t, s)
	logs := pollsLogged{polled: make(chan struct{}, 1)}
	r := runRegistry(t, registry.Config{Conn: bustest.Connect(t, s), Prefix: bus.DefaultPrefix,
		PollInterval: time.Hour, GoneAfter: time.Hour, Logger: slog.New(logs)})
	select {
	case <-logs.polled: // the first poll, at start, found nothing
	case <-time.After(30 * time.Second):
		t.Fatal("the registry did not poll at start")
	}

	// The INFO requests about the "slow" plugin's instances are held
	// until release is closed, then answered with nothing of use.
	release := make(chan struct{})
	var releaseOnce sync.Once
	answerHeld := func() { releaseOnce.Do(func() { close(release) }) }
	var held sync.WaitGroup
	if _, err := nc.Subscribe("$SRV.INFO.slow.>", func(m *nats.Msg) {
		held.Go(func() {
			<-release
			_ = m.Respond([]byte("{}"))
		})
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { answerHeld(); held.Wait() })
	for i := range 256 {
		lifecycle(t, nc, "slow", bus.TypePluginStarted, "slow", bus.Instance{Plugin: "slow", ID: fmt.Sprintf("slow%d", i), Protocol: bus.ProtocolVersion})
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// The registry reads started events in order, so these come when the
	// slow ones fill the set (their INFO requests time out after 2 s).
	var ids []string
	for range 5 {
		id := addService(t, nc, "late")
		ids = append(ids, id)
		lifecycle(t, nc, "late", bus.TypePluginStarted, "late", bus.Instance{Plugin: "late", ID: id, Protocol: bus.ProtocolVersion})
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // time the registry would take to confirm them, had it kept their events
	if p, _ := find(r, "late"); p.Running != 0 {
		t.Fatalf("%d late instances listed while the set of ids awaiting confirmation was full; want their started events dropped", p.Running)
	}
	answerHeld()
	waitForWithin(t, 30*time.Second, "the late instances listed by a poll after the dropped started events", func() error {
		if p, _ := find(r, "late"); p.Running != len(ids) {
			return fmt.Errorf("%d of %d late instances listed", p.Running, len(ids))
		}
		return nil
	})
}
