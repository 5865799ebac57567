package coordinator_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator"
)

// TestSecureDiscoveryAnswersOnlyForItself checks that in secure mode a
// plugin's identity can no longer answer discovery for another plugin: it
// may not hear the STATS request sent to every service, and what it answers
// to the request naming it, speaking for hello, changes nothing of hello's
// instance. hello itself, which no longer hears that request either, stays
// listed past gone_after: the registry asks it by name.
func TestSecureDiscoveryAnswersOnlyForItself(t *testing.T) {
	greet := "com.example.greet.requested"
	d := startSecureWith(t, func(c *coordinator.Config) {
		c.GoneAfter = coordinator.Duration(2 * time.Second)
	}, coordinator.PluginSpec{
		Name: "hello", Exec: filepath.Join(binDir, "hello"), Replicas: 1,
		Handles: []string{greet}, Answers: []string{greet}, Emits: []string{"com.example.greet.sent"},
	})
	hello := func() (coordinator.Instance, error) {
		for _, p := range d.c.Plugins() {
			if p.Name == "hello" && len(p.Instances) == 1 {
				return p.Instances[0], nil
			}
		}
		return coordinator.Instance{}, fmt.Errorf("hello not listed with one instance: %+v", d.c.Plugins())
	}
	var real coordinator.Instance
	waitFor(t, "hello listed", 60*time.Second, func() (err error) {
		if real, err = hello(); err == nil && real.State != "running" {
			err = fmt.Errorf("hello %s", real.State)
		}
		return err
	})

	mallory := d.mustDial("mallory", d.add("mallory", nil, nil, []string{"com.example.mallory"}))
	// The request to every service is not for plugins' ears.
	if _, err := mallory.nc.SubscribeSync("$SRV.STATS"); err != nil {
		t.Fatal(err)
	}
	mallory.violation(t, "$SRV.STATS")
	// The request naming mallory is, and mallory answers it as hello.
	forged, _ := json.Marshal(micro.Stats{
		ServiceIdentity: micro.ServiceIdentity{Name: "hello", ID: real.ID, Version: "6.6.6",
			Metadata: map[string]string{bus.MetaProtocol: "1"}},
		Type: micro.StatsResponseType, Started: time.Now(),
	})
	var asked atomic.Int64
	if _, err := mallory.nc.Subscribe("$SRV.STATS.mallory", func(m *nats.Msg) {
		asked.Add(1)
		go func() {
			// After hello's own answer to the poll, so that the forged
			// one would be the last word on hello's instance.
			time.Sleep(50 * time.Millisecond)
			_ = m.Respond(forged)
		}()
	}); err != nil {
		t.Fatal(err)
	}
	if err := mallory.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Three polls answered, longer than gone_after.
	// hello's instance is looked at all along.
	waitFor(t, "the registry to ask mallory by name three times", 60*time.Second, func() error {
		now, err := hello()
		if err != nil {
			t.Fatal(err)
		}
		if now.State != "running" || now.Version != real.Version || now.Protocol != real.Protocol || len(now.Answers) == 0 {
			t.Fatalf("hello's instance while mallory answers: %s, version %s, protocol %s, answers %v; want it as it was (running, %s, %s, %v)",
				now.State, now.Version, now.Protocol, now.Answers, real.Version, real.Protocol, real.Answers)
		}
		if n := asked.Load(); n < 3 {
			return fmt.Errorf("asked %d times", n)
		}
		return nil
	})
	for _, p := range d.c.Plugins() {
		if p.Name == "mallory" {
			t.Errorf("mallory listed: %+v", p)
		}
	}
}
