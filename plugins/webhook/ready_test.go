package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// waitReady waits until at least instances instances of the plugin named
// name answer NATS micro INFO listing endpoints endpoints, that is until
// they have subscribed to every type they handle. kittest's own readiness
// check (a micro PING) can pass before the endpoints exist, since micro
// answers PING as soon as the service is added; an event published then is
// lost.
func waitReady(t *testing.T, nc *nats.Conn, name string, endpoints, instances int) {
	t.Helper()
	subject, err := micro.ControlSubject(micro.InfoVerb, name, "")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		inbox := nats.NewInbox()
		sub, err := nc.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.PublishRequest(subject, inbox, nil); err != nil {
			t.Fatal(err)
		}
		ready := map[string]bool{}
		for {
			msg, err := sub.NextMsg(100 * time.Millisecond)
			if err != nil {
				break
			}
			var info micro.Info
			if json.Unmarshal(msg.Data, &info) == nil && len(info.Endpoints) == endpoints {
				ready[info.ID] = true
			}
		}
		_ = sub.Unsubscribe()
		if len(ready) >= instances {
			return
		}
	}
	t.Fatalf("%d instances of %s with %d endpoints did not answer INFO within 10s", instances, name, endpoints)
}
