package pluginkit_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// The benchmarks compare plugin-kit with raw nats.go doing the same work,
// side by side in one Benchmark function so that ratios come from one run.
// Each runs an embedded server on loopback TCP with separate connections
// for the publisher, the plugin and the result subscriber; all of it is in
// this process, so cpu-ns/op is the CPU time of the whole path (server
// included) per event, which the load of other processes on the machine
// disturbs less than the wall-clock figures.
//
// The publisher keeps at most benchWindow events in flight: with all b.N
// published at once, the server stalls the publisher behind the slowest
// consumer and the figures measure those stalls instead of the work.

const (
	benchPlugin    = "bench"
	benchProducer  = "benchpub"
	benchTrigger   = "com.example.bench.requested"
	benchResult    = "com.example.bench.done"
	benchWindow    = 4096 // events in flight at most
	benchMaxWait   = time.Minute
	benchDataBytes = 128
)

var benchData = bytes.Repeat([]byte("x"), benchDataBytes)

// benchConns are the three connections of a benchmark.
type benchConns struct {
	pub, plugin, results *nats.Conn
}

func newBenchConns(b *testing.B) benchConns {
	b.Helper()
	s := bustest.NewServer(b)
	return benchConns{pub: bustest.Connect(b, s), plugin: bustest.Connect(b, s), results: bustest.Connect(b, s)}
}

// benchMsgs holds the trigger and result messages with the ce- headers
// plugin-kit would send, precomputed.
type benchMsgs struct {
	trigger       *nats.Msg // binary mode, ce- headers
	plainTrigger  *nats.Msg // the same data, no headers
	resultHeader  nats.Header
	resultSubject string
	request       *nats.Msg // the trigger as a request, on its invoke subject
}

func newBenchMsgs(b *testing.B) benchMsgs {
	b.Helper()
	in := pluginkit.NewEvent(benchTrigger, benchData)
	in.SetSource(bus.Source(benchProducer))
	trigger := &nats.Msg{Subject: eventSubject(benchProducer, benchTrigger)}
	if err := bus.Encode(in, trigger); err != nil {
		b.Fatal(err)
	}
	// What plugin-kit publishes for a handler's result.
	out := pluginkit.NewEvent(benchResult, benchData)
	out.SetSource(bus.Source(benchPlugin))
	out.SetExtension(bus.ExtCauseID, in.ID())
	result := &nats.Msg{}
	if err := bus.Encode(out, result); err != nil {
		b.Fatal(err)
	}
	return benchMsgs{
		trigger:       trigger,
		plainTrigger:  &nats.Msg{Subject: trigger.Subject, Data: benchData},
		resultHeader:  result.Header,
		resultSubject: eventSubject(benchPlugin, benchResult),
		request:       &nats.Msg{Subject: invokeSubject(benchProducer, benchTrigger), Header: trigger.Header, Data: trigger.Data},
	}
}

// benchPluginKit serves a plugin whose handler returns a small event, on
// conns.plugin, until the benchmark ends.
func benchPluginKit(b *testing.B, conns benchConns, opts ...pluginkit.HandleOption) {
	b.Helper()
	p := newPlugin(benchPlugin, "1.0.0")
	p.HandleFunc(benchTrigger, func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		return pluginkit.NewEvent(benchResult, benchData), nil
	}, opts...)
	started, err := conns.results.SubscribeSync(lifecycleSubject(benchPlugin, bus.TypePluginStarted))
	if err != nil {
		b.Fatal(err)
	}
	if err := conns.results.Flush(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, conns.plugin) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	if _, err := started.NextMsg(testTimeout); err != nil {
		b.Fatalf("plugin did not start: %v", err)
	}
	_ = started.Unsubscribe()
}

