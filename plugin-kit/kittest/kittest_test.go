package kittest_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
	"github.com/plugbus/plugbus/plugin-kit/kittest"
)

var quiet = pluginkit.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))

func echo(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
	switch string(e.Data()) {
	case "fail":
		return nil, errors.New("no luck")
	case "twice":
		if err := pluginkit.Emit(ctx, pluginkit.NewEvent("com.example.echo.extra", []byte("first"))); err != nil {
			return nil, err
		}
	}
	return pluginkit.NewEvent("com.example.echo.replied", e.Data()), nil
}

func newEcho(opts ...pluginkit.Option) *pluginkit.Plugin {
	p := pluginkit.New("echo", "1.0.0", append([]pluginkit.Option{quiet}, opts...)...)
	p.HandleFunc("com.example.echo.requested", echo)
	return p
}

// When New returns, every handler is subscribed: a request sent at once
// is answered.
func TestReadyMeansSubscribed(t *testing.T) {
	t.Parallel()
	for i := range 20 {
		p := pluginkit.New("eager", "1.0.0", quiet)
		// Several handlers, so that subscribing takes a little while.
		for _, typ := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
			p.HandleFunc("com.example.eager."+typ, echo)
		}
		h, err := kittest.New(p)
		if err != nil {
			t.Fatal(err)
		}
		_, err = h.Request(pluginkit.NewEvent("com.example.eager.h", nil))
		if cerr := h.Close(); cerr != nil {
			t.Error(cerr)
		}
		if err != nil {
			t.Fatalf("run %d: request right after New: %v", i, err)
		}
	}
}

func TestPublishAndNext(t *testing.T) {
	t.Parallel()
	h := kittest.Start(t, newEcho())

	// Recording starts before the plugin does.
	started, err := h.Next(bus.TypePluginStarted)
	if err != nil {
		t.Fatal(err)
	}
	var inst bus.Instance
	if err := started.DataAs(&inst); err != nil || inst.Plugin != "echo" || inst.Version != "1.0.0" {
		t.Errorf("started event data %s (%v), want plugin echo 1.0.0", started.Data(), err)
	}

	for _, data := range []string{"one", "two"} {
		if err := h.Publish(pluginkit.NewEvent("com.example.echo.requested", []byte(data))); err != nil {
			t.Fatal(err)
		}
	}
	var replies []string // in any order: the handler runs concurrently
	for range 2 {
		e, err := h.Next("com.example.echo.replied")
		if err != nil {
			t.Fatal(err)
		}
		if e.Source() != "urn:plugbus:echo" {
			t.Errorf("got %s from %s, want it from urn:plugbus:echo", e.Data(), e.Source())
		}
		replies = append(replies, string(e.Data()))
	}
	if slices.Sort(replies); !slices.Equal(replies, []string{"one", "two"}) {
		t.Errorf("got replies %q, want one and two", replies)
	}

	// A ".>" type matches by prefix; events not asked for stay for later.
	in := pluginkit.NewEvent("com.example.echo.requested", []byte("twice"))
	if err := h.Publish(in); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for range 2 {
		e, err := h.Next("com.example.echo.>")
		if err != nil {
			t.Fatal(err)
		}
		got[e.Type()] = string(e.Data())
		if e.Extensions()[bus.ExtCauseID] != in.ID() {
			t.Errorf("%s causeid %v, want %s", e.Type(), e.Extensions()[bus.ExtCauseID], in.ID())
		}
	}
	if got["com.example.echo.extra"] != "first" || got["com.example.echo.replied"] != "twice" {
		t.Errorf("Next(com.example.echo.>) gave %v, want the extra and the reply", got)
	}
}

