package pluginkit_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// stdioLine is a line the plugin writes, as docs/stdio.md describes it.
type stdioLine struct {
	Manifest *struct {
		Protocol    int                        `json:"protocol"`
		Name        string                     `json:"name"`
		Version     string                     `json:"version"`
		Answers     []string                   `json:"answers"`
		Handles     []string                   `json:"handles"`
		Emits       []string                   `json:"emits"`
		Concurrency int                        `json:"concurrency"`
		Schemas     map[string]json.RawMessage `json:"schemas"`
	} `json:"manifest"`
	ID    string          `json:"id"`
	Event json.RawMessage `json:"event"`
	Emit  json.RawMessage `json:"emit"`
	Error *struct {
		Message   string `json:"message"`
		Permanent bool   `json:"permanent"`
	} `json:"error"`
}

// serveStdio serves p over pipes: in takes the bridge's lines, next reads
// the plugin's next line, and done gets ServeStdio's result once in is
// closed.
func serveStdio(t *testing.T, p *pluginkit.Plugin) (in *io.PipeWriter, next func() stdioLine, done <-chan error) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	served := make(chan error, 1)
	go func() { served <- p.ServeStdio(context.Background(), inR, outW) }()
	out := bufio.NewScanner(outR)
	return inW, func() stdioLine {
		t.Helper()
		if !out.Scan() {
			t.Fatalf("no line from the plugin: %v", out.Err())
		}
		var l stdioLine
		if err := json.Unmarshal(out.Bytes(), &l); err != nil {
			t.Fatalf("line %s: %v", out.Bytes(), err)
		}
		return l
	}, served
}

func TestServeStdio(t *testing.T) {
	p := pluginkit.New("greeter", "1.0.0", pluginkit.WithEmits("com.example.greet.sent"), pluginkit.WithConcurrency(1))
	p.HandleFunc("com.example.greet.requested", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		var req struct{ Name string }
		if err := e.DataAs(&req); err != nil {
			return nil, pluginkit.Permanent(err)
		}
		if req.Name == "" {
			return nil, errors.New("no name yet")
		}
		if err := pluginkit.Emit(ctx, pluginkit.NewEvent("com.example.greet.noted", map[string]string{"by": pluginkit.Producer(ctx)})); err != nil {
			return nil, err
		}
		return pluginkit.NewEvent("com.example.greet.sent", map[string]string{"text": "hello, " + req.Name}), nil
	})
	p.HandleFunc("com.example.audit.>", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		panic("audit broke")
	})

	inW, next, done := serveStdio(t, p)
	send := func(id, typ, data string) {
		t.Helper()
		line := `{"id":"` + id + `","producer":"cli","event":{"specversion":"1.0","id":"e` + id + `","source":"urn:test","type":"` + typ + `","datacontenttype":"application/json","data":` + data + `}}` + "\n"
		if _, err := io.WriteString(inW, line); err != nil {
			t.Fatal(err)
		}
	}

	m := next().Manifest
	if m == nil || m.Protocol != 1 || m.Name != "greeter" || m.Version != "1.0.0" || m.Concurrency != 1 ||
		strings.Join(m.Answers, ",") != "com.example.greet.requested" || strings.Join(m.Handles, ",") != "com.example.audit.>" ||
		strings.Join(m.Emits, ",") != "com.example.greet.sent" {
		t.Fatalf("manifest %+v", m)
	}

	send("1", "com.example.greet.requested", `{"name":"Ada"}`)
	emit := next()
	var noted struct {
		Type, Source, CauseID string
		Data                  struct{ By string }
	}
	if err := json.Unmarshal(emit.Emit, &noted); err != nil || noted.Type != "com.example.greet.noted" || noted.Data.By != "cli" || noted.CauseID != "e1" || noted.Source != "urn:plugbus:greeter" {
		t.Fatalf("emitted %s (%v)", emit.Emit, err)
	}
	res := next()
	var sent struct {
		Type, Source string
		Data         struct{ Text string }
	}
	// The bridge links a result to its trigger, as it does any program's.
	if err := json.Unmarshal(res.Event, &sent); res.ID != "1" || err != nil || sent.Type != "com.example.greet.sent" || sent.Data.Text != "hello, Ada" || sent.Source != "urn:plugbus:greeter" {
		t.Fatalf("answer %+v: %s (%v)", res, res.Event, err)
	}

	for _, tc := range []struct {
		typ, data string
		permanent bool
	}{
		{"com.example.greet.requested", `3`, true},
		{"com.example.greet.requested", `{}`, false},
		{"com.example.audit.login", `{}`, false}, // the handler panics
		{"com.example.unknown", `{}`, true},
	} {
		send("2", tc.typ, tc.data)
		l := next()
		if l.ID != "2" || l.Error == nil || l.Error.Permanent != tc.permanent {
			t.Fatalf("%s %s: got %+v %+v, want an error, permanent %v", tc.typ, tc.data, l, l.Error, tc.permanent)
		}
	}

	inW.Close() // the bridge is done
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ServeStdio: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeStdio did not return after its input ended")
	}
}

