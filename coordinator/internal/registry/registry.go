// Package registry keeps the coordinator's view of plugins and their
// instances. It learns them from NATS micro discovery ($SRV.STATS and
// $SRV.INFO, polled) and from the lifecycle events plugins publish, so a
// restarted coordinator rebuilds it from the running plugins alone.
//
// Discovery is the registry's source of truth; lifecycle events only hurry
// it along. An instance is listed only once its own $SRV.INFO answer
// confirms it, a lifecycle event counts only when its producer (from the
// subject, which the server vouches for) is the instance's plugin, and an
// instance that still answers discovery after saying it stopped is running
// again at the next poll. So a process that publishes forged lifecycle
// events can neither add, relabel nor stop instances, and a flood of them
// costs a bounded set of pending confirmations and a few log lines.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/plugbus/plugbus/bus"
)

// State is an instance's state as the coordinator sees it.
type State string

// Instance states.
const (
	Running      State = "running"      // answers discovery
	Gone         State = "gone"         // stopped answering without saying goodbye
	Stopped      State = "stopped"      // said it stopped
	Incompatible State = "incompatible" // speaks another major version of the wire protocol
)

// Instance is one running copy of a plugin.
type Instance struct {
	Plugin      string            `json:"plugin"`
	ID          string            `json:"id"`
	Version     string            `json:"version"`
	Host        string            `json:"host,omitempty"`
	PID         int               `json:"pid,omitempty"`
	Mode        string            `json:"mode"` // how it runs: process, static, so, stdio or wasm (bus's Mode constants)
	Protocol    string            `json:"protocol"`
	Description string            `json:"description,omitempty"`
	Handles     []string          `json:"handles"`
	Answers     []string          `json:"answers,omitempty"` // the types (or patterns) it answers requests for
	Emits       []string          `json:"emits,omitempty"`
	Schemas     map[string]string `json:"schemas,omitempty"` // type -> JSON Schema of its data, handled or emitted
	Started     time.Time         `json:"started"`
	LastSeen    time.Time         `json:"last_seen"`
	State       State             `json:"state"`
	Reason      string            `json:"reason,omitempty"`
	Stats       Counters          `json:"stats"`

	// missed counts the polls in a row the instance did not answer: it is
	// gone only once it missed two, however long it was silent, since a
	// poll that comes late (after seconds of confirming a mass start)
	// makes the silence long without the instance having been asked.
	missed int
	// stoppedAt is when the registry heard the instance's stopped event:
	// a discovery answer to a request sent after it proves the instance
	// still runs.
	stoppedAt time.Time
	// byType holds Stats per handled type (from each endpoint's STATS),
	// summed over instances by [Registry.TypeCounters].
	byType map[string]Counters
}

// Counters sum what an instance's handlers report in their micro STATS.
type Counters struct {
	Received uint64 `json:"received"`
	Handled  uint64 `json:"handled"`
	Failed   uint64 `json:"failed"`
	Invalid  uint64 `json:"invalid"`
	// InvalidFrom counts the invalid messages by producer, as the
	// handlers report them (unverified: see Config.OnInvalid).
	InvalidFrom map[string]uint64 `json:"invalid_from,omitempty"`
}

func (c *Counters) add(o Counters) {
	c.Received += o.Received
	c.Handled += o.Handled
	c.Failed += o.Failed
	c.Invalid += o.Invalid
	for producer, n := range o.InvalidFrom {
		if c.InvalidFrom == nil {
			c.InvalidFrom = map[string]uint64{}
		}
		c.InvalidFrom[producer] += n
	}
}

// Plugin groups the instances of one plugin.
type Plugin struct {
	Name string `json:"name"`
	// Description is what the plugin says it does (WithDescription), from
	// a running instance when one has it.
	Description string   `json:"description,omitempty"`
	State       State    `json:"state"` // running when any instance runs
	Versions    []string `json:"versions"`
	Handles     []string `json:"handles"`
	Answers     []string `json:"answers,omitempty"` // what its running instances answer
	// Ambiguous lists the types this plugin answers that another plugin
	// answers too (see [Registry.Answerers]).
	Ambiguous []Ambiguity `json:"ambiguous,omitempty"`
	Emits     []string    `json:"emits,omitempty"`
	Running   int         `json:"running"`
	Modes     []string    `json:"modes"` // how its instances run, sorted
	Instances []Instance  `json:"instances"`
}

