// Package agent runs plugins on any host on orders from any coordinator,
// and keeps them running while coordinators come and go.
//
// What should run is kept on the bus, in the key-value bucket
// PLUGBUS_PLUGINS: one key per plugin, holding a [Spec] (the supervisor's
// spec, the agent that runs it, and a generation that a restart bumps).
// Coordinators write it ([Store.Run], [Store.Stop], [Store.Scale],
// [Store.Restart]); an [Agent] watches it and runs, with the supervisor's
// restarts, backoff and log capture, the plugins assigned to it. Since the
// orders are stored, not sent, an agent that was away catches up when it
// returns, and what was started survives every coordinator's restart.
//
// Agents announce themselves in the bucket PLUGBUS_AGENTS, renewing their
// entry (with the state of every instance they run) every few seconds; an
// entry not renewed for [AgentTTL] disappears. Plugins' log lines go to the
// stream PLUGBUS_LOGS, subject <prefix>.logs.<plugin>, where
// `coordinator logs` reads them.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator/internal/supervise"
)

// Names of the buckets and the stream, and how long an agent's entry lasts.
const (
	SpecsBucket  = "PLUGBUS_PLUGINS"
	AgentsBucket = "PLUGBUS_AGENTS"
	LogsStream   = "PLUGBUS_LOGS"
	AgentTTL     = 15 * time.Second
)

// ErrNotFound: no plugin of that name was started at runtime.
var ErrNotFound = errors.New("agent: no such plugin was started with run")

// ErrUnknownAgent: the agent an order names is not running.
var ErrUnknownAgent = errors.New("agent: no such agent is running")

// ErrInvalid: the order is not valid.
var ErrInvalid = errors.New("agent: invalid order")

// ErrNoAgent: there is no agent to run a plugin on.
var ErrNoAgent = errors.New("agent: no agent is running: start `coordinator agent` on a host that has the plugin's executable")

// Spec is a plugin started at runtime: what to run, and where.
type Spec struct {
	supervise.Spec
	// Agent is the name of the agent that runs the plugin.
	Agent string `json:"agent"`
	// Generation is bumped by a restart, so that the agent restarts
	// every instance.
	Generation int `json:"generation,omitempty"`
	// Updated is when the order was last changed.
	Updated time.Time `json:"updated"`
}

// Status is an agent's entry in PLUGBUS_AGENTS.
type Status struct {
	Name      string                     `json:"name"`
	Host      string                     `json:"host"`
	PID       int                        `json:"pid"`
	Started   time.Time                  `json:"started"`
	Seen      time.Time                  `json:"seen"`
	Instances []supervise.InstanceStatus `json:"instances"`
}

// Store reads and writes the orders and the agents' entries.
type Store struct {
	specs, agents jetstream.KeyValue
	js            jetstream.JetStream
	prefix        string
}

// OpenStore opens the buckets and the log stream, creating them when
// missing with the given replicas (0 means 1).
func OpenStore(ctx context.Context, js jetstream.JetStream, prefix string, replicas int) (*Store, error) {
	replicas = max(1, replicas)
	specs, err := bucket(ctx, js, jetstream.KeyValueConfig{Bucket: SpecsBucket, Description: "Plugbus: plugins started at runtime, and the agent each runs on", History: 1, Replicas: replicas})
	if err != nil {
		return nil, err
	}
	agents, err := bucket(ctx, js, jetstream.KeyValueConfig{Bucket: AgentsBucket, Description: "Plugbus: the agents running now", TTL: AgentTTL, History: 1, Replicas: replicas})
	if err != nil {
		return nil, err
	}
	if _, err := js.Stream(ctx, LogsStream); errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name: LogsStream, Description: "Plugbus: log lines of the plugins agents run",
			Subjects: []string{prefix + ".logs.>"}, MaxAge: 24 * time.Hour, MaxMsgsPerSubject: 10000,
			Replicas: replicas, Discard: jetstream.DiscardOld,
		})
		if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, fmt.Errorf("agent: log stream %s: %w", LogsStream, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("agent: log stream %s: %w", LogsStream, err)
	}
	return &Store{specs: specs, agents: agents, js: js, prefix: prefix}, nil
}

func bucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, cfg.Bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("agent: bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// Run stores the order to run spec: on spec.Agent, or when that is empty
// on the agent running the fewest instances. It replaces an earlier order
// for the same name.
func (s *Store) Run(ctx context.Context, spec Spec) (Spec, error) {
	if spec.Replicas == 0 {
		spec.Replicas = 1
	}
	if err := (supervise.Config{Specs: []supervise.Spec{spec.Spec}}).Validate(); err != nil {
		return spec, err
	}
	for _, t := range slices.Concat(spec.Handles, spec.Answers, spec.Emits) {
		if err := bus.ValidateTypePattern(t); err != nil {
			return spec, fmt.Errorf("%w: declared type: %w", ErrInvalid, err)
		}
	}
	agents, err := s.Agents(ctx)
	if err != nil {
		return spec, err
	}
	if spec.Agent == "" {
		if len(agents) == 0 {
			return spec, ErrNoAgent
		}
		sort.SliceStable(agents, func(i, j int) bool { return len(agents[i].Instances) < len(agents[j].Instances) })
		spec.Agent = agents[0].Name
	} else if !slices.ContainsFunc(agents, func(a Status) bool { return a.Name == spec.Agent }) {
		var names []string
		for _, a := range agents {
			names = append(names, a.Name)
		}
		return spec, fmt.Errorf("%w: %q (running: %v); start `coordinator agent --name %s` there, or leave the agent out", ErrUnknownAgent, spec.Agent, names, spec.Agent)
	}
	if old, err := s.Get(ctx, spec.Name); err == nil {
		spec.Generation = old.Generation
	}
	spec.Updated = time.Now().UTC()
	return spec, s.put(ctx, spec, 0)
}

// Get returns the order for the plugin name.
func (s *Store) Get(ctx context.Context, name string) (Spec, error) {
	spec, _, err := s.get(ctx, name)
	return spec, err
}

func (s *Store) get(ctx context.Context, name string) (Spec, uint64, error) {
	var spec Spec
	e, err := s.specs.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return spec, 0, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if err != nil {
		return spec, 0, err
	}
	if err := json.Unmarshal(e.Value(), &spec); err != nil {
		return spec, 0, fmt.Errorf("agent: order for %q: %w", name, err)
	}
	return spec, e.Revision(), nil
}

func (s *Store) put(ctx context.Context, spec Spec, rev uint64) error {
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	if rev == 0 {
		_, err = s.specs.Put(ctx, spec.Name, b)
	} else {
		_, err = s.specs.Update(ctx, spec.Name, b, rev)
	}
	return err
}

// change applies f to the order for name, again if another coordinator
// changed it meanwhile.
func (s *Store) change(ctx context.Context, name string, f func(*Spec)) (Spec, error) {
	for {
		spec, rev, err := s.get(ctx, name)
		if err != nil {
			return spec, err
		}
		f(&spec)
		spec.Updated = time.Now().UTC()
		err = s.put(ctx, spec, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			continue
		}
		return spec, err
	}
}

// Scale sets how many instances of name run.
func (s *Store) Scale(ctx context.Context, name string, replicas int) (Spec, error) {
	if replicas < 1 {
		return Spec{}, fmt.Errorf("%w: replicas %d: must be 1 or more (to stop the plugin, use stop)", ErrInvalid, replicas)
	}
	return s.change(ctx, name, func(sp *Spec) { sp.Replicas = replicas })
}

// Restart makes the agent restart every instance of name.
func (s *Store) Restart(ctx context.Context, name string) (Spec, error) {
	return s.change(ctx, name, func(sp *Spec) { sp.Generation++ })
}

// Stop removes the order for name: its agent stops it.
func (s *Store) Stop(ctx context.Context, name string) error {
	if _, err := s.Get(ctx, name); err != nil {
		return err
	}
	return s.specs.Delete(ctx, name)
}

// List returns every order, by name.
func (s *Store) List(ctx context.Context) ([]Spec, error) {
	var out []Spec
	lister, err := s.specs.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	for k := range lister.Keys() {
		if spec, err := s.Get(ctx, k); err == nil {
			out = append(out, spec)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Orders returns every readable order, by name, or an error: unlike
// [Store.List] it does not return a part of them when the bus is slow, so
// that an agent does not take a missing order for a removed one. An
// unreadable entry is left out, as an agent watching the bucket ignores
// it.
func (s *Store) Orders(ctx context.Context) ([]Spec, error) {
	w, err := s.specs.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var out []Spec
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("agent: orders: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("agent: orders: the watch ended")
			}
			if e == nil { // every stored order is in
				sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
				return out, nil
			}
			var spec Spec
			if json.Unmarshal(e.Value(), &spec) == nil {
				out = append(out, spec)
			}
		}
	}
}

// Agents returns the agents running now, by name.
func (s *Store) Agents(ctx context.Context) ([]Status, error) {
	var out []Status
	lister, err := s.agents.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	for k := range lister.Keys() {
		e, err := s.agents.Get(ctx, k)
		if err != nil {
			continue
		}
		var st Status
		if json.Unmarshal(e.Value(), &st) == nil {
			out = append(out, st)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// LogSubject is where the log lines of a plugin's instances go.
func (s *Store) LogSubject(plugin string) string { return s.prefix + ".logs." + plugin }

// Logs calls fn with the last n stored log lines of plugin (all with n <=
// 0), oldest first, then, with follow, every new line until ctx ends.
func (s *Store) Logs(ctx context.Context, plugin string, n int, follow bool, fn func(line []byte)) error {
	cons, err := s.js.OrderedConsumer(ctx, LogsStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{s.LogSubject(plugin)}})
	if err != nil {
		return fmt.Errorf("agent: logs of %q: %w", plugin, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("agent: logs of %q: %w", plugin, err)
	}
	pending := int(info.NumPending)
	skip := 0
	if n > 0 && pending > n {
		skip = pending - n
	}
	for i := 0; i < pending || follow; i++ {
		wait := time.Second
		if follow {
			wait = time.Hour
		}
		next, cancel := context.WithTimeout(ctx, wait)
		msg, err := cons.Next(jetstream.FetchContext(next))
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if follow && errors.Is(err, context.DeadlineExceeded) {
				continue
			}
			return fmt.Errorf("agent: logs of %q: %w", plugin, err)
		}
		if i >= skip {
			fn(msg.Data())
		}
	}
	return nil
}
