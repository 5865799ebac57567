package pluginkit

import (
	"context"
	"errors"
	"fmt"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/internal/stdioproto"
	"github.com/plugbus/plugbus/internal/tracing"
)

// ErrNotRunning is returned when publishing through a plugin that is not
// running, or through a context that does not come from a handler.
var ErrNotRunning = errors.New("pluginkit: plugin is not running")

// Producer returns who sent the event being handled: the producer token of
// its subject, which NATS permissions vouch for, never a header. It returns
// "" outside a handler.
func Producer(ctx context.Context) string {
	if d, ok := ctx.Value(deliveryKey{}).(*delivery); ok {
		return d.producer
	}
	return ""
}

// Emit publishes e from inside a handler, as one more result of the event
// being handled: its source is the plugin and it is linked to the trigger,
// as a returned event is. Use it when a handler has more than one result.
func Emit(ctx context.Context, e *Event) error {
	d, ok := ctx.Value(deliveryKey{}).(*delivery)
	if !ok {
		return fmt.Errorf("%w: Emit needs the context passed to a handler; use Plugin.Publish elsewhere", ErrNotRunning)
	}
	trigger, err := d.triggerEvent()
	if err != nil {
		return fmt.Errorf("pluginkit: Emit: the event being handled: %w", err)
	}
	_, span := d.plugin.startSend(ctx, "publish", e)
	err = d.plugin.publish(e, trigger)
	tracing.End(span, err)
	return err
}

// Invoke sends e as a request from inside a handler to the plugin that
// answers its type, and returns the answer: the result event, or nil when
// the handler returned none. It passes on what is left of the handler's own
// deadline instead of starting a fresh timeout. See [bus.Request] for the
// errors.
func Invoke(ctx context.Context, e *Event, opts ...InvokeOption) (*Event, error) {
	d, ok := ctx.Value(deliveryKey{}).(*delivery)
	if !ok {
		return nil, fmt.Errorf("%w: Invoke needs the context passed to a handler; use Plugin.Invoke elsewhere", ErrNotRunning)
	}
	trigger, err := d.triggerEvent()
	if err != nil {
		return nil, fmt.Errorf("pluginkit: Invoke: the event being handled: %w", err)
	}
	return d.plugin.invoke(ctx, e, trigger, opts)
}

// An InvokeOption configures one [Invoke] or [Plugin.Invoke].
type InvokeOption func(*invokeOptions)

type invokeOptions struct {
	plugin string
}

// AnsweredBy asks that only the plugin named plugin answer: for a type that
// two different plugins answer. It travels as the [bus.HeaderPlugin]
// header. A request naming a plugin that is not running waits until its
// deadline.
func AnsweredBy(plugin string) InvokeOption {
	return func(o *invokeOptions) { o.plugin = plugin }
}

// Publish sends e as an event from the plugin, outside any handler (a timer,
// a file watcher...). The plugin must be running.
func (p *Plugin) Publish(e *Event) error {
	_, span := p.startSend(context.Background(), "publish", e)
	err := p.publish(e, nil)
	tracing.End(span, err)
	return err
}

// Invoke sends e as a request from the plugin and returns the answer event
// (nil when the handler returned none). ctx bounds the wait; when ctx is the
// context one of p's handlers got, the request is linked to the event being
// handled, as with [Invoke].
func (p *Plugin) Invoke(ctx context.Context, e *Event, opts ...InvokeOption) (*Event, error) {
	if d, ok := ctx.Value(deliveryKey{}).(*delivery); ok && d.plugin == p {
		trigger, err := d.triggerEvent()
		if err != nil {
			return nil, fmt.Errorf("pluginkit: Invoke: the event being handled: %w", err)
		}
		return p.invoke(ctx, e, trigger, opts)
	}
	return p.invoke(ctx, e, nil, opts)
}

func (p *Plugin) publish(e, trigger *Event) error {
	if p.stdio != nil {
		raw, err := p.stdioEvent(e, trigger)
		if err != nil {
			return err
		}
		return p.stdio.write(stdioproto.Out{Emit: raw})
	}
	if !p.started.Load() || p.nc == nil {
		return ErrNotRunning
	}
	enc := p.encoder()
	defer p.encoders.Put(enc)
	msg, err := p.encodeResult(enc, e, trigger)
	if err != nil {
		return err
	}
	return p.send(context.Background(), msg)
}

func (p *Plugin) invoke(ctx context.Context, e, trigger *Event, opts []InvokeOption) (*Event, error) {
	if p.stdio != nil {
		return nil, errStdioInvoke
	}
	if !p.started.Load() || p.nc == nil {
		return nil, ErrNotRunning
	}
	var o invokeOptions
	for _, opt := range opts {
		opt(&o)
	}
	var ropts []bus.RequestOption
	if o.plugin != "" {
		if err := bus.ValidateProducer(o.plugin); err != nil {
			return nil, fmt.Errorf("pluginkit: AnsweredBy(%q): %w", o.plugin, err)
		}
		ropts = append(ropts, bus.AnsweredBy(o.plugin))
	}
	ctx, span := p.startSend(ctx, "invoke", e)
	p.stamp(e, trigger)
	if err := bus.Validate(e); err != nil {
		tracing.End(span, err)
		return nil, err
	}
	res, err := bus.Request(ctx, p.nc, p.prefix, p.name, e, ropts...)
	tracing.End(span, err)
	return res, err
}
