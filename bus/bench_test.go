package bus_test

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
)

var benchSizes = []struct {
	name string
	size int
}{
	{"128B", 128},
	{"4KiB", 4 << 10},
}

// benchEvent is a typical small event: the required attributes plus time,
// so five ce- headers.
func benchEvent(size int) *event.Event {
	e := event.New()
	e.SetID("0190f3a2-7c4e-7b1a-9d2e-3f4a5b6c7d8e")
	e.SetSource("urn:plugbus:bench")
	e.SetType("com.example.bench.happened")
	e.SetTime(time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC))
	e.DataEncoded = bytes.Repeat([]byte{'x'}, size)
	return &e
}

func BenchmarkEncode(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			e := benchEvent(sz.size)
			b.ReportAllocs()
			b.SetBytes(int64(sz.size))
			for b.Loop() {
				var msg nats.Msg
				if err := bus.Encode(e, &msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncoder is BenchmarkEncode with an [bus.Encoder], which reuses
// its message from one event to the next.
func BenchmarkEncoder(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			e := benchEvent(sz.size)
			var enc bus.Encoder
			b.ReportAllocs()
			b.SetBytes(int64(sz.size))
			for b.Loop() {
				if _, err := enc.Encode("plugbus.events.bench.com.example.bench.happened", e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			var msg nats.Msg
			if err := bus.Encode(benchEvent(sz.size), &msg); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(sz.size))
			for b.Loop() {
				if _, err := bus.Decode(&msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPublish compares one-way throughput through a real server for
// 128-byte events: plain nats.go without headers, nats.go sending the
// same ce- headers bus.Encode writes (computed once), and bus (Encode per
// message, Decode in the subscriber).
func BenchmarkPublish(b *testing.B) {
	s := bustest.NewServer(b)
	pub, sub := bustest.Connect(b, s), bustest.Connect(b, s)
	e := benchEvent(128)
	var pre nats.Msg
	if err := bus.Encode(e, &pre); err != nil {
		b.Fatal(err)
	}
	data := pre.Data

	b.Run("raw", func(b *testing.B) {
		runPublish(b, pub, sub,
			func(subject string) error { return pub.Publish(subject, data) },
			func(*nats.Msg) error { return nil })
	})
	b.Run("raw-ce-headers", func(b *testing.B) {
		runPublish(b, pub, sub,
			func(subject string) error {
				return pub.PublishMsg(&nats.Msg{Subject: subject, Header: pre.Header, Data: data})
			},
			func(*nats.Msg) error { return nil })
	})
	b.Run("bus", func(b *testing.B) {
		runPublish(b, pub, sub,
			func(subject string) error {
				msg := nats.Msg{Subject: subject}
				if err := bus.Encode(e, &msg); err != nil {
					return err
				}
				return pub.PublishMsg(&msg)
			},
			func(m *nats.Msg) error {
				_, err := bus.Decode(m)
				return err
			})
	})
}

// runPublish publishes b.N messages with publish and waits until the
// subscriber on the other connection has handled all of them with receive.
func runPublish(b *testing.B, pub, sub *nats.Conn, publish func(subject string) error, receive func(*nats.Msg) error) {
	subject := nats.NewInbox()
	n := int64(b.N)
	var got, failed atomic.Int64
	var firstErr atomic.Value
	done := make(chan struct{})
	s, err := sub.Subscribe(subject, func(m *nats.Msg) {
		if err := receive(m); err != nil {
			if failed.Add(1) == 1 {
				firstErr.Store(err)
			}
		}
		if got.Add(1) == n {
			close(done)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Unsubscribe()
	// No client-side limit: a message dropped would make the numbers lie.
	if err := s.SetPendingLimits(-1, -1); err != nil {
		b.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		b.Fatal(err)
	}

	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if err := publish(subject); err != nil {
			b.Fatalf("publish %d: %v", i, err)
		}
	}
	if err := pub.Flush(); err != nil {
		b.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		dropped, _ := s.Dropped()
		b.Fatalf("subscriber got %d of %d messages after 60s (%d dropped)", got.Load(), n, dropped)
	}
	elapsed := time.Since(start)
	b.StopTimer()

	if dropped, err := s.Dropped(); err != nil || dropped != 0 {
		b.Fatalf("subscriber dropped %d messages (%v)", dropped, err)
	}
	if f := failed.Load(); f != 0 {
		b.Fatalf("subscriber failed on %d of %d messages; first: %v", f, n, firstErr.Load())
	}
	b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
}
