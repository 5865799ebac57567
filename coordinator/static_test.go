package coordinator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator"
	"github.com/plugbus/plugbus/coordinator/coordinatortest"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
	_ "github.com/plugbus/plugbus/plugins/hello" // linked in: static: true runs it
)

// flakyStarts counts the starts of static-flaky, whose first start fails.
var flakyStarts atomic.Int32

func init() {
	// A plugin with a setting of its own, and one that panics on request.
	pluginkit.Register("static-echo", func() *pluginkit.Plugin {
		p := pluginkit.New("static-echo", "1.0.0")
		greeting := p.Flags().String("greeting", "hello", "what to say")
		p.Setup(func(p *pluginkit.Plugin) error {
			p.HandleFunc("com.example.echo.requested", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
				if string(e.Data()) == `"boom"` {
					panic("boom")
				}
				return pluginkit.NewEvent("com.example.echo.sent", *greeting+" "+string(e.Data())), nil
			})
			return nil
		})
		return p
	})
	// static-forger emits a type it did not declare before its result;
	// static-watcher observes the same type.
	pluginkit.Register("static-forger", func() *pluginkit.Plugin {
		p := pluginkit.New("static-forger", "1.0.0")
		p.Setup(func(p *pluginkit.Plugin) error {
			p.HandleFunc("com.example.forge.requested", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
				if err := pluginkit.Emit(ctx, pluginkit.NewEvent("com.example.forge.undeclared", nil)); err != nil {
					return nil, err
				}
				return pluginkit.NewEvent("com.example.forge.done", "done"), nil
			})
			return nil
		})
		return p
	})
	pluginkit.Register("static-watcher", func() *pluginkit.Plugin {
		p := pluginkit.New("static-watcher", "1.0.0")
		p.Setup(func(p *pluginkit.Plugin) error {
			p.HandleFunc("com.example.forge.requested", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
				return pluginkit.NewEvent("com.example.forge.seen", nil), nil
			}, pluginkit.ObserveOnly())
			return nil
		})
		return p
	})
	pluginkit.Register("static-flaky", func() *pluginkit.Plugin {
		p := pluginkit.New("static-flaky", "1.0.0")
		p.Setup(func(p *pluginkit.Plugin) error {
			if flakyStarts.Add(1) == 1 {
				return errors.New("the first start fails")
			}
			p.HandleFunc("com.example.flaky.requested", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
				return pluginkit.NewEvent("com.example.flaky.done", nil), nil
			})
			return nil
		})
		return p
	})
}

// Static plugins run in the coordinator's process with their settings from
// the configuration, answer as process plugins do, are listed with their
// mode, survive a handler's panic, and are restarted when they stop early.
func TestStaticPlugins(t *testing.T) {
	c, nc := runCoordinator(t,
		coordinator.PluginSpec{Name: "hello", Static: true, Replicas: 2},
		coordinator.PluginSpec{Name: "static-echo", Static: true, Settings: map[string]any{"greeting": "hi"}},
		coordinator.PluginSpec{Name: "static-flaky", Static: true},
	)
	res, err := coordinatortest.Invoke(t, nc, "com.example.greet.requested", map[string]string{"name": "Ada"}, 30*time.Second)
	if err != nil || !strings.Contains(string(res.Data()), "hello, Ada") {
		t.Fatalf("hello: got %v, %v; want its greeting", res, err)
	}
	res, err = coordinatortest.Invoke(t, nc, "com.example.echo.requested", "there", 30*time.Second)
	if err != nil || string(res.Data()) != `"hi \"there\""` {
		t.Fatalf("static-echo: got %v, %v; want the greeting from its settings", res, err)
	}
	_, err = coordinatortest.Invoke(t, nc, "com.example.echo.requested", "boom", 30*time.Second)
	var se *bus.ServiceError
	if !errors.As(err, &se) || !strings.Contains(se.Description, "panic") {
		t.Fatalf("a panicking handler: got %v, want an error reply naming the panic", err)
	}
	if res, err := coordinatortest.Invoke(t, nc, "com.example.echo.requested", "again", 30*time.Second); err != nil {
		t.Fatalf("after the panic: got %v, %v; want the plugin still answering", res, err)
	}
	if _, err := coordinatortest.Invoke(t, nc, "com.example.flaky.requested", nil, 30*time.Second); err != nil || flakyStarts.Load() < 2 {
		t.Fatalf("static-flaky: got %v after %d starts; want it restarted and answering", err, flakyStarts.Load())
	}
	waitFor(t, "hello's two static instances in the registry", 30*time.Second, func() error {
		for _, p := range c.Plugins() {
			if p.Name == "hello" {
				if p.Running != 2 || !slices.Equal(p.Modes, []string{bus.ModeStatic}) {
					return fmt.Errorf("hello: %d running, modes %v", p.Running, p.Modes)
				}
				return nil
			}
		}
		return errors.New("hello not listed")
	})
}

func TestStaticConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		spec coordinator.PluginSpec
		want []string
	}{
		{"not linked", coordinator.PluginSpec{Name: "nope", Static: true}, []string{`no plugin "nope" is linked`, "hello", "static-echo"}},
		{"unknown setting", coordinator.PluginSpec{Name: "static-echo", Static: true, Settings: map[string]any{"greetin": "hi"}}, []string{"settings.greetin", "greeting"}},
		{"bad value", coordinator.PluginSpec{Name: "static-echo", Static: true, Settings: map[string]any{"greeting": map[string]any{}}}, []string{"settings.greeting", "string, number or boolean"}},
		{"args", coordinator.PluginSpec{Name: "hello", Static: true, Args: []string{"-x"}}, []string{"args", "settings"}},
		{"two modes", coordinator.PluginSpec{Name: "hello", Static: true, Exec: "bin/hello"}, []string{"set one of them"}},
		{"settings for a program", coordinator.PluginSpec{Name: "hello", Exec: "bin/hello", Settings: map[string]any{"a": "b"}}, []string{"settings", "args"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := coordinator.Config{Plugins: []coordinator.PluginSpec{tt.spec}}
			cfg.SetDefaults()
			err := cfg.Validate()
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("got %v, want an error saying %q", err, w)
				}
			}
		})
	}
}

// TestSecureModeStaticPlugins runs static plugins under a coordinator in
// secure mode: each one's in-process connection authenticates with the
// plugin's own nkey, so the server holds it to its declaration as it would
// a process. An event fans out to two static plugins, a static plugin
// answers an invoke, and what one publishes beyond its declaration (a type
// it did not declare) reaches no one.
func TestSecureModeStaticPlugins(t *testing.T) {
	forge := "com.example.forge.requested"
	// Not durable: there a refused publish of the forger's is retried until
	// its deadline, as the stream never acknowledges it.
	d := startSecureWith(t, func(c *coordinator.Config) { c.Durable = false },
		coordinator.PluginSpec{Name: "static-forger", Static: true, Handles: []string{forge}, Answers: []string{forge}, Emits: []string{"com.example.forge.done"}},
		coordinator.PluginSpec{Name: "static-watcher", Static: true, Handles: []string{forge}, Emits: []string{"com.example.forge.seen"}},
		coordinator.PluginSpec{Name: "hello", Static: true, Handles: []string{"com.example.greet.requested"}, Answers: []string{"com.example.greet.requested"}, Emits: []string{"com.example.greet.sent"}},
	)
	d.waitInvoke() // hello, static, answers
	// The three start together, but hello may answer before the others
	// have subscribed.
	d.waitListed("static-forger", "static-watcher", "hello")

	// Each static plugin's connections authenticate as its own identity.
	var ids []struct {
		Name      string `json:"name"`
		PublicKey string `json:"public_key"`
	}
	b, err := os.ReadFile(filepath.Join(d.dataDir, "identities", "identities.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &ids); err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, id := range ids {
		keys[id.Name] = id.PublicKey
	}
	waitFor(t, "the static plugins' connections, each with its own key", 60*time.Second, func() error {
		connz, err := coordinator.Connz(d.c)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, ci := range connz.Conns {
			if want, ok := keys[ci.Name]; ok {
				if ci.AuthorizedUser != want {
					t.Fatalf("%s connected as %s, want its own key %s", ci.Name, ci.AuthorizedUser, want)
				}
				seen[ci.Name] = true
			}
		}
		for _, name := range []string{"static-forger", "static-watcher", "hello"} {
			if !seen[name] {
				return fmt.Errorf("no connection of %s yet (%d connections)", name, len(connz.Conns))
			}
		}
		return nil
	})

	admin := d.mustDial("admin", d.seed("admin"))
	seen, err := admin.nc.SubscribeSync("plugbus.events.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Invoke: static-forger answers; its undeclared event goes nowhere.
	// A poll may list the forger between its observing endpoint and its
	// answering one, so the invoke is retried while nothing answers the
	// type (404).
	waitFor(t, "static-forger's answer", 60*time.Second, func() error {
		status, body := d.call("POST", "/v1/invoke/"+forge, testHTTPToken, "x")
		if status == http.StatusNotFound {
			return fmt.Errorf("%d %s", status, body)
		}
		if status != http.StatusOK || !strings.Contains(string(body), "com.example.forge.done") {
			t.Fatalf("invoke static-forger: %d %s", status, body)
		}
		return nil
	})
	// Fan-out: one event reaches both static plugins, and each publishes
	// its result under its own name.
	req, _ := http.NewRequest("POST", d.api+"/v1/events", strings.NewReader(`{"specversion":"1.0","id":"f1","source":"t","type":"`+forge+`","datacontenttype":"application/json","data":"y"}`))
	req.Header.Set("Content-Type", "application/cloudevents+json")
	req.Header.Set("Authorization", "Bearer "+testHTTPToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish: %s", resp.Status)
	}
	want := map[string]bool{
		"plugbus.events.static-forger.com.example.forge.done":  false,
		"plugbus.events.static-watcher.com.example.forge.seen": false,
	}
	for missing := len(want); missing > 0; {
		m, err := seen.NextMsg(30 * time.Second)
		if err != nil {
			t.Fatalf("waiting for both static plugins' results: %v (got %v)", err, want)
		}
		if strings.Contains(m.Subject, "undeclared") {
			t.Fatalf("a static plugin published a type it did not declare: %s", m.Subject)
		}
		if done, ok := want[m.Subject]; ok && !done {
			want[m.Subject] = true
			missing--
		}
	}
}