// Change is a state change the coordinator announces as a lifecycle event.
type Change struct {
	Type     string // bus.TypePluginUnhealthy or bus.TypePluginRecovered
	Instance Instance
}

// Config configures a [Registry].
type Config struct {
	Conn   *nats.Conn
	Prefix string
	// PollInterval is how often instances are asked for their STATS;
	// default 1s. With more instances than PollRate asks for in one
	// interval, the polls are spaced further apart (see [Registry.pace]).
	PollInterval time.Duration
	// PollRate is how many instances' STATS the registry asks for per
	// second at most; default 2,000. Every instance answers every poll,
	// and each answer costs the NATS server and the registry about the
	// same, so this bounds what discovery costs: 10,000 instances are
	// polled every 5 s instead of every second.
	PollRate int
	// GoneAfter is how long an instance may stay silent before it is
	// marked gone, once it also missed two polls in a row; default 5s.
	// When PollRate spaces the polls further apart, it is longer (see
	// [Registry.pace]).
	GoneAfter time.Duration
	// ForgetAfter is how long stopped and gone instances stay listed;
	// default 5m.
	ForgetAfter time.Duration
	// Names, when set, returns the names of the plugins that may not hear
	// discovery requests sent to every service (in secure mode, those with
	// an identity: see identity.PluginRules): each poll then also asks
	// each of them by name ($SRV.STATS.<name>) and believes an answer only
	// when it speaks for the plugin asked. The server lets only a plugin's
	// own identity hear the requests naming it, so no plugin can answer
	// for another.
	Names func() []string
	// OnChange hears of instances turning unhealthy (gone) or recovering.
	OnChange func(Change)
	// OnInvalid hears, after each poll that found some, how many invalid
	// messages the instances report having had from each producer since
	// the last poll. Any plugin can say anything in its STATS: these are
	// leads, not evidence.
	OnInvalid func(byProducer map[string]uint64)
	Logger    *slog.Logger
}

// Registry is the coordinator's list of plugins and instances. It is safe
// for concurrent use.
type Registry struct {
	cfg Config

	mu        sync.Mutex
	instances map[string]*Instance  // by instance id; only instances whose INFO confirmed them
	pending   map[string]*announced // instance id -> what a started event said, awaiting INFO; at most maxPending
	changes   []Change              // for OnChange, once r.mu is released
	invalid   map[string]uint64     // for OnInvalid, once the poll is done
	version   uint64                // counts changes to instances (see Version)
	// answers says who answers what, for Plugins and for Answerers (asked
	// on every invoke through the HTTP API); rebuilt when answersStale, which
	// a change to what a running instance answers, or to whether it runs,
	// sets.
	answers      answerIndex
	answersStale bool

	wake chan struct{} // tells confirm that pending has ids
	// dropped says a started event was dropped (pending was full) since
	// the last poll began, and lastStarted is when the last started event
	// came: once they stop coming and pending is empty, the next poll is
	// due at once (see waitForPoll, which dropping wakes).
	dropped     bool
	lastStarted time.Time
	dropping    chan struct{}
	// answered is how many answers the last poll gathered, listed
	// instances or not (see pace).
	answered int
	ignored  throttle   // log lines about lifecycle events not believed
	notifyMu sync.Mutex // held while handing changes to OnChange, in order
}

// announced is an instance a started event named, awaiting its INFO.
type announced struct {
	st    micro.Stats // its plugin (the event's producer) and id
	asked bool        // confirm has sent its request
}

// maxPending bounds the instance ids announced by started events that
// wait for their INFO answer. Beyond it, started events are dropped (and
// counted in the log): a real instance is still found by the next poll,
// which comes early, catchUpQuiet after the last started event, once
// every pending id is answered.
const maxPending = 256

// catchUpQuiet is how long no started event must come, after some were
// dropped, before the next poll is due at once: instances starting by
// thousands are then all up, and the poll lists those whose started
// events were dropped instead of leaving them to a poll up to seconds
// later (PollRate spaces polls 5 s apart at 10,000 instances).
const catchUpQuiet = 300 * time.Millisecond

