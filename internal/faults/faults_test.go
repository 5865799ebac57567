package faults_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/bus"
)

// The fault tests of durable delivery. Each runs real processes, keeps a
// ledger of the events whose publish was acknowledged, and asserts that
// none is missing and, with effectively-once on, that none had its effect
// twice. They run in parallel with each other: each has its own servers,
// ports and directories.

// durable are the ledger plugin's settings in most tests: a short ack wait,
// so that redeliveries come quickly, fast retries, and effectively-once.
var durable = []string{"LEDGER_ACK_WAIT=2s", "LEDGER_MAX_DELIVER=5", "LEDGER_BACKOFF=100ms", "PLUGBUS_EFFECTIVELY_ONCE=1"}

func withEnv(base []string, env ...string) []string {
	return append(slices.Clone(base), env...)
}

// dedupKey is the key of an event's effectively-once record.
func dedupKey(plugin, id string) string {
	return plugin + "." + bus.MsgID(producer, bus.Source(producer), id)
}

// recorded reports whether the event's effectively-once record says it
// was handled: an empty value (while an instance handles it, the record
// holds that instance's claim).
func (c *client) recorded(plugin, id string) bool {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := c.js.KeyValue(ctx, bus.DefaultDedupBucket)
	if err != nil {
		c.t.Fatal(err)
	}
	entry, err := kv.Get(ctx, dedupKey(plugin, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false
	}
	if err != nil {
		c.t.Fatal(err)
	}
	return len(entry.Value()) == 0
}

// waitSettled waits until the plugin's consumer has nothing pending and
// nothing unacknowledged.
func (c *client) waitSettled(plugin string, within time.Duration) {
	c.t.Helper()
	waitFor(c.t, "consumer "+plugin+" to settle", within, func() error {
		info, err := c.consumer(plugin)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("%d pending, %d unacknowledged", info.NumPending, info.NumAckPending)
		}
		return nil
	})
}

func publishSeveral(c *client, prefix string, n int) []string {
	c.t.Helper()
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, c.mustPublish(fmt.Sprintf("%s-%d", prefix, i), nil))
	}
	return ids
}

// 1. kill -9 a plugin while its handler runs, restart it: the event is
// redelivered and has its effect once.
func TestKillPluginDuringHandler(t *testing.T) {
	t.Parallel()
	s := startNATS(t)
	c := connect(t, s.url())
	l := newLedger(t)
	plugin := ledgerPlugin(t, "ledger", l, s.url(), durable...)
	c.waitConsumer("ledger", 20*time.Second)

	acked := publishSeveral(c, "before", 10)
	l.waitHandled(t, acked, 10*time.Second)
	// Recorded and acknowledged too: none is between its effect and its
	// record, the window effectively-once does not cover, when the plugin
	// is killed.
	c.waitSettled("ledger", 10*time.Second)
	acked = append(acked, c.mustPublish("slow", map[string]string{"sleep": "3s"}))
	waitFor(t, "the handler of the slow event to start", 10*time.Second, func() error {
		if l.calls()["slow"] == 0 {
			return errors.New("not called yet")
		}
		return nil
	})
	plugin.kill()
	first := plugin.pid()
	acked = append(acked, publishSeveral(c, "while-down", 10)...)
	if l.effects()["slow"] != 0 {
		t.Fatal("the killed handler had its effect")
	}
	plugin.restart()
	l.waitHandled(t, acked, 30*time.Second)
	c.waitSettled("ledger", 10*time.Second)

	if pids := l.callers("slow"); len(pids) != 2 || pids[0] != first || pids[1] != plugin.pid() {
		t.Errorf("the slow event's handler ran in processes %v, want once in the killed one (%d) and once in the restarted one (%d)", pids, first, plugin.pid())
	}
	if n := l.effects()["slow"]; n != 1 {
		t.Errorf("the slow event had its effect %d times, want 1", n)
	}
	l.check(t, acked, true)
}

