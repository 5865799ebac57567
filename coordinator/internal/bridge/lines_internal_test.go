package bridge

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestLineReaderSkipsLongLinesWithoutKeepingThem(t *testing.T) {
	long := strings.Repeat("x", 5<<20)
	in := "first\r\n\n" + long + "\nsecond\n" + long + "\nlast"
	r := newLineReader(strings.NewReader(in), 1<<20)
	want := []struct {
		line    string
		tooLong bool
	}{{"first", false}, {strings.Repeat("x", quoteLimit), true}, {"second", false}, {strings.Repeat("x", quoteLimit), true}, {"last", false}}
	for i, w := range want {
		line, err := r.next()
		if w.tooLong != errors.Is(err, errTooLong) || (err != nil && !w.tooLong) || string(line) != w.line {
			t.Fatalf("line %d: got %.20q (%d bytes), %v; want %.20q, too long %v", i, line, len(line), err, w.line, w.tooLong)
		}
		if cap(r.buf) > 1<<20+64<<10 {
			t.Fatalf("line %d: the reader holds %d bytes; a skipped line must not be kept", i, cap(r.buf))
		}
	}
	if _, err := r.next(); !errors.Is(err, io.EOF) {
		t.Fatalf("at the end: got %v, want io.EOF", err)
	}
}
