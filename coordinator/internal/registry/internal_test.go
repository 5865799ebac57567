package registry

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

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
