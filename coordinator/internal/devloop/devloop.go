// Package devloop is the edit-and-run loop behind `coordinator dev`: it
// builds a plugin's Go package, runs the binary against a bus, and when the
// package's Go files change, builds it again and swaps the running process
// for the new one, printing the plugin's output as it goes.
//
// Changes are found by reading the files' modification times and sizes
// every [Config.Poll] (300ms by default), not with fsnotify: a plugin is a
// few dozen files, so a look costs microseconds; polling needs no new
// dependency; and it sees every way an editor saves (write in place, write
// and rename, a file on a network or container mount where inotify events
// do not arrive).
package devloop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Config configures [Run].
type Config struct {
	// Package is the plugin's main package: a directory ("./plugins/hello")
	// or an import path the go command understands.
	Package string
	// Args are passed to the plugin.
	Args []string
	// Env is added to the plugin's environment (os.Environ), such as
	// PLUGBUS_URL=nats://127.0.0.1:4222.
	Env []string
	// Stdout and Stderr get the plugin's output and the build's errors;
	// Log gets the loop's own lines ("dev: ..."). Default os.Stdout and
	// os.Stderr.
	Stdout, Stderr, Log io.Writer
	// Poll is how often the files are looked at; default 300ms.
	Poll time.Duration
	// StopTimeout is how long a replaced process may take to drain after
	// SIGTERM before it is killed; default 5s.
	StopTimeout time.Duration
	// GoCommand is the go command; default "go" from PATH.
	GoCommand string

	workDir string // where the go command runs; Package's directory when it is one
}

func (c *Config) setDefaults() {
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	if c.Log == nil {
		c.Log = c.Stderr
	}
	if c.Poll <= 0 {
		c.Poll = 300 * time.Millisecond
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = 5 * time.Second
	}
	if c.GoCommand == "" {
		c.GoCommand = "go"
	}
}

// Run builds and runs the plugin, and rebuilds and restarts it on every
// change of its Go files (or go.mod, go.sum, embedded files of the
// package's directory tree), until ctx ends; then it stops the plugin and
// returns nil. A build that fails is reported and the running process
// keeps running. It returns an error when the package cannot be found or
// the first build fails.
func Run(ctx context.Context, cfg Config) error {
	cfg.setDefaults()
	if st, err := os.Stat(cfg.Package); err == nil && st.IsDir() {
		// A directory, perhaps of another module: the go command runs
		// there, so that its go.mod is the one used.
		if cfg.workDir, err = filepath.Abs(cfg.Package); err != nil {
			return fmt.Errorf("devloop: %w", err)
		}
		cfg.Package = "."
	}
	dir, err := packageDir(ctx, cfg)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "plugbus-dev-")
	if err != nil {
		return fmt.Errorf("devloop: %w", err)
	}
	defer os.RemoveAll(tmp)
	name := filepath.Base(dir)
	display := cfg.Package
	if cfg.workDir != "" {
		display = cfg.workDir
	}
	logf := func(format string, args ...any) { fmt.Fprintf(cfg.Log, "dev: "+format+"\n", args...) }

	seen, err := snapshot(dir)
	if err != nil {
		return err
	}
	bin, err := build(ctx, cfg, tmp, name, 0)
	if err != nil {
		return err
	}
	logf("built %s in %s; running it; watching %s for changes", display, bin.took.Round(time.Millisecond), dir)
	proc, err := start(cfg, bin.path)
	if err != nil {
		return err
	}
	defer func() { proc.stop(cfg.StopTimeout) }()

	tick := time.NewTicker(cfg.Poll)
	defer tick.Stop()
	for n := 1; ; {
		select {
		case <-ctx.Done():
			logf("stopping %s", name)
			return nil
		case <-proc.done:
			logf("%s exited (%v); it starts again after the next change", name, proc.err)
			proc.done = nil // a nil channel: wait for a change only
		case <-tick.C:
		}
		now, err := snapshot(dir)
		if err != nil {
			logf("%v", err)
			continue
		}
		changed := diff(seen, now)
		if changed == "" {
			continue
		}
		seen = now
		logf("%s changed; building", changed)
		next, err := build(ctx, cfg, tmp, name, n)
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			logf("build failed; %s keeps running the last good build: %v", name, err)
			continue
		}
		n++
		proc.stop(cfg.StopTimeout)
		if proc, err = start(cfg, next.path); err != nil {
			return err
		}
		logf("built in %s; restarted %s (pid %d)", next.took.Round(time.Millisecond), name, proc.cmd.Process.Pid)
	}
}