func TestNextReportsInvalidEvents(t *testing.T) {
	t.Parallel()
	h := kittest.Start(t, newEcho())
	// Something on the plugin's subjects that is not an event.
	if err := h.Conn.PublishMsg(&nats.Msg{Subject: "plugbus.events.echo.com.example.junk", Data: []byte("junk")}); err != nil {
		t.Fatal(err)
	}
	if err := h.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	_, err := h.Next("com.example.echo.replied")
	if err == nil || !strings.Contains(err.Error(), "not a valid event") || !strings.Contains(err.Error(), "plugbus.events.echo.com.example.junk") {
		t.Errorf("Next: got %v, want an error naming the subject of the invalid message", err)
	}
}

func TestRequest(t *testing.T) {
	t.Parallel()
	h := kittest.Start(t, newEcho())
	for _, tc := range []struct {
		name     string
		event    *pluginkit.Event
		wantData string
		wantErr  func(error) bool
	}{
		{name: "reply", event: pluginkit.NewEvent("com.example.echo.requested", []byte("hi")), wantData: "hi"},
		{
			name:  "error reply",
			event: pluginkit.NewEvent("com.example.echo.requested", []byte("fail")),
			wantErr: func(err error) bool {
				var se *bus.ServiceError
				return errors.As(err, &se) && se.Code == bus.CodeFailed && se.Description == "no luck"
			},
		},
		{
			name:    "no handler",
			event:   pluginkit.NewEvent("com.example.nobody.requested", nil),
			wantErr: func(err error) bool { return errors.Is(err, bus.ErrNoResponders) },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reply, err := h.Request(tc.event)
			if tc.wantErr != nil {
				if !tc.wantErr(err) {
					t.Errorf("got reply %v, error %v; not the error wanted", reply, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := string(reply.Data()); got != tc.wantData {
				t.Errorf("got %q, want %q", got, tc.wantData)
			}
			if got := reply.Extensions()[bus.ExtCauseID]; got != tc.event.ID() {
				t.Errorf("reply causeid %v, want %s", got, tc.event.ID())
			}
		})
	}
}

func TestNewFailsWhenThePluginCannotStart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		plugin *pluginkit.Plugin
		want   string
	}{
		{name: "no handlers", plugin: pluginkit.New("empty", "1.0.0", quiet), want: "no handlers"},
		{name: "bad version", plugin: func() *pluginkit.Plugin {
			p := pluginkit.New("old", "one", quiet)
			p.HandleFunc("com.example.a", echo)
			return p
		}(), want: "semantic version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := kittest.New(tc.plugin)
			if err == nil {
				h.Close()
				t.Fatal("New returned no error")
			}
			if h != nil || !strings.Contains(err.Error(), "kittest") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got harness %v, error %v; want none and an error saying %q", h, err, tc.want)
			}
		})
	}
}

func TestCloseReturnsThePluginsError(t *testing.T) {
	t.Parallel()
	began := make(chan struct{})
	p := pluginkit.New("stuck", "1.0.0", quiet, pluginkit.WithDrainTimeout(50*time.Millisecond))
	p.HandleFunc("com.example.stuck.requested", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		close(began)
		time.Sleep(1300 * time.Millisecond) // ignores ctx
		return nil, nil
	})
	h, err := kittest.New(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Publish(pluginkit.NewEvent("com.example.stuck.requested", nil)); err != nil {
		t.Fatal(err)
	}
	<-began
	if err := h.Close(); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Errorf("Close: got %v, want the plugin's error about a handler still running", err)
	}
	if err := h.Close(); err != nil {
		t.Errorf("second Close: got %v, want nil", err)
	}
}

func TestStartClosesWhenTheTestEnds(t *testing.T) {
	t.Parallel()
	var h *kittest.Harness
	t.Run("inner", func(t *testing.T) {
		h = kittest.Start(t, newEcho())
		if !h.Server.Running() || h.Conn.IsClosed() {
			t.Fatal("harness not running during the test")
		}
	})
	if h.Server.Running() || !h.Conn.IsClosed() {
		t.Errorf("after the test: server running %v, connection closed %v; want stopped and closed", h.Server.Running(), h.Conn.IsClosed())
	}
}
