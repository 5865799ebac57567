package archive

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
	"github.com/plugbus/plugbus/plugin-kit/kittest"
)

// start runs the archive plugin on a kittest harness, archiving into dir.
func start(t *testing.T, dir string, maxBytes int64, types ...string) (*kittest.Harness, *Archiver) {
	t.Helper()
	if len(types) == 0 {
		types = []string{"com.example.>"}
	}
	a, err := Open(dir, maxBytes, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Error(err)
		}
	})
	p := newPlugin()
	handle(p, a, types)
	return kittest.Start(t, p), a
}

// files returns the archive's files in the order their events were
// written: the rotated ones by name (time, then sequence), then the
// current one.
func files(t *testing.T, dir string) []string {
	t.Helper()
	rotated, err := filepath.Glob(filepath.Join(dir, "archive-*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	key := func(s string) string { return strings.TrimSuffix(s, ".jsonl") }
	slices.SortFunc(rotated, func(a, b string) int { return strings.Compare(key(a), key(b)) })
	if _, err := os.Stat(filepath.Join(dir, FileName)); err == nil {
		rotated = append(rotated, filepath.Join(dir, FileName))
	}
	return rotated
}

// readLines reads the events of one archive file, failing t on a line
// that is not a whole, valid event.
func readLines(t *testing.T, path string) []event.Event {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Errorf("%s does not end with a newline: a line was split or cut", filepath.Base(path))
	}
	var out []event.Event
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		var e event.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%s line %d is not a CloudEvent in JSON: %v: %s", filepath.Base(path), n, err, sc.Bytes())
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// archived reads every event of the archive in dir, in order.
func archived(t *testing.T, dir string) []event.Event {
	t.Helper()
	var out []event.Event
	for _, f := range files(t, dir) {
		out = append(out, readLines(t, f)...)
	}
	return out
}

// sameEvent fails t unless got has every attribute, extension and byte of
// data of want. Extensions in ignore (set in transit) are not compared.
func sameEvent(t *testing.T, got, want *event.Event, ignore ...string) {
	t.Helper()
	ext := func(e *event.Event) map[string]string {
		m := map[string]string{}
		for k, v := range e.Extensions() {
			if !slices.Contains(ignore, k) {
				m[k] = fmt.Sprint(v)
			}
		}
		return m
	}
	switch {
	case got.ID() != want.ID(), got.Source() != want.Source(), got.Type() != want.Type(),
		got.SpecVersion() != want.SpecVersion(), got.Subject() != want.Subject(),
		got.DataContentType() != want.DataContentType(), got.DataSchema() != want.DataSchema(),
		!got.Time().Equal(want.Time()):
		t.Errorf("archived attributes differ:\n got  %v\n want %v", got.Context, want.Context)
	case !bytes.Equal(got.Data(), want.Data()):
		t.Errorf("event %s: archived data %q, want %q", want.ID(), got.Data(), want.Data())
	case !maps.Equal(ext(got), ext(want)):
		t.Errorf("event %s: archived extensions %v, want %v", want.ID(), ext(got), ext(want))
	}
}

func TestEventsArchived(t *testing.T) {
	dir := t.TempDir()
	h, _ := start(t, dir, 0)

	jsonEvent := pluginkit.NewEvent("com.example.order.placed", map[string]any{"order": 42, "items": []string{"a", "b"}})
	jsonEvent.SetSubject("order 42")
	jsonEvent.SetExtension("tenant", "acme")
	binEvent := pluginkit.NewEvent("com.example.blob.stored", []byte{0, 1, 2, 0xff, '\n'})
	textEvent := pluginkit.NewEvent("com.example.note.written", nil)
	textEvent.SetData("text/plain", "line one\nline two \"quoted\"")
	badJSON := pluginkit.NewEvent("com.example.order.placed", nil)
	badJSON.SetDataContentType("application/json")
	badJSON.DataEncoded = []byte(`{"cut":`)
	binText := pluginkit.NewEvent("com.example.note.written", nil)
	binText.SetDataContentType("text/plain; charset=latin1")
	binText.DataEncoded = []byte("caf\xe9")
	ignored := pluginkit.NewEvent("org.other.thing.happened", nil)
	want := []*event.Event{jsonEvent, binEvent, textEvent, badJSON, binText}

	for i, e := range want {
		// Read from the file, not from a buffer of the archive's.
		if err := h.Publish(e); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		waitArchived(t, dir, i+1)
	}
	if err := h.Publish(ignored); err != nil {
		t.Fatal(err)
	}
	got := archived(t, dir)
	if len(got) != len(want) {
		t.Fatalf("archive holds %d events, want %d", len(got), len(want))
	}
	for i := range want {
		sameEvent(t, &got[i], want[i])
	}
	// JSON data is stored as JSON and text as a string, so that the
	// archive can be read with jq; anything else is base64.
	b, _ := os.ReadFile(filepath.Join(dir, FileName))
	lines := strings.Split(string(b), "\n")
	for i, want := range []string{
		`"data":{"items":["a","b"],"order":42}`,
		`"data_base64":"AAEC/wo="`,
		`"data":"line one\nline two \"quoted\""`,
		`"data_base64":"eyJjdXQiOg=="`,
		`"data_base64":"Y2Fm6Q=="`,
	} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d does not hold %s: %s", i+1, want, lines[i])
		}
	}
}

