package pluginkit

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestDeliveryDeadline: a handler's context reports the event's deadline
// and ends at it, or with its parent, as context.WithDeadline's does,
// though its timer is made only when something waits on it.
func TestDeliveryDeadline(t *testing.T) {
	t.Run("waited on", func(t *testing.T) {
		dl := time.Now().Add(50 * time.Millisecond)
		d := &delivery{Context: context.Background(), deadline: dl}
		defer d.release()
		if got, ok := d.Deadline(); !ok || !got.Equal(dl) {
			t.Fatalf("Deadline() = %v, %v; want %v", got, ok, dl)
		}
		if d.Err() != nil {
			t.Fatalf("Err() = %v before the deadline", d.Err())
		}
		select {
		case <-d.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("Done not closed 10s after the deadline")
		}
		if !errors.Is(d.Err(), context.DeadlineExceeded) {
			t.Fatalf("Err() = %v after the deadline", d.Err())
		}
	})
	t.Run("passed", func(t *testing.T) {
		d := &delivery{Context: context.Background(), deadline: time.Now().Add(-time.Millisecond)}
		defer d.release()
		if !errors.Is(d.Err(), context.DeadlineExceeded) {
			t.Fatalf("Err() = %v; want the deadline passed", d.Err())
		}
	})
	t.Run("parent ends first", func(t *testing.T) {
		parent, cancel := context.WithCancel(context.Background())
		d := &delivery{Context: parent, deadline: time.Now().Add(time.Hour)}
		defer d.release()
		cancel()
		if !errors.Is(d.Err(), context.Canceled) {
			t.Fatalf("Err() = %v; want the parent's", d.Err())
		}
		select {
		case <-d.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("Done not closed with the parent's")
		}
	})
	t.Run("parent's deadline earlier", func(t *testing.T) {
		early := time.Now().Add(time.Minute)
		parent, cancel := context.WithDeadline(context.Background(), early)
		defer cancel()
		d := &delivery{Context: parent, deadline: early.Add(time.Hour)}
		if got, _ := d.Deadline(); !got.Equal(early) {
			t.Fatalf("Deadline() = %v; want the parent's %v", got, early)
		}
		d.release()
		if !errors.Is(d.Err(), context.Canceled) {
			t.Fatalf("Err() = %v after release; want the context ended", d.Err())
		}
	})
	t.Run("no deadline", func(t *testing.T) {
		d := &delivery{Context: context.Background()}
		if _, ok := d.Deadline(); ok || d.Done() != nil || d.Err() != nil {
			t.Fatal("a context without a deadline reports one")
		}
	})
}