// New returns a registry; call [Registry.Run] to fill it.
func New(cfg Config) *Registry {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.PollRate <= 0 {
		cfg.PollRate = 2000
	}
	if cfg.GoneAfter <= 0 {
		cfg.GoneAfter = 5 * time.Second
	}
	if cfg.ForgetAfter <= 0 {
		cfg.ForgetAfter = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.OnChange == nil {
		cfg.OnChange = func(Change) {}
	}
	return &Registry{
		cfg: cfg, instances: map[string]*Instance{}, pending: map[string]*announced{}, answersStale: true,
		wake: make(chan struct{}, 1), dropping: make(chan struct{}, 1), ignored: throttle{every: ignoredLogEvery},
	}
}

// Run listens to lifecycle events and polls discovery until ctx ends.
func (r *Registry) Run(ctx context.Context) error {
	var subs []*nats.Subscription
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}()
	for typ, handle := range map[string]func(*nats.Msg){
		bus.TypePluginStarted: r.onStarted,
		bus.TypePluginStopped: r.onStopped,
	} {
		subject, err := bus.TypeSubject(r.cfg.Prefix, typ)
		if err != nil {
			return err
		}
		s, err := r.cfg.Conn.Subscribe(subject, handle)
		if err != nil {
			return fmt.Errorf("registry: subscribe %s: %w", subject, err)
		}
		subs = append(subs, s)
	}
	confirmed := make(chan struct{})
	defer func() { <-confirmed }()
	go func() {
		defer close(confirmed)
		r.confirm(ctx)
	}()
	for {
		start := time.Now()
		every, goneAfter, answering := r.pace()
		r.poll(ctx, answering, max(gatherMost, every), goneAfter)
		if !r.waitForPoll(ctx, every-time.Since(start)) {
			return nil
		}
	}
}

// waitForPoll waits d for the next poll, or less when started events were
// dropped and have stopped coming (see catchUpQuiet), and reports whether
// ctx is still live.
func (r *Registry) waitForPoll(ctx context.Context, d time.Duration) bool {
	wait := time.NewTimer(d)
	defer wait.Stop()
	var check <-chan time.Time // ticks once a started event was dropped
	for {
		select {
		case <-ctx.Done():
			return false
		case <-wait.C:
			return true
		case <-r.dropping:
			if check == nil {
				t := time.NewTicker(catchUpQuiet / 3)
				defer t.Stop()
				check = t.C
			}
		case <-check:
			r.mu.Lock()
			due := r.dropped && len(r.pending) == 0 && time.Since(r.lastStarted) >= catchUpQuiet
			r.mu.Unlock()
			if due {
				return true
			}
		}
	}
}

// pace returns how often to poll, for the instances answering polls now
// (also returned), and how long an instance may then stay silent before it
// is gone. Up to PollRate × PollInterval instances, that is PollInterval
// and GoneAfter. Beyond, the polls are spaced so that at most PollRate
// instances are asked per second, a poll gathers answers for up to that
// interval, and an instance is gone once it missed two polls in a row and
// the longest gather after them: GoneAfter, or 3 × the interval when that
// is longer (10,000 instances at the defaults: polled every 5 s, gone
// after 15 s). The time to gone counts the instances that answered the
// last poll, listed or not: during a mass start they run far ahead of
// those listed, and while their processes start the rest, an instance
// listed early can miss two quick polls in a row.
func (r *Registry) pace() (every, goneAfter time.Duration, answering int) {
	n := 0
	r.mu.Lock()
	for _, in := range r.instances {
		if in.State == Running || in.State == Incompatible {
			n++ // the instances that answer polls
		}
	}
	answered := r.answered
	r.mu.Unlock()
	spacing := func(instances int) time.Duration {
		return max(r.cfg.PollInterval, time.Duration(instances)*time.Second/time.Duration(r.cfg.PollRate))
	}
	every, silence := spacing(n), spacing(max(n, answered))
	if silence <= r.cfg.PollInterval {
		return every, r.cfg.GoneAfter, n
	}
	return every, max(r.cfg.GoneAfter, 2*silence+max(gatherMost, silence)), n
}