// 2. A crash after the handler's effect, before the acknowledgement, in the
// window effectively-once covers: the record is stored, the ack has not
// reached the server. The test holds the plugin's acknowledgements back in
// a proxy and kills the plugin once its ack is held: the restarted plugin
// gets the event again and acknowledges it without a second effect.
func TestCrashAfterRecordBeforeAck(t *testing.T) {
	t.Parallel()
	s := startNATS(t)
	c := connect(t, s.url())
	l := newLedger(t)
	holder := newAckHolder(t, s.addr)
	crashing := ledgerPlugin(t, "ledger", l, holder.url(), durable...)
	c.waitConsumer("ledger", 20*time.Second)

	acked := []string{c.mustPublish("e", nil)}
	holder.waitHeld(10 * time.Second)
	if !c.recorded("ledger", "e") {
		t.Fatal("the plugin acknowledged before storing the effectively-once record")
	}
	crashing.kill() // the crash: effect done, record stored, ack not through
	if n := l.effects()["e"]; n != 1 {
		t.Fatalf("effects before the restart: %d, want 1", n)
	}

	restarted := ledgerPlugin(t, "ledger-restarted", l, s.url(), durable...)
	waitFor(t, "the redelivery to be acknowledged as already handled", 15*time.Second, func() error {
		if !strings.Contains(restarted.out.String(), "already handled; acknowledging the redelivery") {
			return errors.New("not yet")
		}
		return nil
	})
	c.waitSettled("ledger", 10*time.Second)
	acked = append(acked, publishSeveral(c, "after", 10)...)
	l.waitHandled(t, acked, 10*time.Second)
	c.waitSettled("ledger", 10*time.Second)
	if n := l.calls()["e"]; n != 1 {
		t.Errorf("the handler ran %d times for the event, want 1", n)
	}
	l.check(t, acked, true)
}

// 2b. The window effectively-once does not cover: the process dies after
// the handler's effect and before plugin-kit stores the record (here the
// handler exits right after its effect). The redelivery finds no record and
// runs the handler again: at least once, not exactly once. This test pins
// that down; if plugin-kit ever covers the window, change it.
func TestCrashAfterEffectBeforeRecordRepeatsTheEffect(t *testing.T) {
	t.Parallel()
	s := startNATS(t)
	c := connect(t, s.url())
	l := newLedger(t)
	plugin := ledgerPlugin(t, "ledger", l, s.url(), durable...)
	c.waitConsumer("ledger", 20*time.Second)

	acked := []string{c.mustPublish("e", map[string]string{"crash": "after-effect"})}
	select {
	case <-plugin.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the plugin did not crash on the event")
	}
	if c.recorded("ledger", "e") {
		t.Fatal("the record was stored although the handler never returned")
	}
	plugin.env = append(plugin.env, "LEDGER_CRASH=off")
	plugin.restart()
	l.waitHandled(t, acked, 15*time.Second)
	c.waitSettled("ledger", 15*time.Second)
	l.check(t, acked, false)
	if calls, effects := l.calls()["e"], l.effects()["e"]; calls != 2 || effects != 2 {
		t.Errorf("handler calls %d, effects %d; want 2 and 2: a crash between the effect and the record repeats the effect (if plugin-kit now prevents it, update this test and the docs)", calls, effects)
	}
}

// 3. An instance stopped (SIGSTOP) past the ack wait after it recorded the
// event and before its ack got through: the other instance takes over and
// acknowledges the redelivery without a second effect; after SIGCONT the
// stopped one's late acknowledgement changes nothing.
func TestStoppedInstanceLateAck(t *testing.T) {
	t.Parallel()
	s := startNATS(t)
	c := connect(t, s.url())
	l := newLedger(t)
	holder := newAckHolder(t, s.addr)
	late := ledgerPlugin(t, "ledger-late", l, holder.url(), durable...)
	c.waitConsumer("ledger", 20*time.Second)

	acked := []string{c.mustPublish("e", nil)}
	holder.waitHeld(10 * time.Second)
	late.freeze()
	stoppedAt := time.Now()
	if !c.recorded("ledger", "e") {
		t.Fatal("no effectively-once record before the ack")
	}
	other := ledgerPlugin(t, "ledger-other", l, s.url(), durable...)
	waitFor(t, "the other instance to take the event over", 15*time.Second, func() error {
		if !strings.Contains(other.out.String(), "already handled; acknowledging the redelivery") {
			return errors.New("not yet")
		}
		return nil
	})
	t.Logf("the other instance took over %v after the SIGSTOP", time.Since(stoppedAt).Round(time.Millisecond))
	acked = append(acked, publishSeveral(c, "while-stopped", 10)...)
	l.waitHandled(t, acked, 10*time.Second)

	late.signal(syscall.SIGCONT)
	holder.release() // the late acknowledgement reaches the server now
	acked = append(acked, publishSeveral(c, "after", 20)...)
	l.waitHandled(t, acked, 10*time.Second)
	time.Sleep(3 * time.Second) // longer than the ack wait: any redelivery would show
	c.waitSettled("ledger", 10*time.Second)
	if late.exited() || other.exited() {
		t.Error("an instance exited")
	}
	if n := l.calls()["e"]; n != 1 {
		t.Errorf("the handler ran %d times for the event, want 1", n)
	}
	l.check(t, acked, true)
}

