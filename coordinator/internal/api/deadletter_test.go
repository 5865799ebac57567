package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
	"github.com/plugbus/plugbus/coordinator/internal/api"
	"github.com/plugbus/plugbus/coordinator/internal/deadletter"
)

// dlEnv is the API with dead letters on a real NATS server.
type dlEnv struct {
	t   *testing.T
	url string
	js  jetstream.JetStream
}

// newDLEnv starts NATS with the durable streams and the API; durable false
// leaves Config.DeadLetters nil.
func newDLEnv(t *testing.T, durable bool, token string) *dlEnv {
	t.Helper()
	nc := bustest.Connect(t, bustest.NewServer(t))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamConfig{Memory: true}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg := api.Config{
		Conn: nc, Token: token, Registerer: reg, Gatherer: reg,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if durable {
		cfg.DeadLetters = deadletter.New(js, bus.DefaultPrefix, bus.DefaultDeadLetterStream)
	}
	h, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return &dlEnv{t: t, url: hs.URL, js: js}
}

// put stores a dead letter of plugin the way plugin-kit does and returns
// its sequence.
func (e *dlEnv) put(plugin, typ, id string) uint64 {
	e.t.Helper()
	ev := event.New()
	ev.SetID(id)
	ev.SetSource("urn:test:shop")
	ev.SetType(typ)
	_ = ev.SetData(event.ApplicationJSON, map[string]string{"id": id})
	msg := &nats.Msg{Subject: "plugbus.deadletter." + plugin}
	if err := bus.Encode(&ev, msg); err != nil {
		e.t.Fatal(err)
	}
	msg.Header.Set(bus.HeaderDLError, "boom "+id)
	msg.Header.Set(bus.HeaderDLAttempts, "3")
	msg.Header.Set(bus.HeaderDLSubject, "plugbus.events.shop."+typ)
	msg.Header.Set(bus.HeaderDLPlugin, plugin)
	msg.Header.Set(bus.HeaderDLTime, "2026-01-02T03:04:05Z")
	ack, err := e.js.PublishMsg(context.Background(), msg)
	if err != nil {
		e.t.Fatal(err)
	}
	return ack.Sequence
}

// call sends a request and decodes the JSON answer into out (when not nil).
func (e *dlEnv) call(method, path, token string, out any) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		e.t.Errorf("%s %s: Content-Type %q; want application/json", method, path, ct)
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(body, out); err != nil {
			e.t.Fatalf("%s %s: %v in %s", method, path, err, body)
		}
	}
	return resp.StatusCode, string(body)
}

func letterIDs(ls []deadletter.Letter) string {
	var ids []string
	for _, l := range ls {
		ids = append(ids, l.ID)
	}
	return strings.Join(ids, ",")
}

func TestDeadLetters(t *testing.T) {
	e := newDLEnv(t, true, "")
	var list []deadletter.Letter
	if code, body := e.call("GET", "/v1/deadletters", "", &list); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("empty list: %d %s; want 200 []", code, body)
	}
	s1 := e.put("archive", "com.example.order.placed", "o1")
	s2 := e.put("archive", "com.example.user.created", "u1")
	e.put("mailer", "com.example.order.placed", "o2")
	s4 := e.put("archive", "com.example.order.placed", "o3")

	for path, want := range map[string]string{
		"/v1/deadletters":                                         "o1,u1,o2,o3",
		"/v1/deadletters?plugin=archive":                          "o1,u1,o3",
		"/v1/deadletters?type=com.example.order.placed":           "o1,o2,o3",
		"/v1/deadletters?plugin=archive&type=com.example.order.*": "o1,o3",
		"/v1/deadletters?type=com.example.>&limit=2":              "o2,o3",
	} {
		list = nil
		if code, body := e.call("GET", path, "", &list); code != 200 || letterIDs(list) != want {
			t.Errorf("GET %s = %d %s; want %s", path, code, body, want)
		}
	}
	list = nil
	e.call("GET", "/v1/deadletters?plugin=archive&limit=1", "", &list)
	if len(list) != 1 || list[0].Seq != s4 || list[0].Plugin != "archive" || list[0].Error != "boom o3" || list[0].Attempts != 3 || list[0].Data != nil || list[0].Header != nil {
		t.Errorf("listed letter = %+v", list)
	}

	var one deadletter.Letter
	if code, body := e.call("GET", "/v1/deadletters/"+itoa(int(s2)), "", &one); code != 200 {
		t.Fatalf("GET one: %d %s", code, body)
	}
	if one.ID != "u1" || one.Type != "com.example.user.created" || string(one.Data) != `{"id":"u1"}` || one.Header["ce-id"][0] != "u1" || one.Header[bus.HeaderDLError][0] != "boom u1" {
		t.Errorf("GET one = %+v", one)
	}

	var replayed map[string]int
	if code, body := e.call("POST", "/v1/deadletters/"+itoa(int(s1))+"/replay", "", &replayed); code != 200 || replayed["replayed"] != 1 {
		t.Fatalf("replay one: %d %s", code, body)
	}
	st, err := e.js.Stream(context.Background(), bus.DefaultEventsStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(context.Background(), "plugbus.replay.archive.shop.com.example.order.placed")
	if err != nil || m.Header.Get("ce-id") != "o1" || m.Header.Get(bus.HeaderDLError) != "" {
		t.Fatalf("replayed event: %+v, %v", m, err)
	}
	if code, body := e.call("GET", "/v1/deadletters/"+itoa(int(s1)), "", nil); code != 404 || !strings.Contains(body, "coordinator deadletter ls") {
		t.Errorf("GET of a replayed letter: %d %s; want 404", code, body)
	}
	if code, body := e.call("POST", "/v1/deadletters/"+itoa(int(s1))+"/replay", "", nil); code != 404 {
		t.Errorf("replaying it again: %d %s; want 404", code, body)
	}

	replayed = nil
	if code, body := e.call("POST", "/v1/deadletters/replay?plugin=archive&type=com.example.order.placed", "", &replayed); code != 200 || replayed["replayed"] != 1 {
		t.Errorf("replay all: %d %s; want 1 replayed", code, body)
	}

	var purged map[string]int
	if code, body := e.call("DELETE", "/v1/deadletters/"+itoa(int(s2)), "", &purged); code != 200 || purged["purged"] != 1 {
		t.Errorf("delete one: %d %s", code, body)
	}
	e.put("mailer", "com.example.order.placed", "o4")
	e.put("mailer", "com.example.user.created", "u2")
	purged = nil
	if code, body := e.call("DELETE", "/v1/deadletters?plugin=mailer&type=com.example.user.*", "", &purged); code != 200 || purged["purged"] != 1 {
		t.Errorf("purge by type: %d %s; want 1", code, body)
	}
	purged = nil
	if code, body := e.call("DELETE", "/v1/deadletters?plugin=mailer", "", &purged); code != 200 || purged["purged"] != 2 {
		t.Errorf("purge by plugin: %d %s; want 2", code, body)
	}
	list = nil
	if e.call("GET", "/v1/deadletters", "", &list); len(list) != 0 {
		t.Errorf("left: %s", letterIDs(list))
	}
}

