package registry

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestOverlap(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"com.example.greet.requested", "com.example.greet.requested", true},
		{"com.example.greet.requested", "com.example.greet.sent", false},
		{"com.example.>", "com.example.greet.requested", true},
		{"com.example.>", "com.example", false},
		{"com.*.greet.requested", "com.example.*.requested", true},
		{"com.*", "com.example.greet", false},
		{"com.*.x", "org.>", false},
		{">", "a", true},
		{"a.b", "a.b.c", false},
	} {
		if got := overlap(tc.a, tc.b); got != tc.want {
			t.Errorf("overlap(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := overlap(tc.b, tc.a); got != tc.want {
			t.Errorf("overlap(%q, %q) = %v, want %v", tc.b, tc.a, got, tc.want)
		}
	}
}

// The index finds the same ambiguities as comparing every pattern of
// every plugin with every other, exact types and wildcards mixed.
func TestAnswerIndexMatchesPairwise(t *testing.T) {
	vocabulary := []string{
		"a.b.c", "a.b.d", "a.x.c", "b.b.c", "a.b", "a.*.c", "a.b.*", "a.>", "*.b.c", ">", "b.>", "a.*",
	}
	instances := map[string]*Instance{}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 60 {
		in := &Instance{ID: fmt.Sprint(i), Plugin: fmt.Sprintf("p%d", rng.IntN(12)), State: Running}
		if rng.IntN(8) == 0 {
			in.State = Gone // not counted
		}
		for range rng.IntN(4) {
			in.Answers = append(in.Answers, vocabulary[rng.IntN(len(vocabulary))])
		}
		instances[in.ID] = in
	}
	idx := answersOf(instances)
	for plugin := range idx.byPlugin {
		answers, got := idx.of(plugin)
		var want []Ambiguity
		for _, mine := range answers {
			names := []string{plugin}
			for other, patterns := range idx.byPlugin {
				if other == plugin {
					continue
				}
				for theirs := range patterns {
					if overlap(mine, theirs) {
						names = append(names, other)
						break
					}
				}
			}
			if len(names) > 1 {
				slices.Sort(names)
				want = append(want, Ambiguity{Type: mine, Plugins: names})
			}
		}
		if !slices.EqualFunc(got, want, func(a, b Ambiguity) bool {
			return a.Type == b.Type && slices.Equal(a.Plugins, b.Plugins)
		}) {
			t.Errorf("%s: ambiguous %+v, want %+v", plugin, got, want)
		}
	}
}

// The index answers Answerers as a scan of every running instance's
// patterns did.
func TestAnswerersMatchesScan(t *testing.T) {
	vocabulary := []string{
		"a.b.c", "a.b.d", "a.x.c", "b.b.c", "a.b", "a.*.c", "a.b.*", "a.>", "*.b.c", ">", "b.>", "a.*",
	}
	instances := map[string]*Instance{}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 60 {
		in := &Instance{ID: fmt.Sprint(i), Plugin: fmt.Sprintf("p%d", rng.IntN(12)), State: Running}
		if rng.IntN(8) == 0 {
			in.State = Gone
		}
		for range rng.IntN(4) {
			in.Answers = append(in.Answers, vocabulary[rng.IntN(len(vocabulary))])
		}
		instances[in.ID] = in
	}
	idx := answersOf(instances)
	for _, typ := range append(vocabulary, "a.b.c.d", "b.x", "c", "a") {
		var want []string
		for _, in := range instances {
			if in.State != Running || slices.Contains(want, in.Plugin) {
				continue
			}
			if slices.ContainsFunc(in.Answers, func(p string) bool { return matchType(p, typ) }) {
				want = append(want, in.Plugin)
			}
		}
		slices.Sort(want)
		if got := idx.answerers(typ); !slices.Equal(got, want) {
			t.Errorf("answerers(%s) = %v, want %v", typ, got, want)
		}
	}
}

// BenchmarkAnswerers asks who answers a type among 1,000 instances of 100
// plugins answering 10 types each, as every invoke through the HTTP API
// does.
func BenchmarkAnswerers(b *testing.B) {
	r := New(Config{})
	for i := range 1000 {
		in := &Instance{ID: fmt.Sprint(i), Plugin: fmt.Sprintf("scale-%d", i%100), State: Running}
		for j := range 10 {
			in.Answers = append(in.Answers, fmt.Sprintf("com.example.scale.i%d.t%d", i, j))
		}
		r.instances[in.ID] = in
	}
	for b.Loop() {
		r.Answerers("com.example.scale.i500.t5")
	}
}

// BenchmarkPlugins lists 1,000 instances of 100 plugins answering 10
// types each, every type its own: the listing the scale benchmark asks
// for every 200 ms.
func BenchmarkPlugins(b *testing.B) {
	r := New(Config{})
	for i := range 1000 {
		in := &Instance{ID: fmt.Sprint(i), Plugin: fmt.Sprintf("scale-%d", i%100), State: Running}
		for j := range 10 {
			in.Answers = append(in.Answers, fmt.Sprintf("com.example.scale.i%d.t%d", i, j))
		}
		in.Handles = in.Answers
		r.instances[in.ID] = in
	}
	for b.Loop() {
		r.Plugins()
	}
}