// 3b. An instance stopped in the middle of its handler for longer than the
// ack wait and the lease of its claim: the other instance, finding the
// claim unrenewed for a lease, takes the event over and has the effect
// while the first is stopped, so nothing waits for the stopped one. When
// the stopped one resumes, its handler may complete and have its effect
// too: it learns that it lost its claim at its next renewal and then
// cancels the handler's context, and the ledger's handler, woken by its
// timer and the cancellation at once, may pick either. Effectively-once
// cannot take back an effect a running handler makes; this test pins that
// down. The other events, published once the stopped instance's threads
// have all stopped, handed to its pull request and redelivered to the
// running one, have their effect once: when the stopped one resumes and
// gets them, it finds them handled, or claimed and then handled. (Before
// claims it could run one whose handler had had its effect in the other
// instance and whose record was not stored yet. And on a busy machine a
// process goes on running for a while after SIGSTOP: events it started
// then are frozen mid-handler, the case of the event above.)
func TestStoppedInstanceMidHandler(t *testing.T) {
	t.Parallel()
	s := startNATS(t)
	c := connect(t, s.url())
	l := newLedger(t)
	a := ledgerPlugin(t, "ledger-a", l, s.url(), durable...)
	b := ledgerPlugin(t, "ledger-b", l, s.url(), durable...)
	c.waitConsumer("ledger", 20*time.Second)

	acked := []string{c.mustPublish("e", map[string]string{"sleep": "1s"})}
	var pids []int
	waitFor(t, "a handler to start", 10*time.Second, func() error {
		if pids = l.callers("e"); len(pids) == 0 {
			return errors.New("not yet")
		}
		return nil
	})
	stopped, running := a, b
	if pids[0] == b.pid() {
		stopped, running = b, a
	}
	stopped.freeze()
	stoppedAt := time.Now()
	acked = append(acked, publishSeveral(c, "while-stopped", 10)...)
	l.waitHandled(t, acked[:1], 30*time.Second)
	t.Logf("the running instance had the effect %v after the other was stopped", time.Since(stoppedAt).Round(time.Millisecond))
	// Events the server handed to the stopped instance's pull request come
	// back after the ack wait, possibly to the stopped instance again.
	l.waitHandled(t, acked, 30*time.Second)
	t.Logf("all events published while it was stopped were handled %v after the stop", time.Since(stoppedAt).Round(time.Millisecond))
	if callers := l.callers("e"); len(callers) != 2 || callers[1] != running.pid() {
		t.Fatalf("handlers for the event ran in %v, want the stopped %d then the running %d", callers, stopped.pid(), running.pid())
	}

	stopped.signal(syscall.SIGCONT)
	acked = append(acked, publishSeveral(c, "after", 10)...)
	l.waitHandled(t, acked, 10*time.Second)
	time.Sleep(3 * time.Second)
	c.waitSettled("ledger", 10*time.Second)
	effects := l.effects()
	delete(effects, "e")
	if d := duplicates(effects); len(d) > 0 {
		t.Errorf("duplicate effects of other events: %v", d)
		for id := range d {
			t.Logf("%s: handlers ran in processes %v", id, l.callers(id))
		}
	}
	l.check(t, acked, false)
	calls, n := len(l.callers("e")), l.effects()["e"]
	t.Logf("the event's handler ran %d times with %d effects", calls, n)
	if calls != 2 || n < 1 || n > 2 {
		t.Errorf("the event's handler ran %d times with %d effects; want 2 runs and 1 or 2 effects: the resumed handler may complete its effect (if plugin-kit now prevents it, update this test and the docs)", calls, n)
	}
}

// 4. kill -9 the NATS server during a stream of publishes, twice, and start
// it again on the same port and store directory: every publish that was
// acknowledged has its effect once.
func TestKillNATSServer(t *testing.T) {
	t.Parallel()
	killNATSServer(t, 1, 2)
}

// 4b. The same with several instances of the plugin, one kill: the
// events whose handlers ran when the server died come back, often to
// another instance, while the first still runs them or waits to store
// their records.
func TestKillNATSServerInstances(t *testing.T) {
	t.Parallel()
	for _, n := range instanceCounts {
		t.Run(fmt.Sprintf("%d-instances", n), func(t *testing.T) {
			t.Parallel()
			killNATSServer(t, n, 1)
		})
	}
}

