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
	"bytes"
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
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

func main() {
	url := flag.String("url", nats.DefaultURL, "NATS server URL")
	instances := flag.Int("instances", 100, "plugin instances to run, each on its own connection")
	types := flag.Int("types", 1, "event types each instance handles")
	plugins := flag.Int("plugins", 10, "distinct plugin names the instances are spread over")
	parallel := flag.Int("parallel", 16, "instances connecting at once")
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
	// Every peer hears every instance's started event; looking for its own
	// pid in the data before decoding spares it decoding the other
	// peers' events, work no plugin would do and that took about a
	// twentieth of the peers' CPU.
	ownPID := []byte(fmt.Sprintf(`"pid":%d`, os.Getpid()))
	if _, err := watch.Subscribe(subject, func(msg *nats.Msg) {
		if !bytes.Contains(msg.Data, ownPID) {
			return
		}
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
	// The instances connect a few at a time, as separate processes would,
	// rather than one after another: each connection waits for the
	// server's answer to its handshake, and 1,250 of those in a row, on
	// a server busy with the other peers' thousands, held a peer's last
	// instance back for most of the run.
	connecting := make(chan struct{}, *parallel)
	var wg sync.WaitGroup
	for i := *offset; i < *offset+*instances; i++ {
		p := pluginkit.New(fmt.Sprintf("scale-%d", i%*plugins), "1.0.0",
			pluginkit.WithDescription(fmt.Sprintf("scale instance %d", i)),
			pluginkit.WithLogger(quiet), pluginkit.WithConcurrency(1))
		for j := range *types {
			p.HandleFunc(fmt.Sprintf("com.example.scale.i%d.t%d", i, j), noop)
		}
		connecting <- struct{}{}
		wg.Go(func() {
			nc, err := nats.Connect(*url, nats.Name(fmt.Sprintf("scalepeer-%d", i)), nats.MaxReconnects(-1),
				nats.Timeout(20*time.Second)) // not 2 s: a loaded machine's server answers the handshake later
			<-connecting
			if err != nil {
				log.Fatalf("instance %d: %v", i, err)
			}
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
