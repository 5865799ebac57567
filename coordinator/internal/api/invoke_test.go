package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator/internal/api"
)

// greeter is a real plugin-like responder: a NATS micro service handling
// com.example.greet.requested. It answers {"text":"hello, <name>"} as a
// com.example.greet.sent event, a 422 for a missing name, a 500 for the name
// "crash", and no event for the name "nobody".
func greeter(t testing.TB, nc *nats.Conn) { greeterNamed(t, nc, "greeter") }

// greeterNamed is greeter as plugin name: it leaves a request that names
// another plugin in bus.HeaderPlugin unanswered, as plugin-kit does, and
// says who it is in the answer's "by".
func greeterNamed(t testing.TB, nc *nats.Conn, name string) {
	t.Helper()
	subject, err := bus.AnswerSubject(bus.DefaultPrefix, "com.example.greet.requested")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name: name, Version: "1.0.0", QueueGroup: name,
		Endpoint: &micro.EndpointConfig{Subject: subject, Handler: micro.HandlerFunc(func(req micro.Request) {
			if to := req.Headers().Get(bus.HeaderPlugin); to != "" && to != name {
				return
			}
			in, err := bus.Decode(&nats.Msg{Header: nats.Header(req.Headers()), Data: req.Data()})
			if err != nil {
				_ = req.Error(bus.CodeBadEvent, err.Error(), nil)
				return
			}
			if _, ok := bus.Deadline(in); !ok {
				_ = req.Error(bus.CodeBadEvent, "request carries no deadline", nil)
				return
			}
			var data struct{ Name string }
			if err := in.DataAs(&data); err != nil || data.Name == "" {
				_ = req.Error(bus.CodePermanent, "name is required in the data", nil)
				return
			}
			switch data.Name {
			case "crash":
				_ = req.Error(bus.CodeFailed, "greeter crashed", nil)
				return
			case "nobody":
				_ = req.Respond(nil)
				return
			case "badjson":
				_ = req.Respond([]byte(`{"text":`), micro.WithHeaders(micro.Headers{
					"ce-specversion": {"1.0"}, "ce-id": {"reply-" + in.ID()}, "ce-source": {"urn:plugbus:greeter"},
					"ce-type": {"com.example.greet.sent"}, "ce-datacontenttype": {"application/json"},
				}))
				return
			}
			out := event.New()
			out.SetID("reply-" + in.ID())
			out.SetSource("urn:plugbus:greeter")
			out.SetType("com.example.greet.sent")
			out.SetExtension(bus.ExtCauseID, in.ID())
			_ = out.SetData("application/json", map[string]string{"text": "hello, " + data.Name, "from": in.Source(), "by": name})
			var msg nats.Msg
			if err := bus.Encode(&out, &msg); err != nil {
				_ = req.Error(bus.CodeFailed, err.Error(), nil)
				return
			}
			_ = req.Respond(msg.Data, micro.WithHeaders(micro.Headers(msg.Header)))
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestInvoke(t *testing.T) {
	e := newEnv(t, nil)
	greeter(t, e.nc)
	const path = "/v1/invoke/com.example.greet.requested"

	reply := func(t *testing.T, resp response) *event.Event {
		t.Helper()
		if resp.status != http.StatusOK {
			t.Fatalf("status %d, want 200: %s", resp.status, resp.body)
		}
		if ct := resp.header.Get("Content-Type"); ct != "application/cloudevents+json" {
			t.Errorf("Content-Type %q, want application/cloudevents+json", ct)
		}
		var ev event.Event
		if err := json.Unmarshal(resp.body, &ev); err != nil {
			t.Fatalf("reply is not a structured event: %v: %s", err, resp.body)
		}
		if ev.Type() != "com.example.greet.sent" {
			t.Errorf("reply type %q", ev.Type())
		}
		return &ev
	}
	text := func(t *testing.T, ev *event.Event) map[string]string {
		t.Helper()
		var d map[string]string
		if err := ev.DataAs(&d); err != nil {
			t.Fatal(err)
		}
		return d
	}

	t.Run("binary event", func(t *testing.T) {
		ev := reply(t, e.do("POST", path, binary("req-1", "com.example.greet.requested"), []byte(`{"name":"ann"}`)))
		if ev.ID() != "reply-req-1" || ev.Extensions()[bus.ExtCauseID] != "req-1" {
			t.Errorf("reply id %q causeid %v", ev.ID(), ev.Extensions()[bus.ExtCauseID])
		}
		if d := text(t, ev); d["text"] != "hello, ann" || d["from"] != "urn:test" {
			t.Errorf("reply data %v", d)
		}
	})
	t.Run("structured event", func(t *testing.T) {
		body := `{"specversion":"1.0","id":"req-2","source":"urn:test","type":"com.example.greet.requested","datacontenttype":"application/json","data":{"name":"bo"}}`
		ev := reply(t, e.do("POST", path, structured(), []byte(body)))
		if d := text(t, ev); d["text"] != "hello, bo" {
			t.Errorf("reply data %v", d)
		}
	})
	t.Run("plain JSON data", func(t *testing.T) {
		ev := reply(t, e.do("POST", path, http.Header{"Content-Type": {"application/json"}}, []byte(`{"name":"cy"}`)))
		d := text(t, ev)
		if d["text"] != "hello, cy" || d["from"] != bus.Source("http") {
			t.Errorf("reply data %v; want a greeting for cy from %s", d, bus.Source("http"))
		}
		if !strings.HasPrefix(ev.ID(), "reply-") || len(ev.ID()) < len("reply-")+10 {
			t.Errorf("the request had no fresh id: reply id %q", ev.ID())
		}
	})
	t.Run("plain data without content type is JSON", func(t *testing.T) {
		ev := reply(t, e.do("POST", path, nil, []byte(`{"name":"di"}`)))
		if d := text(t, ev); d["text"] != "hello, di" {
			t.Errorf("reply data %v", d)
		}
	})
	t.Run("empty reply", func(t *testing.T) {
		resp := e.do("POST", path, nil, []byte(`{"name":"nobody"}`))
		if resp.status != http.StatusNoContent || len(resp.body) != 0 {
			t.Fatalf("status %d body %q, want 204 and no body", resp.status, resp.body)
		}
	})

	errs := []struct {
		name      string
		path      string
		header    http.Header
		body      string
		status    int
		field     string
		mentions  string
		code      string
		pluginErr bool
	}{
		{"plugin rejects for good", path, nil, `{}`, 422, "", "name is required", "422", true},
		{"plugin fails", path, nil, `{"name":"crash"}`, 502, "", "greeter crashed", "500", true},
		{"plugin replies with data that is not JSON", path, nil, `{"name":"badjson"}`, 502, "", "not valid JSON", "", true},
		{"nobody handles the type", "/v1/invoke/com.example.unknown", nil, `{}`, 404, "type", "no plugin answers type com.example.unknown", "", false},
		{"type differs from the URL", path, binary("x", "com.example.other"), `{}`, 400, "type", "com.example.other", "", false},
		{"invalid type in the URL", "/v1/invoke/a..b", nil, `{}`, 400, "type", "empty dot-separated part", "", false},
		{"plain data that is not JSON", path, http.Header{"Content-Type": {"application/json"}}, `{"name":`, 400, "data", "not valid JSON", "", false},
		{"invalid event", path, merge(binary("", "com.example.greet.requested")), `{}`, 400, "id", "required", "", false},
		{"batch", path, batch(), `[]`, 415, "Content-Type", "POST /v1/events", "", false},
		{"bad timeout", path + "?timeout=soon", nil, `{}`, 400, "timeout", "Go duration", "", false},
		{"zero timeout", path + "?timeout=0s", nil, `{}`, 400, "timeout", "above 0", "", false},
		{"timeout too long", path + "?timeout=1h", nil, `{}`, 400, "timeout", "5m", "", false},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do("POST", tt.path, tt.header, []byte(tt.body))
			if resp.status != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.status, tt.status, resp.body)
			}
			eb := resp.errorBody(t)
			if eb.Field != tt.field || eb.Code != tt.code || eb.PluginError != tt.pluginErr {
				t.Errorf("got field %q code %q plugin_error %v, want %q %q %v", eb.Field, eb.Code, eb.PluginError, tt.field, tt.code, tt.pluginErr)
			}
			if !strings.Contains(eb.Error, tt.mentions) {
				t.Errorf("error %q does not mention %q", eb.Error, tt.mentions)
			}
		})
	}
	// The plain data event was published on the caller's subject.
	t.Run("still answers after errors", func(t *testing.T) {
		reply(t, e.do("POST", path, nil, []byte(`{"name":"ed"}`)))
	})
}

