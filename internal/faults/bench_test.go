package faults_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// BenchmarkDurable measures durable delivery end to end, in events per
// second from the first publish to the last event handled, on one embedded
// server (file storage, loopback TCP) per run, with separate connections
// for the publisher and the consumer:
//
//   - raw-jetstream: nats.go alone, as a careful user would write it: the
//     events (the same CloudEvents, binary mode, with a Nats-Msg-Id) are
//     published with PublishMsgAsync and PublishAsyncComplete, and a pull
//     consumer (Consume, nats.go's defaults) acknowledges each with Ack.
//   - raw-jetstream-same-acks: nats.go alone doing what Plugbus promises:
//     each publish waits for its acknowledgement (PublishMsg from
//     benchPublishers goroutines) and each event is acknowledged with a
//     double ack by one of 16 workers, fed by Consume with 16 messages
//     pulled at a time (plugin-kit holds as many as it has workers, and
//     pulls up to 8 per worker ahead of them while its handlers are quick).
//   - pluginkit: each event published with bus.PublishDurable (waiting for
//     the stream's acknowledgement, as every Plugbus publisher does) from
//     benchPublishers goroutines, and a durable plugin (plugin-kit's
//     defaults) handling each and acknowledging it with a double ack.
//   - pluginkit-plain-ack: the same, acknowledging with a plain ack
//     (Durable.PlainAck).
//   - pluginkit-async-publish, pluginkit-async-publish-plain-ack: the
//     events published as raw-jetstream does (bus.PublishDurableAsync), so
//     that the plugin's side is the limit.
//   - pluginkit-effectively-once: the same as pluginkit, with
//     effectively-once records (and so a plain ack).
//
// The figure to compare is events/s; pluginkit/raw-jetstream is the ratio
// the project targets, pluginkit/raw-jetstream-same-acks what plugin-kit
// itself costs beyond the acknowledgements it waits for.
func BenchmarkDurable(b *testing.B) {
	b.Run("raw-jetstream", benchRawJetStream)
	b.Run("raw-jetstream-same-acks", benchRawSameAcks)
	b.Run("pluginkit", func(b *testing.B) { benchDurablePlugin(b, pluginkit.Durable{}, false) })
	b.Run("pluginkit-plain-ack", func(b *testing.B) { benchDurablePlugin(b, pluginkit.Durable{PlainAck: true}, false) })
	b.Run("pluginkit-async-publish", func(b *testing.B) { benchDurablePlugin(b, pluginkit.Durable{}, true) })
	b.Run("pluginkit-async-publish-plain-ack", func(b *testing.B) { benchDurablePlugin(b, pluginkit.Durable{PlainAck: true}, true) })
	b.Run("pluginkit-effectively-once", func(b *testing.B) { benchDurablePlugin(b, pluginkit.Durable{EffectivelyOnce: true}, false) })
}

const (
	benchType       = "com.example.bench.stored"
	benchPublishers = 64
	benchTimeout    = 2 * time.Minute
)

var benchData = make([]byte, 128)

// benchSetup starts a server with the durable streams and returns a
// publisher's JetStream and a second connection for the consumer.
func benchSetup(b *testing.B) (jetstream.JetStream, *nats.Conn) {
	b.Helper()
	s := bustest.NewServer(b)
	pub := bustest.Connect(b, s)
	js, err := jetstream.New(pub)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamConfig{}); err != nil {
		b.Fatal(err)
	}
	return js, bustest.Connect(b, s)
}

