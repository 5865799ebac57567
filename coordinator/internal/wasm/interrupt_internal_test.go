package wasm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/plugbus/plugbus/internal/proctest"
)

// A module, written out byte by byte, whose _start loops forever in one
// loop with no call in it: the smallest runaway.
var loopForever = []byte{
	0x00, 'a', 's', 'm', 1, 0, 0, 0,
	1, 4, 1, 0x60, 0, 0, // type 0: () -> ()
	3, 2, 1, 0, // function 0 has type 0
	7, 10, 1, 6, '_', 's', 't', 'a', 'r', 't', 0, 0, // export "_start" = function 0
	10, 9, 1, 7, 0, 0x03, 0x40, 0x0c, 0, 0x0b, 0x0b, // (loop (br 0))
}

func TestInstrumentedLoopIsInterrupted(t *testing.T) {
	if _, err := instrument(loopForever); err != nil {
		t.Fatalf("instrument: %v", err)
	}
	path := filepath.Join(t.TempDir(), "loop.wasm")
	if err := os.WriteFile(path, loopForever, 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := NewHost("")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	defer h.Close(ctx)
	m, err := h.Load(ctx, "loop", path, "", Sandbox{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	in, err := m.Start(&proctest.Output{})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	select {
	case <-in.Done():
		t.Fatalf("the loop ended by itself: %v", in.Err())
	default:
	}
	stopped := make(chan struct{})
	go func() { in.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("Stop did not interrupt the loop within 30s")
	}
	if err := in.Err(); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("got %v, want ErrInterrupted", err)
	}
}

func TestInstrumentRefusesWhatItCannotRewrite(t *testing.T) {
	for name, bin := range map[string][]byte{
		"not wasm":  []byte("#!/bin/sh\n"),
		"truncated": loopForever[:len(loopForever)-3],
		// A legacy exception-handling try block.
		"try": {0x00, 'a', 's', 'm', 1, 0, 0, 0, 1, 4, 1, 0x60, 0, 0, 3, 2, 1, 0, 10, 7, 1, 5, 0, 0x06, 0x40, 0x0b, 0x0b},
	} {
		if _, err := instrument(bin); !errors.Is(err, errNotInstrumented) {
			t.Errorf("%s: got %v, want errNotInstrumented", name, err)
		}
	}
}