// Plugins returns the plugins, sorted by name, each with its instances.
func (r *Registry) Plugins() []Plugin {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Versions, types and emitted types are gathered in sets and sorted
	// once per plugin: with thousands of instances and types, searching
	// and sorting the lists for every instance was quadratic.
	type sets struct{ versions, handles, emits, modes map[string]bool }
	byName := map[string]*Plugin{}
	seen := map[string]sets{}
	for _, in := range r.instances {
		p := byName[in.Plugin]
		if p == nil {
			p = &Plugin{Name: in.Plugin, State: in.State}
			byName[in.Plugin] = p
			seen[in.Plugin] = sets{map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}}
		}
		p.Instances = append(p.Instances, clone(in))
		if in.State == Running {
			p.Running++
			p.State = Running
		}
		s := seen[in.Plugin]
		s.versions[in.Version] = true
		s.modes[in.Mode] = true
		for _, t := range in.Handles {
			s.handles[t] = true
		}
		for _, t := range in.Emits {
			s.emits[t] = true
		}
	}
	answers := r.answerIndex()
	out := make([]Plugin, 0, len(byName))
	for name, p := range byName {
		p.Answers, p.Ambiguous = answers.of(name)
		s := seen[name]
		p.Versions, p.Handles, p.Emits, p.Modes = sorted(s.versions), sorted(s.handles), sorted(s.emits), sorted(s.modes)
		slices.SortFunc(p.Instances, func(a, b Instance) int { return strings.Compare(a.ID, b.ID) })
		for _, in := range p.Instances {
			if in.Description != "" && (p.Description == "" || in.State == Running) {
				p.Description = in.Description
				if in.State == Running {
					break
				}
			}
		}
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b Plugin) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Version returns a number that changes whenever what [Registry.Plugins]
// and [Registry.TypeCounters] return may have changed, so that a reader
// polling them can skip a read when nothing did.
func (r *Registry) Version() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.version
}

// TypeCounters returns, for each handled type, the counters of every
// listed instance that handles it, summed. They are cumulative, like
// [Instance.Stats]; an instance that is forgotten takes its share with it.
func (r *Registry) TypeCounters() map[string]Counters {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]Counters{}
	for _, in := range r.instances {
		for typ, c := range in.byType {
			t := out[typ]
			t.add(c)
			out[typ] = t
		}
	}
	return out
}

// sorted returns the set's non-empty members in order, nil when none.
func sorted(set map[string]bool) []string {
	var list []string
	for s := range set {
		if s != "" {
			list = append(list, s)
		}
	}
	slices.Sort(list)
	return list
}

func clone(in *Instance) Instance {
	c := *in
	c.Handles = slices.Clone(in.Handles)
	c.Answers = slices.Clone(in.Answers)
	c.Emits = slices.Clone(in.Emits)
	c.byType = nil
	return c
}

