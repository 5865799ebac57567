package registry_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"

	"github.com/plugbus/plugbus/bus/bustest"
	"github.com/plugbus/plugbus/coordinator/internal/registry"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// The registry knows who answers what: exact handlers answer, pattern and
// ObserveOnly handlers do not, a pattern registered with Answer answers every
// type it matches, and a type two different plugins answer is ambiguous,
// while instances of one plugin never are.
func TestAnswers(t *testing.T) {
	s := bustest.NewServer(t)
	r := startRegistry(t, bustest.Connect(t, s), &changes{})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	nop := func(context.Context, pluginkit.Event) (*pluginkit.Event, error) { return nil, nil }
	run := func(name, pattern string, opts ...pluginkit.HandleOption) (stop func()) {
		p := pluginkit.New(name, "1.0.0", pluginkit.WithLogger(quiet))
		p.HandleFunc(pattern, nop, opts...)
		return servePlugin(t, bustest.Connect(t, s), p)
	}
	const greet = "com.example.greet.requested"
	run("hello", greet)
	run("hello", greet) // a second instance
	stopHello2 := run("hello2", greet)
	run("archive", "com.example.>")
	run("audit", greet, pluginkit.ObserveOnly())
	run("gateway", "org.example.>", pluginkit.Answering())

	byName := func() map[string]registry.Plugin {
		m := map[string]registry.Plugin{}
		for _, p := range r.Plugins() {
			m[p.Name] = p
		}
		return m
	}
	waitFor(t, "every plugin with its answers", func() error {
		m := byName()
		if len(m) != 5 || m["hello"].Running != 2 || len(m["hello2"].Answers) != 1 || len(m["gateway"].Answers) != 1 {
			return fmt.Errorf("plugins %+v", m)
		}
		return nil
	})
	m := byName()
	for name, want := range map[string][]string{
		"hello": {greet}, "hello2": {greet}, "archive": nil, "audit": nil, "gateway": {"org.example.>"},
	} {
		if got := m[name].Answers; !slices.Equal(got, want) {
			t.Errorf("%s answers %v, want %v", name, got, want)
		}
	}
	wantAmbiguity := []registry.Ambiguity{{Type: greet, Plugins: []string{"hello", "hello2"}}}
	for _, name := range []string{"hello", "hello2"} {
		if got := m[name].Ambiguous; !slices.EqualFunc(got, wantAmbiguity, func(a, b registry.Ambiguity) bool {
			return a.Type == b.Type && slices.Equal(a.Plugins, b.Plugins)
		}) {
			t.Errorf("%s ambiguous %+v, want %+v", name, got, wantAmbiguity)
		}
	}
	for _, name := range []string{"archive", "audit", "gateway"} {
		if got := m[name].Ambiguous; len(got) != 0 {
			t.Errorf("%s ambiguous %+v, want none", name, got)
		}
	}
	for typ, want := range map[string][]string{
		greet:                     {"hello", "hello2"},
		"org.example.thing.asked": {"gateway"},
		"com.example.other":       nil,
		"org.example":             nil,
	} {
		if got := r.Answerers(typ); !slices.Equal(got, want) {
			t.Errorf("Answerers(%s) = %v, want %v", typ, got, want)
		}
	}

	// Asked again once a plugin has stopped, the answer follows.
	stopHello2()
	waitFor(t, "hello alone answering once hello2 stopped", func() error {
		if got := r.Answerers(greet); !slices.Equal(got, []string{"hello"}) {
			return fmt.Errorf("Answerers(%s) = %v", greet, got)
		}
		return nil
	})
}
