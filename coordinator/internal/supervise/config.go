package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator/internal/wasm"
)

// Config configures a [Supervisor]. A zero duration, factor or count means
// the default given with its field.
type Config struct {
	// Specs lists the plugins to run, one each; names must be unique.
	Specs []Spec

	// BaseEnv holds KEY=VALUE settings given to every plugin, after the
	// coordinator's own environment: the connection settings, such as
	// PLUGBUS_URL and PLUGBUS_PREFIX.
	BaseEnv []string

	// Backoff sets the delays between restarts.
	Backoff Backoff

	// StopTimeout is how long a stopping instance may take to exit after
	// SIGTERM before it gets SIGKILL. Default 10s.
	StopTimeout time.Duration

	// FirstInstance is the number of each plugin's first instance, so that
	// instances are named <plugin>-<FirstInstance>, <plugin>-<FirstInstance+1>
	// and so on. Default 1. An agent that runs each instance under a
	// supervisor of its own, to add and remove instances one at a time,
	// numbers them with it.
	FirstInstance int

	// Logger receives the supervisor's own records and the plugins' output.
	// Default slog.Default().
	Logger *slog.Logger

	// Bridge runs the stdio bridge of an instance whose spec sets Stdio:
	// it serves the program on the bus until ctx ends (then it returns nil
	// once drained) or the program exits or hangs (then it returns why).
	// It must close io.Stdin before it returns. Required when a spec sets
	// Stdio.
	Bridge func(ctx context.Context, io BridgeIO) error

	// Wasm compiles and runs the modules of WebAssembly plugins (specs
	// with Wasm set); required when a spec sets Wasm.
	Wasm *wasm.Host

	// ReloadCheck is how often the file of a running WebAssembly plugin
	// is checked for a new version, which replaces the running instances.
	// Default 2s.
	ReloadCheck time.Duration

	// InProcess runs one instance of a plugin whose spec runs it in the
	// coordinator's own process (Spec.InProcess: static and .so plugins)
	// until ctx ends; it returns nil once the plugin has drained. A return
	// before ctx ends is an exit, restarted with backoff like a process's;
	// a panic in the call is recovered and counts as an exit with an error.
	InProcess func(ctx context.Context, sp *Spec, instance string) error

	// OnEvent, if set, is called for every change in an instance's life. It
	// is called from the goroutine supervising the instance, so calls for one
	// instance come in order, calls for different instances may come at the
	// same time, and the instance waits while OnEvent runs.
	OnEvent func(Event)
}

// BridgeIO is what [Config.Bridge] gets: the instance and the program's
// standard input and output.
type BridgeIO struct {
	Spec     *Spec
	Instance string
	Stdin    io.WriteCloser
	Stdout   io.Reader
	Log      *slog.Logger
	// Malformed counts the lines the bridge skipped, across the
	// instance's runs; [InstanceStatus] reports it.
	Malformed *atomic.Uint64
}

// Backoff sets the delays between restarts of an instance that exited. The
// delay after the n-th quick exit in a row (one sooner than ResetAfter after
// the start) is Initial×Factorⁿ⁻¹, at most Max; from the CrashLoopAfter-th on
// it is Max. After a run longer than ResetAfter the count starts again.
type Backoff struct {
	// Initial is the first delay. Default 500ms.
	Initial time.Duration

	// Max caps the delay. Default 30s.
	Max time.Duration

	// Factor multiplies the delay after each quick exit. Default 2.
	Factor float64

	// ResetAfter is how long a run must last not to count as a quick exit.
	// Default 10s.
	ResetAfter time.Duration

	// CrashLoopAfter is how many quick exits in a row make an instance
	// crash-looping. Default 5.
	CrashLoopAfter int
}

// Defaults for the zero values in a [Config].
const (
	DefaultInitialBackoff = 500 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultBackoffFactor  = 2
	DefaultResetAfter     = 10 * time.Second
	DefaultCrashLoopAfter = 5
	DefaultStopTimeout    = 10 * time.Second
	DefaultReloadCheck    = 2 * time.Second
)

// withDefaults returns c with its zero values replaced by the defaults.
func (c Config) withDefaults() Config {
	set := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	set(&c.Backoff.Initial, DefaultInitialBackoff)
	set(&c.Backoff.Max, DefaultMaxBackoff)
	set(&c.Backoff.ResetAfter, DefaultResetAfter)
	set(&c.StopTimeout, DefaultStopTimeout)
	set(&c.ReloadCheck, DefaultReloadCheck)
	if c.Backoff.Factor == 0 {
		c.Backoff.Factor = DefaultBackoffFactor
	}
	if c.Backoff.CrashLoopAfter == 0 {
		c.Backoff.CrashLoopAfter = DefaultCrashLoopAfter
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	specs := make([]Spec, len(c.Specs))
	for i, s := range c.Specs {
		if s.Replicas == 0 {
			s.Replicas = 1
		}
		specs[i] = s
	}
	c.Specs = specs
	return c
}

// Validate reports every problem in c, joined, each wrapping
// [ErrInvalidConfig].
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	seen := make(map[string]bool)
	for i, s := range c.Specs {
		if err := s.Validate(); err != nil {
			if bus.ValidateProducer(s.Name) != nil {
				errs = append(errs, fmt.Errorf("%w: plugin %d: %w", ErrInvalidConfig, i, err))
			} else {
				errs = append(errs, fmt.Errorf("%w: plugin %q: %w", ErrInvalidConfig, s.Name, err))
			}
		}
		if s.Name != "" && seen[s.Name] {
			bad("plugin %q is listed twice", s.Name)
		}
		seen[s.Name] = true
		if (s.Stdio || s.Wasm != "") && c.Bridge == nil {
			bad("plugin %q: it runs in %s mode but this supervisor has no stdio bridge (only the coordinator runs stdio and wasm plugins)", s.Name, s.Mode())
		}
		if s.Wasm != "" && c.Wasm == nil {
			bad("plugin %q: wasm is set but this supervisor has no WebAssembly runtime (only the coordinator runs wasm plugins)", s.Name)
		}
		if s.InProcess() && c.InProcess == nil {
			bad("plugin %q: %s is set but the supervisor cannot run plugins in-process", s.Name, s.Mode())
		}
	}
	for _, kv := range c.BaseEnv {
		if !validEnv(kv) {
			bad("base env entry %q is not KEY=VALUE", kv)
		}
	}
	b := c.withDefaults().Backoff
	if c.Backoff.Initial < 0 || c.Backoff.Max < 0 || c.Backoff.ResetAfter < 0 {
		bad("backoff durations must not be negative")
	} else if b.Max < b.Initial {
		bad("backoff max %s is less than initial %s", b.Max, b.Initial)
	}
	if c.Backoff.Factor != 0 && c.Backoff.Factor < 1 {
		bad("backoff factor %g is less than 1", c.Backoff.Factor)
	}
	if c.Backoff.CrashLoopAfter < 0 {
		bad("backoff CrashLoopAfter is %d; it must not be negative", c.Backoff.CrashLoopAfter)
	}
	if c.FirstInstance < 0 {
		bad("first instance %d is negative", c.FirstInstance)
	}
	if c.StopTimeout < 0 {
		bad("stop timeout %s is negative", c.StopTimeout)
	}
	return errors.Join(errs...)
}