// onStarted asks a newly announced instance for its INFO at once, so it is
// listed before the next poll finds it. The event itself proves nothing:
// the instance is listed when its own INFO answer confirms it, under the
// plugin named in the event's subject.
func (r *Registry) onStarted(msg *nats.Msg) {
	producer, in, ok := r.lifecycle(msg)
	if !ok {
		return
	}
	r.mu.Lock()
	r.lastStarted = time.Now()
	cur := r.instances[in.ID]
	switch {
	case cur != nil && cur.Plugin != producer:
		plugin := cur.Plugin
		r.mu.Unlock()
		r.ignore("ignored a started event about another plugin's instance", msg.Subject, "producer", producer, "instance", in.ID, "plugin", plugin)
		return
	case cur != nil && (cur.State == Running || cur.State == Incompatible):
		r.mu.Unlock()
		return // already confirmed; polls keep it current
	case r.pending[in.ID] != nil:
		r.mu.Unlock()
		return
	case len(r.pending) >= maxPending:
		r.dropped = true
		r.mu.Unlock()
		select {
		case r.dropping <- struct{}{}:
		default:
		}
		r.ignore("too many started events awaiting confirmation by discovery; dropped one (the next poll still finds a real instance)", msg.Subject, "producer", producer, "instance", in.ID, "pending", maxPending)
		return
	}
	r.pending[in.ID] = &announced{st: micro.Stats{ServiceIdentity: micro.ServiceIdentity{Name: producer, ID: in.ID}}}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// onStopped marks an instance stopped when its own plugin says so.
func (r *Registry) onStopped(msg *nats.Msg) {
	producer, in, ok := r.lifecycle(msg)
	if !ok {
		return
	}
	now := time.Now()
	r.mu.Lock()
	cur := r.instances[in.ID]
	if cur == nil || cur.Plugin != producer {
		plugin := ""
		if cur != nil {
			plugin = cur.Plugin
		}
		r.mu.Unlock()
		if plugin != "" {
			r.ignore("ignored a stopped event about another plugin's instance", msg.Subject, "producer", producer, "instance", in.ID, "plugin", plugin)
		}
		return
	}
	r.setState(cur, Stopped, in.Reason)
	cur.LastSeen, cur.stoppedAt = now, now
	r.mu.Unlock()
	r.notify()
}

// lifecycle decodes a lifecycle event and returns its producer, taken from
// the subject: what the event's source or data claim about who sent it is
// not believed.
func (r *Registry) lifecycle(msg *nats.Msg) (string, bus.Instance, bool) {
	var in bus.Instance
	producer, _, err := bus.ParseEventSubject(r.cfg.Prefix, msg.Subject)
	if err != nil {
		return "", in, false
	}
	e, err := bus.Decode(msg)
	if err == nil {
		err = e.DataAs(&in)
	}
	if err == nil {
		// The id goes into a $SRV.INFO subject: one token, like a name.
		if verr := bus.ValidateProducer(in.ID); verr != nil {
			err = fmt.Errorf("instance id: %w", verr)
		}
	}
	if err != nil {
		r.ignore("ignored a malformed lifecycle event", msg.Subject, "err", err)
		return "", in, false
	}
	return producer, in, true
}

// ignoredLogEvery is how often at most the registry logs a lifecycle event
// it did not believe; the lines in between are counted in the next one.
const ignoredLogEvery = 10 * time.Second

// ignore logs a lifecycle event the registry did not believe, at most once
// per ignoredLogEvery: a process flooding the bus with forged events must
// not flood the log too.
func (r *Registry) ignore(what, subject string, args ...any) {
	suppressed, ok := r.ignored.allow(time.Now())
	if !ok {
		return
	}
	if subject != "" {
		args = append([]any{"subject", subject}, args...)
	}
	if suppressed > 0 {
		args = append(args, "not_logged_since_last", suppressed)
	}
	r.cfg.Logger.Warn(what, args...)
}

// throttle lets one event through per period and counts the others.
type throttle struct {
	every time.Duration

	mu         sync.Mutex
	next       time.Time
	suppressed int
}

// allow reports whether an event at now may be logged, and how many were
// held back since the last one that was.
func (t *throttle) allow(now time.Time) (suppressed int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Before(t.next) {
		t.suppressed++
		return 0, false
	}
	t.next = now.Add(t.every)
	suppressed, t.suppressed = t.suppressed, 0
	return suppressed, true
}

// confirm asks the instances announced by started events for their INFO,
// as they come, with up to infoRequests requests in flight, until ctx
// ends. Each id leaves the pending set as soon as its own answer is in (or
// its request failed), so that the set bounds what waits and what is in
// flight together, repeats of an event in flight are not asked again, and
// one slow instance holds up no others: when a whole batch left the set
// only once every answer of the batch was in, instances starting by
// thousands filled it and their started events were dropped.
func (r *Registry) confirm(ctx context.Context) {
	sem := make(chan struct{}, infoRequests)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		var batch []micro.Stats
		r.mu.Lock()
		for _, a := range r.pending {
			if !a.asked {
				a.asked = true
				batch = append(batch, a.st)
			}
		}
		r.mu.Unlock()
		for _, st := range batch {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Go(func() {
				defer func() { <-sem }()
				r.fetchInfo(ctx, st)
				r.mu.Lock()
				delete(r.pending, st.ID)
				r.mu.Unlock()
			})
		}
	}
}

// compatibility returns Running, or Incompatible with the reason, for an
// instance speaking protocol version v.
func (r *Registry) compatibility(v string) (State, string) {
	major := func(s string) string { m, _, _ := strings.Cut(s, "."); return m }
	if major(v) != major(bus.ProtocolVersion) {
		return Incompatible, fmt.Sprintf("plugin speaks wire protocol %s; this coordinator speaks %s", v, bus.ProtocolVersion)
	}
	return Running, ""
}

// setState moves an instance to state, queueing unhealthy and recovered
// changes for [Registry.notify]. r.mu is held.
func (r *Registry) setState(in *Instance, state State, reason string) {
	r.version++
	prev := in.State
	in.State, in.Reason = state, reason
	if (prev == Running) != (state == Running) {
		r.answersStale = true
	}
	switch {
	case prev == Running && state == Gone:
		r.changes = append(r.changes, Change{Type: bus.TypePluginUnhealthy, Instance: clone(in)})
	case prev == Gone && state == Running:
		r.changes = append(r.changes, Change{Type: bus.TypePluginRecovered, Instance: clone(in)})
	}
}

