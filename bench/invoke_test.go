package bench_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bench/goplugin"
	"github.com/plugbus/plugbus/bench/greet"
	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	"github.com/plugbus/plugbus/bus/embedded"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
	"github.com/plugbus/plugbus/plugins/hello"
)

const invokeSubject = "bench.greet" // natspeer's in mode reply

// An invoker sets up one way of calling the greeting handler: it returns
// the call and the process id of the child that answers (0 for none).
type invoker struct {
	name  string
	setup func(b *testing.B, s *embedded.Server, payload []byte) (call func() error, pids []int)
}

var invokers = []invoker{
	{"direct", func(b *testing.B, _ *embedded.Server, payload []byte) (func() error, []int) {
		handler := greet.Greet // through a variable, as a registry of handlers would call it
		return func() error {
			_, err := handler(payload)
			return err
		}, nil
	}},
	{"stdio-json", func(b *testing.B, _ *embedded.Server, payload []byte) (func() error, []int) {
		c := startStdio(b)
		return func() error { return c.call(payload) }, []int{c.p.cmd.Process.Pid}
	}},
	{"goplugin-netrpc", func(b *testing.B, _ *embedded.Server, payload []byte) (func() error, []int) {
		return goPluginCall(b, plugin.ProtocolNetRPC, payload)
	}},
	{"goplugin-grpc", func(b *testing.B, _ *embedded.Server, payload []byte) (func() error, []int) {
		return goPluginCall(b, plugin.ProtocolGRPC, payload)
	}},
	{"nats-raw", func(b *testing.B, s *embedded.Server, payload []byte) (func() error, []int) {
		return natsRawCall(b, s, connect(b, s.ClientURL()), payload)
	}},
	{"nats-raw-inprocess", func(b *testing.B, s *embedded.Server, payload []byte) (func() error, []int) {
		return natsRawCall(b, s, connectInProcess(b, s), payload)
	}},
	{"plugbus", func(b *testing.B, s *embedded.Server, payload []byte) (func() error, []int) {
		url := s.ClientURL()
		nc := connect(b, url)
		p := startHello(b, nc, url)
		return plugbusCall(nc, payload), []int{p.cmd.Process.Pid}
	}},
	{"plugbus-inprocess", func(b *testing.B, s *embedded.Server, payload []byte) (func() error, []int) {
		// As the coordinator asks: from the process that embeds the
		// server, over an in-process connection (no socket on its side).
		nc := connectInProcess(b, s)
		p := startHello(b, nc, s.ClientURL())
		return plugbusCall(nc, payload), []int{p.cmd.Process.Pid}
	}},
	{"plugbus-static", func(b *testing.B, s *embedded.Server, payload []byte) (func() error, []int) {
		// Static mode: plugins/hello's package linked into this process
		// and run over its own in-process connection, as the coordinator
		// runs a static plugin, asked over another in-process connection.
		nc := connectInProcess(b, s)
		startStatic(b, nc, s)
		return plugbusCall(nc, payload), nil
	}},
	{"plugbus-static-coordinator", func(b *testing.B, _ *embedded.Server, payload []byte) (func() error, []int) {
		// plugins/hello as a static plugin of the coordinator binary,
		// asked over TCP as the stdio and wasm rows ask theirs: the same
		// path as theirs but for the bridge and the program.
		coord, call, _ := coordinatorWith(b, payload, "  - name: hello\n    static: true\n")
		return call, []int{coord.cmd.Process.Pid}
	}},
	{"nethttp-nats", func(b *testing.B, _ *embedded.Server, payload []byte) (func() error, []int) {
		// The floor of plugbus-http: bench/cmd/ingestpeer, a minimal
		// net/http handler in a process of its own that embeds a server,
		// sends the body to plugins/hello with nats.go's request/reply over
		// an in-process connection (fixed ce- headers) and answers with the
		// reply's data; the same client and plugin as plugbus-http.
		natsAddr, httpAddr := freePort(b), freePort(b)
		peer := startProc(b, nil, "ready", bin.ingestpeer, "-http-listen", httpAddr, "-nats-listen", natsAddr)
		nc := connect(b, "nats://"+natsAddr)
		p := startHello(b, nc, "nats://"+natsAddr)
		return httpInvokeCall("http://"+httpAddr+"/invoke/"+greet.GreetType, payload), []int{peer.cmd.Process.Pid, p.cmd.Process.Pid}
	}},
	{"plugbus-http", func(b *testing.B, _ *embedded.Server, payload []byte) (func() error, []int) {
		// Through the coordinator's HTTP API: POST /v1/invoke/{type} to the
		// coordinator binary (its own embedded server), which asks
		// plugins/hello over its in-process connection.
		coord, natsAddr, httpAddr := startCoordinator(b)
		nc := connect(b, "nats://"+natsAddr)
		p := startHello(b, nc, "nats://"+natsAddr)
		return httpInvokeCall("http://"+httpAddr+"/v1/invoke/"+greet.GreetType, payload), []int{coord.cmd.Process.Pid, p.cmd.Process.Pid}
	}},
	{"plugbus-stdio", func(b *testing.B, _ *embedded.Server, payload []byte) (func() error, []int) {
		// plugins/hello as a stdio plugin: the coordinator binary runs it
		// with PLUGBUS_STDIO=1, and its bridge (in the coordinator's
		// process) turns the request into a JSON line on hello's standard
		// input and the answer line into the reply. Compare stdio-json, the
		// same hop without the bus.
		coord, call, httpAddr := coordinatorWith(b, payload, fmt.Sprintf("  - name: hello\n    exec: %q\n    stdio: true\n", bin.hello))
		return call, []int{coord.cmd.Process.Pid, supervisedPID(b, httpAddr, "hello-1")}
	}},
	{"plugbus-wasm", func(b *testing.B, _ *embedded.Server, payload []byte) (func() error, []int) {
		// plugins/hello built for wasip1, run by the coordinator binary
		// inside its own process (wazero), over the same bridge.
		if testing.Short() {
			// Its first compile takes a minute on a busy machine; the wasm
			// tests (coordinator/internal/wasm/e2e) cover it working.
			b.Skip("compiling hello.wasm is too slow for -short")
		}
		coord, call, _ := coordinatorWith(b, payload, fmt.Sprintf("  - name: hello\n    wasm: %q\n", bin.helloWasm))
		return call, []int{coord.cmd.Process.Pid}
	}},
	{"plugbus-wasm-uninterruptible", func(b *testing.B, _ *embedded.Server, payload []byte) (func() error, []int) {
		// The same module compiled without the checks that let a runaway
		// instance be interrupted (uninterruptible: true, docs/wasm.md).
		if testing.Short() {
			b.Skip("compiling hello.wasm is too slow for -short")
		}
		coord, call, _ := coordinatorWith(b, payload, fmt.Sprintf("  - name: hello\n    wasm: %q\n    uninterruptible: true\n", bin.helloWasm))
		return call, []int{coord.cmd.Process.Pid}
	}},
	{"plugbus-wasm-c", func(b *testing.B, _ *embedded.Server, payload []byte) (func() error, []int) {
		// examples/wasm-c, the greeting plugin in C (wasi-libc, no Go
		// runtime in the module), inside the coordinator over the same
		// bridge: what the bridge and wazero cost without Go's.
		if bin.greetC == "" {
			b.Skip(bin.greetCMissing)
		}
		coord, call, _ := coordinatorWith(b, payload, fmt.Sprintf("  - name: greet-c\n    wasm: %q\n", bin.greetC))
		return call, []int{coord.cmd.Process.Pid}
	}},
	{"plugbus-wasm-c-uninterruptible", func(b *testing.B, _ *embedded.Server, payload []byte) (func() error, []int) {
		// The same module compiled without termination checks: wazero's
		// check is a call out of the module at every loop header, and C
		// code loops over bytes.
		if bin.greetC == "" {
			b.Skip(bin.greetCMissing)
		}
		coord, call, _ := coordinatorWith(b, payload, fmt.Sprintf("  - name: greet-c\n    wasm: %q\n    uninterruptible: true\n", bin.greetC))
		return call, []int{coord.cmd.Process.Pid}
	}},
	{"plugbus-so", func(b *testing.B, _ *embedded.Server, payload []byte) (func() error, []int) {
		// plugins/hello built with -buildmode=plugin, loaded by the
		// coordinator binary and run in its process as a static plugin
		// is: the request crosses the coordinator's in-process connection.
		coord, call, _ := coordinatorWith(b, payload, fmt.Sprintf("  - name: hello\n    so: %q\n", buildHelloSO(b)))
		return call, []int{coord.cmd.Process.Pid}
	}},
	{"plugbus-c1", func(b *testing.B, s *embedded.Server, payload []byte) (func() error, []int) {
		url := s.ClientURL()
		// The same, to a plugin whose handler has Concurrency(1): handled
		// on the subscription's goroutine, without a hand-off to a worker.
		nc := connect(b, url)
		p := startPlugin(b, nc, url, bin.pluginpeer, sinkName, "PLUGBUS_BENCH_NAME="+sinkName, "PLUGBUS_BENCH_CONCURRENCY=1", "PLUGBUS_BENCH_CPUPROFILE="+os.Getenv("PLUGBUS_BENCH_CPUPROFILE"))
		return plugbusCall(nc, payload), []int{p.cmd.Process.Pid}
	}},
	{"plugbus-natsreq", func(b *testing.B, s *embedded.Server, payload []byte) (func() error, []int) {
		url := s.ClientURL()
		// The plugin side alone: a request computed once, sent with
		// nats.go's Request, and the reply's error headers checked.
		nc := connect(b, url)
		p := startHello(b, nc, url)
		subject, err := bus.InvokeSubject(bus.DefaultPrefix, "bench", greet.GreetType)
		if err != nil {
			b.Fatal(err)
		}
		e := pluginkit.NewEvent(greet.GreetType, json.RawMessage(payload))
		e.SetSource(bus.Source("bench"))
		msg := &nats.Msg{Subject: subject}
		if err := bus.Encode(e, msg); err != nil {
			b.Fatal(err)
		}
		return func() error {
			reply, err := nc.RequestMsg(msg, 5*time.Second)
			if err == nil && reply.Header.Get("Nats-Service-Error-Code") != "" {
				err = errors.New(reply.Header.Get("Nats-Service-Error"))
			}
			return err
		}, []int{p.cmd.Process.Pid}
	}},
}

