package main

import (
	"math"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/plugbus/plugbus/bus
cpu: AMD EPYC
BenchmarkEncode/128B-2         	 1000000	      1100 ns/op	 116.36 MB/s	     496 B/op	       9 allocs/op
BenchmarkEncode/128B-2         	 1000000	      1300 ns/op	 98.46 MB/s	     496 B/op	       9 allocs/op
BenchmarkEncode/128B-2         	 1000000	      1200 ns/op	 106.67 MB/s	     496 B/op	       9 allocs/op
BenchmarkPublish/raw-2         	 2000000	       500 ns/op	   2000000 msgs/s	       0 B/op	       0 allocs/op
BenchmarkPublish/raw-2         	 2000000	       500 ns/op	   1800000 msgs/s	       0 B/op	       0 allocs/op
BenchmarkPublish/raw-ce-headers-2 	 1000000	      1000 ns/op	   1000000 msgs/s	       0 B/op	       0 allocs/op
BenchmarkPublish/raw-ce-headers-2 	 1000000	      1000 ns/op	    800000 msgs/s	       0 B/op	       0 allocs/op
BenchmarkPublish/bus-2         	  800000	      1250 ns/op	    810000 msgs/s	     700 B/op	       7 allocs/op
BenchmarkPublish/bus-2         	  800000	      1250 ns/op	    810000 msgs/s	     700 B/op	       7 allocs/op
PASS
ok  	github.com/plugbus/plugbus/bus	12.345s
goos: linux
goarch: amd64
pkg: github.com/plugbus/plugbus/bench
cpu: AMD EPYC
BenchmarkInvoke/nats-raw
    bench_test.go:10: a log line
BenchmarkInvoke/nats-raw-2     	   10000	    100000 ns/op	        80.00 p50-µs	       200.0 p99-µs
BenchmarkInvoke/goplugin-netrpc-2 	2026/11/26 02:04:35 [ERR] yamux: Failed to write header: broken pipe
    6092	    180889 ns/op	       175.0 p50-µs	       364.6 p99-µs
BenchmarkInvoke/plugbus-2      	   10000	    120000 ns/op	       100.0 p50-µs	       300.0 p99-µs
BenchmarkInvoke/plugbus-2      	   10000	    120000 ns/op	       120.0 p50-µs	       260.0 p99-µs
BenchmarkProcOneWay/1KiB/raw-2 	  100000	     10000 ns/op	    100000 events/s	       0 B/op
BenchmarkProcOneWay/1KiB/plugbus-2 	  100000	     10000 ns/op	     95000 events/s	       0 B/op
BenchmarkScale/1000x10types-2 	       1	         0 ns/op	         2.500 listed-s	       300.0 coord-rss-MiB
BenchmarkScale/10000x1type-2 	       1	         0 ns/op	        41.00 listed-s	       900.0 coord-rss-MiB
PASS
ok  	github.com/plugbus/plugbus/bench	30.1s
`

func TestParse(t *testing.T) {
	rs, e, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if e.cpu != "AMD EPYC" || e.goos != "linux" || e.goarch != "amd64" {
		t.Errorf("env = %+v", e)
	}
	if len(rs) != 17 {
		t.Fatalf("got %d results, want 17", len(rs))
	}
	r := rs[3]
	if r.pkg != "github.com/plugbus/plugbus/bus" || r.name != "Publish/raw" || r.iters != 2000000 {
		t.Errorf("result 3 = %+v", r)
	}
	if r.family() != "Publish" || r.sub() != "raw" {
		t.Errorf("family, sub = %q, %q", r.family(), r.sub())
	}
	if r.metrics["msgs/s"] != 2e6 || r.metrics["ns/op"] != 500 || r.metrics["allocs/op"] != 0 {
		t.Errorf("metrics = %v", r.metrics)
	}
	if got := rs[5].name; got != "Publish/raw-ce-headers" {
		t.Errorf("name with dashes = %q", got)
	}
	inv := rs[9]
	if inv.name != "Invoke/nats-raw" || inv.metrics["p50-µs"] != 80 || inv.metrics["p99-µs"] != 200 {
		t.Errorf("custom units: %+v", inv)
	}
	if r := rs[10]; r.name != "Invoke/goplugin-netrpc" || r.iters != 6092 || r.metrics["p50-µs"] != 175 {
		t.Errorf("a result whose name line a log interrupted: %+v", r)
	}
	if rs[14].name != "ProcOneWay/1KiB/plugbus" || rs[14].sub() != "1KiB/plugbus" {
		t.Errorf("nested sub = %+v", rs[14])
	}
}

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		line    string
		ok      bool
		wantErr bool
	}{
		{"BenchmarkX-2 10 5 ns/op", true, false},
		{"BenchmarkX-2 10 5 ns/op 3 B/op", true, false},
		{"BenchmarkX", false, false},                      // name printed before a log
		{"BenchmarkX-2 some log text here", false, false}, // not a count
		{"BenchmarkX-2 10 5", false, false},               // odd field count
		{"BenchmarkX-2 10 fast ns/op", false, true},       // a result with a bad value
	} {
		_, ok, err := parseLine(tc.line)
		if ok != tc.ok || (err != nil) != tc.wantErr {
			t.Errorf("parseLine(%q) = ok %v, err %v; want ok %v, err %v", tc.line, ok, err, tc.ok, tc.wantErr)
		}
	}
	if _, _, err := parse(strings.NewReader("pkg: p\nBenchmarkX-2 10 x ns/op\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("parse error = %v, want one naming line 2", err)
	}
}

func TestTrimProcs(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  []string
	}{
		{[]string{"A/x-2", "A/c1-2", "B-2"}, []string{"A/x", "A/c1", "B"}},
		// GOMAXPROCS 1: no suffix; a name ending in -1 keeps it.
		{[]string{"A/x", "A/conc-1"}, []string{"A/x", "A/conc-1"}},
		{[]string{"A/conc-1-4", "A/x-4"}, []string{"A/conc-1", "A/x"}},
	} {
		rs := make([]result, len(tc.names))
		for i, n := range tc.names {
			rs[i] = result{pkg: "p", name: n}
		}
		trimProcs(rs)
		for i := range rs {
			if rs[i].name != tc.want[i] {
				t.Errorf("%v: got %q, want %q", tc.names, rs[i].name, tc.want[i])
			}
		}
	}
	// Per package: one package's suffix does not decide another's.
	rs := []result{{pkg: "a", name: "X-2"}, {pkg: "b", name: "Y"}, {pkg: "b", name: "Z-2"}}
	trimProcs(rs)
	if rs[0].name != "X" || rs[1].name != "Y" || rs[2].name != "Z-2" {
		t.Errorf("per package: %+v", rs)
	}
}

func TestMedianSpreadRatio(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		xs     []float64
		med    float64
		spread float64
	}{
		{nil, nan, nan},
		{[]float64{5}, 5, 0},
		{[]float64{3, 1, 2}, 2, 1},
		{[]float64{4, 1, 3, 2}, 2.5, 3.0 / 2.5},
		{[]float64{10, 10, 10, 10, 30}, 10, 2},
		{[]float64{-1, 1}, 0, nan},
	} {
		if got := median(tc.xs); !same(got, tc.med) {
			t.Errorf("median(%v) = %v, want %v", tc.xs, got, tc.med)
		}
		if got := spread(tc.xs); !same(got, tc.spread) {
			t.Errorf("spread(%v) = %v, want %v", tc.xs, got, tc.spread)
		}
	}
	xs := []float64{3, 1, 2}
	median(xs)
	if xs[0] != 3 {
		t.Error("median sorted its argument in place")
	}
	for _, tc := range []struct{ x, base, want float64 }{
		{90, 100, 0.9},
		{1, 0, nan},
		{nan, 1, nan},
		{1, nan, nan},
	} {
		if got := ratio(tc.x, tc.base); !same(got, tc.want) {
			t.Errorf("ratio(%v, %v) = %v, want %v", tc.x, tc.base, got, tc.want)
		}
	}
}

func same(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) < 1e-9
}

func TestCollectMedians(t *testing.T) {
	rs, _, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	gs := collect(rs)
	var names []string
	for _, g := range gs {
		names = append(names, g.family)
	}
	if got := strings.Join(names, ","); got != "Encode,Publish,Invoke,ProcOneWay,Scale" {
		t.Fatalf("groups = %s", got)
	}
	enc := gs[0].bench("128B")
	if got := enc.median("ns/op"); got != 1200 {
		t.Errorf("Encode ns/op median = %v, want 1200", got)
	}
	pub := gs[1]
	if got := pub.bench("raw").median("msgs/s"); got != 1.9e6 {
		t.Errorf("raw msgs/s median = %v, want 1.9e6", got)
	}
	if got := strings.Join(pub.units, ","); got != "msgs/s,ns/op,B/op,allocs/op" {
		t.Errorf("units = %s", got)
	}
	for _, tc := range []struct{ sub, base, want string }{
		{"bus", "raw", "raw"},
		{"1KiB/plugbus", "raw", "1KiB/raw"},
		{"a/b/c", "raw", "a/b/raw"},
	} {
		if got := baselineOf(tc.sub, tc.base); got != tc.want {
			t.Errorf("baselineOf(%q, %q) = %q, want %q", tc.sub, tc.base, got, tc.want)
		}
	}
}

func TestWrite(t *testing.T) {
	rs, _, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	h := header{machine: "AMD EPYC, 2 cores", goVersion: "go1.26.8", date: "2026-01-02 03:04 UTC", command: "make bench", goos: "linux", goarch: "amd64"}
	if err := write(&b, h, collect(rs), "## Notes\n\nhand-written\n", []shownChart{{"Invoke", "bench-invoke.svg"}}); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| machine | AMD EPYC, 2 cores |",
		"| Go | go1.26.8 |",
		"| command | `make bench` |",
		// Publish: bus 810,000 msgs/s over raw-ce-headers' median 900,000
		// and raw's 1,900,000.
		"| benchmark | n | msgs/s | ns/op | B/op | allocs/op | range | msgs/s ÷ raw-ce-headers | msgs/s ÷ raw |",
		"| `bus` | 2 | 810,000 | 1,250 | 700 | 7 | 0% | 0.90× | 0.43× |",
		"| `raw-ce-headers` | 2 | 900,000 | 1,000 | 0 | 0 | 22% | 1.00× | 0.47× |",
		// Invoke: only the baseline present (nats-raw) gets columns;
		// p50 110/80, p99 280/200.
		"| `plugbus` | 2 | 110 | 280 | 120,000 | 18% | 1.38× | 1.40× |",
		// Nested sizes compare within the size; B/op, zero throughout,
		// is left out.
		"| `1KiB/plugbus` | 1 | 95,000 | 10,000 | 0% | 0.95× |",
		// Targets: Invoke plugbus p50 over nats-raw 1.38 > 1.1.
		"| Invoke `plugbus` p50-µs ÷ `nats-raw` | ≤ 1.10× | 1.38× | **missed** |",
		// Bounds on the figure itself, without a baseline.
		"| Scale `1000x10types` listed-s | ≤ 5 | 2.50 | met |",
		"| Scale `10000x1type` listed-s | ≤ 10 | 41 | **missed** |",
		// A figure the run lacks, and a target none of whose rows ran,
		// say so rather than leaving the target out.
		"| Scale `10000x1type` coord-steady-cpu-% | ≤ 20 | – | not measured in this run |",
		"| Durable `pluginkit` events/s ÷ `raw-jetstream` | ≥ 0.70× | – | not measured in this run |",
		// A row that ran without the baseline of its target.
		"| ProcOneWay `1KiB/plugbus` events/s ÷ `sdkgo-nats` | ≥ 1.00× | – | not measured in this run |",
		"## At a glance",
		"![Invoke](bench-invoke.svg)",
		"## Encode an event into a NATS message",
		"## Notes\n\nhand-written\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q\n%s", want, md)
		}
	}
	// The families table's order, not the run's: Invoke after ProcOneWay.
	if i, j := strings.Index(md, "## One way to a handler"), strings.Index(md, "## Invoke round trip"); i < 0 || j < i {
		t.Errorf("ProcOneWay at %d, Invoke at %d: want the families table's order", i, j)
	}
	if strings.Contains(md, "| p50-µs ÷ goplugin-grpc") {
		t.Error("a ratio column for a baseline the run does not have")
	}
}

func TestTargetDifference(t *testing.T) {
	// The HTTP layer: plugbus-http's p50 minus plugbus-inprocess's.
	in := `pkg: github.com/plugbus/plugbus/bench
BenchmarkInvoke/plugbus-inprocess-2   1000  1 ns/op  190.0 p50-µs
BenchmarkInvoke/plugbus-http-2        1000  1 ns/op  270.0 p50-µs
BenchmarkInvoke/plugbus-inprocess-2   1000  1 ns/op  180.0 p50-µs
BenchmarkInvoke/plugbus-http-2        1000  1 ns/op  290.0 p50-µs
`
	rs, _, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	writeTargets(&b, collect(rs))
	want := "| Invoke `plugbus-http` p50-µs − `plugbus-inprocess` | ≤ 100 | 95 | met |"
	if !strings.Contains(b.String(), want) {
		t.Errorf("targets lack %q:\n%s", want, b.String())
	}
}

func TestFmtNum(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{
		{1234567.8, "1,234,568"},
		{123, "123"},
		{-1234, "-1,234"},
		{12.34, "12.3"},
		{1.234, "1.23"},
		{0, "0"},
		{7, "7"},
		{12.5, "12.5"},
		{0.01234, "0.0123"},
		{math.NaN(), "–"},
	} {
		if got := fmtNum(tc.v); got != tc.want {
			t.Errorf("fmtNum(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}
