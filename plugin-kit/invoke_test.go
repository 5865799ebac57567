package pluginkit_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// Who answers a request and who only observes: an exact handler answers, a
// pattern handler and an ObserveOnly handler observe, a request naming a
// plugin is answered by that plugin alone, and nothing answers on an
// events subject.
func TestAnswerAndObserve(t *testing.T) {
	t.Parallel()
	s := bustest.NewServer(t)
	nc := bustest.Connect(t, s)
	const typ = "com.example.greet.requested"

	observed := map[string]*observer{}
	answering := func(name string) *pluginkit.Plugin {
		p := newPlugin(name, "1.0.0")
		p.HandleFunc(typ, func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
			return pluginkit.NewEvent("com.example.greet.sent", []byte(name)), nil
		})
		return p
	}
	observing := func(name, pattern string, opts ...pluginkit.HandleOption) *pluginkit.Plugin {
		observed[name] = &observer{seen: map[string]int{}}
		p := newPlugin(name, "1.0.0")
		p.Handle(pattern, observed[name], opts...)
		return p
	}
	serve(t, s, answering("greeter"))
	serve(t, s, answering("other"))
	serve(t, s, observing("archive", "com.example.>"))
	serve(t, s, observing("audit", typ, pluginkit.ObserveOnly()))
	caller := newPlugin("caller", "1.0.0")
	caller.HandleFunc("com.example.caller.unused", func(context.Context, pluginkit.Event) (*pluginkit.Event, error) { return nil, nil })
	serve(t, s, caller)

	t.Run("a request naming a plugin is answered by it alone", func(t *testing.T) {
		for _, name := range []string{"greeter", "other"} {
			for i := range 10 {
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				reply, err := bus.Request(ctx, nc, bus.DefaultPrefix, tester, pluginkit.NewEvent(typ, nil), bus.AnsweredBy(name))
				cancel()
				if err != nil || reply == nil {
					t.Fatalf("request %d naming %s: got %v, %v", i, name, reply, err)
				}
				if got := string(reply.Data()); got != name {
					t.Fatalf("request %d naming %s: answered by %s", i, name, got)
				}
			}
		}
	})
	t.Run("plugin-kit's Invoke names a plugin with AnsweredBy", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		reply, err := caller.Invoke(ctx, pluginkit.NewEvent(typ, nil), pluginkit.AnsweredBy("other"))
		if err != nil || reply == nil || string(reply.Data()) != "other" {
			t.Fatalf("Invoke AnsweredBy(other): got %v, %v; want other's answer", reply, err)
		}
		if _, err := caller.Invoke(ctx, pluginkit.NewEvent(typ, nil), pluginkit.AnsweredBy("not a name")); err == nil || !strings.Contains(err.Error(), "AnsweredBy") {
			t.Errorf("Invoke AnsweredBy(\"not a name\"): got %v, want an error naming AnsweredBy", err)
		}
	})
	t.Run("a type only observed has no responders, at once", func(t *testing.T) {
		start := time.Now()
		_, err := request(nc, pluginkit.NewEvent("com.example.only.observed", nil))
		if !errors.Is(err, bus.ErrNoResponders) {
			t.Fatalf("got %v, want ErrNoResponders", err)
		}
		// Generous for a loaded machine; "at once" is a round trip.
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("no responders took %v", took)
		}
	})
	t.Run("nothing answers on an events subject", func(t *testing.T) {
		e := pluginkit.NewEvent(typ, nil)
		e.SetSource(bus.Source(tester))
		msg, err := nc.RequestMsg(binaryMsg(t, eventSubject(tester, typ), e), 500*time.Millisecond)
		if !errors.Is(err, nats.ErrTimeout) {
			t.Fatalf("request on the events subject: got reply %v, error %v; want no reply at all", msg, err)
		}
		// The observers took it as an event.
		eventually(t, "archive and audit observing the event", func() bool {
			return observed["archive"].count(e.ID()) == 1 && observed["audit"].count(e.ID()) == 1
		})
	})
	t.Run("observers see the results, never the requests", func(t *testing.T) {
		in := pluginkit.NewEvent(typ, nil)
		mustRequest(t, nc, in)
		if n := observed["audit"].count(in.ID()); n != 0 {
			t.Errorf("audit observed the request %d times; requests are not events", n)
		}
		eventually(t, "archive observing the result", func() bool {
			return observed["archive"].total() >= 2 // the event above and at least this result
		})
	})
	t.Run("discovery says which endpoints answer", func(t *testing.T) {
		for _, tc := range []struct {
			plugin string
			want   map[string]string // subject -> role
		}{
			{"greeter", map[string]string{"plugbus.events.*." + typ: bus.RoleObserve, "plugbus.invoke.*." + typ: bus.RoleAnswer}},
			{"archive", map[string]string{"plugbus.events.*.com.example.>": bus.RoleObserve}},
			{"audit", map[string]string{"plugbus.events.*." + typ: bus.RoleObserve}},
		} {
			got := map[string]string{}
			for _, ep := range info(t, nc, tc.plugin).Endpoints {
				got[ep.Subject] = ep.Metadata[bus.MetaRole]
				if ep.QueueGroup != tc.plugin {
					t.Errorf("%s endpoint %s: queue group %q, want %q", tc.plugin, ep.Name, ep.QueueGroup, tc.plugin)
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("%s endpoints %v, want %v", tc.plugin, got, tc.want)
			}
			for subject, role := range tc.want {
				if got[subject] != role {
					t.Errorf("%s endpoint %s: role %q, want %q", tc.plugin, subject, got[subject], role)
				}
			}
		}
	})
}

func TestAnsweringAndObserveOnlyContradict(t *testing.T) {
	t.Parallel()
	defer func() {
		if v := recover(); v == nil || !strings.Contains(v.(string), "contradict") {
			t.Errorf("Handle with Answering and ObserveOnly: got panic %v, want one saying they contradict", v)
		}
	}()
	p := newPlugin("confused", "1.0.0")
	p.Handle("com.example.x", &observer{}, pluginkit.Answering(), pluginkit.ObserveOnly())
}

// An observer counts the events it handles by id and returns no result.
type observer struct {
	mu   sync.Mutex
	seen map[string]int
}

func (o *observer) HandleEvent(_ context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
	o.mu.Lock()
	o.seen[e.ID()]++
	o.mu.Unlock()
	return nil, nil
}

func (o *observer) count(id string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seen[id]
}

func (o *observer) total() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, c := range o.seen {
		n += c
	}
	return n
}
