package conformance_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	"github.com/plugbus/plugbus/coordinator"
	"github.com/plugbus/plugbus/coordinator/coordinatortest"
	"github.com/plugbus/plugbus/internal/conformance/confplugin"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// A mode is a row: how to write the spec of a conformance plugin.
//
// Every row runs every case; none is skipped for a mode. The process,
// static, .so and wasm rows run confplugin's code; the stdio row runs the
// Python example, examples/stdio/hello.py, which answers the same requests
// the same way. A row whose tools are missing (no python3; the .so row
// without Linux and cgo, or under -race) is skipped as a whole, saying why.
type mode struct {
	name string
	spec func(t *testing.T, plugin string, replicas int) coordinator.PluginSpec
}

func modes() []mode {
	return []mode{
		{bus.ModeProcess, func(t *testing.T, plugin string, replicas int) coordinator.PluginSpec {
			return coordinator.PluginSpec{Name: plugin, Exec: processBinary(t), Env: []string{"CONFORMANCE_NAME=" + plugin}, Replicas: replicas}
		}},
		{bus.ModeStatic, func(t *testing.T, plugin string, replicas int) coordinator.PluginSpec {
			return coordinator.PluginSpec{Name: plugin, Static: true, Replicas: replicas}
		}},
		{bus.ModeSO, func(t *testing.T, plugin string, replicas int) coordinator.PluginSpec {
			return coordinator.PluginSpec{Name: plugin, So: buildSO(t), Replicas: replicas}
		}},
		{bus.ModeStdio, func(t *testing.T, plugin string, replicas int) coordinator.PluginSpec {
			py, err := exec.LookPath("python3")
			if err != nil {
				t.Skip("the stdio row runs examples/stdio/hello.py: no python3 here")
			}
			return coordinator.PluginSpec{Name: plugin, Exec: py, Args: []string{"../../examples/stdio/hello.py"}, Stdio: true, Replicas: replicas}
		}},
		{bus.ModeWasm, func(t *testing.T, plugin string, replicas int) coordinator.PluginSpec {
			return coordinator.PluginSpec{Name: plugin, Wasm: buildWasm(t), Env: []string{"CONFORMANCE_NAME=" + plugin}, Replicas: replicas}
		}},
	}
}

// buildDir holds what the rows build once per test binary (confplugin's
// command, its .so and its wasm module), so that every row and every run of
// -count uses the same files.
var buildDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "conformance-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var binary string

func processBinary(t *testing.T) string {
	t.Helper()
	if binary == "" {
		out := filepath.Join(buildDir, "confplugin")
		if b, err := exec.Command("go", "build", "-o", out, "./confplugin/cmd/confplugin").CombinedOutput(); err != nil {
			t.Fatalf("go build ./confplugin/cmd/confplugin: %v\n%s", err, b)
		}
		binary = out
	}
	return binary
}