// notify hands the queued changes to OnChange, without r.mu: the
// coordinator logs and publishes each, and when thousands of instances
// change at once, doing that under r.mu held up the poll and Plugins() for
// seconds. Call it after releasing r.mu.
func (r *Registry) notify() {
	r.notifyMu.Lock()
	defer r.notifyMu.Unlock()
	r.mu.Lock()
	changes := r.changes
	r.changes = nil
	r.mu.Unlock()
	for _, ch := range changes {
		r.cfg.OnChange(ch)
	}
}

// poll asks every micro service for its STATS, gathering the answers for
// up to most (expecting at least as many as answering), updates the
// instances that answer, confirms new ones by their INFO, and marks gone
// those silent for longer than goneAfter and two polls in a row.
func (r *Registry) poll(ctx context.Context, answering int, most, goneAfter time.Duration) {
	start := time.Now()
	r.mu.Lock()
	r.dropped = false // this poll finds the instances whose started events were dropped until now
	r.mu.Unlock()
	var names []string
	if r.cfg.Names != nil {
		names = r.cfg.Names()
	}
	replies, err := r.gather(ctx, micro.StatsVerb, names, answering, most)
	if err != nil {
		r.cfg.Logger.Warn("discovery poll failed", "err", err)
		return
	}
	now := time.Now()
	r.mu.Lock()
	r.answered = len(replies)
	r.mu.Unlock()
	var fresh []micro.Stats
	defer func() {
		r.cfg.Logger.Debug("discovery poll", "replies", len(replies), "gathered_in", now.Sub(start), "new", len(fresh), "took", time.Since(start))
	}()
	for _, reply := range replies {
		var st micro.Stats
		if err := json.Unmarshal(reply.data, &st); err != nil || st.ID == "" {
			continue
		}
		if reply.asked != "" && st.Name != reply.asked {
			r.ignore("ignored a discovery answer for another plugin than the one asked", "", "asked", reply.asked, "answer_plugin", st.Name, "answer_instance", st.ID)
			continue
		}
		if _, ok := st.Metadata[bus.MetaProtocol]; !ok {
			continue // a micro service that is not a Plugbus plugin
		}
		r.mu.Lock()
		if in := r.instances[st.ID]; in != nil && in.Plugin == st.Name {
			r.update(in, st, start, now)
		} else if in == nil {
			fresh = append(fresh, st) // listed once its INFO confirms it
		}
		r.mu.Unlock()
	}
	r.notify()
	r.describe(ctx, fresh)
	r.mu.Lock()
	for id, in := range r.instances {
		silent := now.Sub(in.LastSeen)
		if silent > 0 {
			in.missed++
		} else {
			in.missed = 0 // answered this poll, or listed while it ran
		}
		switch {
		case (in.State == Running || in.State == Incompatible) && silent > goneAfter && in.missed >= 2:
			r.setState(in, Gone, fmt.Sprintf("no answer to discovery for %v", silent.Round(time.Second)))
		case (in.State == Gone || in.State == Stopped) && silent > r.cfg.ForgetAfter:
			delete(r.instances, id)
			r.version++
			r.answersStale = true
		}
	}
	invalid := r.invalid
	r.invalid = nil
	r.mu.Unlock()
	r.notify()
	if len(invalid) > 0 && r.cfg.OnInvalid != nil {
		r.cfg.OnInvalid(invalid)
	}
}

