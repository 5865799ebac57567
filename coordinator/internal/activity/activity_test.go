package activity_test

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/plugbus/plugbus/coordinator/internal/activity"
	"github.com/plugbus/plugbus/coordinator/internal/registry"
)

// table is a registry's content set by the test: the tracker only reads
// snapshots, so a table of them is the real input, not a stand-in for
// behaviour.
type table struct {
	mu      sync.Mutex
	plugins []registry.Plugin
	types   map[string]registry.Counters
	version uint64
	reads   int // calls of Plugins
}

func (s *table) Version() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

func (s *table) Plugins() []registry.Plugin {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	return append([]registry.Plugin(nil), s.plugins...)
}

func (s *table) TypeCounters() map[string]registry.Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]registry.Counters{}
	for k, v := range s.types {
		out[k] = v
	}
	return out
}

func (s *table) set(plugins []registry.Plugin, types map[string]registry.Counters) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.plugins, s.types = plugins, types
	s.version++
}

func plugin(name string, handled, failed uint64, n int) registry.Plugin {
	host, _ := os.Hostname()
	p := registry.Plugin{Name: name, State: registry.Running, Handles: []string{"com.example." + name}}
	for i := range n {
		in := registry.Instance{Plugin: name, ID: fmt.Sprintf("%s-%05d", name, i), Host: host, PID: 1_000_000 + i, State: registry.Running, Mode: "process", Description: name + " does things"}
		if i == 0 {
			in.Stats = registry.Counters{Handled: handled, Failed: failed}
		}
		p.Instances = append(p.Instances, in)
	}
	p.Running = n
	return p
}

func TestSnapshotUpdatesAndRates(t *testing.T) {
	src := &table{}
	src.set([]registry.Plugin{plugin("alpha", 0, 0, 2), plugin("beta", 10, 0, 1)},
		map[string]registry.Counters{"com.example.alpha": {}})
	tr := activity.New(activity.Config{Source: src, Interval: time.Second, Samples: 5, Supervised: func() []int { return []int{1_000_000} }})
	tr.Sample()

	snap, updates, cancel := tr.Subscribe(4)
	defer cancel()
	if len(snap.Plugins) != 2 || snap.Plugins[0].Name != "alpha" || snap.Plugins[1].Name != "beta" {
		t.Fatalf("snapshot plugins %+v, want alpha and beta", snap.Plugins)
	}
	a := snap.Plugins[0]
	if a.Instances != 2 || a.States[registry.Running] != 2 || a.Description != "alpha does things" {
		t.Errorf("alpha summary %+v", a)
	}
	if a.Modes["process"] != 2 || a.Supervised != 1 {
		t.Errorf("alpha: modes %v, %d supervised; want 2 process, one supervised (pid 1000000)", a.Modes, a.Supervised)
	}
	if got := len(snap.Rates["alpha"].Handled); got != 5 {
		t.Errorf("alpha's series has %d samples, want 5", got)
	}

	// alpha handles 30 events and fails 3, beta changes nothing, gamma
	// arrives, and the type's counters move.
	src.set([]registry.Plugin{plugin("alpha", 30, 3, 2), plugin("beta", 10, 0, 1), plugin("gamma", 0, 0, 1)},
		map[string]registry.Counters{"com.example.alpha": {Received: 33, Handled: 30, Failed: 3}})
	tr.Sample()
	u := <-updates
	changed := map[string]bool{}
	for _, p := range u.Changed {
		changed[p.Name] = true
	}
	if !changed["alpha"] || !changed["gamma"] || changed["beta"] {
		t.Errorf("changed %v, want alpha and gamma only", changed)
	}
	pt, ok := u.Rates["alpha"]
	if !ok || pt[0] <= 0 || pt[1] <= 0 || pt[1] >= pt[0] {
		t.Errorf("alpha's rates %v (present %v), want handled and failed above 0, failed below handled", pt, ok)
	}
	if _, ok := u.Rates["beta"]; ok {
		t.Errorf("beta's rate %v is sent though it did not move", u.Rates["beta"])
	}
	if len(u.TypesChanged) != 1 || u.TypeRates["com.example.alpha"][1] <= 0 {
		t.Errorf("types changed %+v, rates %v", u.TypesChanged, u.TypeRates)
	}

	// beta goes away.
	src.set([]registry.Plugin{plugin("alpha", 30, 3, 2), plugin("gamma", 0, 0, 1)}, nil)
	tr.Sample()
	u = <-updates
	if len(u.Removed) != 1 || u.Removed[0] != "beta" || len(u.TypesRemoved) != 1 {
		t.Errorf("removed %v and types %v, want beta and com.example.alpha", u.Removed, u.TypesRemoved)
	}
	if len(u.Changed) != 0 || len(u.Rates) != 0 {
		t.Errorf("nothing moved, yet changed %+v rates %v", u.Changed, u.Rates)
	}
}

