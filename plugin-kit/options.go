package pluginkit

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/internal/schema"
)

// An Option configures a [Plugin] in [New].
type Option func(*Plugin)

// WithDescription sets the description shown by discovery tools.
func WithDescription(text string) Option { return func(p *Plugin) { p.description = text } }

// WithEmits declares the event types the plugin emits, for its manifest.
func WithEmits(types ...string) Option {
	return func(p *Plugin) { p.emits = append(p.emits, types...) }
}

// WithLogger sets the logger; the default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(p *Plugin) { p.logger = l } }

// WithPrefix sets the subject prefix; the default is [bus.DefaultPrefix].
func WithPrefix(prefix string) Option { return func(p *Plugin) { p.prefix = prefix } }

// WithConnConfig sets how [Plugin.Run] connects to NATS.
func WithConnConfig(cfg bus.ConnConfig) Option { return func(p *Plugin) { p.connCfg = cfg } }

// WithConcurrency sets how many events each handler may handle at once,
// unless the handler sets its own with [Concurrency]; the default is
// [DefaultConcurrency].
func WithConcurrency(n int) Option { return func(p *Plugin) { p.concurrency = n } }

// WithDrainTimeout sets how long a stopping plugin waits for handlers still
// running before it cancels their context; the default is 10s.
func WithDrainTimeout(d time.Duration) Option { return func(p *Plugin) { p.drainTimeout = d } }

// WithMode sets how the instance runs, as its manifest reports it: one of
// bus's Mode constants, [bus.ModeProcess] by default. Hosts that run plugins
// in-process set it; a plugin's own program leaves it.
func WithMode(mode string) Option { return func(p *Plugin) { p.mode = mode } }

// DefaultConcurrency is how many events a handler handles at once by default.
const DefaultConcurrency = 16

// A HandleOption configures one handler in [Plugin.Handle].
type HandleOption func(*route)

// Concurrency sets how many events this handler may handle at once. With 1,
// events are handled one at a time in arrival order. Requests to an
// answering handler are answered one at a time by each instance, in arrival
// order, so that NATS micro counts each request's outcome; run more
// instances (they share the plugin's queue group) to answer more at once.
func Concurrency(n int) HandleOption { return func(r *route) { r.concurrency = n } }

// Broadcast makes every instance of the plugin get every event of this
// handler's types, instead of the instances sharing them: for cache
// invalidation, configuration reloads and the like.
func Broadcast() HandleOption { return func(r *route) { r.broadcast = true } }

// Schema attaches a JSON Schema for the data of the events this handler
// takes, published in the plugin's manifest. A schema document (JSON) of
// draft 2020-12 or draft-07 (its $schema, or none for 2020-12) is also
// checked: data that does not match gets a [Permanent] error naming the
// field and the rule, and the handler does not run. A URL is only
// published. Schema panics on a document that is not a valid schema or
// names another draft, as [Plugin.Handle] does on an invalid pattern (the
// coordinator checks every draft where data enters over HTTP; declare such
// a document by its URL). [Answer] and [On] generate the schema from Go
// types instead.
func Schema(doc string) HandleOption {
	if !strings.HasPrefix(strings.TrimSpace(doc), "{") {
		return func(r *route) { r.schema = doc }
	}
	v, err := schema.Compile([]byte(doc))
	if err != nil {
		panic(fmt.Sprintf("pluginkit: Schema: %v", err))
	}
	return withSchema(v)
}

// Answering makes a handler for a pattern answer requests for every type that
// matches it, as a handler for an exact type does: for a gateway or bridge
// that stands in for a family of types. Without it a pattern handler only
// observes events. See [Plugin.Handle].
func Answering() HandleOption { return func(r *route) { r.answer = true } }

// ObserveOnly makes a handler for an exact type only observe its events,
// never answering requests for it: for an archive, an audit log, a cache
// that keeps a copy while another plugin answers the type. See
// [Plugin.Handle].
func ObserveOnly() HandleOption { return func(r *route) { r.observeOnly = true } }