func TestPublishedEventsArchivedInOrder(t *testing.T) {
	dir := t.TempDir()
	h, _ := start(t, dir, 0)
	var want []*event.Event
	for i := range 50 {
		e := pluginkit.NewEvent("com.example.counter.ticked", map[string]int{"n": i})
		want = append(want, e)
		if err := h.Publish(e); err != nil {
			t.Fatal(err)
		}
	}
	got := waitArchived(t, dir, len(want))
	for i := range want {
		sameEvent(t, &got[i], want[i])
	}
}

// waitArchived waits until the archive holds n events and returns them.
func waitArchived(t *testing.T, dir string, n int) []event.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Lines counted while the plugin may still write and rotate: a
		// file listed can be renamed before it is read, which only means
		// looking again.
		if lines, err := countLines(t, dir); err == nil && lines >= n {
			// Every event is written, so nothing changes any more: read
			// them the strict way.
			got := archived(t, dir)
			if len(got) != n {
				t.Fatalf("archive holds %d events, want %d", len(got), n)
			}
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("archive holds %d events after 10s, want %d", len(archived(t, dir)), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countLines counts the whole lines of every archive file in dir, or says
// that a file went away (renamed by a rotation) between listing and reading.
func countLines(t *testing.T, dir string) (int, error) {
	t.Helper()
	n := 0
	for _, f := range files(t, dir) {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0, err
		}
		n += bytes.Count(b, []byte("\n"))
	}
	return n, nil
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	ev := func(n int) *event.Event {
		e := pluginkit.NewEvent("com.example.counter.ticked", map[string]int{"n": n})
		e.SetSource(kittest.Source) // as archived
		return e
	}
	sample, err := json.Marshal(ev(10))
	if err != nil {
		t.Fatal(err)
	}
	// Room for three lines of about that size (the time's length varies a
	// little), not four.
	maxBytes := int64(3*(len(sample)+1) + 10)
	h, _ := start(t, dir, maxBytes)

	var want []*event.Event
	for i := range 20 {
		e := ev(10 + i)
		want = append(want, e)
		if err := h.Publish(e); err != nil {
			t.Fatal(err)
		}
	}
	waitArchived(t, dir, len(want))
	fs := files(t, dir)
	if len(fs) < 6 {
		t.Fatalf("%d files for 20 events of which 3 fit in one: %v", len(fs), fs)
	}
	var got []event.Event
	for i, f := range fs {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > maxBytes {
			t.Errorf("%s is %d bytes, over the %d byte limit", filepath.Base(f), fi.Size(), maxBytes)
		}
		lines := readLines(t, f)
		if i < len(fs)-1 && len(lines) != 3 {
			t.Errorf("rotated file %s holds %d events, want 3 (rotated only when the next one would not fit)", filepath.Base(f), len(lines))
		}
		got = append(got, lines...)
	}
	if len(got) != len(want) {
		t.Fatalf("archive holds %d events, want %d", len(got), len(want))
	}
	for i := range want {
		sameEvent(t, &got[i], want[i])
	}
}

func TestOversizedLineGetsAFileOfItsOwn(t *testing.T) {
	dir := t.TempDir()
	a, err := Open(dir, 100, false)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	big := strings.Repeat("x", 300) + "\n"
	for _, line := range []string{"small 1\n", big, "small 2\n"} {
		if err := a.Append([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	fs := files(t, dir)
	var contents []string
	for _, f := range fs {
		b, _ := os.ReadFile(f)
		contents = append(contents, string(b))
	}
	want := []string{"small 1\n", big, "small 2\n"}
	if !slices.Equal(contents, want) {
		t.Errorf("files hold %q, want %q", contents, want)
	}
}

// Two rotations within the same clock tick get distinct names.
func TestRotatedNamesDoNotCollide(t *testing.T) {
	dir := t.TempDir()
	a, err := Open(dir, 10, false)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	frozen := time.Date(2026, 3, 4, 5, 6, 7, 8, time.UTC)
	a.now = func() time.Time { return frozen }
	for i := range 4 {
		if err := a.Append([]byte(fmt.Sprintf("line %d\n", i))); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	var contents []string
	for _, f := range files(t, dir) {
		names = append(names, filepath.Base(f))
		b, _ := os.ReadFile(f)
		contents = append(contents, string(b))
	}
	wantNames := []string{
		"archive-20260304T050607.000000008Z.jsonl",
		"archive-20260304T050607.000000008Z-1.jsonl",
		"archive-20260304T050607.000000008Z-2.jsonl",
		"archive.jsonl",
	}
	if !slices.Equal(names, wantNames) {
		t.Errorf("files %q, want %q", names, wantNames)
	}
	if want := []string{"line 0\n", "line 1\n", "line 2\n", "line 3\n"}; !slices.Equal(contents, want) {
		t.Errorf("contents %q, want %q", contents, want)
	}
}

// A file left with a cut last line (a crash in the middle of a write) is
// appended to after a newline, so the next event stays readable.
func TestReopenAfterCutLine(t *testing.T) {
	dir := t.TempDir()
	old := `{"specversion":"1.0","id":"1","source":"s","type":"t"}` + "\n" + `{"specversion":"1.0","id":"2",`
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(old), 0o640); err != nil {
		t.Fatal(err)
	}
	a, err := Open(dir, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Append([]byte("{}\n")); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, FileName))
	if want := old + "\n{}\n"; string(b) != want {
		t.Errorf("file holds %q, want %q", b, want)
	}
}

func TestClosed(t *testing.T) {
	dir := t.TempDir()
	h, a := start(t, dir, 0)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := a.Append([]byte("x\n")); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}
	// The event was not archived, so the handler must fail (retryable):
	// the plugin's statistics count it as failed.
	if err := h.Publish(pluginkit.NewEvent("com.example.order.placed", nil)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for failed(t, h) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("an event sent to a closed archive was not counted as failed within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// failed returns the events the archive's handlers failed, from its NATS
// micro STATS.
func failed(t *testing.T, h *kittest.Harness) uint64 {
	t.Helper()
	c, err := h.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c.Failed
}

// The archive observes and never answers: a request for a type it
// archives has no responders, even for an exact type.
func TestNeverAnswers(t *testing.T) {
	h, _ := start(t, t.TempDir(), 0, "com.example.order.placed")
	if _, err := h.Request(pluginkit.NewEvent("com.example.order.placed", nil)); !errors.Is(err, pluginkit.ErrNoResponders) {
		t.Errorf("request for an archived type: got %v, want pluginkit.ErrNoResponders", err)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(t.TempDir(), -1, false); err == nil {
		t.Error("negative -max-bytes accepted")
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(file, 0, false); err == nil {
		t.Error("a regular file was accepted as the archive directory")
	}
}
