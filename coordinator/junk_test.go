package coordinator_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// TestJunkQuarantine: in secure mode an identity that publishes junk on a
// type it may emit (the server cannot refuse it) is quarantined once the
// plugin that reads it (hello) reports it and the coordinator, watching
// that producer, reads junk from it itself; an identity that sent a few
// invalid messages once, reported just the same, is not, since the
// coordinator finds nothing invalid while it watches (so a plugin naming
// another in its reports, which any plugin could, quarantines no one);
// and hello keeps answering throughout.
func TestJunkQuarantine(t *testing.T) {
	greet := "com.example.greet.requested"
	d := startSecureWith(t, func(c *coordinator.Config) {
		c.Durable = false
		c.Quarantine = coordinator.QuarantineSettings{Refusals: 50, Window: coordinator.Duration(time.Minute),
			CoolDown: coordinator.Duration(time.Minute), MaxCoolDown: coordinator.Duration(time.Minute)}
	}, coordinator.PluginSpec{
		Name: "hello", Exec: filepath.Join(binDir, "hello"), Replicas: 1,
		Handles: []string{greet}, Answers: []string{greet}, Emits: []string{"com.example.greet.sent"},
	})
	d.waitInvoke()
	caller := d.mustDial("caller", d.add("caller", nil, nil, nil))
	sloppy := d.mustDial("sloppy", d.add("sloppy", nil, nil, []string{greet}))
	junker := d.mustDial("junker", d.add("junker", nil, nil, []string{greet}))
	subject := func(producer string) string { return "plugbus.events." + producer + "." + greet }

	// sloppy: a few invalid messages, once.
	for range 5 {
		if err := sloppy.nc.Publish(subject("sloppy"), []byte("not an event")); err != nil {
			t.Fatal(err)
		}
	}
	if err := sloppy.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// junker: junk every millisecond until its connection is closed.
	closed := junker.closes()
	go func() {
		for i := 0; !junker.nc.IsClosed() && i < 120_000; i++ {
			_ = junker.nc.Publish(subject("junker"), []byte(fmt.Sprintf("junk %d", i)))
			time.Sleep(time.Millisecond)
		}
	}()
	select {
	case <-closed:
	case <-time.After(60 * time.Second):
		t.Fatal("junker, sending junk, was not cut off within 60s")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := bus.Request(ctx, caller.nc, "plugbus", "caller", pluginkit.NewEvent(greet, map[string]string{"name": "Ada"})); err != nil {
		t.Fatalf("invoke hello after the junk: %v", err)
	}
	// The coordinator watches sloppy too (hello reported it) and finds
	// nothing: give the watch its time, then look.
	time.Sleep(3 * time.Second)
	_, body := d.call("GET", "/metrics", "", nil)
	metrics := string(body)
	if got := metric(metrics, `plugbus_identity_quarantines_total{identity="junker"}`); got != 1 {
		t.Errorf("junker quarantined %d times, want 1", got)
	}
	for _, name := range []string{"sloppy", "caller", "hello"} {
		if got := metric(metrics, fmt.Sprintf(`plugbus_identity_quarantines_total{identity=%q}`, name)); got != 0 {
			t.Errorf("%s quarantined %d times, want never", name, got)
		}
	}
	if got := metric(metrics, `plugbus_plugin_invalid_messages{plugin="hello"}`); got < 5 {
		t.Errorf("hello counted %d invalid messages, want at least sloppy's 5", got)
	}
	if sloppy.nc.IsClosed() {
		t.Error("sloppy's connection was closed")
	}
}
