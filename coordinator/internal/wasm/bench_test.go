package wasm_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plugbus/plugbus/coordinator/internal/wasm"
	"github.com/plugbus/plugbus/internal/proctest"
)

// BenchmarkModuleAlone feeds event lines to a module in wazero and reads
// its answers, as the bridge does but without the bus: what a module and
// its standard input and output cost an event. Rows: examples/wasm-c (C,
// wasi-libc) and testdata/wasmtest (Go), each compiled with termination
// checks and without (uninterruptible), and plugins/hello (Go,
// plugin-kit). cpu-ns/op is this process's CPU per line.
func BenchmarkModuleAlone(b *testing.B) {
	const data = `{"name":"Ada Lovelace, who wrote the first program for a machine that did not exist yet"}`
	line := func(typ string) []byte {
		return []byte(`{"id":"1","producer":"bench","event":{"specversion":"1.0","id":"2Xh5kq7HxUQ1yOa3bTqhVn","source":"urn:plugbus:bench","type":"` + typ +
			`","datacontenttype":"application/json","time":"2026-12-07T05:48:29.123456789Z","deadline":"2026-12-07T05:48:59.123Z","data":` + data + "}}\n")
	}
	for _, m := range []struct {
		name string
		path func(*testing.B) string
		line []byte
	}{
		{"c", buildGreetC, line("com.example.greet.requested")},
		{"go", func(*testing.B) string { return module }, line("com.example.wasm.greet")},
		// plugins/hello (plugin-kit), given the line the bridge writes:
		// its data checked against the schema, a deadline to come.
		{"hello", buildHello, []byte(strings.NewReplacer(`"producer":"bench"`, `"producer":"bench","checked":"com.example.greet.requested"`,
			"2026-12-07T05:48:59.123Z", time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)).Replace(string(line("com.example.greet.requested"))))},
	} {
		for _, un := range []bool{false, true} {
			name := m.name
			if un {
				name += "-uninterruptible"
			}
			b.Run(name, func(b *testing.B) {
				benchModuleAlone(b, m.path(b), wasm.Sandbox{Uninterruptible: un}, m.line)
			})
		}
	}
}

func benchModuleAlone(b *testing.B, path string, sb wasm.Sandbox, line []byte) {
	m, err := host.Load(context.Background(), "bench", path, "", sb)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close(context.Background())
	in, err := m.Start(&proctest.Output{})
	if err != nil {
		b.Fatal(err)
	}
	defer in.Stop()
	// Answers are read on a goroutine of their own, as the bridge reads
	// them.
	answers := make(chan error, 1)
	go func() {
		r := bufio.NewReader(in.Stdout)
		for {
			_, err := r.ReadSlice('\n')
			answers <- err
			if err != nil {
				return
			}
		}
	}()
	if err := <-answers; err != nil { // the manifest
		b.Fatal(err)
	}
	if _, err := in.Stdin.Write(line); err != nil || <-answers != nil { // warm up
		b.Fatalf("no answer: %v", err)
	}
	cpu0 := cpuTime()
	for b.Loop() {
		if _, err := in.Stdin.Write(line); err != nil {
			b.Fatal(err)
		}
		if err := <-answers; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// buildHello builds plugins/hello for wasip1.
func buildHello(b *testing.B) string {
	out := filepath.Join(b.TempDir(), "hello.wasm")
	cmd := exec.Command("go", "build", "-o", out, "../../../plugins/hello/cmd/hello")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("GOOS=wasip1 GOARCH=wasm go build ./plugins/hello/cmd/hello: %v\n%s", err, msg)
	}
	return out
}

// buildGreetC builds examples/wasm-c with clang and wasi-libc, or skips.
func buildGreetC(b *testing.B) string {
	clang, err := exec.LookPath("clang")
	if err != nil {
		b.Skip("no clang: run make wasm-tools to install clang, lld and wasi-libc (Debian packages)")
	}
	out := filepath.Join(b.TempDir(), "greet-c.wasm")
	if msg, err := exec.Command(clang, "--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-o", out, "../../../examples/wasm-c/greet.c").CombinedOutput(); err != nil {
		b.Skipf("clang cannot build for wasm32-wasi (run make wasm-tools for wasi-libc and the wasm32 builtins): %v\n%s", err, msg)
	}
	return out
}
