package bench_test

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cenats "github.com/cloudevents/sdk-go/protocol/nats/v2"
	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/plugbus/plugbus/bench/greet"
	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
)

const (
	sinkName     = "benchsink" // the plugin (or peer) handling events
	ackPattern   = "plugbus.events.*." + greet.AckType
	onewayWindow = 4096    // events in flight at most...
	windowBytes  = 4 << 20 // ...and no more than 4 MiB of them, under nats.go's pending limits
	maxWait      = time.Minute
)

// A publisher is one way of sending events, and the handler that goes with
// it in the child process.
type publisher struct {
	name string
	// start starts a handler process named name (its queue group, and
	// the producer of its acks) on url.
	start func(b *testing.B, url, name string) *proc
	// sender returns a function that publishes one event with payload.
	sender func(b *testing.B, nc *nats.Conn, payload []byte) func() error
}

var (
	pubRaw = publisher{"raw",
		func(b *testing.B, url, name string) *proc {
			return startProc(b, nil, "ready", bin.natspeer, "-url", url, "-mode", "oneway", "-name", name)
		},
		func(b *testing.B, nc *nats.Conn, payload []byte) func() error {
			return func() error { return nc.Publish(greet.TriggerSubject, payload) }
		}}
	pubRawCE = publisher{"raw-ce-headers",
		func(b *testing.B, url, name string) *proc {
			return startProc(b, nil, "ready", bin.natspeer, "-url", url, "-mode", "oneway-ce", "-name", name)
		},
		func(b *testing.B, nc *nats.Conn, payload []byte) func() error {
			e := triggerEvent(payload)
			var pre nats.Msg
			if err := bus.Encode(e, &pre); err != nil {
				b.Fatal(err)
			}
			return func() error {
				return nc.PublishMsg(&nats.Msg{Subject: greet.TriggerSubject, Header: pre.Header, Data: payload})
			}
		}}
	pubSDK = publisher{"sdkgo-nats",
		func(b *testing.B, url, name string) *proc {
			return startProc(b, nil, "ready", bin.natspeer, "-url", url, "-mode", "sdkgo", "-name", name)
		},
		func(b *testing.B, nc *nats.Conn, payload []byte) func() error {
			sender, err := cenats.NewSenderFromConn(nc, greet.TriggerSubject)
			if err != nil {
				b.Fatal(err)
			}
			c, err := cloudevents.NewClient(sender)
			if err != nil {
				b.Fatal(err)
			}
			e := triggerEvent(payload)
			return func() error {
				e.SetID(nuid.Next())
				if res := c.Send(background, *e); cloudevents.IsUndelivered(res) {
					return res
				}
				return nil
			}
		}}
	pubPlugbus = publisher{"plugbus",
		func(b *testing.B, url, name string) *proc {
			return startProc(b, []string{"PLUGBUS_URL=" + url, "PLUGBUS_BENCH_NAME=" + name, "PLUGBUS_LOG_LEVEL=warn"}, "", bin.pluginpeer)
		},
		func(b *testing.B, nc *nats.Conn, payload []byte) func() error {
			e := triggerEvent(payload)
			return func() error {
				e.SetID(nuid.Next())
				return bus.Publish(nc, greet.Prefix, greet.Producer, e)
			}
		}}
)

// triggerEvent is the event every publisher sends (raw sends its data only).
func triggerEvent(payload []byte) *cloudevents.Event {
	e := cloudevents.NewEvent()
	e.SetID(nuid.Next())
	e.SetSource(bus.Source(greet.Producer))
	e.SetType(greet.TriggerType)
	e.SetTime(time.Now())
	if err := e.SetData(cloudevents.ApplicationJSON, payload); err != nil {
		panic(err)
	}
	return &e
}

// BenchmarkProcOneWay measures events per second from a publisher in this
// process to a handler in a child process, which acknowledges each with a
// small result event, at three event sizes.
func BenchmarkProcOneWay(b *testing.B) {
	s := bustest.NewServer(b)
	for _, size := range []int{128, 1 << 10, 16 << 10} {
		for _, pub := range []publisher{pubRaw, pubRawCE, pubSDK, pubPlugbus} {
			p := pub.start(b, s.ClientURL(), sinkName)
			b.Run(sizeName(size)+"/"+pub.name, func(b *testing.B) {
				runOneWay(b, s.ClientURL(), pub, greet.Payload(size), []*proc{p})
			})
			p.stop(b)
		}
	}
}

