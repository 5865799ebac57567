package pluginkit

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nuid"
)

// Event is a CloudEvent, the sdk-go type.
type Event = event.Event

// NewEvent returns an event of type typ carrying data. A []byte is sent as
// is with content type application/octet-stream; anything else is encoded as
// JSON. The id and time are set; the source is set to the plugin when the
// event is returned from a handler or emitted. NewEvent panics when data
// cannot be encoded as JSON (inside a handler the panic becomes an error).
func NewEvent(typ string, data any) *Event {
	n := &newEvent{}
	n.ctx.ID = NewID()
	n.ctx.Type = typ
	n.time.Time = time.Now()
	n.ctx.Time = &n.time
	e := &n.event
	e.Context = &n.ctx
	switch d := data.(type) {
	case nil:
	case []byte:
		e.DataEncoded = d
		n.contentType = "application/octet-stream"
		n.ctx.DataContentType = &n.contentType
	default:
		b, err := json.Marshal(d)
		if err != nil {
			panic(fmt.Sprintf("pluginkit: NewEvent(%q): data is not JSON-encodable: %v", typ, err))
		}
		e.DataEncoded = b
		n.contentType = event.ApplicationJSON
		n.ctx.DataContentType = &n.contentType
	}
	return e
}

// newEvent is what [NewEvent] makes: the event, its context and the
// attributes the context points to, allocated together instead of one by
// one as event.New and the setters do.
type newEvent struct {
	event       Event
	ctx         event.EventContextV1
	time        types.Timestamp
	contentType string
}

// NewID returns a fresh event id, unique across processes.
func NewID() string { return nuid.Next() }
