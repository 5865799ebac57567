package coordinator_test

import (
	"context"
	"errors"
	"fmt"
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
