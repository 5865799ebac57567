package main

import (
	"fmt"
	"io"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
)

// A family says how to present one benchmark function: what it measures,
// which of its sub-benchmarks are the baselines every other one is divided
// by, and which metrics get ratios. A family not listed here is shown with
// its absolute figures only.
type family struct {
	name      string   // benchmark function without "Benchmark"
	title     string   // heading
	about     string   // one paragraph under the heading
	baselines []string // last path element of the baseline sub-benchmarks, most relevant first
	compare   []string // units to divide by the baselines' ("" = the first two the family has)
}

var families = []family{
	{
		name:      "ProcOneWay",
		title:     "One way to a handler in another process, by event size",
		about:     "The benchmark (embedded NATS server and publisher) sends JSON events `{\"name\":…}` of the given size to a handler in a child process, which decodes each and publishes a small acknowledgement event; events/s counts acknowledgements received, with at most 4096 events (and 4 MiB) in flight. cpu-ns/op is the CPU of both processes per event (the child's read from /proc in 10 ms ticks). `raw`: nats.go both sides, no headers; `raw-ce-headers`: the same with the `ce-` headers Plugbus sends, computed once; `sdkgo-nats`: the CloudEvents sdk-go client with its stock NATS binding (protocol/nats/v2, which is structured mode only: the whole event as JSON in the body) on both sides, with its default settings; `plugbus`: bus.Publish with a fresh id per event, to a plugin-kit plugin whose handler reads the data with DataAs and returns the acknowledgement (bench/cmd/pluginpeer).",
		baselines: []string{"raw-ce-headers", "raw", "sdkgo-nats"},
		compare:   []string{"events/s", "cpu-ns/op"},
	},
	{
		name:      "Invoke",
		title:     "Invoke round trip, 128 B",
		about:     "Sequential calls of a greeting handler with a 128 B request (decode `{\"name\":…}`, answer `{\"text\":\"hello, …\"}`); cpu-ns/op is the CPU of caller and child per call (the child's in 10 ms ticks). `direct`: an in-process function call, the floor; `stdio-json`: a child process answering JSON lines on stdin/stdout; `goplugin-grpc`: hashicorp/go-plugin v1.8.0 over gRPC (a hand-written unary service whose messages are protobuf's BytesValue, so no generated code; grpc-go v1.85.0); `goplugin-netrpc`: the same plugin over go-plugin's net/rpc transport; `nats-raw`: nats.go request/reply to a child process (through the embedded server, like Plugbus), over TCP from the benchmark process; `nats-raw-inprocess`: the same over an in-process connection to the embedded server (no socket on the caller's side); `plugbus`: bus.Request to plugins/hello in a child process, over TCP; `plugbus-inprocess`: the same over an in-process connection, as the coordinator asks (it embeds the server); `plugbus-static`: bus.Request over an in-process connection to plugins/hello's package linked into the benchmark's process and run over an in-process connection of its own, as the coordinator runs a static plugin (no socket at either end); `plugbus-http`: `POST /v1/invoke/{type}` to the coordinator binary, which asks plugins/hello over the in-process connection to its embedded server (cpu-ns/op counts the coordinator and the plugin); `nethttp-nats`: the floor of `plugbus-http`, the same client and plugin behind a minimal net/http handler in a process of its own (bench/cmd/ingestpeer) that sends the body as a request with nats.go over an in-process connection to the server it embeds (fixed `ce-` headers) and answers with the reply's data; `plugbus-stdio`: bus.Request over TCP to the coordinator binary running plugins/hello as a stdio plugin (docs/stdio.md): its bridge, in the coordinator's process, writes the request as a JSON line to hello's standard input and replies with the answer line (cpu-ns/op counts the coordinator and hello); `plugbus-wasm`: the same to plugins/hello built for wasip1 and run by the coordinator inside its own process with wazero (docs/wasm.md), over the same bridge; `plugbus-wasm-uninterruptible`: the same module compiled without the checks that let a runaway instance be interrupted (`uninterruptible: true`); `plugbus-wasm-c`: the same to examples/wasm-c, a plugin in C built with clang and wasi-libc (no Go runtime in the module), and `plugbus-wasm-c-uninterruptible` without termination checks (both skipped, saying why, without clang and wasi-libc); `plugbus-static-coordinator`: bus.Request over TCP to the coordinator binary running plugins/hello as a static plugin, the path of the stdio and wasm rows but for the bridge and the program (`plugbus-static` asks from inside the plugin's own process, with no socket); `plugbus-so`: the same to plugins/hello built with `-buildmode=plugin` and loaded by the coordinator binary, run in its process as a static plugin is (docs/operating.md); `plugbus-c1`: to a plugin handling on the subscription's goroutine (Concurrency(1)); `plugbus-natsreq`: the request encoded once and sent with nats.go's Request, so only the plugin's side is Plugbus's.",
		baselines: []string{"nats-raw", "goplugin-grpc"},
		compare:   []string{"p50-µs", "p99-µs"},
	},
	{
		name:      "Ingest",
		title:     "HTTP ingest, 128 B, no durability",
		about:     "One client POSTs CloudEvents in binary mode (`ce-` headers, a 128 B JSON body) with 32 requests in flight on kept-alive connections; each is answered 202 once the event has reached the NATS server (a flush). `nethttp-nats`: a minimal net/http handler publishing the body with nats.go to its embedded server over an in-process connection (bench/cmd/ingestpeer); `plugbus`: `POST /v1/events` to the coordinator binary, which does the same after reading, validating and encoding the event. cpu-ns/op counts the client and the server process, server-cpu-ns/op the server alone (in 10 ms ticks).",
		baselines: []string{"nethttp-nats"},
		compare:   []string{"events/s", "cpu-ns/op", "server-cpu-ns/op"},
	},
	{
		name:      "FanOut",
		title:     "Fan-out: every event to N plugin processes",
		about:     "As the 128 B one-way benchmark, but every event goes to N child processes, each a plugin of its own (its own queue group), and is counted when all N have acknowledged it. cpu-ns/op is the CPU of all the processes per event. On 2 cores, 32 processes mostly measure the scheduler.",
		baselines: []string{"raw-ce-headers", "raw"},
		compare:   []string{"events/s", "cpu-ns/op"},
	},
	{
		name:      "Durable",
		title:     "Durable delivery (JetStream)",
		about:     "Events/s from the first publish to the last event handled, on one embedded server with file storage. `raw-jetstream`: nats.go alone as a careful user would write it (async publishes, a pull consumer with nats.go's defaults, Ack); `raw-jetstream-same-acks`: nats.go doing what Plugbus promises (each publish waits for its acknowledgement, each event double-acked by one of 16 workers); `pluginkit`: bus.PublishDurable (waiting for each acknowledgement, from 64 goroutines) to a durable plugin-kit plugin (double ack); `pluginkit-plain-ack`: the same, acknowledging with a plain ack (Durable.PlainAck); `pluginkit-async-publish`, `pluginkit-async-publish-plain-ack`: the same two plugins, the events published with bus.PublishDurableAsync from one goroutine as `raw-jetstream` publishes; `pluginkit-effectively-once`: `pluginkit` with effectively-once records (and so a plain ack). Written with the fault tests in internal/faults.",
		baselines: []string{"raw-jetstream", "raw-jetstream-same-acks"},
		compare:   []string{"events/s"},
	},
	{
		name:      "ColdStart",
		title:     "Cold start: process start → first reply",
		about:     "Each iteration starts a fresh plugin process and times until its first reply; stopping it is outside the timer. `plugbus`: exec plugins/hello with the bus already up, wait for its started event (sent once it has subscribed, as go-plugin's child writes its handshake line), then bus.Request until the first reply (asked again should \"no responders\" come back); `goplugin-grpc`: go-plugin's NewClient, Client (start and handshake), Dispense, first call; `stdio-json`: exec, first JSON line answered.",
		baselines: []string{"goplugin-grpc"},
		compare:   []string{"p50-ms"},
	},
	{
		name:      "ModeOneWay",
		title:     "One way to plugins/hello in each mode, through the coordinator",
		about:     "The benchmark publishes greeting requests as events (128 B, no answer awaited) to the coordinator binary, which runs plugins/hello from the same source in each mode, one instance; events/s counts the result events hello publishes, with at most 4096 events in flight. `plugbus`: a process plugin; `plugbus-static`: linked into the coordinator; `plugbus-stdio`: a child process behind the coordinator's stdio bridge; `plugbus-wasm`: built for wasip1 and run inside the coordinator with wazero, behind the same bridge (skipped under -short). cpu-ns/op is the coordinator's CPU per event (a process or stdio plugin's own is not counted).",
		baselines: []string{"plugbus-static", "plugbus"},
		compare:   []string{"events/s"},
	},
	{
		name:  "WasmColdStart",
		title: "Cold start of a WebAssembly plugin",
		about: "From starting the coordinator binary to the first answer of plugins/hello built for wasip1: `compile` with an empty compilation cache (wazero compiles the module to machine code), `cached` with the cache a previous start filled. The coordinator's own start is in both; ColdStart/plugbus is a process plugin's start alone. Skipped under -short.",
	},
	{
		name:  "WasmInstanceMemory",
		title: "Memory per WebAssembly instance",
		about: "The coordinator binary's resident memory with 5 instances of plugins/hello as a WebAssembly plugin against 1, divided by 4 (rss-MiB/instance), with 1 instance (rss-MiB-1-instance), and the module's size. Skipped under -short.",
	},
	{
		name:  "Scale",
		title: "Scale: many plugin instances registering with one coordinator",
		about: "Each run starts `coordinator serve` (its embedded NATS server) and scalepeer processes (bench/cmd/scalepeer) that run the instances between them, each instance a plugin-kit plugin on its own NATS connection, and polls `GET /v1/plugins`. `1000x10types`: 1,000 instances of 100 plugins, each handling 10 types (10,000 handled types) in 4 processes; `10000x1type`: 10,000 instances of 100 plugins, one type each, in 8 processes. listed-s: from starting the peers until every instance is listed as running; described-s: until each also has the description read from its `$SRV.INFO`; peers-ready-s: until every instance has announced itself; coord-rss-MiB: the coordinator's resident memory then (server, connections, registry); plugins-api-ms and -KiB: one `GET /v1/plugins` with all listed; coord-steady-cpu-%: the coordinator's CPU (100 = one core) over the next 15 s of discovery polls (three polls at 10,000 instances).",
	},
	{
		name:  "Footprint",
		title: "Memory and binary size",
		about: "Resident set size (VmRSS) of an idle process 0.5 s after it is ready, and the size of its binary as `go build` makes it (not stripped). `coordinator-idle`: `coordinator serve` with its embedded NATS server and no plugins; `hello`: plugins/hello connected to a bus; `goplugin-grpc`: the go-plugin plugin after its handshake and one call; `stdio-json`: the JSON-lines child after one call.",
	},
	{
		name:  "Handle",
		title: "The handler's own work",
		about: "What the peers of the benchmarks above do per event without any transport: `oneway/…` decodes the request and encodes the acknowledgement, `greet/128B` answers a greeting. The floor under the one-way and invoke figures.",
	},
	{
		name:      "Publish",
		title:     "Publish, one way, 128 B (bus, in one process)",
		about:     "One publisher and one subscriber connection on an embedded server. `raw`: nats.go without headers; `raw-ce-headers`: nats.go with the `ce-` headers bus.Encode writes, computed once; `bus`: bus.Encode per message, bus.Decode in the subscriber.",
		baselines: []string{"raw-ce-headers", "raw"},
		compare:   []string{"msgs/s"},
	},
	{
		name:      "OneWay",
		title:     "Event → handler → result event, 128 B (plugin-kit, in one process)",
		about:     "Publisher, plugin and result subscriber on three connections to an embedded server, all in the benchmark process (cpu-ns/op is the CPU of all of it, server included). `pluginkit-c1` is Concurrency(1).",
		baselines: []string{"raw-ce-headers", "raw"},
		compare:   []string{"events/s", "cpu-ns/op"},
	},
	{
		name:      "RequestReply",
		title:     "Request/reply round trip, 128 B (plugin-kit, in one process)",
		about:     "Sequential requests. `pluginkit` is bus.Request to a plugin-kit handler; `pluginkit-natsreq` is the plugin side alone behind nats.go's Request.",
		baselines: []string{"raw"},
		compare:   []string{"p50-µs", "p99-µs"},
	},
	{
		name:  "Encode",
		title: "Encode an event into a NATS message",
		about: "bus.Encode: attributes to `ce-` headers, data to the body. Absolute figures; there is no alternative in the same run.",
	},
	{
		name:  "Decode",
		title: "Decode a NATS message into an event",
		about: "bus.Decode: `ce-` headers back to attributes, validated. Absolute figures.",
	},
}