// killNATSServer runs instances of the ledger plugin, publishes a stream of
// events and kills the NATS server rounds times during it.
func killNATSServer(t *testing.T, instances, rounds int) {
	s := startNATS(t)
	c := connect(t, s.url())
	l := newLedger(t)
	// Handlers take a little time, so that some are running when the
	// server dies: their effects happen while it is down, and their
	// records can only be stored once it is back.
	delay := "LEDGER_DELAY=5ms"
	if instances > 1 {
		delay = "LEDGER_DELAY=20ms" // more running when the server dies
	}
	for i := 0; i < instances; i++ {
		ledgerPlugin(t, fmt.Sprintf("ledger-%d", i), l, s.url(), withEnv(durable, delay)...)
	}
	c.waitConsumer("ledger", 20*time.Second)

	var mu sync.Mutex
	var acked []string
	var failed atomic.Int64
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			id := fmt.Sprintf("n-%d", n)
			if err := c.publish(id, nil, 20*time.Second); err != nil {
				failed.Add(1) // not acknowledged: it may or may not be stored
				continue
			}
			mu.Lock()
			acked = append(acked, id)
			mu.Unlock()
		}
	}()
	for round := 1; round <= rounds; round++ {
		base := count()
		waitFor(t, "200 more acknowledged publishes", 20*time.Second, func() error {
			if count() < base+200 {
				return errors.New("not yet")
			}
			return nil
		})
		s.kill()
		t.Logf("round %d: nats-server killed after %d acknowledged publishes, %d handled", round, count(), len(l.effects()))
		time.Sleep(time.Second)
		s.restart()
		s.waitReady()
		t.Logf("round %d: nats-server serving again", round)
	}
	base := count()
	waitFor(t, "200 more acknowledged publishes after the restart", 20*time.Second, func() error {
		if count() < base+200 {
			return errors.New("not yet")
		}
		return nil
	})
	close(stop)
	<-done
	t.Logf("%d publishes acknowledged, %d given up", len(acked), failed.Load())
	l.waitHandled(t, acked, 30*time.Second)
	c.waitSettled("ledger", 20*time.Second)
	l.check(t, acked, true)
}

// 5. kill -9 the coordinator with its embedded NATS server (durable: true)
// while acknowledged events wait in the stream, and restart it with the
// same data directory and ports: the events are still there and consumed,
// and the plugin reconnects and announces itself again within 10 s.
func TestKillEmbeddedCoordinator(t *testing.T) {
	t.Parallel()
	co := startCoordinator(t, "durable: true\n")
	l := newLedger(t)
	// Slow, one at a time: a backlog waits in the stream when the
	// coordinator dies.
	ledgerPlugin(t, "ledger", l, co.natsURL(), withEnv(durable, "LEDGER_DELAY=100ms", "LEDGER_CONCURRENCY=1")...)
	co.waitRunning("ledger", 1, 20*time.Second)

	var acked []string
	post := func(prefix string, n int) {
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("%s-%d", prefix, i)
			if ok, err := co.post(id, `{}`); ok {
				acked = append(acked, id)
			} else {
				t.Fatal(err)
			}
		}
	}
	post("before", 60)
	time.Sleep(300 * time.Millisecond) // a handler is likely running when the bus dies
	co.kill()
	handled := len(l.effects())
	t.Logf("coordinator killed with %d of %d acknowledged events handled", handled, len(acked))
	if handled > len(acked)-20 {
		t.Errorf("only %d events waited in the stream when the coordinator died; the test wants a backlog", len(acked)-handled)
	}
	co.restart()
	co.waitReady()
	restarted := time.Now()
	co.waitRunning("ledger", 1, 10*time.Second)
	t.Logf("the plugin was listed running again %v after the coordinator was ready", time.Since(restarted).Round(time.Millisecond))
	post("after", 20)
	l.waitHandled(t, acked, 30*time.Second)
	l.check(t, acked, true)
}