// BenchmarkInvoke measures sequential round trips of a 128 B request to a
// greeting handler, by every way of calling it, reporting the median and
// 99th percentile, and the CPU of both sides per call.
func BenchmarkInvoke(b *testing.B) {
	s := bustest.NewServer(b)
	payload := greet.Payload(128)
	for _, inv := range invokers {
		b.Run(inv.name, func(b *testing.B) {
			call, pids := inv.setup(b, s, payload)
			for range 100 { // warm up: connections, caches, the JIT-less Go runtime's pools
				if err := call(); err != nil {
					b.Fatal(err)
				}
			}
			latencies := make([]time.Duration, b.N)
			b.ResetTimer()
			cpu0 := cpuOf(b, pids...)
			for i := range b.N {
				start := time.Now()
				if err := call(); err != nil {
					b.Fatal(err)
				}
				latencies[i] = time.Since(start)
			}
			cpu := cpuOf(b, pids...) - cpu0
			b.StopTimer()
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
			reportLatencies(b, latencies, "µs")
		})
	}
}

// natsRawCall starts the raw nats.go replier and returns a call through nc.
func natsRawCall(b *testing.B, s *embedded.Server, nc *nats.Conn, payload []byte) (func() error, []int) {
	p := startProc(b, nil, "ready", bin.natspeer, "-url", s.ClientURL(), "-mode", "reply", "-subject", invokeSubject)
	return func() error {
		_, err := nc.Request(invokeSubject, payload, 5*time.Second)
		return err
	}, []int{p.cmd.Process.Pid}
}