func TestConformance(t *testing.T) {
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			srv := bustest.NewServer(t)
			nc := bustest.Connect(t, srv)
			c := start(t, srv.ClientURL(), false, m.spec(t, "conf-a", 2), m.spec(t, "conf-b", 1))
			waitRunning(t, c, m.name, map[string]int{"conf-a": 2, "conf-b": 1})

			t.Run("fan-out to two plugins", func(t *testing.T) {
				sub := subscribe(t, nc, "*", confplugin.TypeSent)
				if err := bus.Publish(nc, bus.DefaultPrefix, "test", greet(confplugin.Request{Name: "all"})); err != nil {
					t.Fatal(err)
				}
				got := map[string]int{}
				for range 2 {
					e := next(t, sub, fmt.Sprintf("the greetings (so far from %v)", got))
					got[e.Source()]++
				}
				if got[bus.Source("conf-a")] != 1 || got[bus.Source("conf-b")] != 1 {
					t.Errorf("one event was greeted by %v; want by each plugin once", got)
				}
			})

			t.Run("load balancing across instances", func(t *testing.T) {
				for range 40 {
					text, err := invoke(nc, "conf-a", confplugin.Request{Name: "one of two"})
					if err != nil || text != "hello, one of two" {
						t.Fatalf("conf-a answered %q, %v; want \"hello, one of two\"", text, err)
					}
				}
				// Who answered is what each instance reports in its micro
				// STATS, which the registry reads every second.
				waitFor(t, "both of conf-a's instances handling requests", func() error {
					var handled []uint64
					for _, p := range c.Plugins() {
						for _, in := range p.Instances {
							if p.Name == "conf-a" && in.State == "running" {
								handled = append(handled, in.Stats.Handled)
							}
						}
					}
					if len(handled) != 2 || handled[0] == 0 || handled[1] == 0 {
						return fmt.Errorf("requests handled by each running instance: %v", handled)
					}
					return nil
				})
			})

			t.Run("invoke with a result", func(t *testing.T) {
				text, err := invoke(nc, "conf-b", confplugin.Request{Name: "Ada"})
				if err != nil || text != "hello, Ada" {
					t.Fatalf("conf-b answered %q, %v; want \"hello, Ada\"", text, err)
				}
			})

			t.Run("invoke with an error", func(t *testing.T) {
				_, err := request(nc, pluginkit.NewEvent(confplugin.TypeGreet, map[string]any{}), "conf-b")
				var se *bus.ServiceError
				if !errors.As(err, &se) || se.Code != bus.CodePermanent || !strings.Contains(se.Description, `string "name"`) {
					t.Fatalf("got %v, want a permanent error answer saying the data needs a string \"name\"", err)
				}
			})

			t.Run("an unanswered type", func(t *testing.T) {
				_, err := request(nc, pluginkit.NewEvent("com.example.conf.nobody", nil), "")
				if !errors.Is(err, bus.ErrNoResponders) {
					t.Fatalf("got %v, want no responders", err)
				}
			})
			t.Run("durable delivery with a redelivery", func(t *testing.T) { durableRedelivery(t, m) })
			t.Run("drain on stop", func(t *testing.T) { drainOnStop(t, m) })
		})
	}
}