func TestSlowSubscriberStartsAgain(t *testing.T) {
	src := &table{}
	src.set([]registry.Plugin{plugin("alpha", 0, 0, 1)}, nil)
	tr := activity.New(activity.Config{Source: src})
	_, updates, cancel := tr.Subscribe(2)
	defer cancel()
	for range 3 {
		tr.Sample()
	}
	n := 0
	for range updates {
		n++
	}
	if n != 2 {
		t.Errorf("received %d updates before the channel closed, want the 2 it holds", n)
	}
	cancel() // after the tracker closed it: must not panic
}

func TestInstancePages(t *testing.T) {
	src := &table{}
	src.set([]registry.Plugin{plugin("alpha", 0, 0, 3), plugin("many", 0, 0, 10_000)}, nil)
	tr := activity.New(activity.Config{Source: src})
	tr.Sample()
	page, ok := tr.Instances("many", 9_990, 50)
	if !ok || page.Total != 10_000 || len(page.Instances) != 10 || page.Instances[0].ID != "many-09990" {
		t.Fatalf("last page: ok %v total %d, %d instances", ok, page.Total, len(page.Instances))
	}
	if page.Instances[0].Supervised || page.Instances[0].Mode != "process" {
		t.Errorf("instance %+v: want a process, not supervised", page.Instances[0])
	}
	if page, ok := tr.Instances("many", 20_000, 50); !ok || len(page.Instances) != 0 {
		t.Errorf("past the end: ok %v, %d instances", ok, len(page.Instances))
	}
	if _, ok := tr.Instances("nobody", 0, 50); ok {
		t.Error("a plugin that is not listed has a page")
	}
}

func BenchmarkSample10000Instances(b *testing.B) {
	src := &table{}
	var plugins []registry.Plugin
	for i := range 100 {
		plugins = append(plugins, plugin(fmt.Sprintf("p%03d", i), uint64(i), 0, 100))
	}
	src.set(plugins, nil)
	tr := activity.New(activity.Config{Source: src})
	b.ReportAllocs()
	for b.Loop() {
		tr.Sample()
	}
}

// The tracker lists the source's plugins again only when its version
// changed, and a sample in between still reports them all.
func TestSampleReadsOnlyChanges(t *testing.T) {
	src := &table{}
	src.set([]registry.Plugin{plugin("hello", 10, 0, 3)}, nil)
	tr := activity.New(activity.Config{Source: src})
	tr.Sample()
	tr.Sample()
	tr.Sample()
	if src.reads != 1 {
		t.Errorf("%d reads of an unchanged source in 3 samples, want 1", src.reads)
	}
	if page, ok := tr.Instances("hello", 0, 10); !ok || page.Total != 3 {
		t.Errorf("hello's instances %+v (%v), want 3", page, ok)
	}
	src.set([]registry.Plugin{plugin("hello", 20, 0, 4)}, nil)
	tr.Sample()
	if src.reads != 2 {
		t.Errorf("%d reads after a change, want 2", src.reads)
	}
	if page, ok := tr.Instances("hello", 0, 10); !ok || page.Total != 4 {
		t.Errorf("hello's instances %+v (%v) after the change, want 4", page, ok)
	}
}
