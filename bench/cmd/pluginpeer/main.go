// Command pluginpeer is the Plugbus side of the one-way benchmarks: a
// plugin-kit plugin that handles greet.TriggerType events and returns a
// small acknowledgement event, published as its result. Its name comes from
// PLUGBUS_BENCH_NAME (default benchsink), so that several can run side by
// side as different plugins.
package main

import (
	"context"
	"os"

	"github.com/plugbus/plugbus/bench/greet"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

func main() {
	name := os.Getenv("PLUGBUS_BENCH_NAME")
	if name == "" {
		name = "benchsink"
	}
	p := pluginkit.New(name, "0.1.0", pluginkit.WithEmits(greet.AckType))
	p.HandleFunc(greet.TriggerType, func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		var req greet.Request
		if err := e.DataAs(&req); err != nil {
			return nil, pluginkit.Permanent(err)
		}
		return pluginkit.NewEvent(greet.AckType, greet.Ack{Len: len(req.Name)}), nil
	})
	pluginkit.Main(p)
}
