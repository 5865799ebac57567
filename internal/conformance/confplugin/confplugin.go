// Package confplugin is the plugin the conformance suite runs in every Go
// mode: the same code as a process, static, from a .so, or built for
// WebAssembly. It greets as plugins/hello and examples/stdio/hello.py do,
// with the two requests the suite needs besides (a retryable failure and a
// slow answer), which hello.py answers the same way. It registers itself as
// conf-a and conf-b, two plugins answering the same type.
package confplugin

import (
	"context"
	"errors"
	"sync"
	"time"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// Types the plugin answers and emits.
const (
	TypeGreet   = "com.example.greet.requested" // answered with TypeSent
	TypeSent    = "com.example.greet.sent"      // the greeting
	TypeWaiting = "com.example.greet.waiting"   // emitted when a request with Wait starts waiting
)

// Request is the data of TypeGreet.
type Request struct {
	Name string `json:"name"`
	// FailOnce fails the first delivery of the event (by its id) with a
	// retryable error; a redelivery is greeted.
	FailOnce bool `json:"fail_once,omitempty"`
	// Wait is how many seconds to wait before answering, after emitting
	// TypeWaiting.
	Wait float64 `json:"wait,omitempty"`
}

// Greeting is the data of TypeSent.
type Greeting struct {
	Text string `json:"text"`
}

func init() {
	pluginkit.Register("conf-a", func() *pluginkit.Plugin { return New("conf-a") })
	pluginkit.Register("conf-b", func() *pluginkit.Plugin { return New("conf-b") })
}

// New returns the plugin named name.
func New(name string) *pluginkit.Plugin {
	p := pluginkit.New(name, "1.0.0")
	var mu sync.Mutex
	failed := map[string]bool{} // ids of the events failed once
	p.HandleFunc(TypeGreet, func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		var r Request
		if err := e.DataAs(&r); err != nil || r.Name == "" {
			return nil, pluginkit.Permanent(errors.New(`data must be a JSON object with a string "name"`))
		}
		if r.FailOnce {
			mu.Lock()
			first := !failed[e.ID()]
			failed[e.ID()] = true
			mu.Unlock()
			if first {
				return nil, errors.New("failing once on purpose (fail_once); a redelivery will be greeted")
			}
		}
		if r.Wait > 0 {
			if err := pluginkit.Emit(ctx, pluginkit.NewEvent(TypeWaiting, r)); err != nil {
				return nil, err
			}
			time.Sleep(time.Duration(r.Wait * float64(time.Second)))
		}
		return pluginkit.NewEvent(TypeSent, Greeting{Text: "hello, " + r.Name}), nil
	})
	return p
}
