// Package confplugin is the plugin the conformance suite runs in every
// mode: the same code as a process, static, or from a .so. It registers
// itself as conf-a and conf-b, two plugins handling the same types.
package confplugin

import (
	"context"
	"errors"
	"os"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// Types the plugin handles.
const (
	TypeEcho = "com.example.conf.echo" // answered: the data back, with who answered
	TypeFail = "com.example.conf.fail" // answered: a permanent error
)

// Answer is the data of the answer to TypeEcho.
type Answer struct {
	Plugin   string `json:"plugin"`
	Instance string `json:"instance"` // the micro instance id
	PID      int    `json:"pid"`
}

func init() {
	pluginkit.Register("conf-a", func() *pluginkit.Plugin { return New("conf-a") })
	pluginkit.Register("conf-b", func() *pluginkit.Plugin { return New("conf-b") })
}

// New returns the plugin named name.
func New(name string) *pluginkit.Plugin {
	p := pluginkit.New(name, "1.0.0")
	p.HandleFunc(TypeEcho, func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		return pluginkit.NewEvent("com.example.conf.echoed", Answer{Plugin: name, Instance: p.ID(), PID: os.Getpid()}), nil
	})
	p.HandleFunc(TypeFail, func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		return nil, pluginkit.Permanent(errors.New("failed on purpose"))
	})
	return p
}
