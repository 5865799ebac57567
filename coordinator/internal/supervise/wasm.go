package supervise

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/plugbus/plugbus/coordinator/internal/wasm"
)

// modules keeps the compiled module of each WebAssembly plugin, and
// compiles it again when its file changes, so that the next instance
// started (after a crash, or when the file is replaced) runs the new code.
type modules struct {
	host *wasm.Host
	mu   sync.Mutex
	by   map[string]*module // by plugin name
}

// A module is one compiled version of a plugin's .wasm file.
type module struct {
	mod   *wasm.Module
	stamp fileStamp
	users int  // instances running it
	stale bool // a newer version replaced it: closed when users drops to 0
}

// fileStamp tells versions of a file apart without reading it.
type fileStamp struct {
	size int64
	mod  time.Time
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.Size(), fi.ModTime()}, nil
}

// wasmPath is the module's file, relative to Dir when relative.
func (sp *Spec) wasmPath() string {
	if filepath.IsAbs(sp.Wasm) || sp.Dir == "" {
		return sp.Wasm
	}
	return filepath.Join(sp.Dir, sp.Wasm)
}

// sandbox is what the spec grants its module.
func (sp *Spec) sandbox() wasm.Sandbox {
	return wasm.Sandbox{MemoryPages: sp.MemoryPages, Env: sp.Env, Dirs: sp.Dirs, Uninterruptible: sp.Uninterruptible}
}

// acquire returns the current version of the plugin's module, compiling it
// when it is new or its file changed; release it when the instance ends.
func (ms *modules) acquire(sp *Spec) (*module, error) {
	path := sp.wasmPath()
	st, err := stampOf(path)
	if err != nil {
		return nil, fmt.Errorf("supervise: %w", err)
	}
	ms.mu.Lock()
	m := ms.by[sp.Name]
	if m != nil && m.stamp == st {
		m.users++
		ms.mu.Unlock()
		return m, nil
	}
	ms.mu.Unlock()

	// Compiling takes a while (seconds for a Go module when not cached):
	// not under the lock.
	mod, err := ms.host.Load(context.Background(), sp.Name, path, sp.SHA256, sp.sandbox())
	if err != nil {
		if errors.Is(err, wasm.ErrChecksum) {
			return nil, fmt.Errorf("%w: %v", ErrChecksum, err)
		}
		return nil, err
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if cur := ms.by[sp.Name]; cur != nil && cur.stamp == st {
		// Another instance compiled the same version meanwhile.
		mod.Close(context.Background())
		cur.users++
		return cur, nil
	} else if cur != nil {
		cur.stale = true
		if cur.users == 0 {
			cur.mod.Close(context.Background())
		}
	}
	m = &module{mod: mod, stamp: st, users: 1}
	ms.by[sp.Name] = m
	return m, nil
}

// release says an instance of m has ended.
func (ms *modules) release(m *module) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	m.users--
	if m.stale && m.users == 0 {
		m.mod.Close(context.Background())
	}
}

// forget makes the next instance of the plugin name compile its module
// again, even when its file looks unchanged; instances still running the
// current version keep it until they end.
func (ms *modules) forget(name string) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	m := ms.by[name]
	if m == nil {
		return
	}
	delete(ms.by, name)
	m.stale = true
	if m.users == 0 {
		m.mod.Close(context.Background())
	}
}

// changed reports whether the plugin's file is no longer the version m
// was compiled from.
func (ms *modules) changed(sp *Spec, m *module) bool {
	st, err := stampOf(sp.wasmPath())
	return err == nil && st != m.stamp
}

// close frees every module; their instances must have ended.
func (ms *modules) close() {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for name, m := range ms.by {
		m.mod.Close(context.Background())
		delete(ms.by, name)
	}
}

// startWasm starts an instance of the plugin's module, with its bridge.
func (s *Supervisor) startWasm(in *instance) (*process, error) {
	m, err := s.modules.acquire(in.spec)
	if err != nil {
		return nil, err
	}
	stderr := &lineWriter{log: in.log, stream: "stderr"}
	inst, err := m.mod.Start(stderr)
	if err != nil {
		s.modules.release(m)
		return nil, err
	}
	var killed sync.Once
	p := &process{
		started:   time.Now(),
		exited:    make(chan error, 1),
		kill:      func() { killed.Do(inst.Kill) },
		terminate: func() { killed.Do(inst.Kill) }, // a module has no signals: its input is already closed
		exitCode: func() int {
			if inst.Err() == nil {
				return 0
			}
			return -1
		},
		stdout: inst.Stdout,
		module: m,
	}
	go func() {
		<-inst.Done()
		stderr.flush()
		s.modules.release(m)
		p.exited <- inst.Err()
	}()
	s.startBridge(in, p, inst.Stdin)
	return p, nil
}
