package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/bustest"
)

// coordinatorBin is the coordinator binary the CLI tests run, built once.
var coordinatorBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "plugbus-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	coordinatorBin = filepath.Join(dir, "coordinator")
	build := exec.Command("go", "build", "-o", coordinatorBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the coordinator:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cliEnv is a NATS server with the durable streams, for the CLI to talk to.
type cliEnv struct {
	t   *testing.T
	url string
	js  jetstream.JetStream
}

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	srv := bustest.NewServer(t)
	js, err := jetstream.New(bustest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamConfig{Memory: true}); err != nil {
		t.Fatal(err)
	}
	return &cliEnv{t: t, url: srv.ClientURL(), js: js}
}

// put stores a dead letter the way plugin-kit does and returns its sequence.
func (e *cliEnv) put(plugin, typ, id string) uint64 {
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
	msg.Header.Set(bus.HeaderDLAttempts, "4")
	msg.Header.Set(bus.HeaderDLSubject, "plugbus.events.shop."+typ)
	msg.Header.Set(bus.HeaderDLPlugin, plugin)
	msg.Header.Set(bus.HeaderDLTime, time.Now().UTC().Format(time.RFC3339Nano))
	ack, err := e.js.PublishMsg(context.Background(), msg)
	if err != nil {
		e.t.Fatal(err)
	}
	return ack.Sequence
}