// TestServeStdioSchemas: the manifest carries the schemas of typed
// handlers, and a line the bridge marks as checked against one is not
// checked again.
func TestServeStdioSchemas(t *testing.T) {
	type request struct {
		Name string `json:"name"`
	}
	p := pluginkit.New("typed", "1.0.0")
	pluginkit.Answer(p, "com.example.greet.requested", "com.example.greet.sent", func(ctx context.Context, r request) (map[string]string, error) {
		return map[string]string{"text": "hello, " + r.Name}, nil
	})
	inW, next, done := serveStdio(t, p)
	m := next().Manifest
	if m == nil || !strings.Contains(string(m.Schemas["com.example.greet.requested"]), `"name"`) {
		t.Fatalf("manifest %+v: want the request's schema", m)
	}
	for _, tc := range []struct{ checked, want string }{
		{"", "name"}, // the schema's error names the field
		{"com.example.greet.requested", "does not decode"}, // checked by the bridge: only decoded
		{"com.example.other", "name"},                      // checked against another type's schema
	} {
		line := `{"id":"1","producer":"cli","checked":"` + tc.checked + `","event":{"specversion":"1.0","id":"e1","source":"urn:test","type":"com.example.greet.requested","data":{"name":3}}}` + "\n"
		if _, err := io.WriteString(inW, line); err != nil {
			t.Fatal(err)
		}
		l := next()
		if l.ID != "1" || l.Error == nil || !l.Error.Permanent || !strings.Contains(l.Error.Message, tc.want) {
			t.Fatalf("checked %q: got %+v %+v, want a permanent error containing %q", tc.checked, l, l.Error, tc.want)
		}
	}
	inW.Close()
	if err := <-done; err != nil {
		t.Fatalf("ServeStdio: %v", err)
	}
}

// TestServeStdioTyped: typed handlers over the stdio protocol answer as
// any handler does (the short path of plugin-kit's stdio serving skips
// building events, and must not show): the same answer as through a
// middleware, which takes the full path; the request's deadline in the
// handler's context; Emit linked to the event being handled; an observer's
// empty answer; a panic as an error.
func TestServeStdioTyped(t *testing.T) {
	type request struct {
		Name string `json:"name"`
	}
	type greeting struct {
		Text string `json:"text"`
	}
	deadline := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	serve := func(t *testing.T, middleware bool) (send func(typ, data string) stdioLine) {
		p := pluginkit.New("typed", "1.0.0", pluginkit.WithConcurrency(1))
		if middleware {
			p.Use(func(next pluginkit.Handler) pluginkit.Handler { return next })
		}
		pluginkit.Answer(p, "com.example.greet.requested", "com.example.greet.sent", func(ctx context.Context, r request) (greeting, error) {
			if dl, ok := ctx.Deadline(); !ok || !dl.Equal(deadline) {
				return greeting{}, fmt.Errorf("deadline %v, want %v", dl, deadline)
			}
			if r.Name == "panic" {
				panic("greeter broke")
			}
			if err := pluginkit.Emit(ctx, pluginkit.NewEvent("com.example.greet.noted", nil)); err != nil {
				return greeting{}, err
			}
			return greeting{Text: "hello, " + r.Name}, nil
		})
		pluginkit.On(p, "com.example.audit.>", func(ctx context.Context, r request) error { return nil })
		inW, next, done := serveStdio(t, p)
		t.Cleanup(func() {
			inW.Close()
			if err := <-done; err != nil {
				t.Errorf("ServeStdio: %v", err)
			}
		})
		next() // the manifest
		return func(typ, data string) stdioLine {
			t.Helper()
			line := `{"id":"1","producer":"cli","checked":"` + typ + `","event":{"specversion":"1.0","id":"e1","source":"urn:test","type":"` + typ +
				`","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","deadline":"` + deadline.Format(time.RFC3339Nano) + `","data":` + data + `}}` + "\n"
			if _, err := io.WriteString(inW, line); err != nil {
				t.Fatal(err)
			}
			if data == `{"name":"Ada"}` && typ == "com.example.greet.requested" {
				emitted := next()
				var noted map[string]any
				if err := json.Unmarshal(emitted.Emit, &noted); err != nil || noted["type"] != "com.example.greet.noted" || noted["causeid"] != "e1" ||
					noted["traceparent"] != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" {
					t.Fatalf("emitted %s (%v), want it linked to e1", emitted.Emit, err)
				}
			}
			return next()
		}
	}
	short, full := serve(t, false), serve(t, true)

	attributes := func(l stdioLine) map[string]any {
		t.Helper()
		var a map[string]any
		if err := json.Unmarshal(l.Event, &a); err != nil || a["id"] == "" || a["time"] == nil {
			t.Fatalf("answer %+v %s (%v): want an event with an id and a time", l, l.Event, err)
		}
		delete(a, "id")
		delete(a, "time")
		return a
	}
	got, want := attributes(short("com.example.greet.requested", `{"name":"Ada"}`)), attributes(full("com.example.greet.requested", `{"name":"Ada"}`))
	if !reflect.DeepEqual(got, want) || want["dataschema"] != "urn:plugbus:schema:typed:1.0.0:com.example.greet.sent" {
		t.Fatalf("answer %v, want %v as through a middleware", got, want)
	}
	for _, tc := range []struct{ typ, data string }{
		{"com.example.audit.login", `{"name":"Ada"}`},
		{"com.example.greet.requested", `{"name":"panic"}`},
		{"com.example.greet.requested", `[1]`},
	} {
		got, want := short(tc.typ, tc.data), full(tc.typ, tc.data)
		if got.Event != nil || (got.Error == nil) != (want.Error == nil) || got.Error != nil && *got.Error != *want.Error {
			t.Errorf("%s %s: got %+v %+v, want %+v %+v as through a middleware", tc.typ, tc.data, got, got.Error, want, want.Error)
		}
	}
}