// order sorts groups as the families table lists them, unknown families
// last, each in the order it ran.
func order(gs []*group) {
	rank := func(g *group) int {
		for i, f := range families {
			if f.name == g.family {
				return i
			}
		}
		return len(families)
	}
	slices.SortStableFunc(gs, func(a, b *group) int { return rank(a) - rank(b) })
}

func familyOf(name string) (family, bool) {
	for _, f := range families {
		if f.name == name {
			return f, true
		}
	}
	return family{}, false
}

// A target is a ratio the issue or the design asks for; with minus, a bound
// on the difference between a figure and its baseline's; without a
// baseline, a bound on the figure itself.
type target struct {
	family, sub string // sub may use path.Match patterns: "*/plugbus"
	unit        string
	baseline    string // last path element of the baseline; "" for a bound on the figure
	minus       bool   // the figure minus the baseline's, rather than over it
	atLeast     bool   // true: measured >= value is met; false: measured <= value is met
	value       float64
	source      string
}

// perf2 is the performance issue's second round, whose targets replace the
// first round's where both speak of the same figure.
const perf2 = "performance issue, second round: "

var targets = []target{
	{"OneWay", "pluginkit", "events/s", "raw-ce-headers", false, true, 0.9, "DESIGN.md and the bus/plugin-kit issue: the rate of raw nats.go sending the same headers"},
	{"ProcOneWay", "*/plugbus", "events/s", "raw-ce-headers", false, true, 0.9, perf2 + "one way to a plugin process, as raw nats.go sending the same headers (128 B is the hard case)"},
	{"ProcOneWay", "*/plugbus", "events/s", "sdkgo-nats", false, true, 1.0, "benchmark issue: far ahead of sdk-go's stock NATS binding (1.0× is the least of it)"},
	{"Invoke", "plugbus", "p50-µs", "nats-raw", false, false, 1.1, perf2 + "invoke p50, plugin in another process, within 1.1× raw nats.go request/reply"},
	{"Invoke", "plugbus-inprocess", "p50-µs", "nats-raw-inprocess", false, false, 1.2, perf2 + "from the coordinator (in-process connection to its embedded server), within 1.2× raw nats.go asking the same way"},
	{"Invoke", "plugbus-inprocess", "p50-µs", "goplugin-grpc", false, false, 0.9, perf2 + "the same, at most 0.9× go-plugin gRPC's p50"},
	{"Invoke", "plugbus-static", "p50-µs", "nats-raw-inprocess", false, false, 2.0, "four ways in: to a static plugin (linked in, over an in-process connection) from the coordinator's side, within 2× raw nats.go request/reply asked over the in-process connection"},
	{"Invoke", "plugbus-wasm", "p50-µs", "plugbus-static", false, false, 1.5, "wasm issue: invoke to a WebAssembly plugin within 1.5× a static plugin"},
	{"Invoke", "plugbus-wasm", "p50-µs", "plugbus", false, false, 1.0, "wasm issue: and faster than a process plugin"},
	{"Invoke", "plugbus-wasm", "p50-µs", "plugbus-static-coordinator", false, false, 1.5, "wasm issue, like for like: within 1.5× a static plugin of the coordinator asked over TCP, as a wasm plugin is"},
	{"Invoke", "plugbus-wasm-c", "p50-µs", "plugbus-static", false, false, 1.5, "wasm issue, the C plugin (examples/wasm-c): within 1.5× a static plugin"},
	{"Invoke", "plugbus-wasm-c", "p50-µs", "plugbus", false, false, 1.0, "wasm issue, the C plugin: faster than a process plugin"},
	{"Invoke", "plugbus-wasm-c", "p50-µs", "plugbus-static-coordinator", false, false, 1.5, "wasm issue, the C plugin, like for like: within 1.5× a static plugin of the coordinator asked over TCP"},
	{"Invoke", "plugbus-http", "p50-µs", "plugbus-inprocess", true, false, 100, perf2 + "the HTTP layer: `POST /v1/invoke` p50 minus in-process invoke p50, in µs"},
	{"FanOut", "*/plugbus", "events/s", "raw", false, true, 0.5, "benchmark issue: fan-out at least 0.5× raw"},
	{"FanOut", "*/plugbus", "events/s", "raw-ce-headers", false, true, 0.5, "benchmark issue, read as the one-way target is, against raw with the same headers (the one-way target itself expects about 0.4× header-less raw at 128 B)"},
	{"Durable", "pluginkit", "events/s", "raw-jetstream", false, true, 0.7, perf2 + "durable, waiting publisher, at least 0.7× raw JetStream"},
	{"Durable", "pluginkit-async-publish", "events/s", "raw-jetstream", false, true, 0.8, perf2 + "durable, async publisher, at least 0.8× raw JetStream"},
	{"Durable", "pluginkit-effectively-once", "events/s", "raw-jetstream", false, true, 0.5, perf2 + "durable with effectively-once records, at least 0.5× raw JetStream"},
	{"ColdStart", "plugbus", "p50-ms", "goplugin-grpc", false, false, 0.7, perf2 + "cold start p50 at most 0.7× go-plugin's start, dispense, first call"},
	{"Scale", "1000x*", "listed-s", "", false, false, 5, "benchmark issue: 1,000 instances listed by the coordinator within 5 s"},
	{"Scale", "10000x*", "listed-s", "", false, false, 10, perf2 + "10,000 instances listed within 10 s"},
	{"Scale", "10000x*", "coord-steady-cpu-%", "", false, false, 20, perf2 + "with 10,000 instances, the coordinator's steady CPU at most 20% of a core"},
	{"Ingest", "plugbus", "events/s", "nethttp-nats", false, true, 0.8, perf2 + "HTTP ingest (no durability) through `POST /v1/events`, at least 0.8× a minimal net/http handler publishing the body with nats.go, same client"},
}

