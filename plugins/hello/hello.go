// Package hello answers com.example.greet.requested events with a greeting.
package hello

import (
	"context"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// Request is the data of com.example.greet.requested.
type Request struct {
	Name string `json:"name"`
}

// Greeting is the data of com.example.greet.sent, the answer.
type Greeting struct {
	Text string `json:"text"`
}

func init() { pluginkit.Register("hello", New) } // for static mode

// New returns the hello plugin.
func New() *pluginkit.Plugin {
	p := pluginkit.New("hello", "0.1.0", pluginkit.WithDescription("answers greeting requests"))
	pluginkit.Answer(p, "com.example.greet.requested", "com.example.greet.sent", func(ctx context.Context, req Request) (Greeting, error) {
		return Greeting{Text: "hello, " + req.Name}, nil
	})
	return p
}