// durableRedelivery publishes an event, acknowledged once stored, that each
// plugin's handler fails the first time: both greet it once, after a
// redelivery, and both acknowledge it.
func durableRedelivery(t *testing.T, m mode) {
	srv := bustest.NewServer(t)
	nc := bustest.Connect(t, srv)
	c := start(t, srv.ClientURL(), true, m.spec(t, "conf-a", 2), m.spec(t, "conf-b", 1))
	waitRunning(t, c, m.name, map[string]int{"conf-a": 2, "conf-b": 1})
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	plugins := []string{"conf-a", "conf-b"}
	waitFor(t, "conf-a's and conf-b's durable consumers", func() error {
		for _, name := range plugins {
			if _, err := js.Consumer(ctx, bus.DefaultEventsStream, name); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		return nil
	})
	sub := subscribe(t, nc, "*", confplugin.TypeSent)
	e := greet(confplugin.Request{Name: "again", FailOnce: true})
	if err := bus.PublishDurable(ctx, js, bus.DefaultPrefix, "test", e); err != nil {
		t.Fatalf("publishing durably: %v", err)
	}
	got := map[string]int{}
	for range 2 {
		r := next(t, sub, fmt.Sprintf("the greetings after a redelivery (so far from %v)", got))
		got[r.Source()]++
	}
	if got[bus.Source("conf-a")] != 1 || got[bus.Source("conf-b")] != 1 {
		t.Errorf("the event was greeted by %v; want by each plugin once", got)
	}
	// A result is published before its event is acknowledged: once both
	// plugins hold nothing unacknowledged, no other greeting can come.
	waitFor(t, "the event acknowledged by both plugins", func() error {
		for _, name := range plugins {
			cons, err := js.Consumer(ctx, bus.DefaultEventsStream, name)
			if err != nil {
				return err
			}
			info, err := cons.Info(ctx)
			if err != nil {
				return err
			}
			if info.NumPending != 0 || info.NumAckPending != 0 {
				return fmt.Errorf("%s: %d events undelivered, %d awaiting an ack", name, info.NumPending, info.NumAckPending)
			}
		}
		return nil
	})
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := sub.Pending(); n != 0 {
		t.Errorf("%d more greetings after both plugins acknowledged the event: it was handled more than once", n)
	}
}

// drainOnStop stops the coordinator while its plugin holds a request: the
// plugin finishes it, and the caller gets the answer.
func drainOnStop(t *testing.T, m mode) {
	srv := bustest.NewServer(t)
	nc := bustest.Connect(t, srv)
	waiting := subscribe(t, nc, "conf-b", confplugin.TypeWaiting)
	type answer struct {
		text string
		err  error
	}
	answered := make(chan answer, 1)
	// The coordinator runs until this subtest ends, and stops then.
	t.Run("coordinator", func(t *testing.T) {
		c := start(t, srv.ClientURL(), false, m.spec(t, "conf-b", 1))
		waitRunning(t, c, m.name, map[string]int{"conf-b": 1})
		go func() {
			text, err := invoke(nc, "conf-b", confplugin.Request{Name: "in flight", Wait: 2})
			answered <- answer{text, err}
		}()
		next(t, waiting, "conf-b's event saying it holds the request")
	})
	if t.Failed() {
		return
	}
	if a := <-answered; a.err != nil || a.text != "hello, in flight" {
		t.Fatalf("the request in flight when the coordinator stopped got %q, %v; want \"hello, in flight\"", a.text, a.err)
	}
}

// greet returns a TypeGreet event with r as its data.
func greet(r confplugin.Request) *pluginkit.Event {
	return pluginkit.NewEvent(confplugin.TypeGreet, r)
}

// invoke asks plugin to greet and returns the greeting's text.
func invoke(nc *nats.Conn, plugin string, r confplugin.Request) (string, error) {
	res, err := request(nc, greet(r), plugin)
	if err != nil {
		return "", err
	}
	var g confplugin.Greeting
	if res.Type() != confplugin.TypeSent {
		return "", fmt.Errorf("answer of type %s, want %s", res.Type(), confplugin.TypeSent)
	}
	if err := res.DataAs(&g); err != nil {
		return "", err
	}
	return g.Text, nil
}

// request invokes e, naming the plugin that is to answer when two do.
func request(nc *nats.Conn, e *pluginkit.Event, plugin string) (*pluginkit.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if plugin != "" {
		return bus.Request(ctx, nc, bus.DefaultPrefix, "test", e, bus.AnsweredBy(plugin))
	}
	return bus.Request(ctx, nc, bus.DefaultPrefix, "test", e)
}

// subscribe subscribes to the events of type typ published by producer
// ("*" for any).
func subscribe(t *testing.T, nc *nats.Conn, producer, typ string) *nats.Subscription {
	t.Helper()
	sub, err := nc.SubscribeSync(bus.DefaultPrefix + ".events." + producer + "." + typ)
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	return sub
}

// next returns the next event on sub, waiting generously for it.
func next(t *testing.T, sub *nats.Subscription, what string) *pluginkit.Event {
	t.Helper()
	msg, err := sub.NextMsg(60 * time.Second)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	e, err := bus.Decode(msg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// start runs a coordinator with the plugins, connected to url (durable
// or not), until the test ends.
func start(t *testing.T, url string, durable bool, plugins ...coordinator.PluginSpec) *coordinator.Coordinator {
	t.Helper()
	cfg := coordinator.Config{Plugins: plugins, Durable: durable, NATSURLs: []string{url}}
	if plugins[0].Wasm != "" {
		cfg.WasmCacheDir = wasmCache
	}
	return coordinatortest.Start(t, cfg)
}

// waitRunning waits until the plugins have as many running instances in
// mode as want says.
func waitRunning(t *testing.T, c *coordinator.Coordinator, mode string, want map[string]int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("running instances %v in mode %s", want, mode), func() error {
		n := map[string]int{}
		for _, p := range c.Plugins() {
			for _, in := range p.Instances {
				if in.State == "running" && in.Mode == mode {
					n[p.Name]++
				}
			}
		}
		for name, w := range want {
			if n[name] != w {
				return fmt.Errorf("running: %v", n)
			}
		}
		return nil
	})
}

// waitFor waits until check returns nil, generously for a busy machine.
func waitFor(t *testing.T, what string, check func() error) {
	t.Helper()
	const limit = 90 * time.Second
	deadline := time.Now().Add(limit)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