// httpInvokeCall POSTs payload to url, as JSON, and reads the answer,
// which must be 200.
func httpInvokeCall(url string, payload []byte) func() error {
	client := &http.Client{Timeout: 5 * time.Second}
	return func() error {
		resp, err := client.Post(url, "application/json", bytes.NewReader(payload))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("POST %s: %s: %s", url, resp.Status, body)
		}
		return err
	}
}

func plugbusCall(nc *nats.Conn, payload []byte) func() error {
	return func() error {
		reply, err := bus.Request(context.Background(), nc, bus.DefaultPrefix, "bench", pluginkit.NewEvent(greet.GreetType, json.RawMessage(payload)))
		if err == nil && reply == nil {
			err = errors.New("no reply event")
		}
		return err
	}
}

func connect(b testing.TB, url string) *nats.Conn {
	b.Helper()
	nc, err := nats.Connect(url, nats.Name(b.Name()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	return nc
}

// connectInProcess connects to s without a socket, as the coordinator
// connects to its embedded server.
func connectInProcess(b testing.TB, s *embedded.Server) *nats.Conn {
	b.Helper()
	nc, err := nats.Connect("", nats.InProcessServer(s), nats.Name(b.Name()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	return nc
}

// startHello starts plugins/hello on url and waits until it has started.
func startHello(b testing.TB, nc *nats.Conn, url string) *proc {
	b.Helper()
	return startPlugin(b, nc, url, bin.hello, "hello")
}

// startStatic runs plugins/hello in this process on an in-process
// connection to s, as the coordinator's static mode does, until the
// benchmark ends, and waits until it has started.
func startStatic(b testing.TB, nc *nats.Conn, s *embedded.Server) {
	b.Helper()
	started, err := nc.SubscribeSync(bus.DefaultPrefix + ".events.hello." + bus.TypePluginStarted)
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		b.Fatal(err)
	}
	defer started.Unsubscribe()
	p := hello.New()
	for _, opt := range []pluginkit.Option{
		pluginkit.WithConnConfig(bus.ConnConfig{InProcess: s, Name: "hello"}),
		pluginkit.WithMode(bus.ModeStatic),
		pluginkit.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	} {
		opt(p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	if _, err := started.NextMsg(30 * time.Second); err != nil {
		b.Fatalf("static hello did not start: %v", err)
	}
}

// startPlugin starts the plugin name from path on url, with extra
// environment, and waits until it has started.
func startPlugin(b testing.TB, nc *nats.Conn, url, path, name string, env ...string) *proc {
	b.Helper()
	started, err := nc.SubscribeSync(bus.DefaultPrefix + ".events." + name + "." + bus.TypePluginStarted)
	if err != nil {
		b.Fatal(err)
	}
	defer started.Unsubscribe()
	if err := nc.Flush(); err != nil {
		b.Fatal(err)
	}
	p := startProc(b, append([]string{"PLUGBUS_URL=" + url, "PLUGBUS_LOG_LEVEL=warn"}, env...), "", path)
	waitStarted(b, started, p)
	return p
}

// stdioPeer is a child answering JSON lines.
type stdioPeer struct {
	p   *proc
	in  io.WriteCloser
	w   *bufio.Writer
	out *bufio.Scanner
}

func startStdio(b testing.TB) *stdioPeer {
	b.Helper()
	cmd := exec.Command(bin.stdiopeer)
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	p := &proc{cmd: cmd, stderr: &syncBuffer{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	c := &stdioPeer{p: p, in: in, w: bufio.NewWriter(in), out: bufio.NewScanner(out)}
	c.out.Buffer(make([]byte, 64<<10), 16<<20)
	b.Cleanup(func() { c.close(b) })
	return c
}

func (c *stdioPeer) call(payload []byte) error {
	c.w.Write(payload)
	c.w.WriteByte('\n')
	if err := c.w.Flush(); err != nil {
		return err
	}
	if !c.out.Scan() {
		if err := c.out.Err(); err != nil {
			return err
		}
		return io.ErrUnexpectedEOF
	}
	return nil
}

// close ends the child's input, which ends it.
func (c *stdioPeer) close(b testing.TB) {
	c.in.Close()
	c.p.stop(b)
}

// startGoPlugin starts gopluginpeer through go-plugin with the given
// transport and dispenses its Greeter.
func startGoPlugin(b testing.TB, protocol plugin.Protocol) (*plugin.Client, goplugin.Greeter) {
	b.Helper()
	cmd := exec.Command(bin.gopluginpeer)
	if protocol == plugin.ProtocolNetRPC {
		cmd.Env = append(cmd.Environ(), goplugin.ProtocolEnv+"=netrpc")
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  goplugin.Handshake,
		Plugins:          plugin.PluginSet{goplugin.Name: &goplugin.Plugin{}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{protocol},
		Logger:           hclog.NewNullLogger(),
	})
	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		b.Fatal(err)
	}
	raw, err := rpc.Dispense(goplugin.Name)
	if err != nil {
		client.Kill()
		b.Fatal(err)
	}
	return client, raw.(goplugin.Greeter)
}

func goPluginCall(b *testing.B, protocol plugin.Protocol, payload []byte) (func() error, []int) {
	client, g := startGoPlugin(b, protocol)
	b.Cleanup(client.Kill)
	return func() error {
		_, err := g.Greet(payload)
		return err
	}, []int{client.ReattachConfig().Pid}
}

// coordinatorWith starts the coordinator binary running the plugins of a
// YAML list, and returns it with a bus.Request call over TCP, once the
// plugin answers.
func coordinatorWith(b *testing.B, payload []byte, plugins string) (coord *proc, call func() error, httpAddr string) {
	coord, natsURL, httpAddr := coordinatorWithCache(b, payload, plugins, bin.wasmCache)
	return coord, plugbusCall(connect(b, natsURL), payload), httpAddr
}

// coordinatorWithCache starts the coordinator binary running the plugins
// of a YAML list, with its wasm compilation cache in cache, and returns it
// with its NATS URL and HTTP address once the plugin answers.
func coordinatorWithCache(b *testing.B, payload []byte, plugins, cache string) (coord *proc, natsURL, httpAddr string) {
	config := filepath.Join(b.TempDir(), "plugins.yaml")
	yaml := fmt.Sprintf("wasm_cache_dir: %q\nplugins:\n%s", cache, plugins)
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		b.Fatal(err)
	}
	coord, natsAddr, httpAddr := startCoordinator(b, "--config", config)
	natsURL = "nats://" + natsAddr
	nc := connect(b, natsURL)
	defer nc.Close()
	call := plugbusCall(nc, payload)
	// A WebAssembly module compiles on its first start: seconds.
	deadline := time.Now().Add(3 * time.Minute)
	for err := call(); err != nil; err = call() {
		if time.Now().After(deadline) {
			b.Fatalf("the plugin did not answer within 3m: %v; the coordinator's standard error:\n%s", err, coord.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return coord, natsURL, httpAddr
}

// buildHelloSO builds plugins/hello with -buildmode=plugin, in the main
// module as the coordinator binary was built (Go loads a .so only into a
// program built with the same packages and flags), once for the run.
func buildHelloSO(b *testing.B) string {
	b.Helper()
	if runtime.GOOS != "linux" {
		b.Skipf("a .so plugin needs Linux; this is %s", runtime.GOOS)
	}
	if out, err := exec.Command("go", "env", "CGO_ENABLED").Output(); err != nil || strings.TrimSpace(string(out)) != "1" {
		b.Skip("a .so plugin needs cgo, which is off (go env CGO_ENABLED): set CGO_ENABLED=1 and install gcc")
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		b.Skip("a .so plugin needs a C toolchain: install gcc")
	}
	if testing.Short() {
		// -buildmode=plugin rebuilds every dependency for dynamic
		// linking: minutes on a busy machine. internal/conformance's
		// .so row covers it working.
		b.Skip("building hello.so is too slow for -short")
	}
	if bin.helloSO != "" {
		return bin.helloSO
	}
	out := filepath.Join(bin.dir, "hello.so")
	cmd := exec.Command("go", "build", "-buildmode=plugin", "-o", out, "./plugins/hello/cmd/hello")
	cmd.Dir = ".."
	if b2, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%v: %v\n%s", cmd.Args, err, b2)
	}
	bin.helloSO = out
	return out
}

// supervisedPID asks a coordinator for the process id of one of the
// instances it supervises.
func supervisedPID(b *testing.B, httpAddr, instance string) int {
	resp, err := http.Get("http://" + httpAddr + "/v1/supervised")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var list []struct {
		Instance string `json:"instance"`
		PID      int    `json:"pid"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		b.Fatal(err)
	}
	for _, in := range list {
		if in.Instance == instance && in.PID != 0 {
			return in.PID
		}
	}
	b.Fatalf("the coordinator runs no %s: %+v", instance, list)
	return 0
}
