package pluginkit

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
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
	e := event.New()
	e.SetID(NewID())
	e.SetType(typ)
	e.SetTime(time.Now())
	switch d := data.(type) {
	case nil:
	case []byte:
		e.DataEncoded = d
		e.SetDataContentType("application/octet-stream")
	default:
		b, err := json.Marshal(d)
		if err != nil {
			panic(fmt.Sprintf("pluginkit: NewEvent(%q): data is not JSON-encodable: %v", typ, err))
		}
		e.DataEncoded = b
		e.SetDataContentType(event.ApplicationJSON)
	}
	return &e
}

// NewID returns a fresh event id, unique across processes.
func NewID() string { return nuid.Next() }
