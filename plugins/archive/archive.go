package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// FileName is the name of the file an [Archiver] appends to.
const FileName = "archive.jsonl"

// rotatedLayout is the UTC timestamp in the name of a rotated file; it sorts
// in time order.
const rotatedLayout = "20060102T150405.000000000Z"

// An Archiver appends each event it handles to Dir/archive.jsonl as one
// line: the event in the CloudEvents JSON format (structured mode), as
// json.Marshal of the sdk-go event writes it. When a line would take the
// file past MaxBytes, the file is first renamed to
// archive-<UTC time>.jsonl and a new one started, so that no line is ever
// split across files.
//
// Each line is written with a single write to the file before the handler
// returns, so an event whose handler succeeded is in the operating system's
// page cache and survives the plugin's crash; with Fsync, it is on disk
// before the handler returns and survives a power loss too. Close syncs the
// file.
//
// An Archiver is safe for concurrent use; writes are serialised.
type Archiver struct {
	dir      string
	maxBytes int64
	fsync    bool
	now      func() time.Time

	mu   sync.Mutex
	f    *os.File
	size int64
}

var _ pluginkit.Handler = (*Archiver)(nil)

// ErrClosed is returned by an [Archiver] used after Close.
var ErrClosed = errors.New("archive: archiver is closed")

// Open opens (creating as needed) the archive in dir. maxBytes is the size
// at which the file is rotated; 0 means never. With fsync, every line is
// synced to disk before the handler returns.
func Open(dir string, maxBytes int64, fsync bool) (*Archiver, error) {
	if maxBytes < 0 {
		return nil, fmt.Errorf("archive: maximum file size %d: must not be negative", maxBytes)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	a := &Archiver{dir: dir, maxBytes: maxBytes, fsync: fsync, now: time.Now}
	if err := a.open(); err != nil {
		return nil, err
	}
	return a, nil
}

// Path returns the path of the file being appended to.
func (a *Archiver) Path() string { return filepath.Join(a.dir, FileName) }

// open opens the current file for appending. A file left by an earlier run
// whose last line is incomplete (the process died in the middle of a write)
// gets a newline, so that the next line starts on a line of its own.
func (a *Archiver) open() error {
	f, err := os.OpenFile(a.Path(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("archive: %w", err)
	}
	a.f, a.size = f, fi.Size()
	if a.size > 0 {
		last := make([]byte, 1)
		r, err := os.Open(a.Path())
		if err == nil {
			_, err = r.ReadAt(last, a.size-1)
			r.Close()
		}
		if err != nil {
			f.Close()
			a.f = nil
			return fmt.Errorf("archive: read the end of %s: %w", a.Path(), err)
		}
		if last[0] != '\n' {
			if err := a.write([]byte{'\n'}); err != nil {
				f.Close()
				a.f = nil
				return err
			}
		}
	}
	return nil
}

// HandleEvent appends e to the archive.
func (a *Archiver) HandleEvent(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
	setDataEncoding(&e)
	line, err := json.Marshal(e)
	if err != nil {
		return nil, pluginkit.Permanent(fmt.Errorf("archive: encode event %s: %w", e.ID(), err))
	}
	return nil, a.Append(append(line, '\n'))
}

// setDataEncoding chooses how e's data goes into its JSON line, as the
// CloudEvents JSON format asks: JSON data as JSON, text as a string,
// anything else base64-encoded in data_base64.
//
// sdk-go decides from its DataBase64 flag, which an event decoded from a
// binary-mode message does not have, and would write binary data as a
// string (mangling bytes that are not UTF-8) and JSON data that is not
// valid JSON as is (breaking the line). So set the flag for those.
func setDataEncoding(e *pluginkit.Event) {
	if len(e.DataEncoded) == 0 || e.DataBase64 {
		return
	}
	mt := strings.ToLower(e.DataMediaType())
	switch {
	case mt == "", mt == "application/json", mt == "text/json",
		mt == "application/cloudevents+json", mt == "application/cloudevents-batch+json":
		// sdk-go writes these inline.
		e.DataBase64 = !json.Valid(e.DataEncoded)
	case strings.HasPrefix(mt, "text/"), strings.HasSuffix(mt, "+json"), strings.HasSuffix(mt, "+xml"), mt == "application/xml":
		e.DataBase64 = !utf8.Valid(e.DataEncoded)
	default:
		e.DataBase64 = true
	}
}

// Append writes line, which must be one whole line ending in '\n', to the
// archive, rotating the file first when line would take it past the size
// limit. A line longer than the limit gets a file of its own.
func (a *Archiver) Append(line []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return ErrClosed
	}
	if a.maxBytes > 0 && a.size > 0 && a.size+int64(len(line)) > a.maxBytes {
		if err := a.rotate(); err != nil {
			return err
		}
	}
	if err := a.write(line); err != nil {
		return err
	}
	if a.fsync {
		if err := a.f.Sync(); err != nil {
			return fmt.Errorf("archive: sync %s: %w", a.Path(), err)
		}
	}
	return nil
}

// write appends b with one write. After a short write it cuts the file back
// to its previous size, so that a failed event leaves no partial line that
// the next one would be glued to.
func (a *Archiver) write(b []byte) error {
	n, err := a.f.Write(b)
	if err == nil {
		a.size += int64(n)
		return nil
	}
	if n > 0 {
		if terr := a.f.Truncate(a.size); terr != nil {
			a.size += int64(n)
			return fmt.Errorf("archive: write %s: %w (and could not remove the partial line: %v)", a.Path(), err, terr)
		}
	}
	return fmt.Errorf("archive: write %s: %w", a.Path(), err)
}

// rotate syncs and closes the current file, renames it after the time, and
// starts a new one. When the rename fails the current file stays open.
func (a *Archiver) rotate() error {
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("archive: sync %s before rotating: %w", a.Path(), err)
	}
	name, err := a.rotatedName()
	if err != nil {
		return err
	}
	if err := os.Rename(a.Path(), filepath.Join(a.dir, name)); err != nil {
		return fmt.Errorf("archive: rotate: %w", err)
	}
	old := a.f
	a.f = nil
	if err := a.open(); err != nil {
		// Keep appending where we were, under the rotated name, rather
		// than lose events.
		a.f = old
		return err
	}
	if err := old.Close(); err != nil {
		return fmt.Errorf("archive: close rotated file: %w", err)
	}
	return nil
}

// rotatedName returns archive-<UTC time>.jsonl, with a -<n> suffix when a
// file of that name exists already.
func (a *Archiver) rotatedName() (string, error) {
	stamp := a.now().UTC().Format(rotatedLayout)
	for n := 0; n < 1000; n++ {
		name := "archive-" + stamp + ".jsonl"
		if n > 0 {
			name = "archive-" + stamp + "-" + strconv.Itoa(n) + ".jsonl"
		}
		_, err := os.Lstat(filepath.Join(a.dir, name))
		if errors.Is(err, os.ErrNotExist) {
			return name, nil
		}
		if err != nil {
			return "", fmt.Errorf("archive: rotate: %w", err)
		}
	}
	return "", fmt.Errorf("archive: rotate: too many files named archive-%s*.jsonl", stamp)
}

// Close syncs the file to disk and closes it. Later events fail with
// [ErrClosed]. Close may be called more than once.
func (a *Archiver) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	f := a.f
	a.f = nil
	return errors.Join(f.Sync(), f.Close())
}
