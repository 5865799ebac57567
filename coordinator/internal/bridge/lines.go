package bridge

import (
	"bufio"
	"errors"
	"io"
)

// errTooLong: a line was longer than the limit; it was skipped.
var errTooLong = errors.New("line longer than the limit; skipped")

// A lineReader reads lines of bounded length. A longer line is skipped to
// its end without being kept: next returns its first bytes with errTooLong.
type lineReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// next returns the next line without its newline (and a carriage return
// before it); the slice is valid until the next call. Empty lines are
// skipped. At the end of the input a last line without a newline is
// returned, then io.EOF.
func (l *lineReader) next() ([]byte, error) {
	for {
		l.buf = l.buf[:0]
		tooLong := false
		for {
			chunk, err := l.r.ReadSlice('\n')
			if !tooLong {
				if len(l.buf)+len(chunk) > l.max {
					// Keep the start, to quote in the report, and drop
					// the rest as it comes.
					tooLong = true
					l.buf = append(l.buf, chunk[:min(len(chunk), quoteLimit)]...)
					l.buf = l.buf[:min(len(l.buf), quoteLimit)]
				} else {
					l.buf = append(l.buf, chunk...)
				}
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if tooLong {
				if err != nil && len(chunk) == 0 {
					return nil, err
				}
				return l.buf, errTooLong
			}
			if err != nil {
				if len(l.buf) > 0 && errors.Is(err, io.EOF) {
					return l.buf, nil
				}
				return nil, err
			}
			break
		}
		line := l.buf[:len(l.buf)-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) > 0 {
			return line, nil
		}
	}
}
