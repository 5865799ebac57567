package bench_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/plugbus/plugbus/bench/greet"
	"github.com/plugbus/plugbus/bus"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// A mode is one way the coordinator binary runs plugins/hello: the YAML
// of its plugins list, with the given number of instances.
type mode struct {
	name string
	yaml func(replicas int) string
	slow bool // skipped under -short: compiling hello.wasm takes a minute on a busy machine
}

var modes = []mode{
	{"plugbus", func(n int) string {
		return fmt.Sprintf("  - name: hello\n    exec: %q\n    replicas: %d\n", bin.hello, n)
	}, false},
	{"plugbus-static", func(n int) string {
		return fmt.Sprintf("  - name: hello\n    static: true\n    replicas: %d\n", n)
	}, false},
	{"plugbus-stdio", func(n int) string {
		return fmt.Sprintf("  - name: hello\n    exec: %q\n    stdio: true\n    replicas: %d\n", bin.hello, n)
	}, false},
	{"plugbus-wasm", func(n int) string {
		return fmt.Sprintf("  - name: hello\n    wasm: %q\n    replicas: %d\n", bin.helloWasm, n)
	}, true},
}

func (m mode) skipShort(b *testing.B) {
	if m.slow && testing.Short() {
		b.Skip("compiling hello.wasm is too slow for -short; the wasm tests (coordinator/internal/wasm/e2e) cover it working")
	}
}

// helloAcks are the results plugins/hello publishes for the events it
// handles.
const helloAcks = "plugbus.events.*.com.example.greet.sent"

// BenchmarkModeOneWay measures events per second, one way, from a
// publisher in this process to plugins/hello run by the coordinator binary
// in each mode (one instance): a process, static (in the coordinator's
// process), stdio (a child behind the coordinator's bridge) and wasm (a
// WebAssembly module inside the coordinator, behind the same bridge).
// hello publishes a result event for each, which the benchmark counts.
func BenchmarkModeOneWay(b *testing.B) {
	payload := greet.Payload(128)
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			m.skipShort(b)
			coord, natsURL, _ := coordinatorWithCache(b, payload, m.yaml(1), bin.wasmCache)
			runOneWayAcked(b, natsURL, sendGreet, helloAcks, payload, []*proc{coord})
		})
	}
}

// sendGreet returns a function that publishes one greeting request as an
// event (not a request: no answer is awaited).
func sendGreet(b *testing.B, nc *nats.Conn, payload []byte) func() error {
	e := pluginkit.NewEvent(greet.GreetType, nil)
	if err := e.SetData("application/json", payload); err != nil {
		b.Fatal(err)
	}
	return func() error {
		e.SetID(nuid.Next())
		return bus.Publish(nc, bus.DefaultPrefix, "bench", e)
	}
}

// BenchmarkWasmColdStart measures how long the coordinator binary takes
// from its start to the first answer of hello as a WebAssembly plugin:
// compiling the module (an empty compilation cache) and loading it from
// the cache a previous start filled. The coordinator's own start is in
// both; BenchmarkColdStart/plugbus is a process plugin's.
func BenchmarkWasmColdStart(b *testing.B) {
	payload := greet.Payload(128)
	for _, cached := range []bool{false, true} {
		name := "compile"
		if cached {
			name = "cached"
		}
		b.Run(name, func(b *testing.B) {
			if testing.Short() {
				b.Skip("compiling hello.wasm is too slow for -short")
			}
			cache := filepath.Join(b.TempDir(), "cache")
			if cached {
				coord, _, _ := coordinatorWithCache(b, payload, modes[3].yaml(1), cache)
				coord.stop(b)
			}
			coldStart(b, func(b *testing.B) func() {
				dir := cache
				if !cached {
					dir = filepath.Join(b.TempDir(), "cache")
				}
				coord, _, _ := coordinatorWithCache(b, payload, modes[3].yaml(1), dir)
				return func() { coord.stop(b) }
			})
		})
	}
}

// BenchmarkWasmInstanceMemory reports the memory one more instance of
// hello as a WebAssembly plugin adds to the coordinator's resident memory:
// the coordinator with 5 instances against 1, divided by 4.
func BenchmarkWasmInstanceMemory(b *testing.B) {
	if testing.Short() {
		b.Skip("compiling hello.wasm is too slow for -short")
	}
	payload := greet.Payload(128)
	rss := func(replicas int) float64 {
		coord, _, httpAddr := coordinatorWithCache(b, payload, modes[3].yaml(replicas), bin.wasmCache)
		defer coord.stop(b)
		waitRunning(b, httpAddr, replicas)
		time.Sleep(settle)
		mib, err := rssMiB(coord.cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		return mib
	}
	one, five := rss(1), rss(5)
	for b.Loop() {
	}
	b.ReportMetric(0, "ns/op") // not a timing
	b.ReportMetric((five-one)/4, "rss-MiB/instance")
	b.ReportMetric(one, "rss-MiB-1-instance")
	b.ReportMetric(fileMiB(b, bin.helloWasm), "module-MiB")
}

// waitRunning waits until the coordinator at httpAddr reports n running
// instances.
func waitRunning(b *testing.B, httpAddr string, n int) {
	deadline := time.Now().Add(3 * time.Minute)
	for runningInstances(b, httpAddr) < n {
		if time.Now().After(deadline) {
			b.Fatalf("%d instances not running within 3m", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runningInstances counts the running instances the coordinator at
// httpAddr supervises.
func runningInstances(b *testing.B, httpAddr string) int {
	resp, err := http.Get("http://" + httpAddr + "/v1/supervised")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var list []struct {
		State string `json:"state"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, in := range list {
		if in.State == "running" {
			n++
		}
	}
	return n
}
