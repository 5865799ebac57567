package pluginkit_test

import (
	"slices"
	"strings"
	"testing"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

func TestRegister(t *testing.T) {
	newPlugin := func() *pluginkit.Plugin { return pluginkit.New("registered-test", "1.0.0") }
	pluginkit.Register("registered-test", newPlugin)
	got, ok := pluginkit.Lookup("registered-test")
	if !ok || got().Name() != "registered-test" {
		t.Fatalf("Lookup: found %v; want the constructor of registered-test", ok)
	}
	if a, b := got(), got(); a == b {
		t.Error("the constructor returned the same plugin twice; each instance needs its own")
	}
	if !slices.Contains(pluginkit.Registered(), "registered-test") {
		t.Errorf("Registered() = %q, want it to list registered-test", pluginkit.Registered())
	}
	if _, ok := pluginkit.Lookup("no-such-plugin"); ok {
		t.Error("Lookup found a plugin nobody registered")
	}
	for _, tt := range []struct {
		name string
		new  func() *pluginkit.Plugin
		want string
	}{
		{"registered-test", newPlugin, "already registered"},
		{"a.b", newPlugin, "a.b"},
		{"nil-constructor", nil, "nil constructor"},
	} {
		msg := func() (msg string) {
			defer func() { msg, _ = recover().(string) }()
			pluginkit.Register(tt.name, tt.new)
			return ""
		}()
		if !strings.Contains(msg, tt.want) {
			t.Errorf("Register(%q) panicked with %q, want a panic saying %q", tt.name, msg, tt.want)
		}
	}
}
