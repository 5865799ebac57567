package deadletter_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	"github.com/plugbus/plugbus/coordinator/internal/deadletter"
)

// env is a NATS server with the durable streams.
type env struct {
	t     *testing.T
	js    jetstream.JetStream
	store *deadletter.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	nc := bustest.Connect(t, bustest.NewServer(t))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.EnsureStreams(ctx(t), js, bus.StreamConfig{Memory: true}); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, js: js, store: deadletter.New(js, bus.DefaultPrefix, bus.DefaultDeadLetterStream)}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// letterSpec describes a dead letter the way plugin-kit writes it.
type letterSpec struct {
	plugin, producer, typ, id string
	subject                   string // Plugbus-Dl-Subject; default the event subject
	errText                   string
	attempts                  int
	when                      time.Time
}

// sourceOf is the source the test events carry.
func sourceOf(producer string) string { return "urn:test:" + producer }

// put publishes a dead letter as plugin-kit does: the original message (a
// binary-mode event, as a consumer received it, without its Nats-Msg-Id)
// plus the Plugbus-Dl-* headers, and returns its sequence.
func (e *env) put(s letterSpec) uint64 {
	e.t.Helper()
	ev := event.New()
	ev.SetID(s.id)
	ev.SetSource(sourceOf(s.producer))
	ev.SetType(s.typ)
	ev.SetTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	ev.SetExtension("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	if err := ev.SetData(event.ApplicationJSON, map[string]string{"order": s.id}); err != nil {
		e.t.Fatal(err)
	}
	msg := &nats.Msg{Subject: "plugbus.deadletter." + s.plugin}
	if err := bus.Encode(&ev, msg); err != nil {
		e.t.Fatal(err)
	}
	subject := s.subject
	if subject == "" {
		subject = "plugbus.events." + s.producer + "." + s.typ
	}
	if s.attempts == 0 {
		s.attempts = 5
	}
	if s.errText == "" {
		s.errText = "handler failed: " + s.id
	}
	if s.when.IsZero() {
		s.when = time.Date(2026, 1, 2, 3, 5, 0, 0, time.UTC)
	}
	msg.Header.Set(bus.HeaderDLError, s.errText)
	msg.Header.Set(bus.HeaderDLAttempts, strconv.Itoa(s.attempts))
	msg.Header.Set(bus.HeaderDLSubject, subject)
	msg.Header.Set(bus.HeaderDLPlugin, s.plugin)
	msg.Header.Set(bus.HeaderDLTime, s.when.Format(time.RFC3339Nano))
	ack, err := e.js.PublishMsg(ctx(e.t), msg)
	if err != nil {
		e.t.Fatalf("publish dead letter: %v", err)
	}
	if ack.Duplicate {
		e.t.Fatalf("dead letter %+v dropped as a duplicate", s)
	}
	return ack.Sequence
}

// fixture puts five dead letters, returning their sequences in order.
func (e *env) fixture() []uint64 {
	return []uint64{
		e.put(letterSpec{plugin: "archive", producer: "shop", typ: "com.example.order.placed", id: "o1"}),
		e.put(letterSpec{plugin: "archive", producer: "shop", typ: "com.example.order.cancelled", id: "o2"}),
		e.put(letterSpec{plugin: "mailer", producer: "shop", typ: "com.example.order.placed", id: "o3"}),
		e.put(letterSpec{plugin: "archive", producer: "users", typ: "com.example.user.created", id: "u1"}),
		e.put(letterSpec{plugin: "archive", producer: "shop", typ: "com.example.order.placed", id: "o4"}),
	}
}

func ids(ls []deadletter.Letter) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.ID
	}
	return out
}

