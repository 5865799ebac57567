package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator/internal/supervise"
)

// ProducerPrefix begins the producer name of every agent's events (see
// [Producer]); no plugin may have a name that begins so in the
// coordinator's secure mode.
const ProducerPrefix = "agent-"

// Producer is the producer name of the events the agent called name
// publishes. In the coordinator's secure mode only that agent's identity
// may publish as it, so the producer says which agent speaks.
func Producer(name string) string { return ProducerPrefix + name }

// Config configures an [Agent].
type Config struct {
	// Conn is the agent's connection to the bus.
	Conn *nats.Conn
	// Prefix is the subject prefix.
	Prefix string
	// Name is the agent's name, unique among agents; orders name it.
	Name string
	// BaseEnv is given to every plugin: the connection settings.
	BaseEnv []string
	// Replicas of the buckets and stream when this agent creates them.
	Replicas int
	// StopTimeout is how long a stopping plugin may drain; default 15s.
	StopTimeout time.Duration
	// Backoff between restarts; zero fields take the supervisor's defaults.
	Backoff supervise.Backoff
	// Logger; default slog.Default().
	Logger *slog.Logger
	// SeedDir, when set, runs the agent for the coordinator's secure mode
	// (see secure.go): it asks the coordinator for its orders and for each
	// plugin's identity, keeping the plugins' seeds in this directory
	// (made mode 0700). Conn must then use the inboxes of [InboxPrefix].
	SeedDir string
}

// An Agent runs the plugins the orders assign to it.
type Agent struct {
	cfg     Config
	started time.Time

	mu      sync.Mutex
	running map[string]*plugin // by plugin name
	refused map[string]string  // secure mode: the last error getting a plugin's identity
}

// plugin is one plugin the agent runs: a supervisor per instance, so that
// scaling adds or removes instances without touching the others.
type plugin struct {
	spec      Spec
	env       []string          // secure mode: the plugin's identity
	instances map[int]*instance // by instance number, from 1
}

// instance is the supervisor of one instance.
type instance struct {
	sup  *supervise.Supervisor
	done chan struct{}
}

