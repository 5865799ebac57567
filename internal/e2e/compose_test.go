package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// everything is what both coordinators must list once the deployment is
// up: every plugin of the compose file, the ledger twice, and hello twice
// once the agent runs a second instance on order.
var (
	atStart    = map[string]int{"ledger": 2, "hello": 1, "archive": 1, "thumbnail": 1, "webhook": 1}
	everything = map[string]int{"ledger": 2, "hello": 2, "archive": 1, "thumbnail": 1, "webhook": 1}
)

func TestCompose(t *testing.T) {
	if os.Getenv("PLUGBUS_E2E") != "1" {
		t.Skip("the compose end-to-end test runs with PLUGBUS_E2E=1 (make e2e), on a Docker engine")
	}
	start := time.Now()
	d := newDeployment(t)
	d.run("up", "-d", "--build", "--scale", "ledger=2")
	d.waitRegistry("both coordinators list every plugin", 4*time.Minute, atStart)
	t.Logf("deployment up in %v", time.Since(start).Round(time.Second))

	// A plugin managed at runtime: a second hello, on the agent, ordered
	// through coordinator1's HTTP API.
	waitFor(t, "the agent runs hello on order", 2*time.Minute, func() error {
		status, body, err := d.call(0, "POST", "/v1/run", `{"name":"hello","exec":"/bin/hello"}`)
		if err != nil || status != http.StatusAccepted {
			return fmt.Errorf("POST /v1/run: %d %s %v", status, body, err)
		}
		return nil
	})
	d.waitRegistry("both coordinators list the agent's hello", 2*time.Minute, everything)

	t.Run("faults", func(t *testing.T) { faults(t, d) })
	if t.Failed() {
		return
	}
	t.Run("partition", func(t *testing.T) { partition(t, d) })
	if t.Failed() {
		return
	}
	t.Run("coordinators", func(t *testing.T) { coordinators(t, d) })
	t.Logf("end to end, down excluded: %v", time.Since(start).Round(time.Second))
}

// faults sends durable events through both coordinators while a NATS node
// is killed, a coordinator stopped and a ledger container stopped, then
// starts them again: every acknowledged event is handled, once.
func faults(t *testing.T, d *deployment) {
	d.t = t
	ctx := context.Background()
	p1, stop1 := d.publish(ctx, 0, "f")
	p2, stop2 := d.publish(ctx, 1, "f")
	p1.waitAcks(t, 30, time.Minute)
	p2.waitAcks(t, 30, time.Minute)

	d.run("kill", "-s", "SIGKILL", "nats1")
	p1.waitAcks(t, 30, 2*time.Minute) // coordinator1 moves to nats2
	p2.waitAcks(t, 30, 2*time.Minute)

	d.run("stop", "-t", "20", "coordinator1")
	p2.waitAcks(t, 30, time.Minute)

	ledgers := d.containers("ledger")
	d.docker("stop", "-t", "20", ledgers[0])
	d.run("stop", "-t", "20", "agent")
	p2.waitAcks(t, 30, time.Minute)

	d.run("start", "nats1")
	d.run("start", "coordinator1")
	d.docker("start", ledgers[0])
	d.run("start", "agent")
	p1.waitAcks(t, 30, 3*time.Minute)
	p2.waitAcks(t, 30, time.Minute)
	stop1()
	stop2()
	for _, p := range []*publisher{p1, p2} {
		a, f := p.counts()
		t.Logf("coordinator%d: %d acknowledged, %d failed; first errors: %s", p.i+1, a, f, strings.Join(first(p.errs, 3), " | "))
	}
	d.checkLedger(2*time.Minute, p1, p2)
	d.waitRegistry("the registry recovered on both coordinators", 2*time.Minute, everything)
}

