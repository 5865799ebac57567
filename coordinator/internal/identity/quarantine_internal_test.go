package identity

import (
	"testing"
	"time"
)

// TestGuardPolicy steps a guard's clock through its policy: refusals
// spread wider than the window never quarantine, a burst does, each repeat
// doubles the cool-down up to its maximum, a repeat long after is a first
// offence again, and the exempt key is never counted.
func TestGuardPolicy(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var got []Quarantine
	g := NewGuard(Policy{Refusals: 3, Window: 10 * time.Second, CoolDown: time.Minute, MaxCoolDown: 3 * time.Minute},
		func(q Quarantine) { got = append(got, q) }, "EXEMPT")
	g.now = func() time.Time { return now }
	refuse := func(key string, n int, every time.Duration) {
		for range n {
			g.Refused(key, "plugbus.events.hello.x")
			now = now.Add(every)
		}
	}
	refuse("A", 10, 6*time.Second) // two in a window at most
	refuse("EXEMPT", 100, 0)
	if len(got) != 0 {
		t.Fatalf("quarantined %v, want none", got)
	}
	wantCool := []time.Duration{time.Minute, 2 * time.Minute, 3 * time.Minute, 3 * time.Minute}
	for i, want := range wantCool {
		refuse("A", 3, 0)
		if len(got) != i+1 {
			t.Fatalf("strike %d: %d quarantines, want %d", i+1, len(got), i+1)
		}
		q := got[i]
		if q.CoolDown() != want || q.Strike != i+1 || q.Refusals != 3 || q.Key != "A" {
			t.Errorf("strike %d: got %+v (cool-down %v), want cool-down %v", i+1, q, q.CoolDown(), want)
		}
		if _, ok := g.Quarantined("A"); !ok {
			t.Errorf("strike %d: A not quarantined", i+1)
		}
		refuse("A", 50, 0) // during the quarantine: counted, no new one
		if len(got) != i+1 {
			t.Fatalf("strike %d: quarantined again during its quarantine", i+1)
		}
		now = q.Until
		if _, ok := g.Quarantined("A"); ok {
			t.Errorf("strike %d: still quarantined at its end", i+1)
		}
	}
	now = now.Add(13 * time.Minute) // past Forget (4 x 3m) since the last ended
	refuse("A", 3, 0)
	if q := got[len(got)-1]; q.Strike != 1 || q.CoolDown() != time.Minute {
		t.Errorf("after a long quiet: got %+v, want a first strike of 1m", q)
	}
	st := g.Stats()
	if st["A"].Refusals != 10+4*53+3 || st["A"].Quarantines != 5 || st["EXEMPT"].Refusals != 0 {
		t.Errorf("stats: %+v", st)
	}

	off := NewGuard(Policy{Window: time.Second, CoolDown: time.Second, MaxCoolDown: time.Second}, func(q Quarantine) { t.Errorf("quarantined %+v with quarantine off", q) })
	for range 1000 {
		off.Refused("A", "x")
	}
	if off.Stats()["A"].Refusals != 1000 {
		t.Errorf("quarantine off: %+v, want the refusals counted", off.Stats())
	}
}

func TestClientID(t *testing.T) {
	for _, tt := range []struct {
		format string
		want   uint64
		ok     bool
	}{
		{`127.0.0.1:5432 - cid:17 - "v1.55.0:go:mallory" - "$G/nkey:UABC" - Publish Violation - Subject %q`, 17, true},
		{`pipe - cid:3 - "v1:go:x - cid:9 " - Subscription Violation - Subject "a", SID 1`, 3, true},
		{`Publish Violation - Subject %q`, 0, false},
		{`127.0.0.1:1 - cid:x - Publish Violation`, 0, false},
	} {
		got, ok := clientID(tt.format)
		if got != tt.want || ok != tt.ok {
			t.Errorf("clientID(%q) = %d, %v; want %d, %v", tt.format, got, ok, tt.want, tt.ok)
		}
	}
}
