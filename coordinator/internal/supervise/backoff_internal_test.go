package supervise

import (
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	b := Config{Backoff: Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Factor: 3, CrashLoopAfter: 6}}.withDefaults().Backoff
	want := []time.Duration{
		0: 100 * time.Millisecond, // after a long run
		1: 100 * time.Millisecond,
		2: 300 * time.Millisecond,
		3: 900 * time.Millisecond,
		4: time.Second, // capped
		5: time.Second,
		6: time.Second, // crash-looping
		7: time.Second,
	}
	for quick, w := range want {
		if got := b.delay(quick); got != w {
			t.Errorf("delay(%d) = %s, want %s", quick, got, w)
		}
	}
	d := Config{}.withDefaults().Backoff
	if d.delay(1) != DefaultInitialBackoff || d.delay(2) != 2*DefaultInitialBackoff || d.delay(DefaultCrashLoopAfter) != DefaultMaxBackoff {
		t.Errorf("default delays %s, %s, %s", d.delay(1), d.delay(2), d.delay(DefaultCrashLoopAfter))
	}
}