func TestList(t *testing.T) {
	e := newEnv(t)
	if got, err := e.store.List(ctx(t), deadletter.Filter{}); err != nil || len(got) != 0 {
		t.Fatalf("List of an empty stream = %v, %v; want none", got, err)
	}
	seqs := e.fixture()
	for _, tc := range []struct {
		name string
		f    deadletter.Filter
		want []string
	}{
		{"all", deadletter.Filter{}, []string{"o1", "o2", "o3", "u1", "o4"}},
		{"plugin", deadletter.Filter{Plugin: "archive"}, []string{"o1", "o2", "u1", "o4"}},
		{"other plugin", deadletter.Filter{Plugin: "mailer"}, []string{"o3"}},
		{"unknown plugin", deadletter.Filter{Plugin: "nobody"}, []string{}},
		{"type", deadletter.Filter{Type: "com.example.order.placed"}, []string{"o1", "o3", "o4"}},
		{"plugin and type", deadletter.Filter{Plugin: "archive", Type: "com.example.order.placed"}, []string{"o1", "o4"}},
		{"star", deadletter.Filter{Type: "com.example.order.*"}, []string{"o1", "o2", "o3", "o4"}},
		{"star in the middle", deadletter.Filter{Type: "com.*.user.created"}, []string{"u1"}},
		{"tail", deadletter.Filter{Type: "com.example.>"}, []string{"o1", "o2", "o3", "u1", "o4"}},
		{"star is one part", deadletter.Filter{Type: "com.*"}, []string{}},
		{"prefix is not a match", deadletter.Filter{Type: "com.example.order"}, []string{}},
		{"limit keeps the newest", deadletter.Filter{Limit: 2}, []string{"u1", "o4"}},
		{"limit with a filter", deadletter.Filter{Type: "com.example.order.*", Limit: 3}, []string{"o2", "o3", "o4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.store.List(ctx(t), tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if g := ids(got); !reflect.DeepEqual(g, tc.want) {
				t.Errorf("List(%+v) = %v; want %v", tc.f, g, tc.want)
			}
		})
	}

	got, err := e.store.List(ctx(t), deadletter.Filter{Plugin: "archive", Type: "com.example.user.created"})
	if err != nil || len(got) != 1 {
		t.Fatalf("List = %v, %v", got, err)
	}
	want := deadletter.Letter{
		Seq: seqs[3], Plugin: "archive", Subject: "plugbus.events.users.com.example.user.created",
		Producer: "users", Type: "com.example.user.created", ID: "u1", Source: "urn:test:users",
		Error: "handler failed: u1", Attempts: 5, Time: time.Date(2026, 1, 2, 3, 5, 0, 0, time.UTC),
	}
	if !reflect.DeepEqual(got[0], want) {
		t.Errorf("letter =\n%+v\nwant\n%+v", got[0], want)
	}
}

