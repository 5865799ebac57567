// Package greet is the work every peer of the benchmarks does for a
// request, so that they differ only in how the request gets there: decode
// {"name": ...} and answer {"text": "hello, " + name}, as plugins/hello does.
package greet

import (
	"encoding/json"
	"strings"
)

// Request is what a caller sends.
type Request struct {
	Name string `json:"name"`
}

// Reply is what the handler answers.
type Reply struct {
	Text string `json:"text"`
}

// Greet answers one request.
func Greet(data []byte) ([]byte, error) {
	var req Request
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, err
	}
	return json.Marshal(Reply{Text: "hello, " + req.Name})
}

// Ack is what a one-way handler publishes after handling an event: small,
// so that the results do not weigh on the figures for large events.
type Ack struct {
	Len int `json:"len"`
}

// Handle is the one-way handler's work: decode the request, and acknowledge
// it with the length of the name.
func Handle(data []byte) ([]byte, error) {
	var req Request
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, err
	}
	return json.Marshal(Ack{Len: len(req.Name)})
}

// Payload returns a request of exactly size bytes (at least 12).
func Payload(size int) []byte {
	const frame = len(`{"name":""}`)
	b, err := json.Marshal(Request{Name: strings.Repeat("x", max(0, size-frame))})
	if err != nil {
		panic(err)
	}
	return b
}

// Event types and subjects the one-way benchmarks use. The trigger subject
// is a Plugbus event subject, so a plugin-kit plugin handles it as is.
const (
	TriggerType    = "com.example.bench.requested"
	AckType        = "com.example.bench.handled"
	GreetType      = "com.example.greet.requested" // what plugins/hello handles
	Prefix         = "plugbus"
	Producer       = "benchpub"
	TriggerSubject = Prefix + ".events." + Producer + "." + TriggerType
	TriggerPattern = Prefix + ".events.*." + TriggerType
)

// AckSubject is where plugin handles its events' acknowledgements.
func AckSubject(plugin string) string { return Prefix + ".events." + plugin + "." + AckType }