// update records an instance's STATS answer to a request sent at asked
// and received by now. An instance that said it stopped before the request
// was sent, and answers it anyway, still runs: it is running again. r.mu
// is held.
func (r *Registry) update(in *Instance, st micro.Stats, asked, now time.Time) {
	r.version++
	protocol := st.Metadata[bus.MetaProtocol]
	in.Plugin, in.Version, in.Protocol = st.Name, st.Version, protocol
	in.Started, in.LastSeen = st.Started, now
	in.Host = st.Metadata[bus.MetaHost]
	in.PID, _ = strconv.Atoi(st.Metadata[bus.MetaPID])
	in.Mode = st.Metadata[bus.MetaMode]
	if in.Mode == "" {
		in.Mode = bus.ModeProcess // a manifest without a mode: a program of its own
	}
	in.Emits = splitList(st.Metadata[bus.MetaEmits])
	// The answers are compared with the last ones as they are written
	// over them (an element is compared before the append that replaces
	// it), so that the answer index is rebuilt only when they change.
	answered, invalidBefore := in.Answers, in.Stats.InvalidFrom
	in.Handles, in.Answers, in.Stats = in.Handles[:0], in.Answers[:0], Counters{}
	clear(in.byType)
	for _, ep := range st.Endpoints {
		if _, typ, ok := strings.Cut(ep.Subject, ".invoke.*."); ok {
			if n := len(in.Answers); n >= len(answered) || answered[n] != typ {
				r.answersStale = true
			}
			in.Answers = append(in.Answers, typ)
		}
		_, typ, ok := strings.Cut(ep.Subject, ".events.*.")
		if ok {
			in.Handles = append(in.Handles, typ)
		}
		var c Counters
		if json.Unmarshal(ep.Data, &c) == nil {
			in.Stats.add(c)
			if ok {
				if in.byType == nil {
					in.byType = map[string]Counters{}
				}
				t := in.byType[typ]
				t.add(c)
				in.byType[typ] = t
			}
		}
	}
	if len(in.Answers) != len(answered) {
		r.answersStale = true
	}
	for producer, n := range in.Stats.InvalidFrom {
		if before := invalidBefore[producer]; n > before {
			n -= before
		} else if n == before {
			continue
		} // else the instance counts afresh: it restarted
		if r.invalid == nil {
			r.invalid = map[string]uint64{}
		}
		r.invalid[producer] += n
	}
	if in.State == Stopped && !asked.After(in.stoppedAt) {
		return // the answer may predate the stopped event
	}
	if in.State == Stopped {
		r.ignore("an instance said it stopped but still answers discovery: running again", "", "plugin", in.Plugin, "instance", in.ID, "stopped_reason", in.Reason)
	}
	state, reason := r.compatibility(protocol)
	r.setState(in, state, reason)
}

// describe confirms new instances by their INFO, with up to infoRequests
// requests in flight. Each request asks one instance
// ($SRV.INFO.<name>.<id>) and takes its one reply, so it waits only as
// long as that instance takes to answer: asked one after another, each
// waiting for a quiet period as gather does, 1,000 new instances held up
// the poll for minutes. An instance that does not answer is asked again at
// the next poll.
func (r *Registry) describe(ctx context.Context, fresh []micro.Stats) {
	sem := make(chan struct{}, infoRequests)
	var wg sync.WaitGroup
	for _, st := range fresh {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			r.fetchInfo(ctx, st)
		})
	}
	wg.Wait()
}

// fetchInfo asks the instance st names for its INFO and, when the
// instance itself answers, lists it (or updates it) with its description
// and per-type schemas. st carries the instance's STATS when a poll found
// it; when a started event announced it, only its name and id, and its
// STATS are asked for too.
func (r *Registry) fetchInfo(ctx context.Context, st micro.Stats) {
	asked := time.Now()
	var info micro.Info
	if !r.request(ctx, micro.InfoVerb, st.Name, st.ID, &info) {
		return
	}
	// The answer comes from whoever subscribes to the instance's INFO
	// subject; it must at least speak for the instance it was asked about.
	if info.ID != st.ID || info.Name != st.Name || info.Metadata[bus.MetaProtocol] == "" {
		r.cfg.Logger.Debug("INFO answer does not match the instance asked", "plugin", st.Name, "instance", st.ID, "answer_plugin", info.Name, "answer_instance", info.ID)
		return
	}
	if st.Endpoints == nil && !r.request(ctx, micro.StatsVerb, st.Name, st.ID, &st) {
		return
	}
	if st.ID != info.ID || st.Name != info.Name {
		return
	}
	schemas := map[string]string{}
	for _, ep := range info.Endpoints {
		if s := ep.Metadata[bus.MetaSchema]; s != "" {
			schemas[ep.Metadata[bus.MetaType]] = s
		}
	}
	for key, s := range info.Metadata {
		if typ, ok := strings.CutPrefix(key, bus.MetaSchemaOf("")); ok && typ != "" && s != "" {
			schemas[typ] = s // the schema of an emitted type
		}
	}
	now := time.Now()
	r.mu.Lock()
	in := r.instances[st.ID]
	switch {
	case in == nil:
		in = &Instance{ID: st.ID}
		r.instances[st.ID] = in
	case in.Plugin != st.Name:
		r.mu.Unlock()
		return
	}
	r.update(in, st, asked, now)
	in.Description = info.Description
	if len(schemas) > 0 {
		in.Schemas = schemas
	}
	r.mu.Unlock()
	r.notify()
}

