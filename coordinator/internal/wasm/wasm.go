// Package wasm runs WebAssembly plugins inside the coordinator's process
// with wazero, a WebAssembly runtime in pure Go.
//
// A module is a WASI command (a program with _start, such as one built with
// GOOS=wasip1 GOARCH=wasm) that speaks the stdio protocol of docs/stdio.md
// on its standard input and output; its standard error is its log. An
// [Instance] is one run of it, with pipes the coordinator's stdio bridge
// reads and writes.
//
// # Sandbox
//
// A module gets no file system, no environment variables and no network:
// only what its [Sandbox] grants (directories, read-only or not, and named
// environment variables), and WASI has no sockets at all. It gets the wall
// clock, a monotonic clock, sleep and random numbers, which plugin code
// needs to stamp and identify events. Its linear memory is limited to
// [Sandbox.MemoryPages] pages of 64 KiB: a module that asks for more is
// refused the memory (a Go module then dies of "out of memory"). Cancelling
// an instance's context interrupts the module even inside a loop that never
// calls out: the module is rewritten as it is loaded so that it calls the
// host every few thousand loop headers (interrupt.go; wazero's
// WithCloseOnContextDone for a module the rewrite cannot read), so a
// runaway module is stopped by the bridge's timeout;
// [Sandbox.Uninterruptible] trades that away. A trap (an out-of-bounds
// access, unreachable) ends that instance only.
//
// # Cache
//
// Compiling a module to machine code takes a second or more for a Go
// module; a [Host] keeps the compiled code in a directory (wazero's
// compilation cache), so a later start, even in another coordinator
// process, skips it.
package wasm

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// Errors of this package.
var (
	// ErrChecksum: the module's file does not have the SHA-256 the spec
	// gives.
	ErrChecksum = errors.New("wasm: checksum mismatch")
	// ErrInterrupted: the instance was stopped (its context ended) while
	// the module ran.
	ErrInterrupted = errors.New("wasm: module interrupted")
)

// DefaultMemoryPages is the memory limit of a module whose sandbox gives
// none: 4096 pages of 64 KiB, 256 MiB.
const DefaultMemoryPages = 4096

// Sandbox is what a module may use beyond computing. The zero value grants
// nothing.
type Sandbox struct {
	// MemoryPages limits the module's linear memory, in pages of 64 KiB;
	// 0 means [DefaultMemoryPages]. At most 65536 (4 GiB).
	MemoryPages uint32 `json:"memory_pages,omitempty"`
	// Env lists KEY=VALUE settings the module sees; nothing else of the
	// coordinator's environment reaches it.
	Env []string `json:"env,omitempty"`
	// Dirs lists host directories the module may open.
	Dirs []Dir `json:"dirs,omitempty"`
	// Uninterruptible compiles the module as it is, without the countdown
	// at every loop header that lets an instance be interrupted wherever
	// it is (interrupt.go). It saves little (a Go module answered within
	// the noise of one with the countdown), and a module that never
	// returns cannot be stopped: its instance keeps a CPU busy, and since
	// compiled code cannot be preempted, the coordinator's next garbage
	// collection waits for it forever, which stops the coordinator. For
	// modules trusted to return.
	Uninterruptible bool `json:"uninterruptible,omitempty"`
}

// Dir grants a module one host directory.
type Dir struct {
	// Host is the directory on the coordinator's host.
	Host string `json:"host"`
	// Guest is where the module sees it, such as "/data"; default: the
	// same path as Host.
	Guest string `json:"guest,omitempty"`
	// Write lets the module change what is in it; by default it may only
	// read.
	Write bool `json:"write,omitempty"`
}

// Validate reports what is wrong with s.
func (s Sandbox) Validate() error {
	var errs []error
	if s.MemoryPages > 65536 {
		errs = append(errs, fmt.Errorf("memory_pages %d: at most 65536 (4 GiB)", s.MemoryPages))
	}
	for _, kv := range s.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			errs = append(errs, fmt.Errorf("env %q: write it as KEY=VALUE", kv))
		}
	}
	for _, d := range s.Dirs {
		if d.Host == "" {
			errs = append(errs, errors.New("dirs: host is required"))
		} else if fi, err := os.Stat(d.Host); err != nil || !fi.IsDir() {
			errs = append(errs, fmt.Errorf("dirs: host %q is not a directory", d.Host))
		}
	}
	return errors.Join(errs...)
}

// A Host compiles and runs modules. Build one with [NewHost]; its methods
// are safe for concurrent use.
type Host struct {
	cache wazero.CompilationCache
}

// NewHost returns a host that keeps compiled modules in cacheDir (created
// if missing), or in memory only when cacheDir is "".
func NewHost(cacheDir string) (*Host, error) {
	if cacheDir == "" {
		return &Host{cache: wazero.NewCompilationCache()}, nil
	}
	cache, err := wazero.NewCompilationCacheWithDir(cacheDir)
	if err != nil {
		return nil, fmt.Errorf("wasm: compilation cache in %s: %w", cacheDir, err)
	}
	return &Host{cache: cache}, nil
}

// Close releases the cache's in-memory state; the files stay.
func (h *Host) Close(ctx context.Context) error { return h.cache.Close(ctx) }

// A Module is a compiled module with its sandbox, ready to start
// instances. Close it when no instance is left.
type Module struct {
	name    string
	sandbox Sandbox
	rt      wazero.Runtime
	code    wazero.CompiledModule
}

