package greet_test

import (
	"testing"

	"github.com/plugbus/plugbus/bench/greet"
)

// BenchmarkHandle is the handlers' own work, without any transport: the
// floor under the one-way and invoke figures.
func BenchmarkHandle(b *testing.B) {
	for _, bc := range []struct {
		name string
		size int
		fn   func([]byte) ([]byte, error)
	}{
		{"oneway/128B", 128, greet.Handle},
		{"oneway/1KiB", 1 << 10, greet.Handle},
		{"oneway/16KiB", 16 << 10, greet.Handle},
		{"greet/128B", 128, greet.Greet},
	} {
		b.Run(bc.name, func(b *testing.B) {
			payload := greet.Payload(bc.size)
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				if _, err := bc.fn(payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestPayload(t *testing.T) {
	for _, n := range []int{12, 128, 1 << 10, 16 << 10} {
		if got := len(greet.Payload(n)); got != n {
			t.Errorf("len(Payload(%d)) = %d", n, got)
		}
	}
	out, err := greet.Greet(greet.Payload(20))
	if err != nil || string(out) != `{"text":"hello, xxxxxxxxx"}` {
		t.Errorf("Greet = %s, %v", out, err)
	}
}
