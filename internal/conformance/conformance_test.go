package conformance_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator"
	"github.com/plugbus/plugbus/coordinator/coordinatortest"
	"github.com/plugbus/plugbus/internal/conformance/confplugin"
	"github.com/plugbus/plugbus/internal/proctest"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// A mode is a row: how to write the spec of a conformance plugin.
type mode struct {
	name string
	spec func(t *testing.T, plugin string, replicas int) coordinator.PluginSpec
}

func modes(t *testing.T) []mode {
	ms := []mode{
		{bus.ModeProcess, func(t *testing.T, plugin string, replicas int) coordinator.PluginSpec {
			return coordinator.PluginSpec{Name: plugin, Exec: processBinary(t), Env: []string{"CONFORMANCE_NAME=" + plugin}, Replicas: replicas}
		}},
		{bus.ModeStatic, func(t *testing.T, plugin string, replicas int) coordinator.PluginSpec {
			return coordinator.PluginSpec{Name: plugin, Static: true, Replicas: replicas}
		}},
	}
	if soRow {
		ms = append(ms, mode{bus.ModeSO, func(t *testing.T, plugin string, replicas int) coordinator.PluginSpec {
			return coordinator.PluginSpec{Name: plugin, So: buildSO(t), Replicas: replicas}
		}})
	}
	return ms
}

var binary string

func processBinary(t *testing.T) string {
	if binary == "" {
		binary = proctest.Build(t, "./confplugin/cmd/confplugin")
	}
	return binary
}

func TestConformance(t *testing.T) {
	for _, m := range modes(t) {
		t.Run(m.name, func(t *testing.T) {
			c, nc := run(t, m.spec(t, "conf-a", 2), m.spec(t, "conf-b", 1))
			waitFor(t, "conf-a's 2 and conf-b's instance in mode "+m.name, func() error {
				n := map[string]int{}
				for _, p := range c.Plugins() {
					for _, in := range p.Instances {
						if in.State == "running" && in.Mode == m.name {
							n[p.Name]++
						}
					}
				}
				if n["conf-a"] != 2 || n["conf-b"] != 1 {
					return fmt.Errorf("running: %v", n)
				}
				return nil
			})

			t.Run("fan-out to two plugins", func(t *testing.T) {
				sub, err := nc.SubscribeSync(bus.DefaultPrefix + ".events.*.com.example.conf.echoed")
				if err == nil {
					err = nc.Flush()
				}
				if err != nil {
					t.Fatal(err)
				}
				defer sub.Unsubscribe()
				if err := bus.Publish(nc, bus.DefaultPrefix, "test", pluginkit.NewEvent(confplugin.TypeEcho, nil)); err != nil {
					t.Fatal(err)
				}
				got := map[string]int{}
				for range 2 {
					msg, err := sub.NextMsg(10 * time.Second)
					if err != nil {
						t.Fatalf("results so far %v: %v", got, err)
					}
					var a confplugin.Answer
					e, err := bus.Decode(msg)
					if err == nil {
						err = e.DataAs(&a)
					}
					if err != nil {
						t.Fatal(err)
					}
					got[a.Plugin]++
				}
				if got["conf-a"] != 1 || got["conf-b"] != 1 {
					t.Errorf("one event reached %v; want each plugin once", got)
				}
			})

			t.Run("load balancing across instances", func(t *testing.T) {
				instances := map[string]int{}
				for i := 0; i < 40 && len(instances) < 2; i++ {
					a := invokeEcho(t, nc, "conf-a")
					if a.Plugin != "conf-a" {
						t.Fatalf("answered by %s, want conf-a", a.Plugin)
					}
					instances[a.Instance]++
				}
				if len(instances) != 2 {
					t.Errorf("40 requests reached instances %v; want both of conf-a's", instances)
				}
			})

			t.Run("invoke with an error", func(t *testing.T) {
				_, err := request(nc, pluginkit.NewEvent(confplugin.TypeFail, nil), "conf-b")
				var se *bus.ServiceError
				if !errors.As(err, &se) || se.Code != bus.CodePermanent {
					t.Fatalf("got %v, want a permanent error answer", err)
				}
			})

			t.Run("an unanswered type", func(t *testing.T) {
				_, err := request(nc, pluginkit.NewEvent("com.example.conf.nobody", nil), "")
				if !errors.Is(err, bus.ErrNoResponders) {
					t.Fatalf("got %v, want no responders", err)
				}
			})
		})
	}
}

// invokeEcho asks plugin for TypeEcho and returns the answer.
func invokeEcho(t *testing.T, nc *nats.Conn, plugin string) confplugin.Answer {
	t.Helper()
	res, err := request(nc, pluginkit.NewEvent(confplugin.TypeEcho, nil), plugin)
	if err != nil {
		t.Fatal(err)
	}
	var a confplugin.Answer
	if err := res.DataAs(&a); err != nil {
		t.Fatal(err)
	}
	return a
}

// request invokes e, naming the plugin that is to answer when two do.
func request(nc *nats.Conn, e *pluginkit.Event, plugin string) (*pluginkit.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if plugin != "" {
		return bus.Request(ctx, nc, bus.DefaultPrefix, "test", e, bus.AnsweredBy(plugin))
	}
	return bus.Request(ctx, nc, bus.DefaultPrefix, "test", e)
}

// run starts a coordinator running the plugins, on its embedded server,
// and connects to it.
func run(t *testing.T, plugins ...coordinator.PluginSpec) (*coordinator.Coordinator, *nats.Conn) {
	t.Helper()
	c := coordinatortest.Start(t, coordinator.Config{Plugins: plugins})
	return c, coordinatortest.Connect(t, c)
}

func waitFor(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
