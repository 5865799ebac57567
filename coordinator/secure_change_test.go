package coordinator_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/plugbus/plugbus/coordinator"
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

// TestSecureModeReservedNameStoredBefore starts a coordinator on a store
// holding an identity called agent-host1, made before names beginning with
// agent- were reserved for the agents' producers: it does not connect, so
// it cannot announce crash loops as agent host1.
func TestSecureModeReservedNameStoredBefore(t *testing.T) {
	dir := t.TempDir()
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	ids, _ := json.Marshal([]map[string]string{{"name": "agent-host1", "public_key": pub}})
	if err := os.MkdirAll(filepath.Join(dir, "identities"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "identities", "identities.json"), ids, 0o600); err != nil {
		t.Fatal(err)
	}
	d := startSecureWith(t, func(c *coordinator.Config) { c.DataDir = dir })
	file := filepath.Join(t.TempDir(), "agent-host1.nk")
	if err := os.WriteFile(file, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.dial("agent-host1", file); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("the identity called agent-host1 connected: %v", err)
	}
}
