// Package hello answers com.example.greet.requested events with a greeting.
package hello

import (
	"context"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

func init() { pluginkit.Register("hello", New) } // for static mode

// New returns the hello plugin.
func New() *pluginkit.Plugin {
	p := pluginkit.New("hello", "0.1.0", pluginkit.WithEmits("com.example.greet.sent"))
	p.HandleFunc("com.example.greet.requested", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		var req struct{ Name string } // json matches "name" case-insensitively
		if err := e.DataAs(&req); err != nil {
			return nil, pluginkit.Permanent(err) // bad data: never retried
		}
		return pluginkit.NewEvent("com.example.greet.sent", map[string]string{"text": "hello, " + req.Name}), nil
	})
	return p
}