// packageDir returns the directory of the package, asking the go command
// so that import paths work too.
func packageDir(ctx context.Context, cfg Config) (string, error) {
	cmd := exec.CommandContext(ctx, cfg.GoCommand, "list", "-f", "{{.Dir}} {{.Name}}", cfg.Package)
	cmd.Dir = cfg.workDir
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("devloop: %s is not a Go package: %s", cfg.Package, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("devloop: go list %s: %w (is Go installed?)", cfg.Package, err)
	}
	dir, pkgName, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if pkgName != "main" {
		return "", fmt.Errorf("devloop: %s is package %s, not a program: give the directory of the plugin's package main", cfg.Package, pkgName)
	}
	return dir, nil
}

type built struct {
	path string
	took time.Duration
}

// build compiles the package into dir; the n-th build gets a name of its
// own, so that the running binary is never overwritten.
func build(ctx context.Context, cfg Config, dir, name string, n int) (built, error) {
	start := time.Now()
	out := filepath.Join(dir, fmt.Sprintf("%s-%d", name, n))
	cmd := exec.CommandContext(ctx, cfg.GoCommand, "build", "-o", out, cfg.Package)
	cmd.Dir = cfg.workDir
	var msg strings.Builder
	cmd.Stdout, cmd.Stderr = &msg, &msg
	if err := cmd.Run(); err != nil {
		fmt.Fprint(cfg.Stderr, msg.String())
		return built{}, fmt.Errorf("devloop: go build %s: %w", cfg.Package, err)
	}
	if n > 0 {
		_ = os.Remove(filepath.Join(dir, fmt.Sprintf("%s-%d", name, n-2))) // the one before the running one
	}
	return built{out, time.Since(start)}, nil
}

// process is one run of the plugin.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it exited; nil once reported
	err  error         // why it exited, once done is closed
}

func start(cfg Config, bin string) (*process, error) {
	cmd := exec.Command(bin, cfg.Args...)
	cmd.Env = append(os.Environ(), cfg.Env...)
	cmd.Stdout, cmd.Stderr = cfg.Stdout, cfg.Stderr
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("devloop: start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	done := p.done
	go func() {
		p.err = cmd.Wait()
		close(done)
	}()
	return p, nil
}

// stop asks the process to drain (SIGTERM) and kills it and its process
// group after timeout.
func (p *process) stop(timeout time.Duration) {
	wait := p.done
	if wait == nil {
		return // exited, and reported already
	}
	select {
	case <-wait:
		return
	default:
	}
	terminate(p.cmd.Process)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-wait:
	case <-t.C:
		killGroup(p.cmd.Process)
		<-wait
	}
}

// fileState is what tells that a file changed.
type fileState struct {
	mod  time.Time
	size int64
}

// snapshot reads the state of the files a build depends on in the
// package's directory tree: Go files, go.mod and go.sum, and any other
// regular file a //go:embed may take; hidden directories, testdata and
// vendor are left out, and so are _test.go files, which the build does
// not use.
func snapshot(dir string) (map[string]fileState, error) {
	out := map[string]fileState{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // gone meanwhile
		}
		name := d.Name()
		if d.IsDir() {
			if path != dir && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(name, ".") || strings.HasSuffix(name, "_test.go") || strings.HasSuffix(name, "~") || !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		out[path] = fileState{info.ModTime(), info.Size()}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("devloop: watch %s: %w", dir, err)
	}
	return out, nil
}

// diff names a file that differs between a and b, with the number of
// others, or returns "" when none does.
func diff(a, b map[string]fileState) string {
	var changed []string
	for k, v := range a {
		if w, ok := b[k]; !ok || !w.mod.Equal(v.mod) || w.size != v.size {
			changed = append(changed, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			changed = append(changed, k)
		}
	}
	switch len(changed) {
	case 0:
		return ""
	case 1:
		return filepath.Base(changed[0])
	}
	sort.Strings(changed)
	return fmt.Sprintf("%s and %d more", filepath.Base(changed[0]), len(changed)-1)
}