// 6. With NATS outside the coordinator, plugins keep exchanging events
// while the coordinator is down for 30 s: a publisher process publishes
// every 50 ms and the ledger plugin handles every event, with no gap. The
// restarted coordinator finds the plugin again.
func TestCoordinatorDownExternalNATS(t *testing.T) {
	t.Parallel()
	s := startNATS(t)
	co := startCoordinator(t, "durable: true\n", "--nats-url", s.url())
	l := newLedger(t)
	ledgerPlugin(t, "ledger", l, s.url(), durable...)
	co.waitRunning("ledger", 1, 20*time.Second)
	pubDir := t.TempDir()
	publisher := start(t, "publisher", bin(t, "ledger"), nil, []string{
		"LEDGER_MODE=publish", "LEDGER_NAME=ticker", "LEDGER_DIR=" + pubDir, "PLUGBUS_URL=" + s.url(),
		"LEDGER_PUBLISH_TYPE=" + ledgerType, "LEDGER_PUBLISH_EVERY=50ms",
	})
	waitFor(t, "events to flow", 15*time.Second, func() error {
		if n := len(l.effects()); n < 10 {
			return fmt.Errorf("%d handled", n)
		}
		return nil
	})

	co.kill()
	const down = 30 * time.Second
	before := len(l.effects())
	// The longest time between two looks at the effects file that found
	// new effects, looking every 100ms.
	var maxGap time.Duration
	last, lastChange := before, time.Now()
	for end := time.Now().Add(down); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if n := len(l.effects()); n != last {
			maxGap = max(maxGap, time.Since(lastChange))
			last, lastChange = n, time.Now()
		}
	}
	maxGap = max(maxGap, time.Since(lastChange))
	during := len(l.effects()) - before
	t.Logf("coordinator down %v: %d events handled meanwhile, longest time without a new effect %v", down, during, maxGap.Round(time.Millisecond))
	if want := int(down / (50 * time.Millisecond) / 2); during < want {
		t.Errorf("%d events handled while the coordinator was down, want at least %d", during, want)
	}
	if maxGap > 2*time.Second {
		t.Errorf("no event handled for %v while the coordinator was down", maxGap)
	}

	co.restart()
	co.waitReady()
	restarted := time.Now()
	co.waitRunning("ledger", 1, 10*time.Second)
	t.Logf("the restarted coordinator listed the plugin running after %v", time.Since(restarted).Round(time.Millisecond))
	publisher.stop(10 * time.Second)
	pub := ledger{dir: pubDir}
	published := pub.readIDs("published")
	l.waitHandled(t, published, 20*time.Second)
	l.check(t, published, true)
}

// readIDs reads a file of ids, one a line.
func (l ledger) readIDs(name string) []string {
	b, _ := os.ReadFile(filepath.Join(l.dir, name))
	return strings.Fields(string(b))
}

// 7. Poison events that always fail (an error, a panic) become dead letters
// after MaxDeliver attempts, the handler having run exactly MaxDeliver
// times for each, while the other events keep flowing.
func TestPoisonEventDeadLettered(t *testing.T) {
	t.Parallel()
	s := startNATS(t)
	c := connect(t, s.url())
	l := newLedger(t)
	ledgerPlugin(t, "ledger", l, s.url(), withEnv(durable, "LEDGER_MAX_DELIVER=3", "LEDGER_BACKOFF=100ms,200ms")...)
	c.waitConsumer("ledger", 20*time.Second)

	var acked []string
	poison := map[string]any{"poison-fail": map[string]string{"fail": "always"}, "poison-panic": map[string]bool{"panic": true}}
	for i := 0; i < 50; i++ {
		if i == 10 {
			for id, data := range poison {
				c.mustPublish(id, data)
			}
		}
		acked = append(acked, c.mustPublish(fmt.Sprintf("fine-%d", i), nil))
	}
	l.waitHandled(t, acked, 15*time.Second)
	var dls map[string]*nats.Msg
	waitFor(t, "the poison events to become dead letters", 15*time.Second, func() error {
		if dls = c.deadLetters("ledger"); len(dls) < len(poison) {
			return fmt.Errorf("%d dead letters", len(dls))
		}
		return nil
	})
	time.Sleep(time.Second) // ten times the backoff: a redelivery storm would show
	c.waitSettled("ledger", 10*time.Second)
	calls := l.calls()
	for id := range poison {
		if calls[id] != 3 {
			t.Errorf("%s: the handler ran %d times, want 3 (MaxDeliver)", id, calls[id])
		}
		dl := dls[id]
		if dl == nil {
			t.Errorf("%s: no dead letter", id)
			continue
		}
		if got := dl.Header.Get(bus.HeaderDLAttempts); got != "3" {
			t.Errorf("%s: dead letter says %s attempts, want 3", id, got)
		}
		t.Logf("%s: dead letter: %s", id, dl.Header.Get(bus.HeaderDLError))
	}
	if len(dls) != len(poison) {
		t.Errorf("%d dead letters, want %d", len(dls), len(poison))
	}
	if effects := l.effects(); effects["poison-fail"]+effects["poison-panic"] != 0 {
		t.Error("a poison event had an effect")
	}
	l.check(t, acked, true)
}

