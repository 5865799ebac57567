package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// TestFetchInfoTakesTheOneAnswer checks that reading one instance's INFO
// returns as soon as it answers: it waited for gather's quiet period after
// the answer, for every new instance in turn.
func TestFetchInfoTakesTheOneAnswer(t *testing.T) {
	s := bustest.NewServer(t)
	p := pluginkit.New("described", "1.0.0", pluginkit.WithDescription("says what it is"))
	p.HandleFunc("com.example.d", func(context.Context, pluginkit.Event) (*pluginkit.Event, error) { return nil, nil })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, bustest.Connect(t, s)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// The instance id is known once its micro service answers.
	r := New(Config{Conn: bustest.Connect(t, s)})
	var st micro.Stats
	for deadline := time.Now().Add(5 * time.Second); st.ID == "" && time.Now().Before(deadline); {
		replies, err := r.gather(ctx, micro.StatsVerb, nil, 1, gatherMost)
		if err != nil {
			t.Fatal(err)
		}
		if len(replies) == 1 {
			_ = json.Unmarshal(replies[0].data, &st)
		}
	}
	if st.ID == "" {
		t.Fatal("the plugin's micro service did not answer STATS within 5s")
	}

	start := time.Now()
	r.fetchInfo(ctx, st)
	took := time.Since(start)
	in := r.instances[st.ID]
	if in == nil {
		t.Fatal("the instance is not listed after its INFO answer")
	}
	if in.Description != "says what it is" {
		t.Errorf("description %q, want the plugin's", in.Description)
	}
	if took >= gatherQuiet/2 {
		t.Errorf("fetchInfo took %v; one answer should take far less than gather's quiet period (%v)", took, gatherQuiet)
	}
}

// TestPollMarksGoneAfterTwoMissedPolls checks that an instance silent for
// longer than GoneAfter is gone only once it missed two polls in a row: a
// poll that comes late (after seconds of confirming a mass start) makes
// one unanswered poll look like a long silence.
func TestPollMarksGoneAfterTwoMissedPolls(t *testing.T) {
	s := bustest.NewServer(t)
	var mute atomic.Bool
	svc, err := micro.AddService(bustest.Connect(t, s), micro.Config{
		Name: "sometimes", Version: "1.0.0",
		Metadata: map[string]string{bus.MetaProtocol: bus.ProtocolVersion},
		StatsHandler: func(*micro.Endpoint) any {
			if mute.Load() {
				time.Sleep(time.Second) // answers after the poll stopped gathering
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	// STATS asks StatsHandler about each endpoint.
	if err := svc.AddEndpoint("x", micro.HandlerFunc(func(micro.Request) {}), micro.WithEndpointSubject("plugbus.events.*.com.example.sometimes")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const goneAfter, gathering = 200 * time.Millisecond, 300 * time.Millisecond
	r := New(Config{Conn: bustest.Connect(t, s)})
	state := func() State {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, in := range r.instances {
			return in.State
		}
		return ""
	}
	// The service's subscriptions may reach the server after the first
	// poll's request.
	for deadline := time.Now().Add(10 * time.Second); state() != Running && time.Now().Before(deadline); {
		r.poll(ctx, 0, gatherMost, goneAfter)
	}
	if got := state(); got != Running {
		t.Fatalf("after polling for 10s the instance is %q, want running", got)
	}

	mute.Store(true)
	time.Sleep(2 * goneAfter) // the next poll is late
	r.poll(ctx, 1, gathering, goneAfter)
	if got := state(); got != Running {
		t.Errorf("after one missed poll, silent for longer than gone_after, the instance is %q, want running", got)
	}
	r.poll(ctx, 1, gathering, goneAfter)
	if got := state(); got != Gone {
		t.Errorf("after two missed polls the instance is %q, want gone", got)
	}
}

// TestPaceCountsEveryAnswerForGone checks the time to gone during a mass
// start: a poll answered by 10,000 instances of which 100 are listed is
// still made every PollInterval, but an instance is gone only after what
// 10,000 instances take (15 s at the defaults), not after GoneAfter.
func TestPaceCountsEveryAnswerForGone(t *testing.T) {
	r := New(Config{})
	for i := range 100 {
		id := fmt.Sprint("instance-", i)
		r.instances[id] = &Instance{ID: id, Plugin: "p", State: Running}
	}
	every, goneAfter, answering := r.pace()
	if every != time.Second || goneAfter != 5*time.Second || answering != 100 {
		t.Errorf("100 listed, none answered yet: every %v, gone after %v, answering %d; want 1s, 5s, 100", every, goneAfter, answering)
	}
	r.answered = 10000
	every, goneAfter, answering = r.pace()
	if every != time.Second || goneAfter != 15*time.Second || answering != 100 {
		t.Errorf("100 listed, 10,000 answered: every %v, gone after %v, answering %d; want 1s, 15s, 100", every, goneAfter, answering)
	}
}
