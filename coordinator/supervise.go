package coordinator

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator/internal/bridge"
	"github.com/plugbus/plugbus/coordinator/internal/supervise"
	"github.com/plugbus/plugbus/coordinator/internal/wasm"
)

// specs turns the configured plugins into supervisor specs: in secure mode,
// each process plugin gets its own nkey.
func (c *Coordinator) specs() []supervise.Spec {
	specs := slices.Clone(c.cfg.Plugins)
	for i, p := range specs {
		if p.InProcess() {
			continue // no program: its connection settings come from runInProcess
		}
		if c.sec != nil && p.Mode() == bus.ModeProcess {
			specs[i].Env = append([]string{"PLUGBUS_NKEY=" + c.sec.seedFiles[p.Name]}, p.Env...)
		}
		if os.Getenv("OTEL_SERVICE_NAME") != "" && p.Wasm == "" {
			// The plugins inherit the OTEL_ settings, but not the
			// coordinator's own name: each traces as itself.
			specs[i].Env = append([]string{"OTEL_SERVICE_NAME=" + p.Name}, specs[i].Env...)
		}
	}
	return specs
}

// wasmHost returns the runtime for the WebAssembly plugins, or nil when
// there are none.
func (c *Coordinator) wasmHost() (*wasm.Host, error) {
	for _, p := range c.cfg.Plugins {
		if p.Wasm != "" {
			dir := c.cfg.WasmCacheDir
			if dir == "" {
				dir = filepath.Join(c.cfg.DataDir, "wasm-cache")
			}
			h, err := wasm.NewHost(dir)
			if err != nil {
				return nil, fmt.Errorf("coordinator: %w; pick another directory with wasm_cache_dir", err)
			}
			return h, nil
		}
	}
	return nil, nil
}

// runBridge serves a stdio plugin on the bus from the coordinator's
// process, over the same connection settings the plugins get (in-process
// with the embedded server).
func (c *Coordinator) runBridge(ctx context.Context, io supervise.BridgeIO) error {
	return bridge.Run(ctx, bridge.Config{
		Plugin:    io.Spec.Name,
		Instance:  io.Instance,
		Stdin:     io.Stdin,
		Stdout:    io.Stdout,
		Conn:      c.pluginConn(io.Spec.Name),
		Prefix:    c.cfg.Prefix,
		Mode:      io.Spec.Mode(),
		Durable:   c.cfg.Durable,
		Timeout:   time.Duration(io.Spec.Timeout),
		Logger:    io.Log,
		Malformed: io.Malformed,
	})
}

// pluginConn is how a plugin running in the coordinator's process
// connects to the bus: with the plugin's own nkey in secure mode, as a
// process plugin would.
func (c *Coordinator) pluginConn(plugin string) bus.ConnConfig {
	cfg := bus.ConnConfig{
		URLs: c.cfg.NATSURLs, Token: c.cfg.NATSToken, User: c.cfg.NATSUser,
		Password: c.cfg.NATSPassword, CredsFile: c.cfg.NATSCreds,
	}
	if c.sec != nil {
		cfg.NKeySeedFile = c.sec.seedFiles[plugin]
		cfg.InboxPrefix = bus.InboxPrefix(plugin) // the only inboxes its identity may read
	}
	if c.server != nil {
		cfg.InProcess = c.server
	}
	return cfg
}

// onSupervisorEvent announces on the bus a plugin killed over one of its
// limits and a crash-looping plugin; the other supervisor events are
// already in the log, and the plugins announce their own starts and stops.
func (c *Coordinator) onSupervisorEvent(ev supervise.Event) {
	if ev.Kind == supervise.EventExited && ev.Limit != "" {
		c.publish(bus.TypePluginKilled, map[string]any{
			"plugin": ev.Plugin, "instance": ev.Instance, "pid": ev.PID, "limit": ev.Limit,
			"reason": ev.Reason, "restarts": ev.Restarts, "next_restart_in": ev.NextRestartIn.String(),
		})
		return
	}
	if ev.Kind != supervise.EventCrashLooping {
		return
	}
	reason := ""
	if ev.Err != nil {
		reason = ev.Err.Error()
	}
	c.publish(bus.TypePluginCrashlooping, map[string]any{
		"plugin": ev.Plugin, "instance": ev.Instance, "restarts": ev.Restarts,
		"exit_code": ev.ExitCode, "reason": reason, "next_restart_in": ev.NextRestartIn.String(),
	})
}

// supervisedPIDs returns the process ids of the running supervised
// instances, so the dashboard can tell them from external ones.
func (c *Coordinator) supervisedPIDs() []int {
	if c.sup == nil {
		return nil
	}
	var pids []int
	for _, st := range c.sup.Status() {
		if st.PID > 0 {
			pids = append(pids, st.PID)
		}
	}
	return pids
}
