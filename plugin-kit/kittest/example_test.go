package kittest_test

import (
	"context"
	"fmt"
	"strings"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
	"github.com/plugbus/plugbus/plugin-kit/kittest"
)

// In a test, kittest.Start(t, p) does the same and closes the harness when
// the test ends.
func Example() {
	p := pluginkit.New("shout", "1.0.0")
	p.HandleFunc("com.example.text.written", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		var text string
		if err := e.DataAs(&text); err != nil {
			return nil, pluginkit.Permanent(err)
		}
		return pluginkit.NewEvent("com.example.text.shouted", strings.ToUpper(text)), nil
	})

	h, err := kittest.New(p)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close()

	in := pluginkit.NewEvent("com.example.text.written", "hi there")
	if err := h.Publish(in); err != nil {
		fmt.Println(err)
		return
	}
	out, err := h.Next("com.example.text.shouted")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(out.Data()), out.Extensions()["causeid"] == in.ID())
	// Output: "HI THERE" true
}