func benchRawJetStream(b *testing.B) {
	js, consConn := benchSetup(b)
	ctx, cancel := context.WithTimeout(context.Background(), benchTimeout)
	defer cancel()
	cjs, err := jetstream.New(consConn)
	if err != nil {
		b.Fatal(err)
	}
	subject, _ := bus.TypeSubject(bus.DefaultPrefix, benchType)
	cons, err := cjs.CreateConsumer(ctx, bus.DefaultEventsStream, jetstream.ConsumerConfig{
		Durable: "raw", FilterSubject: subject, AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		b.Fatal(err)
	}
	var received atomic.Int64
	done := make(chan struct{})
	n := int64(b.N)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		if received.Add(1) == n {
			close(done)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()

	bm := newBenchMessages(b)
	var pubErrs atomic.Int64
	ajs, err := jetstream.New(js.Conn(), jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { pubErrs.Add(1) }))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := ajs.PublishMsgAsync(bm.message("raw-"+strconv.Itoa(i)), jetstream.WithStallWait(benchTimeout)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-ajs.PublishAsyncComplete():
	case <-ctx.Done():
		b.Fatal("publishes not acknowledged")
	}
	select {
	case <-done:
	case <-ctx.Done():
		b.Fatalf("%d of %d events received", received.Load(), b.N)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if pubErrs.Load() > 0 {
		b.Fatalf("%d publishes failed", pubErrs.Load())
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}

// benchMessages makes the messages of the raw benchmarks: the CloudEvent
// plugin-kit would send, re-stamped with an id per event.
type benchMessages struct {
	tmpl    *nats.Msg
	subject string
	source  string
}

func newBenchMessages(b *testing.B) benchMessages {
	b.Helper()
	tmpl := &nats.Msg{}
	e := pluginkit.NewEvent(benchType, benchData)
	e.SetSource(bus.Source(producer))
	if err := bus.Encode(e, tmpl); err != nil {
		b.Fatal(err)
	}
	subject, _ := bus.EventSubject(bus.DefaultPrefix, producer, benchType)
	return benchMessages{tmpl: tmpl, subject: subject, source: e.Source()}
}

func (bm benchMessages) message(id string) *nats.Msg {
	msg := &nats.Msg{Subject: bm.subject, Header: make(nats.Header, len(bm.tmpl.Header)+1), Data: bm.tmpl.Data}
	for k, v := range bm.tmpl.Header {
		msg.Header[k] = v
	}
	msg.Header.Set("ce-id", id)
	msg.Header.Set(jetstream.MsgIDHeader, bus.MsgID(producer, bm.source, id))
	return msg
}

func benchRawSameAcks(b *testing.B) {
	js, consConn := benchSetup(b)
	ctx, cancel := context.WithTimeout(context.Background(), benchTimeout)
	defer cancel()
	cjs, err := jetstream.New(consConn)
	if err != nil {
		b.Fatal(err)
	}
	subject, _ := bus.TypeSubject(bus.DefaultPrefix, benchType)
	cons, err := cjs.CreateConsumer(ctx, bus.DefaultEventsStream, jetstream.ConsumerConfig{
		Durable: "raw", FilterSubject: subject, AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		b.Fatal(err)
	}
	const workers = 16
	var received atomic.Int64
	done := make(chan struct{})
	n := int64(b.N)
	work := make(chan jetstream.Msg, workers)
	defer close(work)
	for w := 0; w < workers; w++ {
		go func() {
			for m := range work {
				_ = m.DoubleAck(ctx)
				if received.Add(1) == n {
					close(done)
				}
			}
		}()
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { work <- m }, jetstream.PullMaxMessages(workers), jetstream.PullHeartbeat(2*time.Second))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	bm := newBenchMessages(b)

	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var pubErr atomic.Value
	for w := 0; w < benchPublishers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < n; i = next.Add(1) - 1 {
				if _, err := js.PublishMsg(ctx, bm.message("same-"+strconv.FormatInt(i, 10))); err != nil {
					pubErr.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := pubErr.Load().(error); err != nil {
		b.Fatal(err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		b.Fatalf("%d of %d events received", received.Load(), b.N)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}

// benchDurablePlugin publishes b.N events to a durable plugin-kit plugin
// configured as d (StartAt set here), from 64 goroutines each waiting for every acknowledgement
// (bus.PublishDurable) or, with async, from one goroutine that waits for
// them all at the end (bus.PublishDurableAsync), as raw-jetstream does.
func benchDurablePlugin(b *testing.B, d pluginkit.Durable, async bool) {
	js, plugConn := benchSetup(b)
	ctx, cancel := context.WithTimeout(context.Background(), benchTimeout)
	defer cancel()

	var handled atomic.Int64
	done := make(chan struct{})
	n := int64(b.N)
	d.StartAt = pluginkit.StartAll
	p := pluginkit.New("benchdurable", "1.0.0", pluginkit.WithDurable(d),
		pluginkit.WithLogger(slog.New(slog.DiscardHandler)))
	p.HandleFunc(benchType, func(context.Context, pluginkit.Event) (*pluginkit.Event, error) {
		if handled.Add(1) == n {
			close(done)
		}
		return nil, nil
	})
	serveCtx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- p.Serve(serveCtx, plugConn) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			b.Error(err)
		}
	}()
	for {
		cons, err := js.Consumer(ctx, bus.DefaultEventsStream, "benchdurable")
		if err == nil {
			if info, err := cons.Info(ctx); err == nil && info.NumWaiting > 0 {
				break
			}
		} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
			b.Fatal(err)
		}
		if ctx.Err() != nil {
			b.Fatal("the plugin did not start consuming")
		}
		time.Sleep(5 * time.Millisecond)
	}

	var pubErrs atomic.Int64
	ajs, err := jetstream.New(js.Conn(), jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { pubErrs.Add(1) }))
	if err != nil {
		b.Fatal(err)
	}
	event := func(i int64) *pluginkit.Event {
		e := pluginkit.NewEvent(benchType, benchData)
		e.SetID("pk-" + strconv.FormatInt(i, 10))
		return e
	}

	b.ResetTimer()
	start := time.Now()
	if async {
		for i := range n {
			if _, err := bus.PublishDurableAsync(ajs, bus.DefaultPrefix, producer, event(i), jetstream.WithStallWait(benchTimeout)); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-ajs.PublishAsyncComplete():
		case <-ctx.Done():
			b.Fatal("publishes not acknowledged")
		}
		if pubErrs.Load() > 0 {
			b.Fatalf("%d publishes failed", pubErrs.Load())
		}
	} else {
		var next atomic.Int64
		var wg sync.WaitGroup
		var pubErr atomic.Value
		for w := 0; w < benchPublishers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := next.Add(1) - 1; i < n; i = next.Add(1) - 1 {
					if err := bus.PublishDurable(ctx, js, bus.DefaultPrefix, producer, event(i)); err != nil {
						pubErr.Store(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if err, _ := pubErr.Load().(error); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		b.Fatalf("%d of %d events handled", handled.Load(), b.N)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}
