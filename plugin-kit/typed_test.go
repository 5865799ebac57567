package pluginkit_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
	"github.com/plugbus/plugbus/plugin-kit/kittest"
)

type greetRequest struct {
	Name string `json:"name"`
}

type greeting struct {
	Text string `json:"text"`
}

func TestAnswerChecksDecodesAndReplies(t *testing.T) {
	var calls atomic.Int32
	p := pluginkit.New("hello", "1.2.0")
	pluginkit.Answer(p, "com.example.greet.requested", "com.example.greet.sent", func(ctx context.Context, req greetRequest) (greeting, error) {
		calls.Add(1)
		return greeting{Text: "hello, " + req.Name}, nil
	})
	h := kittest.Start(t, p)

	reply, err := h.Request(pluginkit.NewEvent("com.example.greet.requested", map[string]string{"name": "Ada"}))
	if err != nil {
		t.Fatal(err)
	}
	var g greeting
	if err := json.Unmarshal(reply.Data(), &g); err != nil || g.Text != "hello, Ada" {
		t.Fatalf("reply data %s (%v), want hello, Ada", reply.Data(), err)
	}
	if reply.Type() != "com.example.greet.sent" || reply.DataSchema() != "urn:plugbus:schema:hello:1.2.0:com.example.greet.sent" {
		t.Errorf("reply type %q dataschema %q", reply.Type(), reply.DataSchema())
	}

	for _, tc := range []struct {
		data  any
		field string
	}{
		{map[string]any{"name": 5}, `field "name"`},
		{map[string]any{}, "name"},
		{[]int{1, 2}, "object"},
	} {
		_, err := h.Request(pluginkit.NewEvent("com.example.greet.requested", tc.data))
		if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), "422") {
			t.Errorf("request with %v: err = %v, want a 422 naming %s", tc.data, err, tc.field)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("handler ran %d times, want once (bad data must not reach it)", n)
	}
}

func TestOnChecksData(t *testing.T) {
	got := make(chan greetRequest, 4)
	p := pluginkit.New("watcher", "0.1.0")
	pluginkit.On(p, "com.example.greet.requested", func(ctx context.Context, req greetRequest) error {
		got <- req
		return nil
	})
	h := kittest.Start(t, p)
	if err := h.Publish(pluginkit.NewEvent("com.example.greet.requested", map[string]any{"name": 5})); err != nil {
		t.Fatal(err)
	}
	if err := h.Publish(pluginkit.NewEvent("com.example.greet.requested", greetRequest{Name: "Ada"})); err != nil {
		t.Fatal(err)
	}
	if req := <-got; req.Name != "Ada" {
		t.Fatalf("handler got %+v first, want Ada (the bad event must not reach it)", req)
	}
	// On observes: a request for the type finds nobody answering.
	if _, err := h.Request(pluginkit.NewEvent("com.example.greet.requested", greetRequest{Name: "Ada"})); !errors.Is(err, pluginkit.ErrNoResponders) {
		t.Errorf("request for a type On observes: got %v, want ErrNoResponders", err)
	}
}

func TestCallFromAHandler(t *testing.T) {
	p := pluginkit.New("hello", "1.2.0")
	pluginkit.Answer(p, "com.example.greet.requested", "com.example.greet.sent", func(ctx context.Context, req greetRequest) (greeting, error) {
		if req.Name == "" {
			return greeting{}, pluginkit.Permanent(errors.New("name is empty"))
		}
		return greeting{Text: "hello, " + req.Name}, nil
	})
	pluginkit.Answer(p, "com.example.welcome.requested", "com.example.welcome.sent", func(ctx context.Context, req greetRequest) (greeting, error) {
		g, err := pluginkit.Call[greeting](ctx, p, "com.example.greet.requested", req)
		return greeting{Text: g.Text + "!"}, err
	})
	h := kittest.Start(t, p)
	reply, err := h.Request(pluginkit.NewEvent("com.example.welcome.requested", greetRequest{Name: "Ada"}))
	if err != nil {
		t.Fatal(err)
	}
	if string(reply.Data()) != `{"text":"hello, Ada!"}` {
		t.Errorf("reply %s", reply.Data())
	}
}
