package pluginkit_test

import (
	"context"
	"fmt"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
	"github.com/plugbus/plugbus/plugin-kit/kittest"
)

// A plugin is a name, a version and handlers; kittest runs it on a real
// in-process NATS server here, where a program would call pluginkit.Main.
func ExampleNew() {
	p := pluginkit.New("hello", "0.1.0", pluginkit.WithDescription("says hello"))
	p.HandleFunc("com.example.greet.requested", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		return pluginkit.NewEvent("com.example.greet.sent", map[string]string{"text": "hello"}), nil
	})

	h, err := kittest.New(p)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close()
	fmt.Println(p.Name(), p.Version(), p.ID() != "")
	// Output: hello 0.1.0 true
}

func ExamplePlugin_HandleFunc() {
	p := pluginkit.New("hello", "0.1.0")
	p.HandleFunc("com.example.greet.requested", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		var req struct{ Name string }
		if err := e.DataAs(&req); err != nil {
			return nil, pluginkit.Permanent(err) // bad data: an error reply, never retried
		}
		fmt.Printf("%s asks to greet %s\n", pluginkit.Producer(ctx), req.Name)
		return pluginkit.NewEvent("com.example.greet.sent", map[string]string{"text": "hello, " + req.Name}), nil
	})

	h, err := kittest.New(p)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close()
	reply, err := h.Request(pluginkit.NewEvent("com.example.greet.requested", map[string]string{"name": "Ada"}))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(reply.Type(), reply.Source(), string(reply.Data()))
	// Output:
	// kittest asks to greet Ada
	// com.example.greet.sent urn:plugbus:hello {"text":"hello, Ada"}
}