// 7b. A poison event that crashes the plugin (os.Exit in the handler),
// under the coordinator's supervisor: each crash means no outcome, so the
// event is redelivered after the ack wait and crashes the restarted plugin
// again, while the supervisor waits longer before each restart. Once the
// event has been delivered MaxDeliver times, plugin-kit dead-letters it
// before running the handler again: the handler ran exactly MaxDeliver
// times, the crash loop ends, and other events flow.
func TestCrashingPoisonUnderSupervisor(t *testing.T) {
	t.Parallel()
	l := newLedger(t)
	co := startCoordinator(t, fmt.Sprintf(`durable: true
plugins:
  - name: ledger
    exec: %s
    env: [%q, "LEDGER_MAX_DELIVER=3", "LEDGER_BACKOFF=100ms", "LEDGER_ACK_WAIT=1s", "PLUGBUS_EFFECTIVELY_ONCE=1", "PLUGBUS_LOG_LEVEL=debug"]
`, bin(t, "ledger"), "LEDGER_DIR="+l.dir))
	co.waitRunning("ledger", 1, 20*time.Second)
	c := connect(t, co.natsURL())

	var acked []string
	post := func(id, data string) {
		t.Helper()
		if _, err := co.post(id, data); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 10; i++ {
		id := fmt.Sprintf("before-%d", i)
		post(id, `{}`)
		acked = append(acked, id)
	}
	l.waitHandled(t, acked, 10*time.Second)
	post("crash", `{"crash":"always"}`)
	var dl *nats.Msg
	waitFor(t, "the crashing event to become a dead letter", 45*time.Second, func() error {
		if dl = c.deadLetters("ledger")["crash"]; dl == nil {
			return fmt.Errorf("no dead letter yet; the handler ran %d times", l.calls()["crash"])
		}
		return nil
	})
	t.Logf("dead letter after %s deliveries: %s", dl.Header.Get(bus.HeaderDLAttempts), dl.Header.Get(bus.HeaderDLError))
	if got := dl.Header.Get(bus.HeaderDLError); !strings.Contains(got, "without an outcome") {
		t.Errorf("dead letter error %q, want it to say the deliveries had no outcome", got)
	}
	if pids := l.callers("crash"); len(pids) != 3 || pids[0] == pids[1] || pids[1] == pids[2] {
		t.Errorf("the crashing event's handler ran in processes %v, want 3 runs, each in a new process", pids)
	}

	// The supervisor backed off: each restart came later than the one before.
	var delays []time.Duration
	for _, rec := range co.logRecords("plugin exited; restarting") {
		delays = append(delays, logDuration(rec["restart_in"]))
	}
	t.Logf("restart delays: %v", delays)
	if len(delays) != 3 {
		t.Errorf("%d restarts, want 3 (one per crash)", len(delays))
	}
	for i := 1; i < len(delays); i++ {
		if delays[i] <= delays[i-1] {
			t.Errorf("restart delays %v do not grow", delays)
		}
	}

	// The crash loop is over: other events flow, and the plugin stays up.
	co.waitRunning("ledger", 1, 15*time.Second)
	for i := 0; i < 10; i++ {
		id := fmt.Sprintf("after-%d", i)
		post(id, `{}`)
		acked = append(acked, id)
	}
	l.waitHandled(t, acked, 15*time.Second)
	time.Sleep(2 * time.Second) // twice the ack wait
	if n := len(co.logRecords("plugin exited; restarting")); n != 3 {
		t.Errorf("the plugin exited %d times, want 3", n)
	}
	if n := l.calls()["crash"]; n != 3 {
		t.Errorf("the crashing event's handler ran %d times, want 3", n)
	}
	c.waitSettled("ledger", 10*time.Second)
	l.check(t, acked, true)
}

// 8b. Handlers longer than the ack wait, with every worker busy and three
// times as many events as workers: the events not yet pulled stay in the
// stream, and the ones pulled are kept with in-progress signals, so none is
// handed out again; each handler runs once, even without effectively-once.
func TestLongHandlersKeepQueuedEvents(t *testing.T) {
	t.Parallel()
	s := startNATS(t)
	c := connect(t, s.url())
	l := newLedger(t)
	ledgerPlugin(t, "ledger", l, s.url(), "LEDGER_ACK_WAIT=2s", "LEDGER_CONCURRENCY=2", "LEDGER_DELAY=2500ms")
	c.waitConsumer("ledger", 20*time.Second)
	acked := publishSeveral(c, "long", 6)
	l.waitHandled(t, acked, 30*time.Second)
	c.waitSettled("ledger", 10*time.Second)
	for id, n := range l.calls() {
		if n != 1 {
			t.Errorf("%s: the handler ran %d times, want 1", id, n)
		}
	}
	l.check(t, acked, true)
}

// logDuration reads a duration from a JSON log record: slog writes
// nanoseconds.
func logDuration(v any) time.Duration {
	switch v := v.(type) {
	case float64:
		return time.Duration(v)
	case string:
		d, _ := time.ParseDuration(v)
		return d
	}
	return 0
}

// 8. A slow plugin under load: publishing much faster than the plugin
// handles, MaxAckPending bounds the events handed out and not yet
// acknowledged, the backlog waits in the stream and drains once the load
// stops, and nothing is missing.
func TestSlowPluginUnderLoad(t *testing.T) {
	t.Parallel()
	const maxAckPending, events = 8, 1000
	s := startNATS(t)
	c := connect(t, s.url())
	l := newLedger(t)
	ledgerPlugin(t, "ledger", l, s.url(), withEnv(durable, "LEDGER_DELAY=20ms", fmt.Sprintf("LEDGER_MAX_ACK_PENDING=%d", maxAckPending))...)
	c.waitConsumer("ledger", 20*time.Second)

	var maxAck, maxBacklog atomic.Int64
	sampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if info, err := c.consumer("ledger"); err == nil {
				if n := int64(info.NumAckPending); n > maxAck.Load() {
					maxAck.Store(n)
				}
				if n := int64(info.NumPending); n > maxBacklog.Load() {
					maxBacklog.Store(n)
				}
			}
			select {
			case <-sampling:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()

	start := time.Now()
	ids := make([]string, events)
	var wg sync.WaitGroup
	var next atomic.Int64
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < events; i = int(next.Add(1)) - 1 {
				ids[i] = c.mustPublish(fmt.Sprintf("load-%d", i), nil)
			}
		}()
	}
	wg.Wait()
	published := time.Since(start)
	handledWhilePublishing := len(l.effects())
	l.waitHandled(t, ids, 30*time.Second)
	drained := time.Since(start)
	close(sampling)
	<-sampled
	c.waitSettled("ledger", 10*time.Second)
	t.Logf("%d events published in %v (%d handled by then); all handled after %v; max unacknowledged %d (limit %d), max backlog %d",
		events, published.Round(time.Millisecond), handledWhilePublishing, drained.Round(time.Millisecond), maxAck.Load(), maxAckPending, maxBacklog.Load())
	if maxAck.Load() > maxAckPending {
		t.Errorf("%d events unacknowledged at once, more than MaxAckPending %d", maxAck.Load(), maxAckPending)
	}
	if maxAck.Load() < maxAckPending/2 {
		t.Errorf("at most %d events unacknowledged at once: the plugin was not kept busy", maxAck.Load())
	}
	if maxBacklog.Load() < events/4 {
		t.Errorf("the backlog never exceeded %d events: the load did not outpace the plugin", maxBacklog.Load())
	}
	l.check(t, ids, true)
}