func TestInvokeTimeout(t *testing.T) {
	e := newEnv(t, func(c *api.Config) { c.InvokeTimeout = 5 * time.Second })
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	sub, err := e.nc.Subscribe("plugbus.invoke.*.com.example.slow", func(m *nats.Msg) {
		select {
		case <-release:
		case <-time.After(3 * time.Second):
		}
		_ = m.Respond(nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	resp := e.do("POST", "/v1/invoke/com.example.slow?timeout=200ms", nil, []byte(`{}`))
	took := time.Since(start)
	if resp.status != http.StatusGatewayTimeout {
		t.Fatalf("status %d, want 504: %s", resp.status, resp.body)
	}
	if eb := resp.errorBody(t); !strings.Contains(eb.Error, "200ms") || !strings.Contains(eb.Error, "?timeout=") {
		t.Errorf("error %q should name the timeout and how to raise it", eb.Error)
	}
	if took > 2*time.Second {
		t.Errorf("took %v with ?timeout=200ms", took)
	}
	fams := scrape(t, e)
	if n := histCount(t, fams, "plugbus_invoke_duration_seconds", map[string]string{"type": "com.example.slow", "outcome": "timeout"}); n != 1 {
		t.Errorf("timeout observations = %d, want 1", n)
	}
}

// Two different plugins answering a type: an invoke must name one, and a
// named plugin must be one that answers.
func TestInvokeAmbiguity(t *testing.T) {
	answerers := map[string][]string{"com.example.greet.requested": {"greeter", "rival"}}
	e := newEnv(t, func(c *api.Config) {
		c.Answerers = func(typ string) []string { return answerers[typ] }
	})
	greeterNamed(t, e.nc, "greeter")
	greeterNamed(t, e.nc, "rival")
	const path = "/v1/invoke/com.example.greet.requested"

	resp := e.do("POST", path, nil, []byte(`{"name":"ann"}`))
	if resp.status != http.StatusConflict {
		t.Fatalf("unnamed invoke of an ambiguous type: status %d, want 409: %s", resp.status, resp.body)
	}
	if eb := resp.errorBody(t); !strings.Contains(eb.Error, "greeter") || !strings.Contains(eb.Error, "rival") || !strings.Contains(eb.Error, "?plugin=") || eb.Field != "plugin" {
		t.Errorf("409 %+v: want it to name both plugins and ?plugin=", eb)
	}
	for _, name := range []string{"greeter", "rival"} {
		for range 5 {
			resp := e.do("POST", path+"?plugin="+name, nil, []byte(`{"name":"ann"}`))
			var got struct{ Data struct{ By string } }
			if resp.status != http.StatusOK || json.Unmarshal(resp.body, &got) != nil || got.Data.By != name {
				t.Fatalf("?plugin=%s: status %d, answered by %q: %s", name, resp.status, got.Data.By, resp.body)
			}
		}
	}
	for _, tc := range []struct {
		query    string
		status   int
		mentions []string
	}{
		{"?plugin=hello", http.StatusNotFound, []string{"hello", "greeter, rival", "/v1/plugins"}},
		{"?plugin=a.b", http.StatusBadRequest, []string{`"a.b"`}},
	} {
		resp := e.do("POST", path+tc.query, nil, []byte(`{"name":"ann"}`))
		if resp.status != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.query, resp.status, tc.status, resp.body)
			continue
		}
		eb := resp.errorBody(t)
		for _, m := range tc.mentions {
			if !strings.Contains(eb.Error, m) {
				t.Errorf("%s: error %q does not mention %q", tc.query, eb.Error, m)
			}
		}
	}
}
