// Package activity keeps what the dashboard shows about plugins, sampled
// from the registry once a second: a summary of each plugin (its instances
// counted by state, by mode and supervised or not; versions, types,
// description, counters),
// the rates of handled and failed events per plugin and per type over the
// last minute, and pages of one plugin's instances.
//
// A client takes a [Snapshot] and then an [Update] after every sample with
// only what changed (and the rates that are not zero), so an open dashboard
// costs about the same with ten instances or ten thousand: the list of
// instances itself is never pushed, only read a page at a time.
package activity

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/plugbus/plugbus/coordinator/internal/registry"
)

// Source is what the tracker samples: the coordinator's registry.
type Source interface {
	Plugins() []registry.Plugin
	TypeCounters() map[string]registry.Counters
	// Version changes whenever Plugins or TypeCounters may return
	// something else; the tracker reads them again only then.
	Version() uint64
}

// Defaults of [Config].
const (
	DefaultInterval = time.Second
	DefaultSamples  = 60
)

// Config configures a [Tracker]. Source is required.
type Config struct {
	Source Source
	// Interval is the time between samples; default 1s.
	Interval time.Duration
	// Samples is how many rates each series keeps; default 60.
	Samples int
	// Supervised returns the process ids the coordinator runs itself, to
	// tell the instances it supervises from those started elsewhere; nil
	// means none.
	Supervised func() []int
}

// PluginSummary is one plugin as the dashboard lists it.
type PluginSummary struct {
	Name        string                 `json:"name"`
	State       registry.State         `json:"state"`
	Description string                 `json:"description,omitempty"`
	Versions    []string               `json:"versions"`
	Handles     []string               `json:"handles"`
	Answers     []string               `json:"answers,omitempty"`   // the types its running instances answer
	Ambiguous   []registry.Ambiguity   `json:"ambiguous,omitempty"` // the ones another plugin answers too
	Emits       []string               `json:"emits,omitempty"`
	Instances   int                    `json:"instances"`
	States      map[registry.State]int `json:"states"`     // instances by state
	Modes       map[string]int         `json:"modes"`      // instances by mode: process, static, stdio...
	Supervised  int                    `json:"supervised"` // instances this coordinator runs
	Hosts       int                    `json:"hosts"`      // distinct hosts
	Stats       registry.Counters      `json:"stats"`      // summed over the listed instances
}

// TypeSummary is the counters of one handled type, summed over the
// instances that handle it.
type TypeSummary struct {
	Type  string            `json:"type"`
	Stats registry.Counters `json:"stats"`
}

// Series holds per-second rates, oldest first, one per sample.
type Series struct {
	Handled []float64 `json:"handled"`
	Failed  []float64 `json:"failed"`
}

// Point is one sample's rates: handled and failed events per second.
type Point [2]float64

// Snapshot is everything a client needs to start.
type Snapshot struct {
	Time      time.Time         `json:"time"`
	Interval  float64           `json:"interval"` // seconds between samples
	Samples   int               `json:"samples"`
	Plugins   []PluginSummary   `json:"plugins"`
	Types     []TypeSummary     `json:"types"`
	Rates     map[string]Series `json:"rates"`      // by plugin
	TypeRates map[string]Series `json:"type_rates"` // by type
}

// Update is what changed at one sample. A plugin or type absent from Rates
// or TypeRates had a rate of zero.
type Update struct {
	Time         time.Time        `json:"time"`
	Changed      []PluginSummary  `json:"changed,omitempty"`
	Removed      []string         `json:"removed,omitempty"`
	TypesChanged []TypeSummary    `json:"types_changed,omitempty"`
	TypesRemoved []string         `json:"types_removed,omitempty"`
	Rates        map[string]Point `json:"rates,omitempty"`
	TypeRates    map[string]Point `json:"type_rates,omitempty"`
}

// InstanceView is an instance, and whether this coordinator runs it.
type InstanceView struct {
	registry.Instance
	Supervised bool `json:"supervised"`
}

// InstancePage is a page of one plugin's instances, sorted by id.
type InstancePage struct {
	Plugin    string         `json:"plugin"`
	Total     int            `json:"total"`
	Offset    int            `json:"offset"`
	Instances []InstanceView `json:"instances"`
}

// Tracker samples a [Source]; see the package documentation. It is safe
// for concurrent use.
type Tracker struct {
	cfg  Config
	pid  int
	host string

	mu        sync.Mutex
	sampled   time.Time
	plugins   []registry.Plugin // as of the last sample, sorted by name
	counters  map[string]registry.Counters
	read      bool   // plugins and counters were read from the source...
	version   uint64 // ...at this version of it...
	pids      []int  // ...with these supervised processes
	summaries map[string]entry[PluginSummary]
	types     map[string]entry[TypeSummary]
	rates     map[string]*ring // by plugin
	typeRates map[string]*ring // by type
	subs      map[chan Update]struct{}
}

// entry is a summary with its JSON, to tell whether it changed.
type entry[T any] struct {
	v    T
	json string
}

