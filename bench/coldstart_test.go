package bench_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/plugbus/plugbus/bench/greet"
	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// BenchmarkColdStart measures how long a fresh plugin process takes from
// its start to its first answer. Stopping it is outside the timer.
func BenchmarkColdStart(b *testing.B) {
	payload := greet.Payload(128)
	b.Run("stdio-json", func(b *testing.B) {
		coldStart(b, func(b *testing.B) func() {
			c := startStdio(b)
			if err := c.call(payload); err != nil {
				b.Fatal(err)
			}
			return func() { c.close(b) }
		})
	})
	b.Run("goplugin-grpc", func(b *testing.B) {
		coldStart(b, func(b *testing.B) func() {
			client, g := startGoPlugin(b, plugin.ProtocolGRPC)
			if _, err := g.Greet(payload); err != nil {
				b.Fatal(err)
			}
			return client.Kill
		})
	})
	b.Run("plugbus", func(b *testing.B) {
		// The bus is up before the plugin starts, as the coordinator's is.
		s := bustest.NewServer(b)
		url := s.ClientURL()
		nc := connect(b, url)
		// A plugin says it is ready with its started event, sent once it
		// has subscribed, as go-plugin's child does with its handshake
		// line: the request goes when that event comes, as a caller the
		// coordinator told of the plugin would send it. (Asking every
		// millisecond until it answered, as this did before, timed the
		// polling too: half a millisecond on average.)
		startedSubject, err := bus.EventSubject(bus.DefaultPrefix, "hello", bus.TypePluginStarted)
		if err != nil {
			b.Fatal(err)
		}
		started, err := nc.SubscribeSync(startedSubject)
		if err != nil {
			b.Fatal(err)
		}
		coldStart(b, func(b *testing.B) func() {
			p := startProc(b, []string{"PLUGBUS_URL=" + url, "PLUGBUS_LOG_LEVEL=warn"}, "", bin.hello)
			if _, err := started.NextMsg(10 * time.Second); err != nil {
				b.Fatalf("no started event from hello: %v; its standard error:\n%s", err, p.stderr)
			}
			// No responders comes back at once should the request still
			// beat the subscriptions: ask again then.
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				reply, err := bus.Request(ctx, nc, bus.DefaultPrefix, "bench", pluginkit.NewEvent(greet.GreetType, json.RawMessage(payload)))
				cancel()
				if errors.Is(err, bus.ErrNoResponders) {
					time.Sleep(time.Millisecond)
					continue
				}
				if err != nil || reply == nil {
					b.Fatalf("first request: %v, %v; plugin's standard error:\n%s", reply, err, p.stderr)
				}
				break
			}
			return func() { p.stop(b) }
		})
	})
}

// coldStart runs start b.N times, timing each, and reports the median and
// 99th percentile; the function start returns stops the plugin, untimed.
func coldStart(b *testing.B, start func(*testing.B) (stop func())) {
	ds := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range b.N {
		t := time.Now()
		stop := start(b)
		ds[i] = time.Since(t)
		b.StopTimer()
		stop()
		b.StartTimer()
	}
	b.StopTimer()
	reportLatencies(b, ds, "ms")
}
