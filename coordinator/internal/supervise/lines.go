package supervise

import (
	"bytes"
	"context"
	"log/slog"
)

// maxLine is the longest line logged as one record; longer lines are split.
const maxLine = 64 << 10

// A lineWriter logs every line written to it as one record, with the line
// as the message. os/exec calls Write from one goroutine; flush must be
// called after exec.Cmd.Wait returns, for a last line with no newline.
type lineWriter struct {
	log    *slog.Logger
	stream string // "stdout" or "stderr"
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	rest := w.buf
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		w.emit(rest[:i])
		rest = rest[i+1:]
	}
	for len(rest) >= maxLine {
		w.emit(rest[:maxLine])
		rest = rest[maxLine:]
	}
	w.buf = append(w.buf[:0], rest...)
	return len(p), nil
}

func (w *lineWriter) flush() {
	w.emit(w.buf)
	w.buf = w.buf[:0]
}

func (w *lineWriter) emit(line []byte) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 {
		return
	}
	w.log.LogAttrs(context.Background(), slog.LevelInfo, string(line), slog.String("stream", w.stream))
}