// The multi-instance fault tests: effectively-once holds across instances
// of one plugin. After a crash of the coordinator (with the NATS server in
// it), of the NATS server or of one instance, events come back to whichever
// instance asks, possibly while another still runs their handlers or
// stores their records: none may have its effect twice.

// instanceCounts are the numbers of instances each multi-instance test
// runs with.
var instanceCounts = []int{2, 3}

// poster publishes events over the coordinator's HTTP API from a few
// goroutines until stopped, keeping the ids the coordinator answered 202.
type poster struct {
	mu    sync.Mutex
	acked []string
	stop  chan struct{}
	done  sync.WaitGroup
}

func startPosting(co *coordinator, workers int) *poster {
	p := &poster{stop: make(chan struct{})}
	var next atomic.Int64
	for w := 0; w < workers; w++ {
		p.done.Add(1)
		go func() {
			defer p.done.Done()
			for {
				select {
				case <-p.stop:
					return
				default:
				}
				id := fmt.Sprintf("post-%d", next.Add(1))
				if ok, _ := co.post(id, `{}`); !ok {
					time.Sleep(50 * time.Millisecond) // the coordinator is down
					continue
				}
				p.mu.Lock()
				p.acked = append(p.acked, id)
				p.mu.Unlock()
			}
		}()
	}
	return p
}

