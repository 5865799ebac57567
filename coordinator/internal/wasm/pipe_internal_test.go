package wasm

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestPipeCarriesWhatIsWrittenInOrder(t *testing.T) {
	p := newPipe()
	// More than the buffer holds: the writer waits for the reader.
	want := bytes.Repeat([]byte("0123456789abcdef\n"), 3*pipeBuffer/16)
	go func() {
		for rest := want; len(rest) > 0; {
			n := min(len(rest), 1000)
			if _, err := (pipeWriter{p}).Write(rest[:n]); err != nil {
				t.Error(err)
				return
			}
			rest = rest[n:]
		}
		(pipeWriter{p}).Close()
	}()
	got, err := io.ReadAll(pipeReader{p})
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, %v; want the %d written", len(got), err, len(want))
	}
}

func TestPipeWriteOfMoreThanTheBufferWaitsForTheReader(t *testing.T) {
	p := newPipe()
	big := bytes.Repeat([]byte("x"), 2*pipeBuffer+1)
	wrote := make(chan error, 1)
	go func() {
		_, err := (pipeWriter{p}).Write(big)
		wrote <- err
	}()
	got := make([]byte, 0, len(big))
	buf := make([]byte, 4096)
	for len(got) < len(big) {
		n, err := (pipeReader{p}).Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if err := <-wrote; err != nil || !bytes.Equal(got, big) {
		t.Fatalf("write: %v; read %d bytes, want %d", err, len(got), len(big))
	}
}

func TestPipeClose(t *testing.T) {
	// The write side closed: what was written is still read, then the error.
	p := newPipe()
	(pipeWriter{p}).Write([]byte("last"))
	p.closeWrite(ErrInterrupted)
	if got, err := io.ReadAll(pipeReader{p}); string(got) != "last" || err != nil && !errors.Is(err, ErrInterrupted) {
		t.Fatalf("after closeWrite: read %q, %v", got, err)
	}
	if _, err := (pipeReader{p}).Read(make([]byte, 1)); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("after closeWrite and the rest read: %v, want ErrInterrupted", err)
	}
	if _, err := (pipeWriter{p}).Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("a write after closeWrite: %v, want io.ErrClosedPipe", err)
	}

	// The read side closed: a waiting reader and later writes see it.
	p = newPipe()
	read := make(chan error, 1)
	go func() {
		_, err := (pipeReader{p}).Read(make([]byte, 1))
		read <- err
	}()
	p.closeRead(ErrInterrupted)
	if err := <-read; !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("a read waiting when the read side closed: %v, want io.ErrClosedPipe", err)
	}
	if _, err := (pipeWriter{p}).Write([]byte("x")); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("a write after closeRead: %v, want its error", err)
	}
}

func TestPipeEmptyWriteDoesNotWait(t *testing.T) {
	p := newPipe()
	if _, err := (pipeWriter{p}).Write(make([]byte, pipeBuffer)); err != nil {
		t.Fatal(err)
	}
	// Full, and nobody reads: an empty write still returns.
	if n, err := (pipeWriter{p}).Write(nil); n != 0 || err != nil {
		t.Fatalf("got %d, %v", n, err)
	}
}
