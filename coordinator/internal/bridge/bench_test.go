package bridge_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	"github.com/plugbus/plugbus/bus/embedded"
	"github.com/plugbus/plugbus/coordinator/internal/bridge"
	"github.com/plugbus/plugbus/coordinator/internal/wasm"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

const greetType = "com.example.greet.requested"

// BenchmarkInvoke measures sequential invokes through the bridge from a
// client of an in-process NATS server: to a program that answers every
// line with a fixed result (the bridge alone, with a goroutine for a
// program), and to examples/wasm-c in wazero (the bridge and a small
// WebAssembly module), compiled with termination checks and without; and,
// for the floor, to a plugin-kit handler without a bridge. Profile it to
// see what the coordinator spends per event.
func BenchmarkInvoke(b *testing.B) {
	b.Run("static", func(b *testing.B) {
		// No bridge: a plugin-kit handler in this process, for the floor,
		// run one at a time as the bridge runs a program's.
		s := bustest.NewServer(b)
		p := pluginkit.New("greet", "1.0.0", pluginkit.WithConnConfig(bus.ConnConfig{InProcess: s}), pluginkit.WithLogger(slog.New(slog.DiscardHandler)))
		p.HandleFunc(greetType, func(context.Context, pluginkit.Event) (*pluginkit.Event, error) {
			return pluginkit.NewEvent("com.example.greet.sent", json.RawMessage(`{"text":"hello, Ada"}`)), nil
		}, pluginkit.Concurrency(1))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		b.Cleanup(func() {
			cancel()
			<-done
		})
		invokeLoop(b, s)
	})
	b.Run("program", func(b *testing.B) {
		inR, inW := io.Pipe()
		outR, outW := io.Pipe()
		go fixedAnswers(inR, outW)
		benchInvoke(b, inW, outR)
	})
	for _, sb := range []struct {
		name string
		wasm.Sandbox
	}{{"wasm-c", wasm.Sandbox{}}, {"wasm-c-uninterruptible", wasm.Sandbox{Uninterruptible: true}}} {
		b.Run(sb.name, func(b *testing.B) { benchModule(b, sb.Sandbox) })
	}
}

// benchModule runs benchInvoke with examples/wasm-c in a sandbox.
func benchModule(b *testing.B, sb wasm.Sandbox) {
	module := buildGreetC(b)
	host, err := wasm.NewHost("")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { host.Close(context.Background()) })
	m, err := host.Load(context.Background(), "greet-c", module, "", sb)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close(context.Background()) })
	in, err := m.Start(io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(in.Stop)
	benchInvoke(b, in.Stdin, in.Stdout)
}

// benchInvoke runs a bridge between the program on stdin and stdout and a
// NATS server, and invokes the program through it b.N times.
func benchInvoke(b *testing.B, stdin io.WriteCloser, stdout io.Reader) {
	s := bustest.NewServer(b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- bridge.Run(ctx, bridge.Config{Plugin: "greet", Instance: "greet-1", Stdin: stdin, Stdout: stdout, Conn: bus.ConnConfig{InProcess: s}, Logger: slog.New(slog.DiscardHandler)})
	}()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("bridge: %v", err)
		}
	})
	invokeLoop(b, s)
}

// invokeLoop invokes the greeting plugin on s until it answers, then b.N
// times.
func invokeLoop(b *testing.B, s *embedded.Server) {
	nc := bustest.Connect(b, s)
	call := func() error {
		e := pluginkit.NewEvent(greetType, json.RawMessage(`{"name":"Ada"}`))
		reply, err := bus.Request(context.Background(), nc, bus.DefaultPrefix, "bench", e)
		if err == nil && (reply == nil || !bytes.Contains(reply.Data(), []byte("hello, Ada"))) {
			err = fmt.Errorf("reply %v, want a greeting", reply)
		}
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for err := call(); err != nil; err = call() {
		if time.Now().After(deadline) {
			b.Fatalf("no answer within a minute: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The median, not the mean, and the CPU of this whole process (client,
	// server, bridge and program) per invoke: on a machine shared with
	// other work both vary less than the time per op.
	var took []time.Duration
	cpu0 := cpuTime()
	for b.Loop() {
		start := time.Now()
		if err := call(); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(len(took)), "cpu-ns/op")
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Nanoseconds())/1e3, "p50-µs")
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fixedAnswers is a program that sends a manifest, then answers every line
// on in with the same greeting, taking its id as a script would.
func fixedAnswers(in io.ReadCloser, out io.WriteCloser) {
	defer out.Close()
	defer in.Close()
	w := bufio.NewWriter(out)
	fmt.Fprintf(w, `{"manifest":{"version":"1.0.0","answers":[%q]}}`+"\n", greetType)
	if w.Flush() != nil {
		return
	}
	r := bufio.NewReader(in)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		id, _, _ := bytes.Cut(bytes.TrimPrefix(line, []byte(`{"id":"`)), []byte(`"`))
		w.WriteString(`{"id":"`)
		w.Write(id)
		w.WriteString(`","event":{"type":"com.example.greet.sent","data":{"text":"hello, Ada"}}}` + "\n")
		if w.Flush() != nil {
			return
		}
	}
}

// buildGreetC builds examples/wasm-c with clang and wasi-libc, or skips.
func buildGreetC(b *testing.B) string {
	clang, err := exec.LookPath("clang")
	if err != nil {
		b.Skip("no clang: run make wasm-tools to install clang, lld and wasi-libc (Debian packages)")
	}
	module := filepath.Join(b.TempDir(), "greet-c.wasm")
	out, err := exec.Command(clang, "--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-o", module, "../../../examples/wasm-c/greet.c").CombinedOutput()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			b.Skipf("clang cannot build for wasm32-wasi (run make wasm-tools for wasi-libc and the wasm32 builtins): %v\n%s", err, out)
		}
		b.Fatal(err)
	}
	return module
}