// run runs the coordinator with args against the test's server and
// returns its stdout, its stderr and its exit status.
func (e *cliEnv) run(args ...string) (string, string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, coordinatorBin, args...)
	// Later entries win over the test process's own environment.
	cmd.Env = append(os.Environ(), "PLUGBUS_URL="+e.url, "PLUGBUS_PREFIX=plugbus", "PLUGBUS_TOKEN=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return stdout.String(), stderr.String(), exit.ExitCode()
	case err != nil:
		e.t.Fatalf("coordinator %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), 0
}

// ok runs args, failing the test unless the command succeeds.
func (e *cliEnv) ok(args ...string) string {
	e.t.Helper()
	out, errOut, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("coordinator %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// fails runs args, failing the test unless the command fails with an
// error that mentions each of want.
func (e *cliEnv) fails(args []string, want ...string) {
	e.t.Helper()
	out, errOut, code := e.run(args...)
	if code == 0 {
		e.t.Errorf("coordinator %s succeeded: %s", strings.Join(args, " "), out)
		return
	}
	for _, w := range want {
		if !strings.Contains(errOut, w) {
			e.t.Errorf("coordinator %s: stderr %q does not mention %q", strings.Join(args, " "), errOut, w)
		}
	}
}

// cliLetter is a dead letter as ls --json and show --json print it.
type cliLetter struct {
	Seq                                         uint64
	Plugin, Subject, Producer, Type, ID, Source string
	Error                                       string
	Attempts                                    int
	Time                                        time.Time
	Header                                      map[string][]string
	Data                                        []byte
}

func (e *cliEnv) list(args ...string) []cliLetter {
	e.t.Helper()
	var ls []cliLetter
	out := e.ok(append([]string{"deadletter", "ls", "--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &ls); err != nil {
		e.t.Fatalf("ls --json printed %q: %v", out, err)
	}
	return ls
}

func cliIDs(ls []cliLetter) string {
	var ids []string
	for _, l := range ls {
		ids = append(ids, l.ID)
	}
	return strings.Join(ids, ",")
}

func TestDeadletterLsAndShow(t *testing.T) {
	e := newCLIEnv(t)
	if out := e.ok("deadletter", "ls", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("ls --json of nothing = %q; want []", out)
	}
	if out := e.ok("deadletter", "ls"); !strings.Contains(out, "(no dead letters)") {
		t.Errorf("ls of nothing = %q", out)
	}
	s1 := e.put("archive", "com.example.order.placed", "o1")
	e.put("mailer", "com.example.order.placed", "o2")
	e.put("archive", "com.example.user.created", "u1")

	ls := e.list()
	if cliIDs(ls) != "o1,o2,u1" {
		t.Fatalf("ls = %s", cliIDs(ls))
	}
	l := ls[0]
	if l.Seq != s1 || l.Plugin != "archive" || l.Type != "com.example.order.placed" || l.Producer != "shop" || l.Source != "urn:test:shop" ||
		l.Error != "boom o1" || l.Attempts != 4 || l.Subject != "plugbus.events.shop.com.example.order.placed" || l.Header != nil || l.Data != nil {
		t.Errorf("ls --json letter = %+v", l)
	}
	if got := cliIDs(e.list("--plugin", "archive")); got != "o1,u1" {
		t.Errorf("ls --plugin archive = %s", got)
	}
	if got := cliIDs(e.list("--type", "com.example.order.*")); got != "o1,o2" {
		t.Errorf("ls --type com.example.order.* = %s", got)
	}
	if got := cliIDs(e.list("--plugin", "archive", "--type", "com.example.>", "--limit", "1")); got != "u1" {
		t.Errorf("ls --plugin archive --type com.example.> --limit 1 = %s", got)
	}

	out := e.ok("deadletter", "ls")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != "SEQ PLUGIN TYPE ID ATTEMPTS TIME ERROR" {
		t.Fatalf("ls =\n%s", out)
	}
	if f := strings.Fields(lines[1]); f[0] != fmt.Sprint(s1) || f[1] != "archive" || f[2] != "com.example.order.placed" || f[3] != "o1" || f[4] != "4" || !strings.HasSuffix(lines[1], "boom o1") {
		t.Errorf("ls row = %q", lines[1])
	}

	out = e.ok("deadletter", "show", fmt.Sprint(s1))
	for _, want := range []string{"plugin:", "archive", "error:", "boom o1", "attempts:", "ce-id: o1", bus.HeaderDLError + ": boom o1", `{"id":"o1"}`} {
		if !strings.Contains(out, want) {
			t.Errorf("show does not print %q:\n%s", want, out)
		}
	}
	var one cliLetter
	if err := json.Unmarshal([]byte(e.ok("deadletter", "show", fmt.Sprint(s1), "--json")), &one); err != nil {
		t.Fatal(err)
	}
	if one.ID != "o1" || string(one.Data) != `{"id":"o1"}` || one.Header["ce-type"][0] != "com.example.order.placed" {
		t.Errorf("show --json = %+v", one)
	}

	e.fails([]string{"deadletter", "show", "999"}, "999", "coordinator deadletter ls")
	e.fails([]string{"deadletter", "show", "x"}, `"x" is no dead letter sequence`)
	e.fails([]string{"deadletter", "ls", "--plugin", "a.b"}, "a.b")
	e.fails([]string{"deadletter", "ls", "--stream", "NO_SUCH"}, "durable mode is off", "NO_SUCH")
}

// TestDeadletterLsWithDurableModeOff: it exited 1 with an error where
// there is simply nothing to list.
func TestDeadletterLsWithDurableModeOff(t *testing.T) {
	srv := bustest.NewServer(t) // no streams: durable mode is off
	e := &cliEnv{t: t, url: srv.ClientURL()}
	if out := e.ok("deadletter", "ls"); !strings.Contains(out, "no dead letters: durable mode is off") || !strings.Contains(out, "--durable") {
		t.Errorf("deadletter ls = %q, want it to say durable mode is off and how to turn it on", out)
	}
	if out := e.ok("deadletter", "ls", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("deadletter ls --json = %q, want []", out)
	}
}

func TestDeadletterReplay(t *testing.T) {
	e := newCLIEnv(t)
	s1 := e.put("archive", "com.example.order.placed", "o1")
	e.put("archive", "com.example.order.placed", "o2")
	e.put("archive", "com.example.user.created", "u1")
	e.put("mailer", "com.example.order.placed", "o3")

	out := e.ok("deadletter", "replay", fmt.Sprint(s1))
	if !strings.Contains(out, fmt.Sprintf("replayed dead letter %d", s1)) || !strings.Contains(out, "archive") {
		t.Errorf("replay printed %q", out)
	}
	st, err := e.js.Stream(context.Background(), bus.DefaultEventsStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(context.Background(), "plugbus.replay.archive.shop.com.example.order.placed")
	if err != nil || m.Header.Get("ce-id") != "o1" || m.Header.Get(bus.HeaderDLError) != "" {
		t.Fatalf("replayed event = %+v, %v", m, err)
	}
	e.fails([]string{"deadletter", "replay", fmt.Sprint(s1)}, fmt.Sprint(s1), "coordinator deadletter ls")

	e.fails([]string{"deadletter", "replay"}, "nothing to replay")
	e.fails([]string{"deadletter", "replay", "--all"}, "--all needs --plugin")
	e.fails([]string{"deadletter", "replay", "2", "--all", "--plugin", "archive"}, "exclude each other")

	var got map[string]int
	if err := json.Unmarshal([]byte(e.ok("deadletter", "replay", "--all", "--plugin", "archive", "--type", "com.example.order.*", "--json")), &got); err != nil || got["replayed"] != 1 {
		t.Errorf("replay --all --json = %v, %v; want 1 replayed", got, err)
	}
	if ids := cliIDs(e.list()); ids != "u1,o3" {
		t.Errorf("left after replays: %s", ids)
	}
	if out := e.ok("deadletter", "replay", "--all", "--plugin", "mailer"); !strings.Contains(out, "replayed 1 dead letters to plugin mailer") {
		t.Errorf("replay --all printed %q", out)
	}
}

func TestDeadletterPurge(t *testing.T) {
	e := newCLIEnv(t)
	s1 := e.put("archive", "com.example.order.placed", "o1")
	e.put("archive", "com.example.user.created", "u1")
	e.put("archive", "com.example.order.placed", "o2")
	e.put("mailer", "com.example.order.placed", "o3")
	e.put("mailer", "com.example.order.placed", "o4")

	e.fails([]string{"deadletter", "purge"}, "for good", "--plugin", "--all")
	e.fails([]string{"deadletter", "purge", "--type", "com.example.>"}, "say which")
	e.fails([]string{"deadletter", "purge", "--all", "--plugin", "archive"}, "exclude each other")
	if n := len(e.list()); n != 5 {
		t.Fatalf("a refused purge deleted something: %d left", n)
	}

	if out := e.ok("deadletter", "purge", fmt.Sprint(s1)); !strings.Contains(out, fmt.Sprintf("purged dead letter %d", s1)) {
		t.Errorf("purge SEQ printed %q", out)
	}
	if out := e.ok("deadletter", "purge", "--plugin", "archive", "--type", "com.example.user.*"); !strings.Contains(out, "purged 1 dead letters") {
		t.Errorf("purge --type printed %q", out)
	}
	if ids := cliIDs(e.list()); ids != "o2,o3,o4" {
		t.Errorf("left after purge by type: %s", ids)
	}
	if out := e.ok("deadletter", "purge", "--plugin", "mailer"); !strings.Contains(out, "purged 2 dead letters") {
		t.Errorf("purge --plugin printed %q", out)
	}
	var got map[string]int
	if err := json.Unmarshal([]byte(e.ok("deadletter", "purge", "--all", "--json")), &got); err != nil || got["purged"] != 1 {
		t.Errorf("purge --all --json = %v, %v; want 1 purged", got, err)
	}
	if n := len(e.list()); n != 0 {
		t.Errorf("%d left after purge --all", n)
	}
}
