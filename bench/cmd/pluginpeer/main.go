// Command pluginpeer is the Plugbus side of the one-way benchmarks: a
// plugin-kit plugin that handles greet.TriggerType events and returns a
// small acknowledgement event, published as its result. It also answers
// greet.GreetType requests as plugins/hello does. Its name comes from
// PLUGBUS_BENCH_NAME (default benchsink), so that several can run side by
// side as different plugins; PLUGBUS_BENCH_CONCURRENCY, when set, is its
// handlers' Concurrency. PLUGBUS_BENCH_CPUPROFILE, when set, is a file to
// write a CPU profile of the whole run to.
package main

import (
	"context"
	"log"
	"os"
	"runtime/pprof"
	"strconv"

	"github.com/plugbus/plugbus/bench/greet"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

const greetSent = "com.example.greet.sent"

func main() {
	name := os.Getenv("PLUGBUS_BENCH_NAME")
	if name == "" {
		name = "benchsink"
	}
	var opts []pluginkit.HandleOption
	if c, err := strconv.Atoi(os.Getenv("PLUGBUS_BENCH_CONCURRENCY")); err == nil && c > 0 {
		opts = append(opts, pluginkit.Concurrency(c))
	}
	p := pluginkit.New(name, "0.1.0", pluginkit.WithEmits(greet.AckType, greetSent))
	p.HandleFunc(greet.TriggerType, func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		var req greet.Request
		if err := e.DataAs(&req); err != nil {
			return nil, pluginkit.Permanent(err)
		}
		return pluginkit.NewEvent(greet.AckType, greet.Ack{Len: len(req.Name)}), nil
	}, opts...)
	p.HandleFunc(greet.GreetType, func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		var req greet.Request
		if err := e.DataAs(&req); err != nil {
			return nil, pluginkit.Permanent(err)
		}
		return pluginkit.NewEvent(greetSent, greet.Reply{Text: "hello, " + req.Name}), nil
	}, opts...)
	if path := os.Getenv("PLUGBUS_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	pluginkit.Main(p) // returns after a clean stop
}