func TestDeadLetterErrors(t *testing.T) {
	e := newDLEnv(t, true, "")
	for _, tc := range []struct {
		method, path string
		status       int
		field, has   string
	}{
		{"GET", "/v1/deadletters/999", 404, "seq", "999"},
		{"GET", "/v1/deadletters/abc", 400, "seq", "abc"},
		{"GET", "/v1/deadletters/0", 400, "seq", ""},
		{"POST", "/v1/deadletters/999/replay", 404, "seq", "coordinator deadletter ls"},
		{"DELETE", "/v1/deadletters/999", 404, "seq", ""},
		{"GET", "/v1/deadletters?limit=0", 400, "limit", ""},
		{"GET", "/v1/deadletters?limit=x", 400, "limit", ""},
		{"GET", "/v1/deadletters?plugin=a.b", 400, "plugin", ""},
		{"GET", "/v1/deadletters?type=a..b", 400, "type", ""},
		{"POST", "/v1/deadletters/replay", 400, "plugin", "?plugin="},
		{"DELETE", "/v1/deadletters", 400, "plugin", "?plugin="},
		{"DELETE", "/v1/deadletters?type=a.b", 400, "plugin", ""},
		{"PUT", "/v1/deadletters", 405, "", "DELETE or GET"},
		{"GET", "/v1/deadletters/replay", 405, "", "POST"},
		{"GET", "/v1/deadletters/1/replay", 405, "", "POST"},
	} {
		code, body := e.call(tc.method, tc.path, "", nil)
		var eb struct{ Error, Field string }
		_ = json.Unmarshal([]byte(body), &eb)
		if code != tc.status || eb.Field != tc.field || !strings.Contains(eb.Error, tc.has) {
			t.Errorf("%s %s = %d %s; want %d, field %q, mentioning %q", tc.method, tc.path, code, body, tc.status, tc.field, tc.has)
		}
	}
}

func TestDeadLettersOff(t *testing.T) {
	e := newDLEnv(t, false, "")
	for _, r := range [][2]string{
		{"GET", "/v1/deadletters"}, {"GET", "/v1/deadletters/1"}, {"POST", "/v1/deadletters/1/replay"},
		{"POST", "/v1/deadletters/replay?plugin=p"}, {"DELETE", "/v1/deadletters?plugin=p"}, {"DELETE", "/v1/deadletters/1"},
	} {
		code, body := e.call(r[0], r[1], "", nil)
		if code != 404 || strings.TrimSpace(body) != `{"error":"durable mode is off: no dead letters"}` {
			t.Errorf("%s %s without dead letters = %d %s", r[0], r[1], code, body)
		}
	}
}

func TestDeadLettersNeedToken(t *testing.T) {
	e := newDLEnv(t, true, "s3cret")
	e.put("archive", "com.example.order.placed", "o1")
	if code, body := e.call("GET", "/v1/deadletters", "", nil); code != 401 {
		t.Errorf("without a token: %d %s; want 401", code, body)
	}
	if code, body := e.call("DELETE", "/v1/deadletters?plugin=archive", "wrong", nil); code != 401 {
		t.Errorf("with a wrong token: %d %s; want 401", code, body)
	}
	var list []deadletter.Letter
	if code, body := e.call("GET", "/v1/deadletters", "s3cret", &list); code != 200 || len(list) != 1 {
		t.Errorf("with the token: %d %s", code, body)
	}
}