func TestListManyAcrossBatches(t *testing.T) {
	e := newEnv(t)
	for i := range 300 {
		e.put(letterSpec{plugin: "archive", producer: "shop", typ: "com.example.order.placed", id: fmt.Sprint("o", i)})
	}
	got, err := e.store.List(ctx(t), deadletter.Filter{Plugin: "archive"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != deadletter.DefaultLimit {
		t.Fatalf("List returned %d letters; want the default limit %d", len(got), deadletter.DefaultLimit)
	}
	for i, l := range got {
		if want := fmt.Sprint("o", 200+i); l.ID != want {
			t.Fatalf("letter %d is %s; want %s (the newest 100, oldest first)", i, l.ID, want)
		}
	}
	all, err := e.store.List(ctx(t), deadletter.Filter{Limit: 1000})
	if err != nil || len(all) != 300 {
		t.Fatalf("List(limit 1000) = %d letters, %v; want 300", len(all), err)
	}
	n, err := e.store.Purge(ctx(t), deadletter.Filter{Plugin: "archive", Type: "com.example.>"})
	if err != nil || n != 300 {
		t.Fatalf("Purge by type = %d, %v; want 300", n, err)
	}
}

func TestGet(t *testing.T) {
	e := newEnv(t)
	seqs := e.fixture()
	l, err := e.store.Get(ctx(t), seqs[2])
	if err != nil {
		t.Fatal(err)
	}
	if l.Seq != seqs[2] || l.Plugin != "mailer" || l.ID != "o3" || l.Type != "com.example.order.placed" || l.Producer != "shop" {
		t.Errorf("Get = %+v", l)
	}
	if string(l.Data) != `{"order":"o3"}` {
		t.Errorf("data = %q", l.Data)
	}
	for name, want := range map[string]string{
		"ce-id":              "o3",
		"ce-type":            "com.example.order.placed",
		"ce-traceparent":     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		bus.HeaderDLError:    "handler failed: o3",
		bus.HeaderDLAttempts: "5",
		bus.HeaderDLPlugin:   "mailer",
	} {
		if got := l.Header[name]; len(got) != 1 || got[0] != want {
			t.Errorf("header %s = %q; want %q", name, got, want)
		}
	}
}

func TestErrors(t *testing.T) {
	e := newEnv(t)
	seqs := e.fixture()

	_, err := e.store.Get(ctx(t), 999)
	if !errors.Is(err, deadletter.ErrNotFound) || !strings.Contains(err.Error(), "999") || !strings.Contains(err.Error(), "coordinator deadletter ls") {
		t.Errorf("Get(999) = %v; want ErrNotFound naming 999 and `coordinator deadletter ls`", err)
	}
	if err := e.store.Replay(ctx(t), 999); !errors.Is(err, deadletter.ErrNotFound) {
		t.Errorf("Replay(999) = %v; want ErrNotFound", err)
	}
	if err := e.store.Delete(ctx(t), 999); !errors.Is(err, deadletter.ErrNotFound) {
		t.Errorf("Delete(999) = %v; want ErrNotFound", err)
	}
	if _, err := e.store.Get(ctx(t), 0); !errors.Is(err, deadletter.ErrInvalid) {
		t.Errorf("Get(0) = %v; want ErrInvalid", err)
	}
	for _, f := range []deadletter.Filter{{Plugin: "a.b"}, {Plugin: "*"}, {Type: "com..x"}, {Type: "com.>.x"}, {Limit: -1}} {
		if _, err := e.store.List(ctx(t), f); !errors.Is(err, deadletter.ErrInvalid) {
			t.Errorf("List(%+v) = %v; want ErrInvalid", f, err)
		}
		if _, err := e.store.Purge(ctx(t), f); !errors.Is(err, deadletter.ErrInvalid) {
			t.Errorf("Purge(%+v) = %v; want ErrInvalid", f, err)
		}
	}

	// Delete removes one letter without replaying it.
	if err := e.store.Delete(ctx(t), seqs[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Get(ctx(t), seqs[0]); !errors.Is(err, deadletter.ErrNotFound) {
		t.Errorf("Get of a deleted letter = %v; want ErrNotFound", err)
	}

	off := deadletter.New(e.js, "", "NO_SUCH_STREAM")
	_, err = off.List(ctx(t), deadletter.Filter{})
	if !errors.Is(err, deadletter.ErrNoStream) || !strings.Contains(err.Error(), "durable mode is off") || !strings.Contains(err.Error(), "NO_SUCH_STREAM") {
		t.Errorf("List without a stream = %v; want ErrNoStream saying durable mode is off", err)
	}
	if _, err := off.Get(ctx(t), 1); !errors.Is(err, deadletter.ErrNoStream) {
		t.Errorf("Get without a stream = %v", err)
	}
	if err := off.Replay(ctx(t), 1); !errors.Is(err, deadletter.ErrNoStream) {
		t.Errorf("Replay without a stream = %v", err)
	}
	if _, err := off.Purge(ctx(t), deadletter.Filter{}); !errors.Is(err, deadletter.ErrNoStream) {
		t.Errorf("Purge without a stream = %v", err)
	}
}

// replayed reads the last event on subject from the events stream.
func (e *env) replayed(subject string) *jetstream.RawStreamMsg {
	e.t.Helper()
	st, err := e.js.Stream(ctx(e.t), bus.DefaultEventsStream)
	if err != nil {
		e.t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(ctx(e.t), subject)
	if err != nil {
		e.t.Fatalf("no event on %s in the events stream: %v", subject, err)
	}
	return m
}

func TestReplay(t *testing.T) {
	e := newEnv(t)
	seqs := e.fixture()
	orig, err := e.store.Get(ctx(t), seqs[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.Replay(ctx(t), seqs[1]); err != nil {
		t.Fatal(err)
	}
	m := e.replayed("plugbus.replay.archive.shop.com.example.order.cancelled")
	for k := range m.Header {
		if strings.HasPrefix(strings.ToLower(k), "plugbus-dl-") {
			t.Errorf("replayed event carries %s", k)
		}
	}
	for _, k := range []string{"ce-id", "ce-source", "ce-type", "ce-time", "ce-specversion", "ce-datacontenttype", "ce-traceparent"} {
		if got, want := m.Header.Get(k), orig.Header[k][0]; got != want {
			t.Errorf("replayed header %s = %q; want %q", k, got, want)
		}
	}
	wantID := bus.MsgID("shop", sourceOf("shop"), "o2") + "-replay-" + strconv.FormatUint(seqs[1], 10)
	if got := m.Header.Get(jetstream.MsgIDHeader); got != wantID {
		t.Errorf("Nats-Msg-Id = %q; want %q", got, wantID)
	}
	if string(m.Data) != string(orig.Data) {
		t.Errorf("data = %q; want %q", m.Data, orig.Data)
	}
	ev, err := bus.Decode(&nats.Msg{Header: m.Header, Data: m.Data})
	if err != nil || ev.ID() != "o2" {
		t.Errorf("replayed message decodes to %v, %v", ev, err)
	}
	if _, err := e.store.Get(ctx(t), seqs[1]); !errors.Is(err, deadletter.ErrNotFound) {
		t.Errorf("the replayed letter is still there: %v", err)
	}
	if err := e.store.Replay(ctx(t), seqs[1]); !errors.Is(err, deadletter.ErrNotFound) {
		t.Errorf("second Replay = %v; want ErrNotFound", err)
	}
	if got, _ := e.store.List(ctx(t), deadletter.Filter{}); !reflect.DeepEqual(ids(got), []string{"o1", "o3", "u1", "o4"}) {
		t.Errorf("left after replay: %v", ids(got))
	}

	// An event that failed again after a replay came on a replay subject;
	// it goes back to the same replay subject.
	again := e.put(letterSpec{plugin: "archive", producer: "shop", typ: "com.example.order.cancelled", id: "o2",
		subject: "plugbus.replay.archive.shop.com.example.order.cancelled"})
	l, err := e.store.Get(ctx(t), again)
	if err != nil || l.Producer != "shop" || l.Type != "com.example.order.cancelled" {
		t.Fatalf("Get of a replay's dead letter = %+v, %v", l, err)
	}
	if err := e.store.Replay(ctx(t), again); err != nil {
		t.Fatal(err)
	}
	wantID = bus.MsgID("shop", sourceOf("shop"), "o2") + "-replay-" + strconv.FormatUint(again, 10)
	if got := e.replayed("plugbus.replay.archive.shop.com.example.order.cancelled").Header.Get(jetstream.MsgIDHeader); got != wantID {
		t.Errorf("second replay's Nats-Msg-Id = %q; want %q (stored again, not dropped as a duplicate)", got, wantID)
	}

	// A letter whose subject says nothing usable stays put.
	bad := e.put(letterSpec{plugin: "archive", producer: "shop", typ: "com.example.order.placed", id: "x", subject: "somewhere.else"})
	if err := e.store.Replay(ctx(t), bad); !errors.Is(err, deadletter.ErrInvalid) || !strings.Contains(err.Error(), "somewhere.else") {
		t.Errorf("Replay of a letter without a usable subject = %v; want ErrInvalid", err)
	}
	if _, err := e.store.Get(ctx(t), bad); err != nil {
		t.Errorf("the letter that could not be replayed is gone: %v", err)
	}
}

func TestReplayReachesTheConsumer(t *testing.T) {
	e := newEnv(t)
	seq := e.put(letterSpec{plugin: "archive", producer: "shop", typ: "com.example.order.placed", id: "o1"})
	// The plugin's consumer reads its handled types and its replay subject.
	cons, err := e.js.CreateOrUpdateConsumer(ctx(t), bus.DefaultEventsStream, jetstream.ConsumerConfig{
		Durable:        "archive",
		FilterSubjects: []string{"plugbus.events.*.com.example.>", "plugbus.replay.archive.>"},
		AckPolicy:      jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.Replay(ctx(t), seq); err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := bus.Decode(&nats.Msg{Header: msg.Headers(), Data: msg.Data()})
	if err != nil || ev.ID() != "o1" || msg.Subject() != "plugbus.replay.archive.shop.com.example.order.placed" {
		t.Errorf("consumer got %s %v, %v", msg.Subject(), ev, err)
	}
	if err := msg.Ack(); err != nil {
		t.Fatal(err)
	}
}

func TestReplayAll(t *testing.T) {
	e := newEnv(t)
	e.fixture()
	n, err := e.store.ReplayAll(ctx(t), deadletter.Filter{Plugin: "archive", Type: "com.example.order.placed"})
	if err != nil || n != 2 {
		t.Fatalf("ReplayAll = %d, %v; want 2", n, err)
	}
	m := e.replayed("plugbus.replay.archive.shop.com.example.order.placed")
	if got := m.Header.Get("ce-id"); got != "o4" {
		t.Errorf("last replayed = %s; want o4 (oldest first)", got)
	}
	if got, _ := e.store.List(ctx(t), deadletter.Filter{}); !reflect.DeepEqual(ids(got), []string{"o2", "o3", "u1"}) {
		t.Errorf("left after ReplayAll: %v", ids(got))
	}
	n, err = e.store.ReplayAll(ctx(t), deadletter.Filter{Limit: 1})
	if err != nil || n != 1 {
		t.Fatalf("ReplayAll(limit 1) = %d, %v", n, err)
	}
	if got, _ := e.store.List(ctx(t), deadletter.Filter{}); !reflect.DeepEqual(ids(got), []string{"o3", "u1"}) {
		t.Errorf("left after ReplayAll(limit 1): %v", ids(got))
	}
	n, err = e.store.ReplayAll(ctx(t), deadletter.Filter{Plugin: "nobody"})
	if err != nil || n != 0 {
		t.Errorf("ReplayAll of nothing = %d, %v", n, err)
	}
}

func TestPurge(t *testing.T) {
	e := newEnv(t)
	e.fixture()
	n, err := e.store.Purge(ctx(t), deadletter.Filter{Plugin: "archive", Type: "com.example.order.*"})
	if err != nil || n != 3 {
		t.Fatalf("Purge by type = %d, %v; want 3", n, err)
	}
	if got, _ := e.store.List(ctx(t), deadletter.Filter{}); !reflect.DeepEqual(ids(got), []string{"o3", "u1"}) {
		t.Errorf("left after Purge by type: %v", ids(got))
	}
	e.put(letterSpec{plugin: "archive", producer: "shop", typ: "com.example.order.placed", id: "o5"})
	n, err = e.store.Purge(ctx(t), deadletter.Filter{Plugin: "archive"})
	if err != nil || n != 2 {
		t.Fatalf("Purge by plugin = %d, %v; want 2", n, err)
	}
	if got, _ := e.store.List(ctx(t), deadletter.Filter{}); !reflect.DeepEqual(ids(got), []string{"o3"}) {
		t.Errorf("left after Purge by plugin: %v", ids(got))
	}
	n, err = e.store.Purge(ctx(t), deadletter.Filter{Plugin: "archive"})
	if err != nil || n != 0 {
		t.Errorf("Purge of nothing = %d, %v", n, err)
	}
	e.put(letterSpec{plugin: "third", producer: "shop", typ: "com.example.order.placed", id: "o6"})
	n, err = e.store.Purge(ctx(t), deadletter.Filter{})
	if err != nil || n != 2 {
		t.Fatalf("Purge of everything = %d, %v; want 2", n, err)
	}
	if got, _ := e.store.List(ctx(t), deadletter.Filter{}); len(got) != 0 {
		t.Errorf("left after Purge of everything: %v", ids(got))
	}
}

// A dead letter stream that allows direct gets answers Get through them;
// the headers the server adds to those answers are no part of the letter.
func TestGetWithDirectGets(t *testing.T) {
	e := newEnv(t)
	st, err := e.js.Stream(ctx(t), bus.DefaultDeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.AllowDirect = true
	if _, err := e.js.UpdateStream(ctx(t), cfg); err != nil {
		t.Fatal(err)
	}
	seq := e.put(letterSpec{plugin: "archive", producer: "shop", typ: "com.example.order.placed", id: "o1"})
	l, err := e.store.Get(ctx(t), seq)
	if err != nil {
		t.Fatal(err)
	}
	if l.ID != "o1" || l.Plugin != "archive" || string(l.Data) != `{"order":"o1"}` {
		t.Errorf("Get = %+v", l)
	}
	for k := range l.Header {
		if strings.HasPrefix(k, "Nats-") {
			t.Errorf("letter header has the server's %s", k)
		}
	}
	if _, err := e.store.Get(ctx(t), 999); !errors.Is(err, deadletter.ErrNotFound) {
		t.Errorf("Get(999) over direct get = %v; want ErrNotFound", err)
	}
	if err := e.store.Replay(ctx(t), seq); err != nil {
		t.Fatal(err)
	}
	m := e.replayed("plugbus.replay.archive.shop.com.example.order.placed")
	if m.Header.Get("Nats-Stream") != "" && m.Header.Get("Nats-Stream") != bus.DefaultEventsStream {
		t.Errorf("replayed event carries Nats-Stream %q", m.Header.Get("Nats-Stream"))
	}
}
