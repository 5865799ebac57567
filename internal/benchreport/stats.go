package main

import (
	"math"
	"slices"
)

// median returns the median of xs: the middle value, or the mean of the two
// middle values for an even count. NaN for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// spread is the range of xs relative to their median, (max-min)/median:
// how far apart the runs were. NaN for none or a zero median.
func spread(xs []float64) float64 {
	med := median(xs)
	if len(xs) == 0 || med == 0 {
		return math.NaN()
	}
	return (slices.Max(xs) - slices.Min(xs)) / math.Abs(med)
}

// ratio is x/base, NaN when either is missing or base is zero.
func ratio(x, base float64) float64 {
	if math.IsNaN(x) || math.IsNaN(base) || base == 0 {
		return math.NaN()
	}
	return x / base
}

// bench is every run of one benchmark, metric by metric.
type bench struct {
	sub  string               // sub-benchmark path, "" for none
	runs map[string][]float64 // unit -> one value per run
}

func (b *bench) median(unit string) float64 { return median(b.runs[unit]) }

// group is one benchmark function of one package, its sub-benchmarks in the
// order they first ran.
type group struct {
	pkg, family string
	benches     []*bench
	units       []string // every unit seen, in first-seen order
}

func (g *group) bench(sub string) *bench {
	for _, b := range g.benches {
		if b.sub == sub {
			return b
		}
	}
	return nil
}

// collect groups results by package and benchmark function, keeping the
// order in which they first appear.
func collect(rs []result) []*group {
	var gs []*group
	find := func(pkg, fam string) *group {
		for _, g := range gs {
			if g.pkg == pkg && g.family == fam {
				return g
			}
		}
		g := &group{pkg: pkg, family: fam}
		gs = append(gs, g)
		return g
	}
	for _, r := range rs {
		g := find(r.pkg, r.family())
		b := g.bench(r.sub())
		if b == nil {
			b = &bench{sub: r.sub(), runs: map[string][]float64{}}
			g.benches = append(g.benches, b)
		}
		for _, u := range sortedUnits(r.metrics) {
			if !slices.Contains(g.units, u) {
				g.units = append(g.units, u)
			}
			b.runs[u] = append(b.runs[u], r.metrics[u])
		}
	}
	for _, g := range gs {
		g.units = slices.DeleteFunc(sortedUnits(unitSet(g.units)), g.allZero)
	}
	return gs
}

// allZero reports whether every median of unit is zero: B/op and
// allocs/op of a benchmark that measures something else.
func (g *group) allZero(unit string) bool {
	for _, b := range g.benches {
		if b.median(unit) != 0 {
			return false
		}
	}
	return true
}

// unitOrder puts the figures people look for first.
var unitOrder = []string{
	"events/s", "msgs/s", "p50-µs", "p99-µs", "p50-ms", "p99-ms", "ns/op", "cpu-ns/op", "server-cpu-ns/op",
	"MB/s", "B/op", "allocs/op",
}

func unitSet(us []string) map[string]float64 {
	m := map[string]float64{}
	for _, u := range us {
		m[u] = 0
	}
	return m
}

func sortedUnits(m map[string]float64) []string {
	us := make([]string, 0, len(m))
	for u := range m {
		us = append(us, u)
	}
	rank := func(u string) int {
		if i := slices.Index(unitOrder, u); i >= 0 {
			return i
		}
		return len(unitOrder)
	}
	slices.SortFunc(us, func(a, b string) int {
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra - rb
		}
		if a < b {
			return -1
		}
		if a > b {
			return 1
		}
		return 0
	})
	return us
}
