package bench_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// bin holds the programs the benchmarks run, built once by TestMain.
var bin struct {
	dir                                                   string
	hello, coordinator, natspeer, stdiopeer, gopluginpeer string
	pluginpeer, scalepeer, ingestpeer                     string
	helloWasm, wasmCache                                  string // hello built for wasip1; its compiled code, kept across rounds
	greetC                                                string // examples/wasm-c built with clang, or "" when it cannot be built here
	greetCMissing                                         string // why greetC is "", for the rows that skip
	helloSO                                               string // hello built with -buildmode=plugin, by the first benchmark that needs it
}

// TestMain builds the programs when benchmarks are to run: plugins/hello and
// the coordinator as the main module builds them, the peers from this
// module.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "plugbus-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.dir = dir
	err = build()
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: building the programs:", err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func build() error {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return err
	}
	for _, b := range []struct {
		dir  string
		pkgs []string
	}{
		{"..", []string{"./plugins/hello/cmd/hello", "./coordinator/cmd/coordinator"}},
		{".", []string{"./cmd/natspeer", "./cmd/stdiopeer", "./cmd/gopluginpeer", "./cmd/pluginpeer", "./cmd/scalepeer", "./cmd/ingestpeer"}},
	} {
		cmd := exec.Command(goCmd, append([]string{"build", "-o", bin.dir + string(filepath.Separator)}, b.pkgs...)...)
		cmd.Dir = b.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %v\n%s", cmd.Args, err, out)
		}
	}
	// plugins/hello for WebAssembly, for the coordinator to run in-process.
	cmd := exec.Command(goCmd, "build", "-o", filepath.Join(bin.dir, "hello.wasm"), "./plugins/hello/cmd/hello")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %v\n%s", cmd.Args, err, out)
	}
	p := func(name string) string { return filepath.Join(bin.dir, name) }
	bin.greetC, bin.greetCMissing = buildGreetC(p("greet-c.wasm"))
	bin.hello, bin.coordinator = p("hello"), p("coordinator")
	bin.natspeer, bin.stdiopeer, bin.gopluginpeer, bin.pluginpeer = p("natspeer"), p("stdiopeer"), p("gopluginpeer"), p("pluginpeer")
	bin.scalepeer, bin.ingestpeer = p("scalepeer"), p("ingestpeer")
	bin.helloWasm, bin.wasmCache = p("hello.wasm"), p("wasm-cache")
	return nil
}

// buildGreetC builds the C plugin of examples/wasm-c into out with Debian's
// clang and wasi-libc, as make wasm-c does. It returns out, or "" and why
// it could not be built.
func buildGreetC(out string) (path, missing string) {
	clang, err := exec.LookPath("clang")
	if err != nil {
		return "", "no clang: run make wasm-tools to install clang, lld and wasi-libc (Debian packages)"
	}
	cmd := exec.Command(clang, "--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-o", out, "../examples/wasm-c/greet.c")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Sprintf("clang cannot build for wasm32-wasi (run make wasm-tools for wasi-libc and the wasm32 builtins): %v\n%s", err, b)
	}
	return out, ""
}

// proc is a child process of a benchmark.
type proc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	once   sync.Once
	err    error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 64<<10 {
		return len(p), nil // enough to say what went wrong
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startProc starts path with args and extra environment, and stops it when
// the benchmark ends if nobody did before. When ready is not empty, it waits
// for that line on the child's standard output.
func startProc(b testing.TB, env []string, ready string, path string, args ...string) *proc {
	b.Helper()
	p := &proc{cmd: exec.Command(path, args...), stderr: &syncBuffer{}}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = p.stderr
	var lines *bufio.Scanner
	if ready != "" {
		out, err := p.cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		lines = bufio.NewScanner(out)
	}
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.stop(b) })
	if ready != "" {
		got := make(chan bool, 1)
		go func() {
			for lines.Scan() {
				if lines.Text() == ready {
					got <- true
					break
				}
			}
			got <- false
			for lines.Scan() { // keep the pipe drained
			}
		}()
		select {
		case ok := <-got:
			if !ok {
				b.Fatalf("%s exited before saying %q: %s", filepath.Base(path), ready, p.stderr)
			}
		case <-time.After(30 * time.Second):
			b.Fatalf("%s did not say %q within 30s: %s", filepath.Base(path), ready, p.stderr)
		}
	}
	return p
}

// stop asks the process to stop (SIGTERM), and kills it after 15s.
func (p *proc) stop(b testing.TB) {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- p.cmd.Wait() }()
		select {
		case p.err = <-done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			p.err = <-done
		}
		var exit *exec.ExitError
		if errors.As(p.err, &exit) && exit.Sys().(syscall.WaitStatus).Signaled() {
			p.err = nil // it stopped on the signal without a handler: fine
		}
		if p.err != nil || b.Failed() {
			b.Logf("%s: %v; its standard error:\n%s", filepath.Base(p.cmd.Path), p.err, p.stderr)
		}
	})
}

// stopAll stops processes side by side.
func stopAll(b testing.TB, ps []*proc) {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() { p.stop(b) })
	}
	wg.Wait()
}

// procCPU returns the CPU time (user and system) process pid has used.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields that follow it start
	// with the state, field 3: utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	return time.Duration(ut+st) * tick, nil
}

// cpuOf returns the CPU time this process and the given children have used.
func cpuOf(b testing.TB, pids ...int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	total := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	for _, pid := range pids {
		d, err := procCPU(pid)
		if err != nil {
			b.Fatal(err)
		}
		total += d
	}
	return total
}

// rssMiB returns the resident set size of process pid.
func rssMiB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

func fileMiB(b testing.TB, path string) float64 {
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return float64(fi.Size()) / (1 << 20)
}

// freePort returns a loopback port nothing listens on right now.
func freePort(b testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// reportLatencies reports the median and 99th percentile of ds.
func reportLatencies(b *testing.B, ds []time.Duration, unit string) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	div, suffix := 1e3, "-µs"
	if unit == "ms" {
		div, suffix = 1e6, "-ms"
	}
	b.ReportMetric(float64(ds[len(ds)/2].Nanoseconds())/div, "p50"+suffix)
	b.ReportMetric(float64(ds[len(ds)*99/100].Nanoseconds())/div, "p99"+suffix)
}

// waitStarted waits for a plugin's started lifecycle event on sub.
func waitStarted(b testing.TB, sub *nats.Subscription, p *proc) {
	b.Helper()
	if _, err := sub.NextMsg(30 * time.Second); err != nil {
		b.Fatalf("plugin did not start: %v; its standard error:\n%s", err, p.stderr)
	}
}

var background = context.Background()
