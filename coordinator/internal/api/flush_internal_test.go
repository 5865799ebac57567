package api

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// roundError tells a request which flush confirmed it.
type roundError struct{ round int64 }

func (e *roundError) Error() string { return "round" }

// TestFlushGroupConfirmsAfterTheCall checks the promise behind sharing
// flushes: the flush a request gets started after the request asked.
func TestFlushGroupConfirmsAfterTheCall(t *testing.T) {
	var started atomic.Int64
	g := newFlushGroup(func(time.Duration) error {
		n := started.Add(1)
		time.Sleep(time.Millisecond)
		return &roundError{n}
	})
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			for range 20 {
				asked := started.Load()
				var re *roundError
				if err := g.flush(5 * time.Second); !errors.As(err, &re) {
					t.Errorf("flush: %v, want the round's error", err)
					return
				}
				if re.round <= asked {
					t.Errorf("confirmed by flush %d, which started before the request asked (after flush %d had started)", re.round, asked)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d flushes for 1,000 requests", started.Load())
}

// TestFlushGroupTimeout checks that requests wait no longer than their
// timeout behind a flush that hangs.
func TestFlushGroupTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	g := newFlushGroup(func(timeout time.Duration) error {
		select {
		case <-release:
			return nil
		case <-time.After(timeout):
			return nats.ErrTimeout
		}
	})
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- g.flush(50 * time.Millisecond) }()
	}
	for range 3 {
		select {
		case err := <-errs:
			if !errors.Is(err, nats.ErrTimeout) {
				t.Errorf("flush = %v, want nats.ErrTimeout", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a request waited past its timeout for a flush that hangs")
		}
	}
}
