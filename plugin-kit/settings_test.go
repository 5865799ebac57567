package pluginkit_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/plugbus/plugbus/bus/bustest"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
	"github.com/plugbus/plugbus/plugin-kit/kittest"
)

// A plugin whose handled types come from a setting. It defines the flag
// on its own flag set, binds it to an environment variable, and registers
// a handler per type in Setup, once the flag has its value. Its program's
// main would be pluginkit.Main(p), which reads -types or GREETER_TYPES;
// here the flag is set as a host running the plugin in-process sets it from
// its configuration, and kittest runs the plugin.
func ExamplePlugin_Setup() {
	p := pluginkit.New("greeter", "1.0.0")
	types := p.Flags().String("types", "com.example.greet.requested", "event types to greet, comma-separated")
	p.BindEnv("types", "GREETER_TYPES")
	p.Setup(func(p *pluginkit.Plugin) error {
		if *types == "" {
			return errors.New("-types: no event type") // Main exits with status 2
		}
		for _, t := range strings.Split(*types, ",") {
			p.HandleFunc(t, func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
				return pluginkit.NewEvent("com.example.greet.sent", "hello from "+e.Type()), nil
			})
		}
		return nil
	})

	if err := p.Flags().Set("types", "com.example.greet.requested,com.example.wave.requested"); err != nil {
		fmt.Println(err)
		return
	}
	h, err := kittest.New(p)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close()
	reply, err := h.Request(pluginkit.NewEvent("com.example.wave.requested", nil))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(reply.Data()))
	// Output: "hello from com.example.wave.requested"
}

// The test plugin's -types flag falls back to TESTPLUGIN_TYPES, and to its
// default without it; its setup registers a handler per type before the
// plugin announces itself.
func TestProcessSetup(t *testing.T) {
	t.Parallel()
	bin := build(t, testpluginPkg)
	s := bustest.NewServer(t)
	nc := bustest.Connect(t, s)
	for _, tt := range []struct {
		plugin string
		env    []string
		want   []string
	}{
		{"configured", []string{"TESTPLUGIN_TYPES=com.example.a.done,com.example.b.>"}, []string{"com.example.a.done", "com.example.b.>"}},
		{"defaulted", nil, []string{"com.example.work.requested"}},
	} {
		started := watchStarted(t, nc, tt.plugin)
		inst := awaitStarted(t, started, startProc(t, bin, s.ClientURL(), append(tt.env, "TESTPLUGIN_NAME="+tt.plugin)...))
		if !slices.Equal(inst.Handles, tt.want) {
			t.Errorf("%s handles %q, want %q", tt.plugin, inst.Handles, tt.want)
		}
	}
}

// Bad settings stop the plugin at start with exit status 2 and a message
// naming the setting; -h lists the bound variables.
func TestProcessBadSettings(t *testing.T) {
	t.Parallel()
	bin := build(t, testpluginPkg)
	tests := []struct {
		name     string
		args     []string
		env      []string
		wantCode int
		want     []string // in the output
		notWant  string
	}{
		{name: "help", args: []string{"-h"}, want: []string{"-types", "[TESTPLUGIN_TYPES]", "-sleep", "[TESTPLUGIN_SLEEP]", "[PLUGBUS_URL]"}},
		{name: "invalid pattern", args: []string{"-types", "com..bad"}, wantCode: 2, want: []string{"worker: pluginkit: Handle", "com..bad"}},
		{name: "duplicate pattern", env: []string{"TESTPLUGIN_TYPES=com.example.a,com.example.a"}, wantCode: 2, want: []string{"already registered"}},
		{name: "setup error", args: []string{"-types="}, wantCode: 2, want: []string{"worker: -types: no type pattern"}},
		{name: "bad variable", env: []string{"TESTPLUGIN_SLEEP=soon"}, wantCode: 2, want: []string{`worker: environment variable TESTPLUGIN_SLEEP="soon" (for -sleep)`}},
		{name: "flag wins over a bad variable", args: []string{"-types", "com..bad", "-sleep", "1s"}, env: []string{"TESTPLUGIN_SLEEP=soon"}, wantCode: 2, want: []string{"com..bad"}, notWant: "TESTPLUGIN_SLEEP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*testTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, tt.args...)
			// Nothing listens there: a plugin that got past its settings
			// would keep trying to connect until the context kills it.
			cmd.Env = append(os.Environ(), append(tt.env, "PLUGBUS_URL=nats://127.0.0.1:1")...)
			out, err := cmd.CombinedOutput()
			code := cmd.ProcessState.ExitCode()
			if ctx.Err() != nil || code != tt.wantCode {
				t.Fatalf("exit code %d (%v), want %d; output:\n%s", code, err, tt.wantCode, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output does not say %q:\n%s", w, out)
				}
			}
			if tt.notWant != "" && strings.Contains(string(out), tt.notWant) {
				t.Errorf("output says %q:\n%s", tt.notWant, out)
			}
		})
	}
}