// partition cuts nats3, the node coordinator2 uses, off the other two
// while durable events flow through both coordinators, then heals it.
func partition(t *testing.T, d *deployment) {
	d.t = t
	ctx := context.Background()
	routes := d.network("routes")
	nats3 := d.containers("nats3")[0]
	p1, stop1 := d.publish(ctx, 0, "p")
	p2, stop2 := d.publish(ctx, 1, "p")
	p1.waitAcks(t, 30, time.Minute)
	p2.waitAcks(t, 30, time.Minute)

	d.docker("network", "disconnect", routes, nats3)
	cut := time.Now()
	// The majority side keeps taking events.
	p1.waitAcks(t, 50, 2*time.Minute)
	// The minority side fails, with an error that says so, rather than
	// acknowledging events it cannot keep.
	a2, f2 := p2.counts()
	waitFor(t, "publishes through coordinator2 (minority side) failing", 2*time.Minute, func() error {
		if _, f := p2.counts(); f < f2+3 {
			return fmt.Errorf("%d failed since the cut", f-f2)
		}
		return nil
	})
	minorityStart, _ := p2.counts()
	p1.waitAcks(t, 50, 2*time.Minute)
	minorityEnd, _ := p2.counts()
	t.Logf("partition: coordinator2 acknowledged %d events between the cut and its first failures (%v), then %d while cut off",
		minorityStart-a2, time.Since(cut).Round(time.Second), minorityEnd-minorityStart)

	d.docker("network", "connect", "--alias", "nats3-route", routes, nats3)
	healed := time.Now()
	p2.waitAcks(t, 30, 3*time.Minute)
	t.Logf("healed: coordinator2 acknowledging again after %v", time.Since(healed).Round(time.Second))
	p1.waitAcks(t, 10, time.Minute)
	stop1()
	stop2()

	p2.mu.Lock()
	errs := p2.errs
	p2.mu.Unlock()
	clear := 0
	for _, e := range errs {
		if strings.Contains(e, "status 503") && strings.Contains(e, "publishing to NATS failed") {
			clear++
		}
	}
	if clear == 0 {
		t.Errorf("no minority-side publish failed with a 503 saying the publish failed; errors: %s", strings.Join(first(errs, 5), " | "))
	}
	t.Logf("minority-side errors, first: %s", strings.Join(first(errs, 2), " | "))
	d.checkLedger(2*time.Minute, p1, p2)
	d.waitRegistry("the registry converged on both coordinators", 2*time.Minute, everything)
}

// coordinators stops coordinator1: every plugin keeps running and is
// reached through coordinator2; then coordinator2 too, and both start again: the
// same instances are listed, the one started on order among them.
func coordinators(t *testing.T, d *deployment) {
	d.t = t
	before, err := d.instances(1)
	if err != nil {
		t.Fatal(err)
	}
	d.run("stop", "-t", "20", "coordinator1")
	// The plugins are reachable through coordinator2: an event sent there
	// has its effect in the ledger.
	if err := d.post(context.Background(), 1, "c-c2-0"); err != nil {
		t.Fatalf("an event through coordinator2 with coordinator1 stopped: %v", err)
	}
	waitFor(t, "the ledger handled the event sent through coordinator2", time.Minute, func() error {
		if d.effects()["c-c2-0"] != 1 {
			return fmt.Errorf("not handled once yet")
		}
		return nil
	})
	waitFor(t, "coordinator2 lists the same instances", time.Minute, func() error { return sameInstances(d, 1, before) })
	d.run("stop", "-t", "20", "coordinator2")
	d.run("start", "coordinator1", "coordinator2")
	for i := range d.http {
		waitFor(t, fmt.Sprintf("coordinator%d lists the instances that were running before", i+1), 2*time.Minute, func() error { return sameInstances(d, i, before) })
	}
}

// sameInstances checks that coordinator i lists exactly the instances of
// want, running.
func sameInstances(d *deployment, i int, want map[string][]string) error {
	got, err := d.instances(i)
	if err != nil {
		return err
	}
	for name, ids := range want {
		if strings.Join(got[name], ",") != strings.Join(ids, ",") {
			return fmt.Errorf("%s: instances %v, want %v (the same processes)", name, got[name], ids)
		}
	}
	return nil
}

// network returns the name Docker gives a network of the project.
func (d *deployment) network(name string) string {
	d.t.Helper()
	// Both compose v1 and v2 name it <project>_<name>.
	for i, a := range d.compose {
		if a == "-p" {
			return d.compose[i+1] + "_" + name
		}
	}
	d.t.Fatal("no project name")
	return ""
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }
