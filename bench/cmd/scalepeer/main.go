// Command scalepeer runs many plugin-kit plugin instances in one process,
// each on its own NATS connection, for the scale benchmark: how long a
// coordinator takes to list them all. Instance i (counting from -offset) is
// an instance of plugin scale-<i mod -plugins> and handles -types event
// types of its own (com.example.scale.i<i>.t<j>), so that the registry
// holds instances × types distinct types. Handlers do nothing.
//
// It prints "ready" once it has heard every instance's started lifecycle
// event on the bus, and stops every instance on SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

func main() {
	url := flag.String("url", nats.DefaultURL, "NATS server URL")
	instances := flag.Int("instances", 100, "plugin instances to run, each on its own connection")
	types := flag.Int("types", 1, "event types each instance handles")
	plugins := flag.Int("plugins", 10, "distinct plugin names the instances are spread over")
	offset := flag.Int("offset", 0, "number of the first instance, so that several processes run distinct ones")
	flag.Parse()
	log.SetPrefix("scalepeer: ")

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	// Readiness from the bus itself: every instance announces itself after
	// its micro service and endpoints exist.
	watch, err := nats.Connect(*url, nats.Name("scalepeer-watch"))
	if err != nil {
		log.Fatal(err)
	}
	defer watch.Close()
	subject, err := bus.TypeSubject(bus.DefaultPrefix, bus.TypePluginStarted)
	if err != nil {
		log.Fatal(err)
	}
	started := make(chan struct{}, *instances)
	if _, err := watch.Subscribe(subject, func(msg *nats.Msg) {
		var in bus.Instance
		if e, err := bus.Decode(msg); err == nil && e.DataAs(&in) == nil && in.PID == os.Getpid() {
			select {
			case started <- struct{}{}:
			default: // announced again after a reconnect
			}
		}
	}); err != nil {
		log.Fatal(err)
	}
	if err := watch.Flush(); err != nil {
		log.Fatal(err)
	}

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	noop := func(context.Context, pluginkit.Event) (*pluginkit.Event, error) { return nil, nil }
	var wg sync.WaitGroup
	for i := *offset; i < *offset+*instances; i++ {
		nc, err := nats.Connect(*url, nats.Name(fmt.Sprintf("scalepeer-%d", i)), nats.MaxReconnects(-1))
		if err != nil {
			log.Fatalf("instance %d: %v", i, err)
		}
		p := pluginkit.New(fmt.Sprintf("scale-%d", i%*plugins), "1.0.0",
			pluginkit.WithDescription(fmt.Sprintf("scale instance %d", i)),
			pluginkit.WithLogger(quiet), pluginkit.WithConcurrency(1))
		for j := range *types {
			p.HandleFunc(fmt.Sprintf("com.example.scale.i%d.t%d", i, j), noop)
		}
		wg.Go(func() {
			defer nc.Close()
			if err := p.Serve(ctx, nc); err != nil {
				log.Printf("instance %d: %v", i, err)
			}
		})
	}
	for range *instances {
		select {
		case <-started:
		case <-ctx.Done():
			wg.Wait()
			return
		}
	}
	fmt.Println("ready")
	wg.Wait()
}