func (p *poster) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked)
}

// waitMore waits until n more events than now were acknowledged.
func (p *poster) waitMore(t testing.TB, n int, within time.Duration) {
	t.Helper()
	base := p.count()
	waitFor(t, fmt.Sprintf("%d more acknowledged posts", n), within, func() error {
		if got := p.count() - base; got < n {
			return fmt.Errorf("%d so far", got)
		}
		return nil
	})
}

func (p *poster) finish() []string {
	close(p.stop)
	p.done.Wait()
	return p.acked
}

// 9. kill -9 the coordinator (NATS in it, durable: true) while several
// instances handle a stream of events posted over HTTP, and restart it 2 s
// later: every acknowledged event has its effect exactly once.
func TestKillEmbeddedCoordinatorInstances(t *testing.T) {
	t.Parallel()
	for _, n := range instanceCounts {
		t.Run(fmt.Sprintf("%d-instances", n), func(t *testing.T) {
			t.Parallel()
			co := startCoordinator(t, "durable: true\n")
			l := newLedger(t)
			for i := 0; i < n; i++ {
				// Handlers take a little time: many run when the bus dies.
				ledgerPlugin(t, fmt.Sprintf("ledger-%d", i), l, co.natsURL(), withEnv(durable, "LEDGER_DELAY=20ms")...)
			}
			co.waitRunning("ledger", n, 20*time.Second)
			p := startPosting(co, 8)
			p.waitMore(t, 300, 30*time.Second)
			co.kill()
			t.Logf("coordinator killed after %d acknowledged posts, %d handled", p.count(), len(l.effects()))
			time.Sleep(2 * time.Second)
			co.restart()
			co.waitReady()
			p.waitMore(t, 200, 30*time.Second)
			acked := p.finish()
			l.waitHandled(t, acked, 60*time.Second)
			connect(t, co.natsURL()).waitSettled("ledger", 30*time.Second)
			l.check(t, acked, true)
		})
	}
}

// 1b. kill -9 one of several instances while it runs handlers, and restart
// it: the events it was handling come back to the others, which find its
// claims, wait a lease for them to be renewed, take them over and run
// them once; the rest flow meanwhile.
func TestKillPluginInstances(t *testing.T) {
	t.Parallel()
	for _, n := range instanceCounts {
		t.Run(fmt.Sprintf("%d-instances", n), func(t *testing.T) {
			t.Parallel()
			s := startNATS(t)
			c := connect(t, s.url())
			l := newLedger(t)
			// Two workers each, so the slow events spread over the
			// instances.
			env := withEnv(durable, "LEDGER_CONCURRENCY=2")
			var instances []*proc
			for i := 0; i < n; i++ {
				instances = append(instances, ledgerPlugin(t, fmt.Sprintf("ledger-%d", i), l, s.url(), env...))
			}
			c.waitConsumer("ledger", 20*time.Second)
			acked := publishSeveral(c, "before", 20)
			l.waitHandled(t, acked, 15*time.Second)
			c.waitSettled("ledger", 10*time.Second)

			// Only slow events run when the instance dies: none is
			// between its effect and its record, the window that
			// effectively-once does not cover.
			var slow []string
			for i := 0; i < 2*n; i++ {
				slow = append(slow, c.mustPublish(fmt.Sprintf("slow-%d", i), map[string]string{"sleep": "4s"}))
			}
			acked = append(acked, slow...)
			var victim *proc
			waitFor(t, "an instance to run a slow handler", 10*time.Second, func() error {
				for _, id := range slow {
					for _, pid := range l.callers(id) {
						for _, p := range instances {
							if p.pid() == pid {
								victim = p
								return nil
							}
						}
					}
				}
				return errors.New("not yet")
			})
			victim.kill()
			killed := victim.pid()
			acked = append(acked, publishSeveral(c, "while-down", 10)...)
			victim.restart()
			l.waitHandled(t, acked, 40*time.Second)
			c.waitSettled("ledger", 15*time.Second)
			retried := 0
			for _, id := range slow {
				if pids := l.callers(id); len(pids) > 1 {
					retried++
					if pids[0] != killed {
						t.Errorf("%s: handlers ran in %v; only the killed instance's (%d) should have run again", id, pids, killed)
					}
				}
			}
			if retried == 0 {
				t.Error("no slow event ran again after the kill")
			}
			t.Logf("%d slow events ran again after instance %d was killed", retried, killed)
			l.check(t, acked, true)
		})
	}
}
