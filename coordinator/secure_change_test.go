package coordinator_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestSecureModeIdentityChangesKeepRequestsInFlight changes identities
// (one added, an agent added, one removed) while a plugin holds a request
// it has not answered yet: its answer still reaches the caller, and only
// the removed identity's connection is closed.
func TestSecureModeIdentityChangesKeepRequestsInFlight(t *testing.T) {
	d := startSecure(t)
	const p = "plugbus"
	slow := d.mustDial("slow", d.add("slow", nil, []string{"x.slow"}, nil))
	caller := d.mustDial("caller", d.add("caller", nil, nil, nil))
	gone := d.mustDial("gone", d.add("gone", []string{"x.gone"}, nil, nil))
	goneClosed := gone.closes()

	received := make(chan *nats.Msg, 1)
	if _, err := slow.nc.QueueSubscribe(p+".invoke.*.x.slow", "slow", func(m *nats.Msg) { received <- m }); err != nil {
		t.Fatal(err)
	}
	if err := slow.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	type result struct {
		m   *nats.Msg
		err error
	}
	answered := make(chan result, 1)
	go func() {
		m, err := caller.nc.Request(p+".invoke.caller.x.slow", []byte("question"), 60*time.Second)
		answered <- result{m, err}
	}()
	var req *nats.Msg
	select {
	case req = <-received:
	case <-time.After(30 * time.Second):
		t.Fatal("the request did not reach the plugin")
	}

	// While the request is in flight, identities change.
	d.add("newcomer", []string{"x.new"}, nil, nil)
	if status, body := d.call("POST", "/v1/agent-identities", testHTTPToken, map[string]any{"name": "host9"}); status != http.StatusCreated {
		t.Fatalf("add agent: %d %s", status, body)
	}
	if status, body := d.call("DELETE", "/v1/identities/gone", testHTTPToken, nil); status != http.StatusNoContent {
		t.Fatalf("rm: %d %s", status, body)
	}
	waitClosed(t, goneClosed, "the removed identity's connection")

	if err := req.Respond([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-answered:
		if r.err != nil || string(r.m.Data) != "answer" {
			t.Fatalf("the caller got %v, %v; want the answer", r.m, r.err)
		}
	case err := <-slow.errs:
		t.Fatalf("the plugin's answer was refused: %v", err)
	case <-time.After(70 * time.Second):
		t.Fatal("no answer")
	}
	for _, cl := range []*client{slow, caller} {
		if !cl.nc.IsConnected() || cl.nc.Stats().Reconnects != 0 {
			t.Errorf("%s's connection was closed or renewed: %v", cl.nc.Opts.Name, cl.nc.LastError())
		}
	}
}