// Load reads the module at path, checks its SHA-256 when want is not
// empty, and compiles it (or takes it from the cache) for a runtime with
// the sandbox's memory limit. name names the module's instances (argv[0]).
func (h *Host) Load(ctx context.Context, name, path, want string, sb Sandbox) (*Module, error) {
	if err := sb.Validate(); err != nil {
		return nil, fmt.Errorf("wasm: %s: sandbox: %w", name, err)
	}
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("wasm: %w", err)
	}
	if want != "" {
		sum := sha256.Sum256(bin)
		if got := hex.EncodeToString(sum[:]); !strings.EqualFold(got, want) {
			return nil, fmt.Errorf("%w: %s: expected sha256 %s, got %s", ErrChecksum, path, strings.ToLower(want), got)
		}
	}
	pages := sb.MemoryPages
	if pages == 0 {
		pages = DefaultMemoryPages
	}
	// An interruptible module is instrumented (see interrupt.go); one
	// that cannot be gets wazero's slower checks.
	instrumented := false
	if !sb.Uninterruptible {
		if ib, err := instrument(bin); err == nil {
			bin, instrumented = ib, true
		} else if !errors.Is(err, errNotInstrumented) {
			return nil, err
		}
	}
	cfg := wazero.NewRuntimeConfig().
		WithCompilationCache(h.cache).
		WithCloseOnContextDone(!sb.Uninterruptible && !instrumented).
		WithMemoryLimitPages(pages)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("wasm: WASI: %w", err)
	}
	if instrumented {
		if err := instantiateCheck(ctx, rt); err != nil {
			rt.Close(ctx)
			return nil, fmt.Errorf("wasm: %w", err)
		}
	}
	code, err := rt.CompileModule(ctx, bin)
	if err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("wasm: %s: %w", path, err)
	}
	return &Module{name: name, sandbox: sb, rt: rt, code: code}, nil
}

// Close stops every instance of m and frees its compiled code.
func (m *Module) Close(ctx context.Context) error { return m.rt.Close(ctx) }

// An Instance is one run of a module: its _start function running on a
// goroutine of its own, with pipes for its standard input and output.
type Instance struct {
	// Stdin reaches the module's standard input; closing it ends the
	// input (a stdio plugin then returns from _start).
	Stdin io.WriteCloser
	// Stdout reads the module's standard output; it ends when the module
	// does.
	Stdout io.ReadCloser

	stdin  *pipe
	stdout *pipe
	cancel context.CancelFunc
	done   chan struct{}
	err    error // why the run ended; set before done is closed
}

// Start runs a new instance of m, writing its standard error to stderr.
// The instance runs until its _start returns, it traps, or [Instance.Stop]
// is called.
func (m *Module) Start(stderr io.Writer) (*Instance, error) {
	stdin, stdout := newPipe(), newPipe()
	cfg := wazero.NewModuleConfig().
		WithName(""). // instances of one module run side by side
		WithArgs(m.name).
		WithStdin(pipeReader{stdin}).
		WithStdout(pipeWriter{stdout}).
		WithStderr(stderr).
		WithSysWalltime().
		WithSysNanotime().
		WithSysNanosleep().
		WithRandSource(rand.Reader)
	for _, kv := range m.sandbox.Env {
		k, v, _ := strings.Cut(kv, "=")
		cfg = cfg.WithEnv(k, v)
	}
	if len(m.sandbox.Dirs) > 0 {
		fs := wazero.NewFSConfig()
		for _, d := range m.sandbox.Dirs {
			guest := d.Guest
			if guest == "" {
				guest = d.Host
			}
			if d.Write {
				fs = fs.WithDirMount(d.Host, guest)
			} else {
				fs = fs.WithReadOnlyDirMount(d.Host, guest)
			}
		}
		cfg = cfg.WithFSConfig(fs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &Instance{Stdin: pipeWriter{stdin}, Stdout: pipeReader{stdout}, stdin: stdin, stdout: stdout, cancel: cancel, done: make(chan struct{})}
	var mem reservation
	go func() {
		mod, err := m.rt.InstantiateModule(mem.with(ctx), m.code, cfg)
		if mod != nil {
			mod.Close(context.Background())
		}
		mem.release()
		in.err = runError(ctx, err)
		stdout.closeWrite(io.EOF) // the bridge sees the end of the output
		stdin.closeRead(io.ErrClosedPipe)
		close(in.done)
	}()
	return in, nil
}

// runError says why a run ended: nil after exit status 0.
func runError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		switch {
		case exit.ExitCode() == 0:
			return nil
		case ctx.Err() != nil:
			return ErrInterrupted
		}
		return fmt.Errorf("wasm: exit status %d", exit.ExitCode())
	}
	if ctx.Err() != nil {
		return ErrInterrupted
	}
	return fmt.Errorf("wasm: %w", err) // a trap, with wazero's stack trace
}

// Done is closed when the instance has ended; then [Instance.Err] says why.
func (in *Instance) Done() <-chan struct{} { return in.done }

// Err is why the instance ended: nil after exit status 0, [ErrInterrupted]
// after Stop, an exit status, or the trap with its stack.
func (in *Instance) Err() error {
	<-in.done
	return in.err
}

// Kill interrupts the module, wherever it is, without waiting for it to
// end.
func (in *Instance) Kill() {
	in.cancel() // interrupts guest code
	// A module blocked in a read or a write (host calls, which the
	// context does not interrupt) gets an error from it instead.
	in.stdin.closeWrite(io.EOF)
	in.stdout.closeRead(ErrInterrupted)
}

// Stop interrupts the module, wherever it is, and waits until it has
// ended.
func (in *Instance) Stop() {
	in.Kill()
	<-in.done
}
