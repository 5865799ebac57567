// Command greeter is a plugin-kit plugin built with -buildmode=plugin for
// the loader's tests: it exports New, which the loader calls.
package main

import (
	"context"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// New returns the greeter plugin.
func New() *pluginkit.Plugin {
	p := pluginkit.New("greeter", "1.0.0")
	p.HandleFunc("com.example.greet.requested", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		var req struct{ Name string }
		if err := e.DataAs(&req); err != nil {
			return nil, pluginkit.Permanent(err)
		}
		return pluginkit.NewEvent("com.example.greet.sent", map[string]string{"text": "hello from a .so, " + req.Name}), nil
	})
	return p
}

func main() {}
