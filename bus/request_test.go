package bus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
)

// received is what a test service saw of one request.
type received struct {
	subject  string
	header   nats.Header
	event    *event.Event
	err      error
	deadline time.Time
	hasDL    bool
}

// startService runs a NATS micro service named name on its own
// connection, answering requests for type typ from any caller with handle.
// What each request carried is sent on the returned channel.
func startService(t *testing.T, s interface{ ClientURL() string }, name, typ string, handle func(micro.Request, *event.Event)) <-chan received {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatalf("nats.Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	subject, err := bus.AnswerSubject(bus.DefaultPrefix, typ)
	if err != nil {
		t.Fatalf("AnswerSubject: %v", err)
	}
	got := make(chan received, 16)
	svc, err := micro.AddService(nc, micro.Config{
		Name:    name,
		Version: "1.0.0",
		Endpoint: &micro.EndpointConfig{
			Subject: subject,
			Handler: micro.HandlerFunc(func(req micro.Request) {
				e, err := bus.Decode(&nats.Msg{Header: nats.Header(req.Headers()), Data: req.Data()})
				r := received{subject: req.Subject(), header: nats.Header(req.Headers()), event: e, err: err}
				if e != nil {
					r.deadline, r.hasDL = bus.Deadline(e)
				}
				got <- r
				handle(req, e)
			}),
		},
	})
	if err != nil {
		t.Fatalf("micro.AddService: %v", err)
	}
	t.Cleanup(func() { svc.Stop() })
	// The server must know the endpoint's subscription before a test sends
	// it anything.
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	return got
}

func respondWith(t *testing.T, reply *event.Event) func(micro.Request, *event.Event) {
	return func(req micro.Request, _ *event.Event) {
		var msg nats.Msg
		if err := bus.Encode(reply, &msg); err != nil {
			t.Errorf("Encode reply: %v", err)
			return
		}
		if err := req.Respond(msg.Data, micro.WithHeaders(micro.Headers(msg.Header))); err != nil {
			t.Errorf("Respond: %v", err)
		}
	}
}

func TestRequest(t *testing.T) {
	s := bustest.NewServer(t)
	nc := bustest.Connect(t, s)

	reply := newEvent("r-1", "com.example.resized")
	reply.SetExtension(bus.ExtCauseID, "q-1")
	reply.DataEncoded = []byte("thumbnail")
	okCalls := startService(t, s, "resizer", "com.example.resize", respondWith(t, reply))
	errCalls := startService(t, s, "failer", "com.example.fail", func(req micro.Request, _ *event.Event) {
		if err := req.Error(bus.CodePermanent, "image is 0 bytes", nil); err != nil {
			t.Errorf("Error: %v", err)
		}
	})
	emptyCalls := startService(t, s, "sink", "com.example.sink", func(req micro.Request, _ *event.Event) {
		if err := req.Respond(nil); err != nil {
			t.Errorf("Respond: %v", err)
		}
	})
	silentCalls := startService(t, s, "silent", "com.example.silent", func(micro.Request, *event.Event) {})

	t.Run("reply event", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		want, _ := ctx.Deadline()
		req := newEvent("q-1", "com.example.resize")
		got, err := bus.Request(ctx, nc, bus.DefaultPrefix, "caller", req)
		if err != nil {
			t.Fatalf("Request: %v", err)
		}
		if d := eventDiff(got, reply); d != "" {
			t.Error(d)
		}
		r := <-okCalls
		if r.err != nil {
			t.Fatalf("service: Decode request: %v", r.err)
		}
		if r.subject != "plugbus.invoke.caller.com.example.resize" {
			t.Errorf("request subject: got %q, want plugbus.invoke.caller.com.example.resize", r.subject)
		}
		if !r.hasDL || !r.deadline.Equal(want) {
			t.Errorf("deadline extension: got %v (present %v), want %v", r.deadline, r.hasDL, want)
		}
		if _, ok := req.Extensions()[bus.ExtDeadline]; ok {
			t.Errorf("Request added %s to the caller's event; want it only on the wire", bus.ExtDeadline)
		}
	})

	t.Run("missing source is set from the producer", func(t *testing.T) {
		req := newEvent("q-2", "com.example.resize")
		req.Context.(*event.EventContextV1).Source = types.URIRef{}
		if _, err := bus.Request(context.Background(), nc, bus.DefaultPrefix, "caller", req); err != nil {
			t.Fatalf("Request: %v", err)
		}
		r := <-okCalls
		if r.err != nil || r.event.Source() != "urn:plugbus:caller" {
			t.Errorf("service got source %q (err %v), want urn:plugbus:caller", r.event.Source(), r.err)
		}
	})

	t.Run("no deadline in ctx", func(t *testing.T) {
		before := time.Now()
		if _, err := bus.Request(context.Background(), nc, bus.DefaultPrefix, "caller", newEvent("q-3", "com.example.resize")); err != nil {
			t.Fatalf("Request: %v", err)
		}
		r := <-okCalls
		lo, hi := before.Add(bus.DefaultRequestTimeout), time.Now().Add(bus.DefaultRequestTimeout)
		if !r.hasDL || r.deadline.Before(lo) || r.deadline.After(hi) {
			t.Errorf("deadline extension: got %v (present %v), want between %v and %v", r.deadline, r.hasDL, lo, hi)
		}
	})

	t.Run("service error", func(t *testing.T) {
		got, err := bus.Request(context.Background(), nc, bus.DefaultPrefix, "caller", newEvent("q-4", "com.example.fail"))
		var se *bus.ServiceError
		if !errors.As(err, &se) {
			t.Fatalf("got %v, %v; want a *bus.ServiceError", got, err)
		}
		if se.Code != bus.CodePermanent || se.Description != "image is 0 bytes" {
			t.Errorf("got code %q description %q, want %q %q", se.Code, se.Description, bus.CodePermanent, "image is 0 bytes")
		}
		if !strings.Contains(err.Error(), "422") || !strings.Contains(err.Error(), "image is 0 bytes") {
			t.Errorf("got %q, want the code and description in the message", err)
		}
		<-errCalls
	})

	t.Run("empty reply", func(t *testing.T) {
		got, err := bus.Request(context.Background(), nc, bus.DefaultPrefix, "caller", newEvent("q-5", "com.example.sink"))
		if got != nil || err != nil {
			t.Errorf("got %v, %v; want nil, nil", got, err)
		}
		<-emptyCalls
	})

	t.Run("no responders", func(t *testing.T) {
		start := time.Now()
		got, err := bus.Request(context.Background(), nc, bus.DefaultPrefix, "caller", newEvent("q-6", "com.example.nobody"))
		if !errors.Is(err, bus.ErrNoResponders) {
			t.Fatalf("got %v, %v; want ErrNoResponders", got, err)
		}
		if !strings.Contains(err.Error(), "com.example.nobody") {
			t.Errorf("got %q, want it to name the type", err)
		}
		if elapsed := time.Since(start); elapsed > time.Second {
			t.Errorf("took %v, want a prompt answer", elapsed)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		got, err := bus.Request(ctx, nc, bus.DefaultPrefix, "caller", newEvent("q-7", "com.example.silent"))
		if !errors.Is(err, bus.ErrTimeout) {
			t.Fatalf("got %v, %v; want ErrTimeout", got, err)
		}
		if elapsed := time.Since(start); elapsed < 150*time.Millisecond || elapsed > 2*time.Second {
			t.Errorf("took %v, want about 200ms", elapsed)
		}
		<-silentCalls
	})

	t.Run("AnsweredBy names the plugin in a header", func(t *testing.T) {
		if _, err := bus.Request(context.Background(), nc, bus.DefaultPrefix, "caller", newEvent("q-10", "com.example.sink"), bus.AnsweredBy("sink")); err != nil {
			t.Fatalf("Request: %v", err)
		}
		r := <-emptyCalls
		if got := r.header.Get(bus.HeaderPlugin); got != "sink" {
			t.Errorf("header %s: got %q, want sink", bus.HeaderPlugin, got)
		}
	})

	t.Run("invalid type is refused before sending", func(t *testing.T) {
		_, err := bus.Request(context.Background(), nc, bus.DefaultPrefix, "caller", newEvent("q-8", "com.example.*"))
		if !errors.Is(err, bus.ErrInvalidType) {
			t.Errorf("got %v, want ErrInvalidType", err)
		}
		_, err = bus.Request(context.Background(), nc, bus.DefaultPrefix, "a.b", newEvent("q-9", "com.example.resize"))
		if !errors.Is(err, bus.ErrInvalidName) {
			t.Errorf("got %v, want ErrInvalidName", err)
		}
	})
}

func TestDecodeReply(t *testing.T) {
	ev := newEvent("1", "t")
	var evMsg nats.Msg
	if err := bus.Encode(ev, &evMsg); err != nil {
		t.Fatalf("Encode: %v", err)
	}
	tests := []struct {
		name      string
		given     *nats.Msg
		wantEvent bool
		wantErr   error
		wantCode  string
	}{
		{name: "event", given: &evMsg, wantEvent: true},
		{name: "empty", given: &nats.Msg{}},
		{name: "service error", given: &nats.Msg{Header: nats.Header{micro.ErrorCodeHeader: {"503"}, micro.ErrorHeader: {"stopping"}}}, wantCode: "503"},
		{name: "service error on an event", given: &nats.Msg{Header: nats.Header{micro.ErrorCodeHeader: {"500"}, "ce-specversion": {"1.0"}}}, wantCode: "500"},
		{name: "data that is not an event", given: &nats.Msg{Data: []byte("hello")}, wantErr: bus.ErrNotEvent},
		{name: "invalid event", given: &nats.Msg{Header: nats.Header{"ce-specversion": {"1.0"}}}, wantErr: bus.ErrInvalidEvent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := bus.DecodeReply(tt.given)
			if (got != nil) != tt.wantEvent {
				t.Errorf("got event %v, want one: %v", got, tt.wantEvent)
			}
			var se *bus.ServiceError
			switch {
			case tt.wantCode != "":
				if !errors.As(err, &se) || se.Code != tt.wantCode {
					t.Errorf("got %v, want a *bus.ServiceError with code %s", err, tt.wantCode)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("got %v, want %v", err, tt.wantErr)
				}
			case err != nil:
				t.Errorf("got %v, want nil", err)
			}
		})
	}
}

func TestPublish(t *testing.T) {
	s := bustest.NewServer(t)
	nc := bustest.Connect(t, s)
	subject, err := bus.TypeSubject(bus.DefaultPrefix, "com.example.>")
	if err != nil {
		t.Fatalf("TypeSubject: %v", err)
	}
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatalf("SubscribeSync: %v", err)
	}
	e := newEvent("1", "com.example.uploaded")
	e.Context.(*event.EventContextV1).Source = types.URIRef{}
	if err := bus.Publish(nc, bus.DefaultPrefix, "uploader", e); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("NextMsg: %v", err)
	}
	if msg.Subject != "plugbus.events.uploader.com.example.uploaded" {
		t.Errorf("subject: got %q, want plugbus.events.uploader.com.example.uploaded", msg.Subject)
	}
	got, err := bus.Decode(msg)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if got.Source() != bus.Source("uploader") {
		t.Errorf("source: got %q, want %q", got.Source(), bus.Source("uploader"))
	}
	if err := bus.Publish(nc, bus.DefaultPrefix, "uploader", newEvent("2", "bad type")); !errors.Is(err, bus.ErrInvalidType) {
		t.Errorf("Publish with type %q: got %v, want ErrInvalidType", "bad type", err)
	}
}