// benchRaw subscribes respond to the trigger subject on conns.plugin, in
// the plugin's queue group as plugin-kit does.
func benchRaw(b *testing.B, conns benchConns, msgs benchMsgs, respond nats.MsgHandler) {
	b.Helper()
	if _, err := conns.plugin.QueueSubscribe(bus.DefaultPrefix+".events.*."+benchTrigger, benchPlugin, respond); err != nil {
		b.Fatal(err)
	}
	if err := conns.plugin.Flush(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkOneWay measures events per second end to end: the publisher
// publishes b.N events, the plugin handles each and publishes a result, and
// the benchmark ends when a separate subscriber has received b.N results.
func BenchmarkOneWay(b *testing.B) {
	for _, bc := range []struct {
		name    string
		trigger func(benchMsgs) *nats.Msg
		setup   func(*testing.B, benchConns, benchMsgs)
	}{
		{
			name:    "raw",
			trigger: func(m benchMsgs) *nats.Msg { return m.plainTrigger },
			setup: func(b *testing.B, c benchConns, m benchMsgs) {
				benchRaw(b, c, m, func(msg *nats.Msg) { _ = c.plugin.Publish(m.resultSubject, benchData) })
			},
		},
		{
			name:    "raw-ce-headers",
			trigger: func(m benchMsgs) *nats.Msg { return m.trigger },
			setup: func(b *testing.B, c benchConns, m benchMsgs) {
				benchRaw(b, c, m, func(msg *nats.Msg) {
					_ = c.plugin.PublishMsg(&nats.Msg{Subject: m.resultSubject, Header: m.resultHeader, Data: benchData})
				})
			},
		},
		{
			name:    "pluginkit",
			trigger: func(m benchMsgs) *nats.Msg { return m.trigger },
			setup:   func(b *testing.B, c benchConns, m benchMsgs) { benchPluginKit(b, c) },
		},
		{
			// The same handler with Concurrency(1): handled on the
			// subscription's goroutine instead of a new one per event.
			name:    "pluginkit-c1",
			trigger: func(m benchMsgs) *nats.Msg { return m.trigger },
			setup:   func(b *testing.B, c benchConns, m benchMsgs) { benchPluginKit(b, c, pluginkit.Concurrency(1)) },
		},
	} {
		b.Run(bc.name, func(b *testing.B) {
			conns := newBenchConns(b)
			msgs := newBenchMsgs(b)
			var received atomic.Int64
			all := make(chan struct{})
			room := make(chan struct{}, 1) // a result came in: there may be room in the window
			want := int64(b.N)
			sub, err := conns.results.Subscribe(msgs.resultSubject, func(*nats.Msg) {
				n := received.Add(1)
				if n == want {
					close(all)
				}
				select {
				case room <- struct{}{}:
				default:
				}
			})
			if err != nil {
				b.Fatal(err)
			}
			if err := sub.SetPendingLimits(-1, -1); err != nil {
				b.Fatal(err)
			}
			if err := conns.results.Flush(); err != nil {
				b.Fatal(err)
			}
			bc.setup(b, conns, msgs)
			trigger := bc.trigger(msgs)

			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime(b)
			for i := range b.N {
				for int64(i)-received.Load() > benchWindow {
					<-room
				}
				if err := conns.pub.PublishMsg(trigger); err != nil {
					b.Fatal(err)
				}
			}
			if err := conns.pub.Flush(); err != nil {
				b.Fatal(err)
			}
			select {
			case <-all:
			case <-time.After(benchMaxWait):
				b.Fatalf("received %d results of %d within %v", received.Load(), b.N, benchMaxWait)
			}
			elapsed, cpu := time.Since(start), cpuTime(b)-cpu0
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime returns the CPU time the process has used so far, user and
// system: the benchmarks report it per event, as it depends less than wall
// time on what else the machine runs.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRequestReply measures sequential request/reply latency with
// 128 B of data each way, reporting its median and 99th percentile.
func BenchmarkRequestReply(b *testing.B) {
	for _, bc := range []struct {
		name  string
		setup func(*testing.B, benchConns, benchMsgs) func() error
	}{
		{
			name: "raw",
			setup: func(b *testing.B, c benchConns, m benchMsgs) func() error {
				benchRaw(b, c, m, func(msg *nats.Msg) { _ = msg.Respond(benchData) })
				return func() error {
					_, err := c.pub.Request(m.plainTrigger.Subject, benchData, testTimeout)
					return err
				}
			},
		},
		{
			name: "raw-ce-headers",
			setup: func(b *testing.B, c benchConns, m benchMsgs) func() error {
				benchRaw(b, c, m, func(msg *nats.Msg) {
					_ = msg.RespondMsg(&nats.Msg{Header: m.resultHeader, Data: benchData})
				})
				return func() error {
					_, err := c.pub.RequestMsg(m.trigger, testTimeout)
					return err
				}
			},
		},
		{
			name: "pluginkit",
			setup: func(b *testing.B, c benchConns, m benchMsgs) func() error {
				benchPluginKit(b, c)
				e := pluginkit.NewEvent(benchTrigger, benchData)
				return func() error {
					_, err := bus.Request(context.Background(), c.pub, bus.DefaultPrefix, benchProducer, e)
					return err
				}
			},
		},
		{
			// The plugin side alone: the request is the precomputed
			// message of raw-ce-headers on the invoke subject, sent with
			// nats.go's Request.
			name: "pluginkit-natsreq",
			setup: func(b *testing.B, c benchConns, m benchMsgs) func() error {
				benchPluginKit(b, c)
				return func() error {
					reply, err := c.pub.RequestMsg(m.request, testTimeout)
					if err == nil && reply.Header.Get("Nats-Service-Error-Code") != "" {
						err = errors.New(reply.Header.Get("Nats-Service-Error"))
					}
					return err
				}
			},
		},
		{
			name: "pluginkit-c1",
			setup: func(b *testing.B, c benchConns, m benchMsgs) func() error {
				benchPluginKit(b, c, pluginkit.Concurrency(1))
				e := pluginkit.NewEvent(benchTrigger, benchData)
				return func() error {
					_, err := bus.Request(context.Background(), c.pub, bus.DefaultPrefix, benchProducer, e)
					return err
				}
			},
		},
	} {
		b.Run(bc.name, func(b *testing.B) {
			conns := newBenchConns(b)
			request := bc.setup(b, conns, newBenchMsgs(b))
			latencies := make([]time.Duration, b.N)

			b.ResetTimer()
			cpu0 := cpuTime(b)
			for i := range b.N {
				start := time.Now()
				if err := request(); err != nil {
					b.Fatal(err)
				}
				latencies[i] = time.Since(start)
			}
			cpu := cpuTime(b) - cpu0
			b.StopTimer()
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
			slices.Sort(latencies)
			b.ReportMetric(float64(latencies[b.N/2].Nanoseconds())/1e3, "p50-µs")
			b.ReportMetric(float64(latencies[b.N*99/100].Nanoseconds())/1e3, "p99-µs")
		})
	}
}
