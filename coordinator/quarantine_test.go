package coordinator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// TestQuarantine floods a coordinator in secure mode with publishes the
// server refuses, from one identity (mallory), while another (caller)
// invokes a supervised plugin (hello): mallory's connection is closed,
// it is refused at connect during its cool-down, and may connect again
// after it; a second flood quarantines it for twice as long. caller and
// hello, which are refused nothing, are never quarantined and keep
// answering throughout. No timing is asserted beyond the cool-downs'
// order of events: the waits are generous.
func TestQuarantine(t *testing.T) {
	greet := "com.example.greet.requested"
	const coolDown = 8 * time.Second // long enough for the checks within it on a busy machine
	d := startSecureWith(t, func(c *coordinator.Config) {
		c.Durable = false
		c.Quarantine = coordinator.QuarantineSettings{Refusals: 50, Window: coordinator.Duration(time.Minute),
			CoolDown: coordinator.Duration(coolDown), MaxCoolDown: coordinator.Duration(time.Minute)}
	}, coordinator.PluginSpec{
		Name: "hello", Exec: filepath.Join(binDir, "hello"), Replicas: 1,
		Handles: []string{greet}, Answers: []string{greet}, Emits: []string{"com.example.greet.sent"},
	})
	d.waitInvoke()
	caller := d.mustDial("caller", d.add("caller", nil, nil, nil))
	mallorySeed := d.add("mallory", nil, nil, []string{greet})
	admin := d.mustDial("admin", d.seed("admin"))
	events, err := admin.nc.SubscribeSync("plugbus.events.coordinator.io.plugbus.plugin.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	invoke := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := bus.Request(ctx, caller.nc, "plugbus", "caller", pluginkit.NewEvent(greet, map[string]string{"name": "Ada"})); err != nil {
			t.Fatalf("invoke hello while mallory is quarantined: %v", err)
		}
	}
	// nextEvent returns the data of the next lifecycle event of type typ
	// about mallory.
	nextEvent := func(typ string) map[string]any {
		t.Helper()
		for {
			m, err := events.NextMsg(30 * time.Second)
			if err != nil {
				t.Fatalf("waiting for %s: %v", typ, err)
			}
			if !strings.HasSuffix(m.Subject, "."+typ) {
				continue
			}
			var data map[string]any
			if err := json.Unmarshal(m.Data, &data); err != nil {
				t.Fatalf("%s: %v: %s", typ, err, m.Data)
			}
			if data["identity"] == "mallory" {
				return data
			}
		}
	}

	flood := func(round int) {
		t.Helper()
		mallory := d.mustDial("mallory", mallorySeed)
		closed := mallory.closes()
		// Refused publishes as hello, back to back, until the coordinator
		// closes the connection (bounded: 100,000 of them).
		for i := 0; i < 100_000 && !mallory.nc.IsClosed(); i++ {
			_ = mallory.nc.Publish("plugbus.events.hello.com.example.greet.sent", []byte("forged"))
			if i%100 == 99 {
				_ = mallory.nc.Flush()
			}
		}
		waitClosed(t, closed, fmt.Sprintf("round %d: mallory's connection, after the flood", round))
		invoke() // others answer meanwhile
		data := nextEvent(bus.TypePluginQuarantined)
		want := coolDown << (round - 1)
		if data["cool_down"] != want.String() || data["strike"] != float64(round) {
			t.Errorf("round %d: quarantined event %v, want cool_down %v and strike %d", round, data, want, round)
		}
		// Refused at connect during the cool-down (well within it: the
		// event comes at once).
		if _, err := d.dial("mallory", mallorySeed); !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("round %d: mallory connecting during its cool-down: %v, want an authorization violation", round, err)
		}
		// Listed where operators look.
		_, body := d.call("GET", "/v1/identities", testHTTPToken, nil)
		var ids []coordinator.IdentityView
		if err := json.Unmarshal(body, &ids); err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			switch {
			case id.Name == "mallory" && (id.Quarantine == nil || id.Refusals < 50):
				t.Errorf("round %d: /v1/identities shows mallory with %d refusals, quarantine %v; want at least 50 and one in force", round, id.Refusals, id.Quarantine)
			case id.Name != "mallory" && (id.Quarantine != nil || id.Refusals != 0):
				t.Errorf("round %d: /v1/identities shows %s with %d refusals (the last of %q), quarantine %v; want none", round, id.Name, id.Refusals, id.LastRefused, id.Quarantine)
			}
		}
		_, body = d.call("GET", "/metrics", "", nil)
		if got := metric(string(body), `plugbus_identity_quarantines_total{identity="mallory"}`); got != int64(round) {
			t.Errorf("round %d: /metrics counts %d quarantines of mallory", round, got)
		}
		if out := d.cli("plugins"); !strings.Contains(out, "quarantined: mallory until ") || strings.Contains(out, "quarantined: caller") {
			t.Errorf("round %d: coordinator plugins does not show mallory's quarantine alone:\n%s", round, out)
		}
		// The quarantine ends: mallory may connect again.
		nextEvent(bus.TypePluginReleased)
		waitFor(t, "mallory to connect after its cool-down", 30*time.Second, func() error {
			cl, err := d.dial("mallory", mallorySeed)
			if err != nil {
				return err
			}
			cl.nc.Close()
			return nil
		})
		invoke()
	}
	flood(1)
	flood(2) // a repeat: twice the cool-down

	_, body := d.call("GET", "/metrics", "", nil)
	metrics := string(body)
	for _, name := range []string{"caller", "hello"} {
		if got := metric(metrics, fmt.Sprintf(`plugbus_identity_quarantines_total{identity=%q}`, name)); got != 0 {
			t.Errorf("%s, refused nothing, was quarantined %d times", name, got)
		}
	}
	if got := metric(metrics, `plugbus_identity_quarantined{identity="mallory"}`); got != 0 {
		t.Errorf("plugbus_identity_quarantined{identity=\"mallory\"} %d after its cool-down, want 0", got)
	}
	// Nothing else was cut off: hello's first process still answers.
	_, body = d.call("GET", "/v1/supervised", testHTTPToken, nil)
	var sup []struct {
		Plugin   string
		Restarts int
	}
	if err := json.Unmarshal(body, &sup); err != nil || len(sup) != 1 || sup[0].Restarts != 0 {
		t.Errorf("supervised: %s (%v); want hello never restarted", body, err)
	}
	if caller.nc.IsClosed() {
		t.Error("caller's connection was closed")
	}
}

