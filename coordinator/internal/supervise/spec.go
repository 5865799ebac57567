package supervise

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator/internal/wasm"
)

// Spec describes one plugin to run: the coordinator's configuration lists
// them (as coordinator.PluginSpec) and the supervisor runs them. Exactly one
// of the fields that choose the mode is set; see [Spec.Mode].
type Spec struct {
	// Name is the plugin's name, as it announces itself on the bus.
	Name string `json:"name"`

	// Exec is the program to run as a process plugin: a path, relative to
	// Dir if it is relative and Dir is set, or a bare name looked up in
	// PATH.
	Exec string `json:"exec,omitempty"`

	// Static runs the plugin registered under Name (pluginkit.Register) in
	// the coordinator's own process, over its in-process connection to the
	// bus: the plugin's package is linked into the coordinator's program.
	Static bool `json:"static,omitempty"`

	// So loads the plugin from a file built with -buildmode=plugin and runs
	// it in the coordinator's process like a static one (Linux, a
	// coordinator built with cgo). The file exports New, a
	// func() *pluginkit.Plugin, or registers the plugin named Name at init.
	So string `json:"so,omitempty"`

	// Settings set a static or .so plugin's own flags (those on its
	// pluginkit Plugin.Flags), by name: a string, number or boolean, or a
	// list of them for a flag that may be repeated. A process plugin takes
	// Args instead.
	Settings map[string]any `json:"settings,omitempty"`

	// Args are the arguments, not including the program name.
	Args []string `json:"args,omitempty"`

	// Env holds extra KEY=VALUE settings; they win over Config.BaseEnv.
	Env []string `json:"env,omitempty"`

	// Replicas is how many instances to run. Default 1.
	Replicas int `json:"replicas,omitempty"`

	// SHA256, if set, is the hex SHA-256 digest the executable's contents
	// must have. It is checked before every start; on a mismatch the instance
	// is not started and is reported as failed.
	SHA256 string `json:"sha256,omitempty"`

	// Dir is the working directory. Default: the coordinator's.
	Dir string `json:"dir,omitempty"`

	// Stdio says the program speaks the stdio protocol (docs/stdio.md) on
	// its standard input and output instead of connecting to NATS itself:
	// the supervisor runs [Config.Bridge] between them and the bus.
	Stdio bool `json:"stdio,omitempty"`

	// Timeout is how long a stdio program may take to send its manifest
	// or to answer a line before it is taken as hung and restarted.
	// Default: the bridge's (30s).
	Timeout Duration `json:"timeout,omitempty"`

	// Wasm is a WebAssembly module (a WASI command speaking the stdio
	// protocol, docs/wasm.md) to run inside the coordinator instead of a
	// process: a path, relative to Dir if it is relative. Its module sees
	// only Env (not the coordinator's environment), the Dirs granted, and
	// at most MemoryPages of memory; Timeout limits each event. Exec and
	// Args are not used.
	Wasm string `json:"wasm,omitempty"`
	// MemoryPages limits a WebAssembly module's memory, in pages of 64
	// KiB; default wasm.DefaultMemoryPages (256 MiB).
	MemoryPages uint32 `json:"memory_pages,omitempty"`
	// Dirs grants a WebAssembly module host directories (host, guest,
	// write), read-only unless write is set.
	Dirs []wasm.Dir `json:"dirs,omitempty"`
	// Uninterruptible compiles a WebAssembly module without the checks
	// that let a runaway instance be stopped; they cost little, and a
	// runaway module without them stops the coordinator (see
	// wasm.Sandbox.Uninterruptible).
	Uninterruptible bool `json:"uninterruptible,omitempty"`

	// Handles, Answers and Emits declare the event types (or patterns) the
	// plugin observes, answers and publishes. In the coordinator's secure
	// mode they are its permissions: it may subscribe to nothing else, and
	// publish only the types it emits (any type under its own name when it
	// lists none).
	Handles []string `json:"handles,omitempty"`
	Answers []string `json:"answers,omitempty"`
	Emits   []string `json:"emits,omitempty"`

	// Limits bound the memory, processor time and open files of each
	// process (see [Limits] for how each is enforced).
	Limits Limits `json:"limits,omitzero"`
}