// New returns an agent.
func New(cfg Config) (*Agent, error) {
	if cfg.Conn == nil || cfg.Name == "" {
		return nil, errors.New("agent: Conn and Name are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 15 * time.Second
	}
	if cfg.SeedDir != "" {
		if want := InboxPrefix(cfg.Name); cfg.Conn.Opts.InboxPrefix != want {
			return nil, fmt.Errorf("agent: in secure mode the connection's inbox prefix must be %s (nats.CustomInboxPrefix)", want)
		}
		// Absolute: the plugins get the seed files' paths, and may run in
		// another directory.
		dir, err := filepath.Abs(cfg.SeedDir)
		if err != nil {
			return nil, fmt.Errorf("agent: seed directory: %w", err)
		}
		cfg.SeedDir = dir
		if err := os.MkdirAll(cfg.SeedDir, 0o700); err != nil {
			return nil, fmt.Errorf("agent: seed directory: %w", err)
		}
		if err := os.Chmod(cfg.SeedDir, 0o700); err != nil {
			return nil, fmt.Errorf("agent: seed directory: %w", err)
		}
	}
	return &Agent{cfg: cfg, started: time.Now().UTC(), running: map[string]*plugin{}, refused: map[string]string{}}, nil
}

// Run carries out orders until ctx ends, then stops every plugin (each
// drains first) and returns. Losing the bus does not stop the plugins:
// they keep running, and the agent catches up on orders once it is back.
func (a *Agent) Run(ctx context.Context) error {
	defer a.stopAll()
	js, err := jetstream.New(a.cfg.Conn)
	if err != nil {
		return err
	}
	var store *Store
	for {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		store, err = OpenStore(octx, js, a.cfg.Prefix, a.cfg.Replicas)
		cancel()
		if err == nil {
			break
		}
		a.cfg.Logger.Warn("agent: cannot reach the bus's key-value store yet; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
	a.cfg.Logger.Info("agent ready", "agent", a.cfg.Name, "secure", a.cfg.SeedDir != "")
	go a.heartbeat(ctx, store)
	if a.cfg.SeedDir != "" {
		a.poll(ctx, store)
		return nil
	}
	for ctx.Err() == nil {
		if err := a.watch(ctx, store); err != nil && ctx.Err() == nil {
			a.cfg.Logger.Warn("agent: watching orders failed; watching again", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}
	return nil
}

// watch applies every order, then every change, until ctx ends or the
// watch fails.
func (a *Agent) watch(ctx context.Context, store *Store) error {
	w, err := store.specs.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watcher closed")
			}
			if e == nil {
				continue // the stored orders are all delivered; updates follow
			}
			if e.Operation() != jetstream.KeyValuePut {
				a.stop(e.Key(), "its order was removed")
				continue
			}
			var spec Spec
			if err := json.Unmarshal(e.Value(), &spec); err != nil {
				a.cfg.Logger.Error("agent: unreadable order; ignored", "plugin", e.Key(), "err", err)
				continue
			}
			if spec.Agent != a.cfg.Name {
				a.stop(spec.Name, "it was moved to agent "+spec.Agent)
				continue
			}
			a.apply(ctx, store, spec)
		}
	}
}

// apply makes the plugin run as spec says: instances added or removed
// when only the number of replicas changed, all restarted when anything
// else did (a restart order bumps the generation).
func (a *Agent) apply(ctx context.Context, store *Store, spec Spec) {
	a.mu.Lock()
	p := a.running[spec.Name]
	a.mu.Unlock()
	if p != nil && !sameRun(p.spec, spec) {
		a.stop(spec.Name, "its order changed")
		p = nil
	}
	if p == nil {
		p = &plugin{instances: map[int]*instance{}}
		if a.cfg.SeedDir != "" {
			env, err := a.identity(ctx, spec.Name)
			a.mu.Lock()
			last := a.refused[spec.Name]
			if err != nil {
				a.refused[spec.Name] = err.Error()
			} else {
				delete(a.refused, spec.Name)
			}
			a.mu.Unlock()
			if err != nil {
				if err.Error() != last { // asked again every poll: logged once
					a.cfg.Logger.Error("agent: no identity for plugin; not started, asking again", "plugin", spec.Name, "err", err)
				}
				return
			}
			p.env = env
		}
		a.cfg.Logger.Info("agent: running plugin", "plugin", spec.Name, "replicas", spec.Replicas, "generation", spec.Generation)
	}
	a.mu.Lock()
	p.spec = spec
	a.running[spec.Name] = p
	var extra []*instance
	for n, in := range p.instances {
		if n > spec.Replicas {
			extra = append(extra, in)
			delete(p.instances, n)
		}
	}
	a.mu.Unlock()
	for _, in := range extra {
		in.sup.Stop()
		<-in.done
	}
	log := slog.New(&logHandler{next: a.cfg.Logger.Handler(), conn: a.cfg.Conn, subject: store.LogSubject(spec.Name), agent: a.cfg.Name})
	one := spec.Spec
	one.Replicas = 1
	for n := 1; n <= max(1, spec.Replicas); n++ {
		a.mu.Lock()
		_, ok := p.instances[n]
		a.mu.Unlock()
		if ok {
			continue
		}
		sup, err := supervise.New(supervise.Config{
			Specs: []supervise.Spec{one}, BaseEnv: slices.Concat(a.cfg.BaseEnv, p.env), Logger: log, FirstInstance: n,
			StopTimeout: a.cfg.StopTimeout, Backoff: a.cfg.Backoff, OnEvent: a.onEvent,
		})
		if err != nil {
			a.cfg.Logger.Error("agent: cannot run plugin", "plugin", spec.Name, "err", err)
			return
		}
		in := &instance{sup: sup, done: make(chan struct{})}
		a.mu.Lock()
		p.instances[n] = in
		a.mu.Unlock()
		go func() {
			defer close(in.done)
			_ = sup.Run(context.WithoutCancel(ctx))
		}()
	}
}

// onEvent announces a crash-looping plugin on the bus, as the
// coordinator does for the plugins it supervises, as this agent's
// producer.
func (a *Agent) onEvent(ev supervise.Event) {
	if ev.Kind != supervise.EventCrashLooping {
		return
	}
	reason := ""
	if ev.Err != nil {
		reason = ev.Err.Error()
	}
	e := event.New()
	e.SetID(nuid.Next())
	e.SetSource("plugbus/agent/" + a.cfg.Name)
	e.SetType(bus.TypePluginCrashlooping)
	_ = e.SetData(event.ApplicationJSON, map[string]any{
		"plugin": ev.Plugin, "instance": ev.Instance, "agent": a.cfg.Name, "restarts": ev.Restarts,
		"exit_code": ev.ExitCode, "reason": reason, "next_restart_in": ev.NextRestartIn.String(),
	})
	if err := bus.Publish(a.cfg.Conn, a.cfg.Prefix, Producer(a.cfg.Name), &e); err != nil {
		a.cfg.Logger.Warn("agent: could not announce a crash-looping plugin", "plugin", ev.Plugin, "err", err)
	}
}

// sameRun reports whether two orders run the same processes, but for
// their number.
func sameRun(a, b Spec) bool {
	a.Updated, b.Updated = time.Time{}, time.Time{}
	a.Replicas, b.Replicas = 0, 0
	return reflect.DeepEqual(a, b)
}

// stop stops the plugin name if it runs here.
func (a *Agent) stop(name, why string) {
	a.mu.Lock()
	p := a.running[name]
	delete(a.running, name)
	a.mu.Unlock()
	if p == nil {
		return
	}
	a.cfg.Logger.Info("agent: stopping plugin", "plugin", name, "because", why)
	var wg sync.WaitGroup
	for _, in := range p.instances {
		wg.Go(func() { in.sup.Stop(); <-in.done })
	}
	wg.Wait()
}

func (a *Agent) stopAll() {
	a.mu.Lock()
	var names []string
	for name := range a.running {
		names = append(names, name)
	}
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Go(func() { a.stop(name, "the agent is stopping") })
	}
	wg.Wait()
}

// Status is the agent's entry as it announces it.
func (a *Agent) Status() Status {
	host, _ := os.Hostname()
	st := Status{Name: a.cfg.Name, Host: host, PID: os.Getpid(), Started: a.started, Seen: time.Now().UTC(), Instances: []supervise.InstanceStatus{}}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range a.running {
		for _, in := range p.instances {
			st.Instances = append(st.Instances, in.sup.Status()...)
		}
	}
	sort.Slice(st.Instances, func(i, j int) bool {
		x, y := st.Instances[i], st.Instances[j]
		return x.Plugin < y.Plugin || x.Plugin == y.Plugin && len(x.Instance) < len(y.Instance) || x.Plugin == y.Plugin && len(x.Instance) == len(y.Instance) && x.Instance < y.Instance
	})
	return st
}

// heartbeat announces the agent every AgentTTL/3 until ctx ends, and
// removes its entry then.
func (a *Agent) heartbeat(ctx context.Context, store *Store) {
	t := time.NewTicker(AgentTTL / 3)
	defer t.Stop()
	for {
		b, _ := json.Marshal(a.Status())
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if _, err := store.agents.Put(pctx, a.cfg.Name, b); err != nil && ctx.Err() == nil {
			a.cfg.Logger.Warn("agent: could not announce this agent", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = store.agents.Delete(dctx, a.cfg.Name)
			cancel()
			return
		case <-t.C:
		}
	}
}

// logHandler passes a plugin's records on to the agent's log and
// publishes each, as a JSON line, on the plugin's log subject.
type logHandler struct {
	next    slog.Handler
	conn    *nats.Conn
	subject string
	agent   string
	attrs   []slog.Attr
	group   string
}

func (h *logHandler) Enabled(ctx context.Context, l slog.Level) bool { return true }

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	var buf bytes.Buffer
	jh := slog.Handler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	jh = jh.WithAttrs(append([]slog.Attr{slog.String("agent", h.agent)}, h.attrs...))
	if h.group != "" {
		jh = jh.WithGroup(h.group)
	}
	if err := jh.Handle(ctx, r); err == nil {
		// Core NATS: a plugin's logging never waits for the bus.
		_ = h.conn.Publish(h.subject, bytes.TrimSpace(buf.Bytes()))
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), attrs...)
	c.next = h.next.WithAttrs(attrs)
	return &c
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.group = name
	c.next = h.next.WithGroup(name)
	return &c
}