// TestQuarantineOff: with quarantine off, an identity the server keeps
// refusing stays connected (only the slow consumer rule can close it).
func TestQuarantineOff(t *testing.T) {
	d := startSecureWith(t, func(c *coordinator.Config) {
		c.Durable = false
		c.Quarantine = coordinator.QuarantineSettings{Off: true}
	})
	mallory := d.mustDial("mallory", d.add("mallory", nil, nil, nil))
	for i := range 500 {
		_ = mallory.nc.Publish("plugbus.events.hello.x", []byte("forged"))
		if i%50 == 49 {
			// Read the refusals as they come, so that the server never
			// takes mallory for a slow consumer.
			if err := mallory.nc.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "mallory's refusals in /metrics", 30*time.Second, func() error {
		_, body := d.call("GET", "/metrics", "", nil)
		if got := metric(string(body), `plugbus_identity_refusals_total{identity="mallory"}`); got < 500 {
			return fmt.Errorf("%d refusals counted of 500", got)
		}
		return nil
	})
	if mallory.nc.IsClosed() {
		t.Fatal("mallory's connection was closed with quarantine off")
	}
	if err := mallory.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if status, _ := d.call("GET", "/v1/identities", testHTTPToken, nil); status != http.StatusOK {
		t.Fatalf("GET /v1/identities: %d", status)
	}
}
