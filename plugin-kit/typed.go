package pluginkit

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/internal/schema"
)

// Answer registers f as the handler of typ, an exact type, with Go types
// for its data: the request's data is checked against the JSON Schema of
// Req and decoded into Req before f runs, and f's reply becomes the answer,
// an event of type replyType whose data is the reply as JSON. With
// replyType "" the answer is empty and f's reply is dropped (use struct{}).
//
// The schemas of Req and Resp are generated from the Go types, advertised
// in the plugin's manifest (`nats micro info` shows them) and set as the
// events' dataschema. Data that does not match, sent by a caller in any
// language, gets a [Permanent] error naming the field and the rule, and f
// does not run. Answer panics, as [Plugin.Handle] does, on an invalid type
// or a Go type JSON Schema cannot describe.
func Answer[Req, Resp any](p *Plugin, typ, replyType string, f func(ctx context.Context, req Req) (Resp, error), opts ...HandleOption) {
	in := mustSchema[Req](p, typ)
	var replySchema types.URI // parsed once: SetDataSchema parses it on every call
	if replyType != "" {
		u, err := url.Parse(SchemaURI(p.name, p.version, replyType))
		if err != nil {
			panic(fmt.Sprintf("pluginkit: schema URI of %q: %v", replyType, err))
		}
		replySchema = types.URI{URL: *u}
		p.declareSchema(replyType, mustSchema[Resp](p, replyType))
	}
	// answer is f on an event's data: the handler's core, and all the stdio
	// short path (handleData) calls.
	answer := func(ctx context.Context, data []byte) (resp Resp, err error) {
		req, err := decode[Req](data)
		if err != nil {
			return resp, err
		}
		return f(ctx, req)
	}
	h := HandlerFunc(func(ctx context.Context, e Event) (*Event, error) {
		resp, err := answer(ctx, e.Data())
		if err != nil || replyType == "" {
			return nil, err
		}
		out := NewEvent(replyType, resp)
		schema := replySchema
		out.Context.(*event.EventContextV1).DataSchema = &schema
		return out, nil
	})
	opts = append([]HandleOption{withSchema(in)}, opts...)
	// The short path writes the answer's data as JSON, where NewEvent
	// sends a []byte as it is (and an interface may hold one).
	var zero Resp
	if _, isBytes := any(zero).([]byte); replyType == "" || !isBytes && any(zero) != nil && bus.ValidateType(replyType) == nil {
		opts = append(opts, withData(func(ctx context.Context, data []byte) ([]byte, error) {
			resp, err := answer(ctx, data)
			if err != nil || replyType == "" {
				return nil, err
			}
			out, err := json.Marshal(resp)
			if err != nil {
				return nil, fmt.Errorf("pluginkit: the answer to %q is not JSON-encodable: %w", typ, err)
			}
			return out, nil
		}, replyType, replySchema.String()))
	}
	p.Handle(typ, h, opts...)
}

// On registers f as the handler of events matching pattern with data of Go
// type T, checked against T's JSON Schema and decoded before f runs, as
// [Answer] does. f returns no event; an error means what it means for any
// handler. On only observes ([ObserveOnly]): requests for the type are
// left to the plugin that answers it.
func On[T any](p *Plugin, pattern string, f func(ctx context.Context, data T) error, opts ...HandleOption) {
	in := mustSchema[T](p, pattern)
	observe := func(ctx context.Context, data []byte) error {
		v, err := decode[T](data)
		if err != nil {
			return err
		}
		return f(ctx, v)
	}
	h := HandlerFunc(func(ctx context.Context, e Event) (*Event, error) {
		return nil, observe(ctx, e.Data())
	})
	p.Handle(pattern, h, append([]HandleOption{withSchema(in), ObserveOnly(), withData(func(ctx context.Context, data []byte) ([]byte, error) {
		return nil, observe(ctx, data)
	}, "", "")}, opts...)...)
}

// Call invokes typ through the running plugin p with req as JSON data and
// decodes the answer's data into Resp. From inside a handler, pass the
// handler's ctx: the request carries what is left of its deadline and
// links to the event being handled. An empty answer gives Resp's zero
// value. The errors are those of [Plugin.Invoke].
func Call[Resp any](ctx context.Context, p *Plugin, typ string, req any) (Resp, error) {
	var resp Resp
	reply, err := p.Invoke(ctx, NewEvent(typ, req))
	if err != nil || reply == nil {
		return resp, err
	}
	if err := json.Unmarshal(reply.Data(), &resp); err != nil {
		return resp, fmt.Errorf("pluginkit: answer to %s (type %s) does not decode into %T: %w", typ, reply.Type(), resp, err)
	}
	return resp, nil
}

// mustSchema generates and compiles the schema of T for events of typ.
func mustSchema[T any](p *Plugin, typ string) *schema.Validator {
	v, err := schema.For[T](SchemaURI(p.name, p.version, typ))
	if err == nil {
		return v
	}
	var zero T
	panic(fmt.Sprintf("pluginkit: schema of %T for %q: %v", zero, typ, err))
}

// decode decodes an event's data, already checked against its schema,
// into a T.
func decode[T any](data []byte) (T, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return v, Permanent(fmt.Errorf("data does not decode into %T: %w", v, err))
	}
	return v, nil
}

// SchemaURI is the URI Plugbus gives the JSON Schema that version version
// of plugin declares for the data of events of type typ; events carry it
// as their dataschema:
// urn:plugbus:schema:<plugin>:<version>:<type>.
func SchemaURI(plugin, version, typ string) string {
	return "urn:plugbus:schema:" + plugin + ":" + version + ":" + typ
}

// withSchema checks the data of the handler's events against v before the
// handler runs and advertises v's document as the schema of its type.
func withSchema(v *schema.Validator) HandleOption {
	return func(r *route) {
		r.schema = string(v.Doc())
		r.validator = v
		next := r.handler
		pattern := r.pattern
		r.handler = HandlerFunc(func(ctx context.Context, e Event) (*Event, error) {
			if d, _ := ctx.Value(deliveryKey{}).(*delivery); d == nil || d.checked != pattern {
				if err := v.Validate(e.Data()); err != nil {
					return nil, Permanent(err)
				}
			}
			return next.HandleEvent(ctx, e)
		})
	}
}

// A dataHandler is a typed handler as the stdio short path calls it
// ([Plugin.handleData]): the event's JSON data in, the answer's JSON data
// out (nil for an answer without an event).
type dataHandler func(ctx context.Context, data []byte) ([]byte, error)

// withData gives the route its typed handler's short path, with the type
// and schema URI of the answer's event ("" for none).
func withData(h dataHandler, replyType, replySchema string) HandleOption {
	return func(r *route) { r.data, r.replyType, r.replySchema = h, replyType, replySchema }
}

// declareSchema records the schema of the data of an emitted type, for the
// plugin's manifest, and declares the type as emitted.
func (p *Plugin) declareSchema(typ string, v *schema.Validator) {
	if p.schemas == nil {
		p.schemas = map[string]string{}
	}
	p.schemas[typ] = string(v.Doc())
	for _, t := range p.emits {
		if t == typ {
			return
		}
	}
	p.emits = append(p.emits, typ)
}
