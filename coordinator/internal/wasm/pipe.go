package wasm

import (
	"io"
	"sync"
)

// pipeBuffer is how many bytes a pipe holds before a write waits for the
// reader: a few event lines.
const pipeBuffer = 64 << 10

// A pipe connects the coordinator's bridge and a module's standard input
// or output. Unlike io.Pipe, a write does not wait until the other side
// has read it: it is buffered, up to pipeBuffer bytes, and wakes the
// reader. A line through io.Pipe costs two goroutine switches, one to the
// reader and one back to the writer, which waits for the reader to copy;
// through a pipe it costs the one to the reader. Writes wait when the
// buffer is full, so a writer that outruns its reader is held back and
// nothing is buffered without bound. One goroutine reads and one writes at
// a time.
type pipe struct {
	mu       sync.Mutex
	buf      []byte
	off      int           // buf[off:] is unread
	rerr     error         // what reads return once buf is drained: the write side closed
	werr     error         // what writes return: the read side closed
	readable chan struct{} // a token when there is something for a waiting reader
	writable chan struct{} // a token when there is room for a waiting writer
}

func newPipe() *pipe {
	return &pipe{readable: make(chan struct{}, 1), writable: make(chan struct{}, 1)}
}

// signal leaves a token on c, for a goroutine waiting on it.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Read reads what was written, waiting until something is.
func (p *pipe) Read(b []byte) (int, error) {
	for {
		p.mu.Lock()
		if p.off < len(p.buf) {
			n := copy(b, p.buf[p.off:])
			p.off += n
			if p.off == len(p.buf) {
				p.buf, p.off = p.buf[:0], 0
			}
			p.mu.Unlock()
			signal(p.writable)
			return n, nil
		}
		err := p.rerr
		p.mu.Unlock()
		if err != nil {
			return 0, err
		}
		<-p.readable
	}
}

// Write buffers b, waiting while the buffer is full. An empty write
// returns at once: WASI's fd_write hands over every buffer of a vector,
// empty ones too, and wasi-libc's stdio writes its buffer and the caller's
// as two (through io.Pipe, each empty one waited for a read of its own).
func (p *pipe) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n := 0
	for {
		p.mu.Lock()
		if p.werr != nil {
			p.mu.Unlock()
			return n, p.werr
		}
		if p.rerr != nil {
			p.mu.Unlock()
			return n, io.ErrClosedPipe
		}
		if room := pipeBuffer - (len(p.buf) - p.off); room > 0 {
			if p.off > 0 && len(p.buf)+len(b) > cap(p.buf) {
				// Move the unread bytes to the front rather than grow.
				p.buf, p.off = append(p.buf[:0], p.buf[p.off:]...), 0
			}
			k := min(room, len(b)-n)
			p.buf = append(p.buf, b[n:n+k]...)
			n += k
		}
		p.mu.Unlock()
		signal(p.readable)
		if n == len(b) {
			return n, nil
		}
		<-p.writable
	}
}

// closeWrite ends the writes: reads return err (io.EOF when nil) once
// what was written is read.
func (p *pipe) closeWrite(err error) {
	if err == nil {
		err = io.EOF
	}
	p.mu.Lock()
	if p.rerr == nil {
		p.rerr = err
	}
	p.mu.Unlock()
	signal(p.readable)
	signal(p.writable)
}

// closeRead ends the reads: writes return err, reads io.ErrClosedPipe,
// and what was not read is dropped.
func (p *pipe) closeRead(err error) {
	p.mu.Lock()
	if p.werr == nil {
		p.werr = err
	}
	p.rerr = io.ErrClosedPipe
	p.buf, p.off = nil, 0
	p.mu.Unlock()
	signal(p.readable)
	signal(p.writable)
}

// pipeWriter is the write side of a pipe: closing it ends the reads.
type pipeWriter struct{ p *pipe }

func (w pipeWriter) Write(b []byte) (int, error) { return w.p.Write(b) }

// Close makes reads return io.EOF once what was written is read.
func (w pipeWriter) Close() error {
	w.p.closeWrite(nil)
	return nil
}

// pipeReader is the read side of a pipe: closing it ends the writes.
type pipeReader struct{ p *pipe }

func (r pipeReader) Read(b []byte) (int, error) { return r.p.Read(b) }

// Close makes writes return io.ErrClosedPipe, and reads too.
func (r pipeReader) Close() error {
	r.p.closeRead(io.ErrClosedPipe)
	return nil
}
