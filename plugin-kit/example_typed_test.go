package pluginkit_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
	"github.com/plugbus/plugbus/plugin-kit/kittest"
)

// GreetRequest is the data of com.example.greet.requested.
type GreetRequest struct {
	Name string `json:"name"`
}

// Greeting is the data of com.example.greet.sent.
type Greeting struct {
	Text string `json:"text"`
}

// A typed handler: the data is checked against the schema generated from
// GreetRequest before the handler runs, and bad data gets a Permanent
// error naming the field.
func ExampleAnswer() {
	p := pluginkit.New("hello", "0.1.0")
	pluginkit.Answer(p, "com.example.greet.requested", "com.example.greet.sent", func(ctx context.Context, req GreetRequest) (Greeting, error) {
		return Greeting{Text: "hello, " + req.Name}, nil
	})

	h, err := kittest.New(p)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close()
	reply, err := h.Request(pluginkit.NewEvent("com.example.greet.requested", GreetRequest{Name: "Ada"}))
	fmt.Println(string(reply.Data()), reply.DataSchema(), err)
	_, err = h.Request(pluginkit.NewEvent("com.example.greet.requested", map[string]int{"name": 5}))
	fmt.Println(err)
	// Output:
	// {"text":"hello, Ada"} urn:plugbus:schema:hello:0.1.0:com.example.greet.sent <nil>
	// bus: plugin replied with error 422: data does not match the type's schema: field "name": got number, want string
}

// Call invokes a type with Go values from inside a handler, passing on
// what is left of the handler's deadline.
func ExampleCall() {
	p := pluginkit.New("hello", "0.1.0")
	pluginkit.Answer(p, "com.example.greet.requested", "com.example.greet.sent", func(ctx context.Context, req GreetRequest) (Greeting, error) {
		return Greeting{Text: "hello, " + req.Name}, nil
	})
	pluginkit.Answer(p, "com.example.welcome.requested", "com.example.welcome.sent", func(ctx context.Context, req GreetRequest) (Greeting, error) {
		g, err := pluginkit.Call[Greeting](ctx, p, "com.example.greet.requested", req)
		return Greeting{Text: g.Text + ", welcome!"}, err
	})

	h, err := kittest.New(p)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close()
	reply, err := h.Request(pluginkit.NewEvent("com.example.welcome.requested", GreetRequest{Name: "Ada"}))
	fmt.Println(string(reply.Data()), err)
	// Output: {"text":"hello, Ada, welcome!"} <nil>
}

// On observes events with typed data.
func ExampleOn() {
	got := make(chan string, 1)
	p := pluginkit.New("audit", "0.1.0")
	pluginkit.On(p, "com.example.greet.sent", func(ctx context.Context, g Greeting) error {
		got <- pluginkit.Producer(ctx) + " sent " + g.Text
		return nil
	})

	h, err := kittest.New(p)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close()
	if err := h.Publish(pluginkit.NewEvent("com.example.greet.sent", Greeting{Text: "hello, Ada"})); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(<-got)
	// Output: kittest sent hello, Ada
}

// Emit publishes more than one result from a handler.
func ExampleEmit() {
	p := pluginkit.New("splitter", "0.1.0")
	p.HandleFunc("com.example.batch.received", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		var items []string
		if err := e.DataAs(&items); err != nil {
			return nil, pluginkit.Permanent(err)
		}
		for _, item := range items {
			if err := pluginkit.Emit(ctx, pluginkit.NewEvent("com.example.item.received", item)); err != nil {
				return nil, err
			}
		}
		return nil, nil
	})

	h, err := kittest.New(p)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close()
	if err := h.Publish(pluginkit.NewEvent("com.example.batch.received", []string{"a", "b"})); err != nil {
		fmt.Println(err)
		return
	}
	for range 2 {
		e, err := h.Next("com.example.item.received")
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(string(e.Data()), e.Extensions()["causeid"] != nil)
	}
	// Output:
	// "a" true
	// "b" true
}

// Invoke sends a request from inside a handler; the answer comes back as
// an event.
func ExampleInvoke() {
	p := pluginkit.New("frontdesk", "0.1.0")
	p.HandleFunc("com.example.time.requested", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		return pluginkit.NewEvent("com.example.time.sent", "noon"), nil
	})
	p.HandleFunc("com.example.visit.requested", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		answer, err := pluginkit.Invoke(ctx, pluginkit.NewEvent("com.example.time.requested", nil))
		if err != nil {
			return nil, err
		}
		var at string
		if err := answer.DataAs(&at); err != nil {
			return nil, err
		}
		return pluginkit.NewEvent("com.example.visit.booked", "see you at "+at), nil
	})

	h, err := kittest.New(p)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close()
	reply, err := h.Request(pluginkit.NewEvent("com.example.visit.requested", nil))
	fmt.Println(string(reply.Data()), err)
	// Output: "see you at noon" <nil>
}

// Middleware wraps every handler of a plugin: here, a log line per event.
func ExamplePlugin_Use() {
	p := pluginkit.New("hello", "0.1.0")
	p.Use(func(next pluginkit.Handler) pluginkit.Handler {
		return pluginkit.HandlerFunc(func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
			start := time.Now()
			res, err := next.HandleEvent(ctx, e)
			slog.Debug("handled", "type", e.Type(), "took", time.Since(start), "err", err)
			return res, err
		})
	})
	p.HandleFunc("com.example.greet.requested", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		return nil, errors.New("not today")
	})

	h, err := kittest.New(p)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close()
	_, err = h.Request(pluginkit.NewEvent("com.example.greet.requested", nil))
	fmt.Println(err)
	// Output: bus: plugin replied with error 500: not today
}

// A durable plugin takes its events from the events stream: an event
// published while it was down is delivered when it comes back, a failed
// one is retried with backoff, and one that keeps failing becomes a dead
// letter.
func ExampleWithDurable() {
	p := pluginkit.New("billing", "0.1.0", pluginkit.WithDurable(pluginkit.Durable{
		MaxDeliver: 3,
		Backoff:    []time.Duration{time.Second, 10 * time.Second},
	}))
	p.HandleFunc("com.example.order.placed", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		return nil, nil // charge the customer; an error retries
	})
	pluginkit.Main(p)
}

// Broadcast gives every instance of the plugin every event of a type, for
// cache invalidation and the like, instead of sharing them.
func ExampleBroadcast() {
	cache := map[string]string{}
	p := pluginkit.New("catalogue", "0.1.0")
	p.HandleFunc("com.example.price.changed", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		clear(cache)
		return nil, nil
	}, pluginkit.Broadcast())
	pluginkit.Main(p)
}