// Duration is a time.Duration written as "10s" or "1m30s" in configuration.
type Duration time.Duration

// UnmarshalJSON reads a duration string such as "10s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"10s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %v; write it as \"10s\" or \"1m30s\"", s, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string such as "10s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Mode says how a [Spec]'s plugin runs; its values are bus's Mode
// constants ([bus.ModeProcess] and so on), which plugins also report in
// their manifest.
func (s Spec) Mode() string {
	switch {
	case s.Wasm != "":
		return bus.ModeWasm
	case s.Static:
		return bus.ModeStatic
	case s.So != "":
		return bus.ModeSO
	case s.Stdio:
		return bus.ModeStdio
	}
	return bus.ModeProcess
}

// InProcess reports whether the spec's plugin runs in the coordinator's
// own process (static and .so plugins), through [Config.InProcess].
func (s Spec) InProcess() bool { return s.Static || s.So != "" }

// Validate reports every problem in s alone, joined; [Config.Validate]
// adds the ones between specs (a name listed twice).
func (s Spec) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := bus.ValidateProducer(s.Name); err != nil {
		bad("name: %w", err)
	}
	switch n := countTrue(s.Exec != "", s.Wasm != "", s.Static, s.So != ""); {
	case n == 0:
		bad("exec: the plugin's executable is required (or wasm: its WebAssembly module, static: true for a plugin linked into the coordinator, or so: a -buildmode=plugin file)")
	case n > 1:
		bad("exec, wasm, static and so: set one of them; they choose how the plugin runs")
	case s.Wasm != "":
		if err := s.sandbox().Validate(); err != nil {
			bad("%w", err)
		}
		if len(s.Settings) > 0 {
			bad("settings: only for a static or .so plugin")
		}
	case s.InProcess():
		where := "static"
		if s.So != "" {
			where = "so"
		}
		for _, f := range []struct {
			name string
			set  bool
		}{{"args", len(s.Args) > 0}, {"env", len(s.Env) > 0}, {"dir", s.Dir != ""}, {"stdio", s.Stdio}, {"timeout", s.Timeout != 0}} {
			if f.set {
				bad("%s: only for a plugin run with exec; a %s plugin takes settings", f.name, where)
			}
		}
		if s.Static && s.SHA256 != "" {
			bad("sha256: checks an executable or .so file; a static plugin has none")
		}
	case len(s.Settings) > 0:
		bad("settings: only for a static or .so plugin; give a program its flags in args")
	}
	if s.Timeout < 0 {
		bad("timeout %v: must be positive", time.Duration(s.Timeout))
	}
	if s.Replicas < 0 {
		bad("replicas %d: must be 1 or more (0 means 1)", s.Replicas)
	}
	if s.SHA256 != "" {
		if b, err := hex.DecodeString(s.SHA256); err != nil || len(b) != 32 {
			bad("sha256 %q: must be 64 hex digits", s.SHA256)
		}
	}
	for _, kv := range s.Env {
		if !validEnv(kv) {
			bad("env %q: write it as KEY=VALUE", kv)
		}
	}
	if err := s.Limits.validate(); err != nil {
		errs = append(errs, err)
	}
	if s.Wasm == "" && s.Uninterruptible {
		bad("uninterruptible: it applies to a wasm plugin only")
	}
	if s.Wasm != "" && !s.Limits.IsZero() {
		bad("limits: they bound a process; a wasm plugin runs inside the coordinator, bounded by memory_pages and its own timeouts")
	}
	return errors.Join(errs...)
}

func countTrue(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

func validEnv(kv string) bool {
	k, _, ok := strings.Cut(kv, "=")
	return ok && k != ""
}