// request asks one instance for one discovery verb and decodes its answer
// into v, reporting whether it could.
func (r *Registry) request(ctx context.Context, verb micro.Verb, name, id string, v any) bool {
	subject, err := micro.ControlSubject(verb, name, id)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, infoTimeout)
	defer cancel()
	msg, err := r.cfg.Conn.RequestWithContext(ctx, subject, nil)
	if err != nil {
		r.cfg.Logger.Debug("no answer to "+verb.String(), "plugin", name, "instance", id, "err", err)
		return false
	}
	if err := json.Unmarshal(msg.Data, v); err != nil {
		r.cfg.Logger.Debug("undecodable answer to "+verb.String(), "plugin", name, "instance", id, "err", err)
		return false
	}
	return true
}

// infoRequests is how many INFO requests confirm, and describe, each have
// in flight at most.
const infoRequests = 64

// Discovery timing. An INFO request has one answer and waits for it up to
// infoTimeout. A STATS request has as many answers as there are instances:
// gather waits up to gatherFirst for the first (with thousands of
// instances, the server takes a while to deliver the request to all of
// them, and the replies queue behind each other on the way back), then
// collects the rest until none has come for gatherQuiet, or for at most
// gatherMost in all (longer when polls are spaced: see [Registry.pace]).
// Until as many answers are in as instances answered before, the quiet
// period is gatherFirst: on a busy host the coordinator may not run for a
// few hundred milliseconds, and ending the gather then marked thousands of
// instances gone that had answered.
const (
	infoTimeout = 2 * time.Second
	gatherFirst = time.Second
	gatherQuiet = 200 * time.Millisecond
	gatherMost  = 3 * time.Second
)

// A gathered is one answer to a discovery request, and the plugin that
// request named ("" when it went to every service).
type gathered struct {
	asked string
	data  []byte
}

// gather sends one discovery request to every micro service and one to
// each plugin of names, and collects the replies, expecting at least
// expect of them, for at most most. nats.go's request API takes the first
// reply only, and discovery needs all of them.
func (r *Registry) gather(ctx context.Context, verb micro.Verb, names []string, expect int, most time.Duration) ([]gathered, error) {
	// A plain inbox, not one under the connection's request inbox prefix:
	// nats.go's subscription for requests (fetchInfo's) would receive every
	// reply a second time, doubling what the server sends this connection.
	// The request to all is answered on <inbox>.all, the one to plugin
	// NAME on <inbox>.name.NAME, so an answer says which it answers.
	inbox := r.cfg.Conn.NewInbox()
	// A synchronous subscription queues replies where a channel
	// subscription, used before, dropped every reply beyond its channel's
	// capacity (4096) when they came faster than this loop took them: the
	// instances that sent them were eventually marked gone.
	sub, err := r.cfg.Conn.SubscribeSync(inbox + ".>")
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	// Not limited: the replies are as many as the instances, and the loop
	// below stops taking them after gatherMost anyway.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, err
	}
	subject, err := micro.ControlSubject(verb, "", "")
	if err != nil {
		return nil, err
	}
	if err := r.cfg.Conn.PublishRequest(subject, inbox+".all", nil); err != nil {
		return nil, err
	}
	namePrefix := inbox + ".name."
	for _, name := range names {
		if subject, err = micro.ControlSubject(verb, name, ""); err != nil {
			continue
		}
		if err := r.cfg.Conn.PublishRequest(subject, namePrefix+name, nil); err != nil {
			return nil, err
		}
	}
	var out []gathered
	deadline := time.Now().Add(most)
	for ctx.Err() == nil {
		wait := gatherQuiet
		if len(out) == 0 || len(out) < expect {
			wait = gatherFirst
		}
		if wait = min(wait, time.Until(deadline)); wait <= 0 {
			break
		}
		msg, err := sub.NextMsg(wait)
		if errors.Is(err, nats.ErrTimeout) {
			break
		}
		if errors.Is(err, nats.ErrNoResponders) {
			// No micro service at all, or no instance of a plugin named.
			if len(names) == 0 {
				break
			}
			continue
		}
		if err != nil {
			return out, err
		}
		asked, _ := strings.CutPrefix(msg.Subject, namePrefix)
		if asked == msg.Subject {
			asked = ""
		}
		out = append(out, gathered{asked: asked, data: msg.Data})
	}
	return out, nil
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