// BenchmarkFanOut measures events per second when every event goes to N
// handler processes, each a plugin of its own (its own queue group).
func BenchmarkFanOut(b *testing.B) {
	s := bustest.NewServer(b)
	for _, n := range []int{1, 8, 32} {
		for _, pub := range []publisher{pubRaw, pubRawCE, pubPlugbus} {
			var ps []*proc
			for i := range n {
				ps = append(ps, pub.start(b, s.ClientURL(), sinkName+strconv.Itoa(i)))
			}
			b.Run(fmt.Sprintf("%dprocs/%s", n, pub.name), func(b *testing.B) {
				runOneWay(b, s.ClientURL(), pub, greet.Payload(128), ps)
			})
			stopAll(b, ps)
		}
	}
}

func sizeName(n int) string {
	if n >= 1<<10 {
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

// runOneWay publishes b.N events with pub and waits for one ack per event
// from each of the handlers.
func runOneWay(b *testing.B, url string, pub publisher, payload []byte, handlers []*proc) {
	runOneWayAcked(b, url, pub.sender, ackPattern, payload, handlers)
}

// runOneWayAcked publishes b.N events with send and waits for one event on
// acks per event from each of the handlers.
func runOneWayAcked(b *testing.B, url string, sender func(*testing.B, *nats.Conn, []byte) func() error, acks string, payload []byte, handlers []*proc) {
	pubConn, resConn := connect(b, url), connect(b, url)
	fan := int64(len(handlers))
	var received atomic.Int64
	room := make(chan struct{}, 1) // an ack came in: there may be room in the window
	var want atomic.Int64
	want.Store(-1)
	all := make(chan struct{}, 1)
	var mu sync.Mutex
	answered := map[string]bool{} // the subjects acks came on: one per handler
	sub, err := resConn.Subscribe(acks, func(m *nats.Msg) {
		mu.Lock()
		answered[m.Subject] = true
		mu.Unlock()
		if n := received.Add(1); n == want.Load() {
			all <- struct{}{}
		}
		select {
		case room <- struct{}{}:
		default:
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		b.Fatal(err)
	}
	if err := resConn.Flush(); err != nil {
		b.Fatal(err)
	}
	send := sender(b, pubConn, payload)

	// Warm up until every handler answers (they may still be subscribing;
	// counting acks is not enough, as the ready ones answer every warm-up
	// event), then let stray acks of the warm-up come in before counting.
	heard := func() int64 { mu.Lock(); defer mu.Unlock(); return int64(len(answered)) }
	deadline := time.Now().Add(30 * time.Second)
	for heard() < fan {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d handlers answered within 30s", heard(), fan)
		}
		if err := send(); err != nil {
			b.Fatal(err)
		}
		if err := pubConn.Flush(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	window := int64(min(onewayWindow, windowBytes/len(payload)))
	pids := make([]int, len(handlers))
	for i, h := range handlers {
		pids[i] = h.cmd.Process.Pid
	}

	base := received.Load()
	want.Store(base + int64(b.N)*fan)
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuOf(b, pids...)
	for i := range int64(b.N) {
		for i-(received.Load()-base)/fan > window {
			select {
			case <-room:
			case <-time.After(maxWait):
				b.Fatalf("no ack for %v: %d of %d acks", maxWait, received.Load()-base, int64(b.N)*fan)
			}
		}
		if err := send(); err != nil {
			b.Fatal(err)
		}
	}
	if err := pubConn.Flush(); err != nil {
		b.Fatal(err)
	}
	select {
	case <-all:
	case <-time.After(maxWait):
		b.Fatalf("received %d acks of %d within %v", received.Load()-base, int64(b.N)*fan, maxWait)
	}
	elapsed, cpu := time.Since(start), cpuOf(b, pids...)-cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}
