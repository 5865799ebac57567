package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	"github.com/plugbus/plugbus/coordinator/internal/agent"
	"github.com/plugbus/plugbus/coordinator/internal/supervise"
	"github.com/plugbus/plugbus/internal/proctest"
)

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

func waitFor(t *testing.T, what string, within time.Duration, check func() error) {
	t.Helper()
	start := time.Now()
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not after %v: %v", what, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runAgent runs an agent on its own connection until the returned stop is
// called or the test ends.
func runAgent(t *testing.T, url, name string) (stop func()) {
	t.Helper()
	srvConn := connect(t, url)
	a, err := agent.New(agent.Config{
		Conn: srvConn, Prefix: "plugbus", Name: name,
		BaseEnv: []string{"PLUGBUS_URL=" + url}, StopTimeout: 10 * time.Second,
		Backoff: supervise.Backoff{Initial: 100 * time.Millisecond},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

// helloInstances returns the ids of the hello instances answering
// discovery.
func helloInstances(t *testing.T, url string) func() (map[string]bool, error) {
	nc := connect(t, url)
	return func() (map[string]bool, error) {
		ids := map[string]bool{}
		sub, err := nc.SubscribeSync(nc.NewRespInbox())
		if err != nil {
			return nil, err
		}
		defer sub.Unsubscribe()
		if err := nc.PublishRequest("$SRV.PING.hello", sub.Subject, nil); err != nil {
			return nil, err
		}
		for {
			m, err := sub.NextMsg(300 * time.Millisecond)
			if err != nil {
				return ids, nil
			}
			var p micro.Ping
			if json.Unmarshal(m.Data, &p) == nil {
				ids[p.ID] = true
			}
		}
	}
}

func exactly(instances func() (map[string]bool, error), want int) func() error {
	return func() error {
		ids, err := instances()
		if err != nil {
			return err
		}
		if len(ids) != want {
			return fmt.Errorf("%d instances answer, want %d", len(ids), want)
		}
		return nil
	}
}

func TestAgentRunsOrders(t *testing.T) {
	hello := proctest.Build(t, "../../../plugins/hello/cmd/hello")
	srv := bustest.NewServer(t)
	url := srv.ClientURL()
	js, _ := jetstream.New(bustest.Connect(t, srv))
	ctx := context.Background()
	store, err := agent.OpenStore(ctx, js, "plugbus", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Run(ctx, agent.Spec{Spec: supervise.Spec{Name: "hello", Exec: hello}}); !errors.Is(err, agent.ErrNoAgent) {
		t.Fatalf("run with no agent: got %v, want ErrNoAgent", err)
	}

	stopA := runAgent(t, url, "a")
	waitFor(t, "agent a announced", 20*time.Second, func() error {
		as, err := store.Agents(ctx)
		if err != nil || len(as) != 1 || as[0].Name != "a" {
			return fmt.Errorf("agents %v, err %v", as, err)
		}
		return nil
	})
	if _, err := store.Run(ctx, agent.Spec{Spec: supervise.Spec{Name: "hello", Exec: hello}, Agent: "b"}); !errors.Is(err, agent.ErrUnknownAgent) {
		t.Fatalf("run on a missing agent: got %v", err)
	}
	spec, err := store.Run(ctx, agent.Spec{Spec: supervise.Spec{Name: "hello", Exec: hello, Replicas: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if spec.Agent != "a" {
		t.Fatalf("placed on %q, want a", spec.Agent)
	}
	count := helloInstances(t, url)
	waitFor(t, "two hello instances", 30*time.Second, exactly(count, 2))
	waitFor(t, "agent a lists its instances", 20*time.Second, func() error {
		as, _ := store.Agents(ctx)
		if len(as) != 1 || len(as[0].Instances) != 2 {
			return fmt.Errorf("agents %+v", as)
		}
		return nil
	})

	// Scaling adds an instance and leaves the running ones alone.
	before, _ := count()
	if _, err := store.Scale(ctx, "hello", 3); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "three hello instances after scale", 30*time.Second, exactly(count, 3))
	after, _ := count()
	for id := range before {
		if !after[id] {
			t.Errorf("instance %s was restarted by scaling up", id)
		}
	}
	waitFor(t, "agent a lists hello-1, hello-2 and hello-3", 20*time.Second, func() error {
		as, _ := store.Agents(ctx)
		var names []string
		for _, in := range as[0].Instances {
			names = append(names, in.Instance)
		}
		if strings.Join(names, ",") != "hello-1,hello-2,hello-3" {
			return fmt.Errorf("instances %v", names)
		}
		return nil
	})
	if _, err := store.Scale(ctx, "hello", 2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two hello instances after scaling down", 30*time.Second, exactly(count, 2))
	if _, err := store.Scale(ctx, "hello", 3); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "three hello instances again", 30*time.Second, exactly(count, 3))

	// The agent goes away (its plugins with it) and comes back: the order
	// is still there, and it runs the plugin again.
	stopA()
	waitFor(t, "no hello instance with the agent stopped", 30*time.Second, exactly(count, 0))
	runAgent(t, url, "a")
	waitFor(t, "three hello instances after the agent's restart", 30*time.Second, exactly(count, 3))

	var lines []string
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := store.Logs(lctx, "hello", 0, false, func(l []byte) { lines = append(lines, string(l)) }); err != nil {
		t.Fatal(err)
	}
	if len(lines) == 0 || !strings.Contains(strings.Join(lines, "\n"), `"plugin":"hello"`) {
		t.Errorf("logs of hello: %d lines: %q", len(lines), lines)
	}

	// A restart replaces every instance.
	old, _ := count()
	if _, err := store.Restart(ctx, "hello"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "three new hello instances after restart", 60*time.Second, func() error {
		now, err := count()
		if err != nil {
			return err
		}
		for id := range now {
			if old[id] {
				return fmt.Errorf("instance %s still runs", id)
			}
		}
		if len(now) != 3 {
			return fmt.Errorf("%d instances answer, want 3", len(now))
		}
		return nil
	})
	if err := store.Stop(ctx, "hello"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "no hello instance after stop", 30*time.Second, exactly(count, 0))
	if err := store.Stop(ctx, "hello"); !errors.Is(err, agent.ErrNotFound) {
		t.Errorf("stop twice: got %v, want ErrNotFound", err)
	}
}

func TestAgentAnnouncesACrashLoop(t *testing.T) {
	srv := bustest.NewServer(t)
	url := srv.ClientURL()
	nc := bustest.Connect(t, srv)
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	store, err := agent.OpenStore(ctx, js, "plugbus", 0)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := nc.SubscribeSync("plugbus.events.agent-a.io.plugbus.plugin.crashlooping")
	if err != nil {
		t.Fatal(err)
	}
	runAgent(t, url, "a")
	waitFor(t, "agent a announced", 20*time.Second, func() error {
		if as, _ := store.Agents(ctx); len(as) != 1 {
			return fmt.Errorf("agents %v", as)
		}
		return nil
	})
	if _, err := store.Run(ctx, agent.Spec{Spec: supervise.Spec{Name: "quitter", Exec: "false"}}); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatalf("no crash-looping event: %v", err)
	}
	var data struct{ Plugin, Agent string }
	if err := json.Unmarshal(msg.Data, &data); err != nil || data.Plugin != "quitter" || data.Agent != "a" {
		t.Errorf("crash-looping event data %s: want plugin quitter on agent a", msg.Data)
	}
}