// baselineOf is the sub-benchmark sub is compared with for baseline: sub
// with its last path element replaced.
func baselineOf(sub, baseline string) string {
	if i := strings.LastIndexByte(sub, '/'); i >= 0 {
		return sub[:i+1] + baseline
	}
	return baseline
}

// header is what the report says about the run.
type header struct {
	machine, goVersion, date, command, goos, goarch string
}

// A shownChart is a chart written beside the report: its title and its
// path relative to the report.
type shownChart struct{ title, path string }

// write renders the whole report: header, charts, targets, one table per
// group, then notes.
func write(w io.Writer, h header, gs []*group, notes string, shown []shownChart) error {
	var b strings.Builder
	b.WriteString("# Benchmarks\n\n")
	b.WriteString("<!-- Generated by internal/benchreport from docs/benchmarks.txt; `make bench` rewrites it. -->\n\n")
	fmt.Fprintf(&b, "| | |\n|---|---|\n")
	fmt.Fprintf(&b, "| machine | %s |\n", h.machine)
	fmt.Fprintf(&b, "| OS/arch | %s/%s |\n", h.goos, h.goarch)
	fmt.Fprintf(&b, "| Go | %s |\n", h.goVersion)
	fmt.Fprintf(&b, "| date | %s |\n", h.date)
	fmt.Fprintf(&b, "| command | `%s` |\n\n", h.command)
	b.WriteString("Every figure is the **median** of the runs (`n`); `range` is (max − min) / median of the first figure, " +
		"a measure of the noise. A ratio divides the median of a row by the median of its baseline from the same run " +
		"(`÷ raw` = this row over the `raw` row of the same size); for rates (events/s) higher is better, " +
		"for times, CPU and allocations lower is better. The raw runs are in [benchmarks.txt](benchmarks.txt), for benchstat.\n\n")

	gs = slices.Clone(gs)
	order(gs)
	if len(shown) > 0 {
		b.WriteString("## At a glance\n\n" +
			"The medians of the tables below, drawn by internal/benchreport: Plugbus's rows in orange, " +
			"the baselines and alternatives in grey; each panel has its own scale.\n\n")
		for _, c := range shown {
			fmt.Fprintf(&b, "![%s](%s)\n\n", c.title, c.path)
		}
	}
	writeTargets(&b, gs)
	for _, g := range gs {
		writeGroup(&b, g)
	}
	if notes != "" {
		b.WriteString(strings.TrimSpace(notes))
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeTargets(b *strings.Builder, gs []*group) {
	var rows []string
	for _, t := range targets {
		op := "≤"
		if t.atLeast {
			op = "≥"
		}
		bound := fmtRatio(t.value)
		if t.baseline == "" || t.minus {
			bound = fmtNum(t.value)
		}
		row := func(sub, measured, verdict string) {
			label := fmt.Sprintf("%s `%s` %s", t.family, sub, t.unit)
			switch {
			case t.minus:
				label += fmt.Sprintf(" − `%s`", t.baseline)
			case t.baseline != "":
				label += fmt.Sprintf(" ÷ `%s`", t.baseline)
			}
			rows = append(rows, fmt.Sprintf("| %s | %s %s | %s | %s | %s |", label, op, bound, measured, verdict, t.source))
		}
		shown := false
		for _, g := range gs {
			if g.family != t.family {
				continue
			}
			for _, be := range g.benches {
				if ok, _ := path.Match(t.sub, be.sub); !ok {
					continue
				}
				shown = true
				r := be.median(t.unit)
				if t.baseline != "" {
					base := math.NaN()
					if bb := g.bench(baselineOf(be.sub, t.baseline)); bb != nil {
						base = bb.median(t.unit)
					}
					if t.minus {
						r -= base // NaN when either is missing
					} else {
						r = ratio(r, base)
					}
				}
				if math.IsNaN(r) {
					row(be.sub, "–", "not measured in this run")
					continue
				}
				measured := fmtRatio(r)
				if t.baseline == "" || t.minus {
					measured = fmtNum(r)
				}
				met := r <= t.value
				if t.atLeast {
					met = r >= t.value
				}
				verdict := "**missed**"
				if met {
					verdict = "met"
				}
				row(be.sub, measured, verdict)
			}
		}
		if !shown {
			row(t.sub, "–", "not measured in this run")
		}
	}
	b.WriteString("## Targets\n\n| figure | target | measured | | why |\n|---|---|---|---|---|\n")
	b.WriteString(strings.Join(rows, "\n"))
	b.WriteString("\n\n")
}

func writeGroup(b *strings.Builder, g *group) {
	f, known := familyOf(g.family)
	title := g.family
	if known {
		title = f.title
	}
	fmt.Fprintf(b, "## %s\n\n", title)
	fmt.Fprintf(b, "`Benchmark%s` in `%s`.", g.family, g.pkg)
	if known && f.about != "" {
		b.WriteString(" " + f.about)
	}
	b.WriteString("\n\n")

	compare := f.compare
	if len(compare) == 0 && len(f.baselines) > 0 {
		compare = g.units[:min(2, len(g.units))]
	}
	// Only the baselines this group has.
	var baselines []string
	for _, bl := range f.baselines {
		for _, be := range g.benches {
			if path.Base(be.sub) == bl {
				baselines = append(baselines, bl)
				break
			}
		}
	}
	type col struct{ unit, baseline string }
	var ratios []col
	for _, bl := range baselines {
		for _, u := range compare {
			if slices.Contains(g.units, u) {
				ratios = append(ratios, col{u, bl})
			}
		}
	}

	cols := []string{"benchmark", "n"}
	cols = append(cols, g.units...)
	cols = append(cols, "range")
	for _, c := range ratios {
		cols = append(cols, c.unit+" ÷ "+c.baseline)
	}
	b.WriteString("| " + strings.Join(cols, " | ") + " |\n")
	b.WriteString("|---|" + strings.Repeat("---:|", len(cols)-1) + "\n")
	for _, be := range g.benches {
		name := be.sub
		if name == "" {
			name = g.family
		}
		cells := []string{"`" + name + "`", strconv.Itoa(runs(be))}
		for _, u := range g.units {
			cells = append(cells, fmtNum(be.median(u)))
		}
		cells = append(cells, fmtPct(spread(be.runs[g.units[0]])))
		for _, c := range ratios {
			base := g.bench(baselineOf(be.sub, c.baseline))
			r := math.NaN()
			if base != nil {
				r = ratio(be.median(c.unit), base.median(c.unit))
			}
			cells = append(cells, fmtRatio(r))
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	b.WriteString("\n")
}

func runs(be *bench) int {
	n := 0
	for _, v := range be.runs {
		n = max(n, len(v))
	}
	return n
}

// fmtNum prints a figure with about three significant digits, thousands
// separated: 1,234,567 / 12,345 / 123 / 12.3 / 1.23 / 0.0123.
func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case math.Abs(v) >= 100 || v == math.Trunc(v):
		return group3(strconv.FormatFloat(math.Round(v), 'f', 0, 64))
	case math.Abs(v) >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case math.Abs(v) >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func group3(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func fmtRatio(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "–"
	}
	if r >= 10 {
		return strconv.FormatFloat(r, 'f', 1, 64) + "×"
	}
	return strconv.FormatFloat(r, 'f', 2, 64) + "×"
}

func fmtPct(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return strconv.FormatFloat(v*100, 'f', 0, 64) + "%"
}
