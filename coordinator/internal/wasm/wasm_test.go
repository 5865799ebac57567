package wasm_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/coordinator/internal/wasm"
	"github.com/plugbus/plugbus/coordinator/internal/wasm/wasmtest"
	"github.com/plugbus/plugbus/internal/proctest"
	"github.com/plugbus/plugbus/internal/stdioproto"
)

// module is testdata/wasmtest built for wasip1, once for the test binary,
// and host compiles it once for every test (compiling a Go module takes
// seconds, and many more under the race detector).
var (
	module string
	host   *wasm.Host
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "plugbus-wasm-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cache := filepath.Join(dir, "cache")
	modules, err := wasmtest.Build("../../..", ".", dir, cache, "./testdata/wasmtest")
	if err == nil {
		module = modules[0]
		host, err = wasm.NewHost(cache)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// session talks the stdio protocol to one instance.
type session struct {
	t   *testing.T
	in  *wasm.Instance
	out *bufio.Scanner
	n   int
}

func start(t *testing.T, sb wasm.Sandbox) (*session, *proctest.Output) {
	t.Helper()
	m, err := host.Load(context.Background(), "wasmtest", module, "", sb)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	stderr := &proctest.Output{}
	in, err := m.Start(stderr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Stop)
	s := &session{t: t, in: in, out: bufio.NewScanner(in.Stdout)}
	s.out.Buffer(nil, stdioproto.MaxLine)
	if o := s.read(); o.Manifest == nil || o.Manifest.Version != "1.0.0" {
		t.Fatalf("first line %+v, want wasmtest's manifest", o)
	}
	return s, stderr
}

func (s *session) send(typ, data string) {
	s.t.Helper()
	s.n++
	line := fmt.Sprintf(`{"id":"%d","producer":"test","event":{"specversion":"1.0","id":"e%d","source":"urn:test","type":%q,"datacontenttype":"application/json","data":%s}}`+"\n", s.n, s.n, typ, data)
	if _, err := io.WriteString(s.in.Stdin, line); err != nil {
		s.t.Fatalf("writing to the module: %v", err)
	}
}

func (s *session) read() *stdioproto.Out {
	s.t.Helper()
	if !s.out.Scan() {
		s.t.Fatalf("no line from the module: %v (ended: %v)", s.out.Err(), s.in.Err())
	}
	o, err := stdioproto.ParseOut(s.out.Bytes())
	if err != nil {
		s.t.Fatal(err)
	}
	return o
}

// ended waits for the instance to end by itself and returns why.
func (s *session) ended(within time.Duration) error {
	s.t.Helper()
	select {
	case <-s.in.Done():
		return s.in.Err()
	case <-time.After(within):
		s.t.Fatalf("the instance still runs after %s", within)
		return nil
	}
}

func TestGreets(t *testing.T) {
	s, _ := start(t, wasm.Sandbox{})
	s.send("com.example.wasm.greet", `{"name":"Ada"}`)
	o := s.read()
	e, err := stdioproto.ParseEvent(o.Event)
	if err != nil || o.ID != "1" || e.Type() != "com.example.wasm.greeted" || !strings.Contains(string(e.Data()), "hello, Ada") {
		t.Fatalf("answer %+v (%v)", o, err)
	}
	s.send("com.example.wasm.greet", `3`)
	if o := s.read(); o.Error == nil || !o.Error.Permanent {
		t.Fatalf("bad data: answer %+v, want a permanent error", o)
	}
	s.in.Stdin.Close() // a stdio plugin returns when its input ends
	if err := s.ended(30 * time.Second); err != nil {
		t.Fatalf("after its input ended: %v, want a clean exit", err)
	}
}

func TestARunawayLoopIsInterrupted(t *testing.T) {
	s, _ := start(t, wasm.Sandbox{})
	s.send("com.example.wasm.loop", `{}`)
	// The loop never calls out, yet leaves the compiled code for Go now
	// and then: a garbage collection, which stops every goroutine, gets
	// through while it runs (a goroutine in compiled code that never left
	// it would hold the collection up, and the coordinator with it).
	time.Sleep(100 * time.Millisecond) // the module is in the loop
	collected := make(chan struct{})
	go func() { runtime.GC(); close(collected) }()
	select {
	case <-collected:
	case <-time.After(30 * time.Second):
		t.Fatal("a garbage collection did not complete within 30s while the module looped")
	}
	// No answer comes; stopping interrupts the loop.
	stopped := make(chan struct{})
	go func() { s.in.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("Stop did not interrupt a runaway loop within 30s")
	}
	if err := s.in.Err(); !errors.Is(err, wasm.ErrInterrupted) {
		t.Fatalf("got %v, want ErrInterrupted", err)
	}
}

func TestAMemoryBombHitsTheLimit(t *testing.T) {
	s, stderr := start(t, wasm.Sandbox{MemoryPages: 1024}) // 64 MiB
	s.send("com.example.wasm.bomb", `{}`)
	err := s.ended(60 * time.Second)
	if err == nil || errors.Is(err, wasm.ErrInterrupted) {
		t.Fatalf("got %v, want the module to fail", err)
	}
	if !strings.Contains(stderr.String(), "out of memory") {
		t.Errorf("the module's standard error says nothing of memory:\n%.2000s", stderr)
	}
}

func TestATrapEndsTheInstance(t *testing.T) {
	s, _ := start(t, wasm.Sandbox{})
	s.send("com.example.wasm.trap", `{}`)
	err := s.ended(30 * time.Second)
	if err == nil || !strings.Contains(err.Error(), "out of bounds") {
		t.Fatalf("got %v, want an out-of-bounds trap", err)
	}
	// The module's stack names its functions (the name section still
	// matches the functions after instrumenting).
	if !strings.Contains(err.Error(), "main.main") {
		t.Errorf("the trap's stack does not name main.main:\n%v", err)
	}
}

func TestSandbox(t *testing.T) {
	t.Setenv("HOME", "/home/secret")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("granted"), 0o600); err != nil {
		t.Fatal(err)
	}
	type seen struct {
		Env      string
		Root     bool
		Data     string
		DataErr  bool `json:"data_err"`
		Writable bool
	}
	ask := func(sb wasm.Sandbox) seen {
		s, _ := start(t, sb)
		s.send("com.example.wasm.sandbox", `{}`)
		o := s.read()
		e, err := stdioproto.ParseEvent(o.Event)
		if err != nil {
			t.Fatalf("answer %+v: %v", o, err)
		}
		var got seen
		if err := json.Unmarshal(e.Data(), &got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := ask(wasm.Sandbox{}); got.Env != "|" || got.Root || !got.DataErr || got.Writable {
		t.Errorf("nothing granted: the module saw %+v", got)
	}
	if got := ask(wasm.Sandbox{Env: []string{"GRANTED=yes"}, Dirs: []wasm.Dir{{Host: dir, Guest: "/data"}}}); got.Env != "yes|" || got.Data != "granted" || got.Writable {
		t.Errorf("env and a read-only dir granted: the module saw %+v", got)
	}
	if got := ask(wasm.Sandbox{Dirs: []wasm.Dir{{Host: dir, Guest: "/data", Write: true}}}); !got.Writable {
		t.Errorf("a writable dir granted: the module saw %+v", got)
	}
}

func TestChecksum(t *testing.T) {
	_, err := host.Load(context.Background(), "wasmtest", module, strings.Repeat("0", 64), wasm.Sandbox{})
	if !errors.Is(err, wasm.ErrChecksum) {
		t.Fatalf("wrong sha256: got %v, want ErrChecksum", err)
	}
}
