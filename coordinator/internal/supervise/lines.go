package supervise

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sort"
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
	if level, msg, attrs, ok := parseRecord(line); ok {
		w.log.LogAttrs(context.Background(), level, msg, append(attrs, slog.String("stream", w.stream))...)
		return
	}
	w.log.LogAttrs(context.Background(), slog.LevelInfo, string(line), slog.String("stream", w.stream))
}

// parseRecord reads a line that is a log/slog JSON record (as plugin-kit
// writes by default), so that its level, message and attributes are logged
// as such instead of as one escaped string. The record's own time is
// dropped: the coordinator's record has one.
func parseRecord(line []byte) (slog.Level, string, []slog.Attr, bool) {
	if line[0] != '{' {
		return 0, "", nil, false
	}
	var rec map[string]any
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber() // 10000000000 stays that, not 1e+10
	if dec.Decode(&rec) != nil {
		return 0, "", nil, false
	}
	msg, ok1 := rec["msg"].(string)
	levelText, ok2 := rec["level"].(string)
	var level slog.Level
	if !ok1 || !ok2 || level.UnmarshalText([]byte(levelText)) != nil {
		return 0, "", nil, false
	}
	keys := make([]string, 0, len(rec))
	for k := range rec {
		if k != "msg" && k != "level" && k != "time" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, len(keys)+1)
	for _, k := range keys {
		switch k {
		case "plugin": // the supervisor's own attribute says it already
		case "instance": // plugin-kit's instance id, not the supervisor's instance name
			attrs = append(attrs, slog.Any("instance_id", rec[k]))
		default:
			attrs = append(attrs, slog.Any(k, rec[k]))
		}
	}
	return level, msg, attrs, true
}