// New returns a tracker; call [Tracker.Run] to sample.
func New(cfg Config) *Tracker {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Samples <= 0 {
		cfg.Samples = DefaultSamples
	}
	if cfg.Supervised == nil {
		cfg.Supervised = func() []int { return nil }
	}
	host, _ := os.Hostname()
	return &Tracker{
		cfg: cfg, pid: os.Getpid(), host: host,
		summaries: map[string]entry[PluginSummary]{}, types: map[string]entry[TypeSummary]{},
		rates: map[string]*ring{}, typeRates: map[string]*ring{}, subs: map[chan Update]struct{}{},
	}
}

// Run samples the source every interval until ctx ends.
func (t *Tracker) Run(ctx context.Context) error {
	tick := time.NewTicker(t.cfg.Interval)
	defer tick.Stop()
	for {
		t.Sample()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Sample reads the source once and tells subscribers what changed. Run
// calls it every interval.
func (t *Tracker) Sample() {
	pids := slices.Sorted(slices.Values(t.cfg.Supervised()))
	plugins, typeCounters, fresh := t.readSource(pids)
	now := time.Now()

	t.mu.Lock()
	defer t.mu.Unlock()
	elapsed := t.cfg.Interval.Seconds()
	if !t.sampled.IsZero() {
		elapsed = now.Sub(t.sampled).Seconds()
	}
	t.sampled = now
	u := Update{Time: now, Rates: map[string]Point{}, TypeRates: map[string]Point{}}
	if fresh {
		supervised := map[int]bool{}
		for _, pid := range pids {
			supervised[pid] = true
		}
		t.compare(&u, plugins, typeCounters, supervised, elapsed)
	} else {
		// Nothing changed since the last sample: no summary did, and
		// every rate is zero.
		for _, r := range t.rates {
			r.push(Point{})
		}
		for _, r := range t.typeRates {
			r.push(Point{})
		}
	}
	for ch := range t.subs {
		select {
		case ch <- u:
		default:
			// A subscriber that does not keep up loses its channel and
			// starts again from a snapshot.
			delete(t.subs, ch)
			close(ch)
		}
	}
}

// compare records plugins and typeCounters as the latest sample, and in u
// the summaries that changed since the one before and the rates over
// elapsed seconds. t.mu is held.
func (t *Tracker) compare(u *Update, plugins []registry.Plugin, typeCounters map[string]registry.Counters, supervised map[int]bool, elapsed float64) {
	seen := map[string]bool{}
	for i := range plugins {
		s := t.summarize(&plugins[i], supervised)
		seen[s.Name] = true
		prev, known := t.summaries[s.Name]
		if e := newEntry(s); !known || e.json != prev.json {
			t.summaries[s.Name] = e
			u.Changed = append(u.Changed, s)
		}
		if known {
			if pt := rate(prev.v.Stats, s.Stats, elapsed); pt != (Point{}) {
				u.Rates[s.Name] = pt
			}
		}
		t.series(t.rates, s.Name).push(u.Rates[s.Name])
	}
	for name := range t.summaries {
		if !seen[name] {
			delete(t.summaries, name)
			delete(t.rates, name)
			u.Removed = append(u.Removed, name)
		}
	}
	t.plugins, t.counters = plugins, typeCounters

	for typ, c := range typeCounters {
		s := TypeSummary{Type: typ, Stats: c}
		prev, known := t.types[typ]
		if e := newEntry(s); !known || e.json != prev.json {
			t.types[typ] = e
			u.TypesChanged = append(u.TypesChanged, s)
		}
		if known {
			if pt := rate(prev.v.Stats, c, elapsed); pt != (Point{}) {
				u.TypeRates[typ] = pt
			}
		}
		t.series(t.typeRates, typ).push(u.TypeRates[typ])
	}
	for typ := range t.types {
		if _, ok := typeCounters[typ]; !ok {
			delete(t.types, typ)
			delete(t.typeRates, typ)
			u.TypesRemoved = append(u.TypesRemoved, typ)
		}
	}
	slices.SortFunc(u.TypesChanged, func(a, b TypeSummary) int { return strings.Compare(a.Type, b.Type) })
	sort.Strings(u.Removed)
	sort.Strings(u.TypesRemoved)
}

// readSource returns the source's plugins and type counters, read again
// only when its version or the supervised processes (pids, sorted)
// changed since the last sample, and whether they were: with 10,000
// instances, listing them all every second was a third of the
// coordinator's CPU, while they change only at each discovery poll (every
// 5 s then). A sample between two changes sees the same counters, as it
// did before: no rate.
func (t *Tracker) readSource(pids []int) ([]registry.Plugin, map[string]registry.Counters, bool) {
	v := t.cfg.Source.Version()
	t.mu.Lock()
	if t.read && t.version == v && slices.Equal(t.pids, pids) {
		defer t.mu.Unlock()
		return t.plugins, t.counters, false
	}
	t.mu.Unlock()
	plugins, counters := t.cfg.Source.Plugins(), t.cfg.Source.TypeCounters()
	t.mu.Lock()
	t.read, t.version, t.pids = true, v, pids
	t.mu.Unlock()
	return plugins, counters, true
}

// summarize turns a plugin into its summary. t.mu is held.
func (t *Tracker) summarize(p *registry.Plugin, supervised map[int]bool) PluginSummary {
	s := PluginSummary{
		Name: p.Name, State: p.State, Versions: p.Versions, Handles: p.Handles, Emits: p.Emits,
		Answers: p.Answers, Ambiguous: p.Ambiguous,
		Instances: len(p.Instances), States: map[registry.State]int{}, Modes: map[string]int{},
	}
	hosts := map[string]bool{}
	for _, in := range p.Instances {
		s.States[in.State]++
		s.Modes[in.Mode]++
		if t.supervises(in, supervised) {
			s.Supervised++
		}
		hosts[in.Host] = true
		if s.Description == "" {
			s.Description = in.Description
		}
		s.Stats.Received += in.Stats.Received
		s.Stats.Handled += in.Stats.Handled
		s.Stats.Failed += in.Stats.Failed
		s.Stats.Invalid += in.Stats.Invalid
	}
	s.Hosts = len(hosts)
	return s
}

// supervises reports whether in is a process this coordinator runs.
func (t *Tracker) supervises(in registry.Instance, supervised map[int]bool) bool {
	return in.Host == t.host && in.PID != t.pid && supervised[in.PID]
}

func newEntry[T any](v T) entry[T] {
	b, _ := json.Marshal(v)
	return entry[T]{v: v, json: string(b)}
}

// rate is the change from a to b per second; a counter that went down (an
// instance left) counts as no change.
func rate(a, b registry.Counters, seconds float64) Point {
	if seconds <= 0 {
		return Point{}
	}
	d := func(x, y uint64) float64 {
		if y < x {
			return 0
		}
		return float64(y-x) / seconds
	}
	return Point{d(a.Handled, b.Handled), d(a.Failed, b.Failed)}
}

func (t *Tracker) series(m map[string]*ring, key string) *ring {
	r := m[key]
	if r == nil {
		r = &ring{points: make([]Point, t.cfg.Samples)}
		m[key] = r
	}
	return r
}

// Subscribe returns a snapshot and a channel that receives an update after
// every sample, holding up to buffer of them. A subscriber that lets the
// channel fill up has it closed and should subscribe again. cancel ends the
// subscription.
func (t *Tracker) Subscribe(buffer int) (snap Snapshot, updates <-chan Update, cancel func()) {
	ch := make(chan Update, max(buffer, 1))
	t.mu.Lock()
	defer t.mu.Unlock()
	t.subs[ch] = struct{}{}
	snap = Snapshot{
		Time: t.sampled, Interval: t.cfg.Interval.Seconds(), Samples: t.cfg.Samples,
		Plugins: make([]PluginSummary, 0, len(t.summaries)), Types: make([]TypeSummary, 0, len(t.types)),
		Rates: make(map[string]Series, len(t.rates)), TypeRates: make(map[string]Series, len(t.typeRates)),
	}
	for _, e := range t.summaries {
		snap.Plugins = append(snap.Plugins, e.v)
	}
	slices.SortFunc(snap.Plugins, func(a, b PluginSummary) int { return strings.Compare(a.Name, b.Name) })
	for _, e := range t.types {
		snap.Types = append(snap.Types, e.v)
	}
	slices.SortFunc(snap.Types, func(a, b TypeSummary) int { return strings.Compare(a.Type, b.Type) })
	for k, r := range t.rates {
		snap.Rates[k] = r.series()
	}
	for k, r := range t.typeRates {
		snap.TypeRates[k] = r.series()
	}
	return snap, ch, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if _, ok := t.subs[ch]; ok {
			delete(t.subs, ch)
			close(ch)
		}
	}
}

// Instances returns up to limit instances of plugin from offset on, as of
// the last sample, and false when no such plugin is listed.
func (t *Tracker) Instances(plugin string, offset, limit int) (InstancePage, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, found := slices.BinarySearchFunc(t.plugins, plugin, func(p registry.Plugin, name string) int { return strings.Compare(p.Name, name) })
	if !found {
		return InstancePage{}, false
	}
	all := t.plugins[i].Instances
	page := InstancePage{Plugin: plugin, Total: len(all), Offset: offset, Instances: []InstanceView{}}
	if offset < 0 || offset >= len(all) || limit <= 0 {
		return page, true
	}
	supervised := map[int]bool{}
	for _, pid := range t.cfg.Supervised() {
		supervised[pid] = true
	}
	for _, in := range all[offset:min(len(all), offset+limit)] {
		page.Instances = append(page.Instances, InstanceView{Instance: in, Supervised: t.supervises(in, supervised)})
	}
	return page, true
}

// ring keeps the last len(points) points.
type ring struct {
	points []Point
	next   int
}

func (r *ring) push(p Point) {
	r.points[r.next] = p
	r.next = (r.next + 1) % len(r.points)
}

func (r *ring) series() Series {
	n := len(r.points)
	s := Series{Handled: make([]float64, n), Failed: make([]float64, n)}
	for i := range n {
		p := r.points[(r.next+i)%n]
		s.Handled[i], s.Failed[i] = p[0], p[1]
	}
	return s
}
