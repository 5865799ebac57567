// Command natspeer is the raw NATS side of the benchmarks: it does what a
// Plugbus plugin does, with nats.go and, in mode sdkgo, with the CloudEvents
// sdk-go client and its stock NATS binding.
//
//	-mode reply      answer requests on -subject with greet.Greet (nats.go request/reply)
//	-mode oneway     handle events on the trigger subjects, publish an ack without headers
//	-mode oneway-ce  the same, the ack carrying the ce- headers plugin-kit would send, computed once
//	-mode sdkgo      sdk-go client: receive events, send an ack event
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	cenats "github.com/cloudevents/sdk-go/protocol/nats/v2"
	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/plugbus/plugbus/bench/greet"
	"github.com/plugbus/plugbus/bus"
)

func main() {
	url := flag.String("url", nats.DefaultURL, "NATS server URL")
	mode := flag.String("mode", "reply", "reply, oneway, oneway-ce or sdkgo")
	subject := flag.String("subject", "bench.greet", "request subject (mode reply)")
	name := flag.String("name", "natspeer", "queue group, and the producer of acks")
	flag.Parse()
	log.SetPrefix("natspeer: ")

	nc, err := nats.Connect(*url, nats.Name(*name))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	ackSubject := greet.AckSubject(*name)
	switch *mode {
	case "reply":
		_, err = nc.QueueSubscribe(*subject, *name, func(m *nats.Msg) {
			out, err := greet.Greet(m.Data)
			if err != nil {
				log.Print(err)
				return
			}
			_ = m.Respond(out)
		})
	case "oneway":
		_, err = nc.QueueSubscribe(greet.TriggerPattern, *name, func(m *nats.Msg) {
			out, err := greet.Handle(m.Data)
			if err != nil {
				log.Print(err)
				return
			}
			_ = nc.Publish(ackSubject, out)
		})
	case "oneway-ce":
		ack := cloudevents.NewEvent()
		ack.SetID(nuid.Next())
		ack.SetSource(bus.Source(*name))
		ack.SetType(greet.AckType)
		ack.SetTime(time.Now())
		ack.SetExtension(bus.ExtCauseID, nuid.Next())
		if err := ack.SetData(cloudevents.ApplicationJSON, []byte(`{"len":116}`)); err != nil {
			log.Fatal(err)
		}
		var pre nats.Msg
		if err := bus.Encode(&ack, &pre); err != nil {
			log.Fatal(err)
		}
		_, err = nc.QueueSubscribe(greet.TriggerPattern, *name, func(m *nats.Msg) {
			out, err := greet.Handle(m.Data)
			if err != nil {
				log.Print(err)
				return
			}
			_ = nc.PublishMsg(&nats.Msg{Subject: ackSubject, Header: pre.Header, Data: out})
		})
	case "sdkgo":
		err = runSDK(ctx, nc, *name, ackSubject)
	default:
		log.Fatalf("unknown -mode %q", *mode)
	}
	if err != nil {
		log.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		log.Fatal(err)
	}
	os.Stdout.WriteString("ready\n")
	<-ctx.Done()
}

// runSDK receives events with an sdk-go client on the stock NATS binding
// (its defaults: one poll goroutine per CPU) and sends an ack event for each
// through another, until ctx ends.
func runSDK(ctx context.Context, nc *nats.Conn, name, ackSubject string) error {
	consumer, err := cenats.NewConsumerFromConn(nc, greet.TriggerPattern, cenats.WithQueueSubscriber(name))
	if err != nil {
		return err
	}
	receiver, err := cloudevents.NewClient(consumer)
	if err != nil {
		return err
	}
	sender, err := cenats.NewSenderFromConn(nc, ackSubject)
	if err != nil {
		return err
	}
	acks, err := cloudevents.NewClient(sender)
	if err != nil {
		return err
	}
	source := bus.Source(name)
	started := make(chan error, 1)
	go func() {
		started <- receiver.StartReceiver(ctx, func(ctx context.Context, e cloudevents.Event) {
			var req greet.Request
			if err := e.DataAs(&req); err != nil {
				log.Print(err)
				return
			}
			ack := cloudevents.NewEvent()
			ack.SetID(nuid.Next())
			ack.SetSource(source)
			ack.SetType(greet.AckType)
			ack.SetTime(time.Now())
			ack.SetExtension(bus.ExtCauseID, e.ID())
			if err := ack.SetData(cloudevents.ApplicationJSON, greet.Ack{Len: len(req.Name)}); err != nil {
				log.Print(err)
				return
			}
			if res := acks.Send(ctx, ack); cloudevents.IsUndelivered(res) {
				log.Print(res)
			}
		})
	}()
	// StartReceiver subscribes before it blocks; give it the moment it
	// needs, then check it did not fail at once.
	select {
	case err := <-started:
		return err
	case <-time.After(200 * time.Millisecond):
		return nil
	}
}
