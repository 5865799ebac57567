package coordinator_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/bus/embedded"
	"github.com/plugbus/plugbus/coordinator"
	"github.com/plugbus/plugbus/coordinator/coordinatortest"
	"github.com/plugbus/plugbus/internal/testcert"
)

const testHTTPToken = "secret-http-token"

// secureDeployment is a coordinator in secure mode, run in this process.
type secureDeployment struct {
	t       *testing.T
	c       *coordinator.Coordinator
	dataDir string
	api     string
	hc      *http.Client
	natsOpt []nats.Option // for every connection: TLS settings
}

func startSecure(t *testing.T, plugins ...coordinator.PluginSpec) *secureDeployment {
	return startSecureWith(t, nil, plugins...)
}

// startSecureWith starts a coordinator in secure mode, with mod's changes
// to its configuration.
func startSecureWith(t *testing.T, mod func(*coordinator.Config), plugins ...coordinator.PluginSpec) *secureDeployment {
	t.Helper()
	on := true
	dir := t.TempDir()
	cfg := coordinator.Config{
		NATSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", DataDir: dir,
		Secure: &on, HTTPToken: testHTTPToken, Durable: true, Plugins: plugins,
	}
	if mod != nil {
		mod(&cfg)
	}
	c := coordinatortest.Start(t, cfg)
	return &secureDeployment{t: t, c: c, dataDir: dir, api: c.HTTPURL(), hc: http.DefaultClient}
}

// call sends an API request with the token and returns the status and body.
func (d *secureDeployment) call(method, path, token string, body any) (int, []byte) {
	d.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, d.api+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// add creates an identity through the API and writes its seed to a file.
func (d *secureDeployment) add(name string, handles, answers, emits []string) string {
	d.t.Helper()
	status, body := d.call("POST", "/v1/identities", testHTTPToken, map[string]any{"name": name, "handles": handles, "answers": answers, "emits": emits})
	if status != http.StatusCreated {
		d.t.Fatalf("add %s: %d %s", name, status, body)
	}
	return d.writeSeed(name, body)
}

func (d *secureDeployment) writeSeed(name string, body []byte) string {
	d.t.Helper()
	var a struct{ Seed string }
	if err := json.Unmarshal(body, &a); err != nil || a.Seed == "" {
		d.t.Fatalf("no seed in %s (%v)", body, err)
	}
	file := filepath.Join(d.t.TempDir(), name+".nk")
	if err := os.WriteFile(file, []byte(a.Seed), 0o600); err != nil {
		d.t.Fatal(err)
	}
	return file
}

// client is a connection to the bus with its asynchronous errors.
type client struct {
	nc   *nats.Conn
	errs chan error
}

func (d *secureDeployment) dial(name, seedFile string) (*client, error) {
	cl := &client{errs: make(chan error, 100)}
	opt, err := nats.NkeyOptionFromSeed(seedFile)
	if err != nil {
		return nil, err
	}
	opts := append([]nats.Option{opt, nats.Name(name), nats.CustomInboxPrefix(bus.InboxPrefix(name)), nats.MaxReconnects(0)}, d.natsOpt...)
	cl.nc, err = nats.Connect(d.c.NATSURL(), append(opts,
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case cl.errs <- err:
			default:
			}
		}))...)
	if err != nil {
		return nil, err
	}
	d.t.Cleanup(cl.nc.Close)
	return cl, nil
}

func (d *secureDeployment) mustDial(name, seedFile string) *client {
	d.t.Helper()
	cl, err := d.dial(name, seedFile)
	if err != nil {
		d.t.Fatalf("connect as %s: %v", name, err)
	}
	return cl
}

// violation waits for the server's permission error about subject.
func (cl *client) violation(t *testing.T, subject string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case err := <-cl.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), subject) {
				return
			}
		case <-deadline:
			t.Fatalf("no permissions violation reported for %q", subject)
		}
	}
}

// seed is the file of a seed the coordinator keeps: its own users'
// (admin, cli, http) and the plugins' it runs.
func (d *secureDeployment) seed(name string) string {
	return filepath.Join(d.dataDir, "identities", name+".nk")
}

// closes returns a channel closed when cl's connection closes.
func (cl *client) closes() <-chan struct{} {
	closed := make(chan struct{})
	cl.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	return closed
}

// waitClosed fails unless closed (from closes) is closed within 10 s.
func waitClosed(t *testing.T, closed <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s is still open", what)
	}
}

// observer sees, through the admin's connection, every message on the
// subjects it watches.
type observer struct {
	sub  *nats.Subscription
	skip func(subject string) bool
}

// observe watches subject as the admin; skip, when not nil, says which
// subjects to leave out of what next returns.
func (d *secureDeployment) observe(admin *client, subject string, skip func(string) bool) *observer {
	d.t.Helper()
	sub, err := admin.nc.SubscribeSync(subject)
	if err != nil {
		d.t.Fatal(err)
	}
	if err := admin.nc.Flush(); err != nil {
		d.t.Fatal(err)
	}
	return &observer{sub: sub, skip: skip}
}

// next returns the subjects the observer got up to and including
// sentinel.
func (o *observer) next(t *testing.T, sentinel string) []string {
	t.Helper()
	var got []string
	for {
		m, err := o.sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("observer: waiting for %s: %v (got %v)", sentinel, err, got)
		}
		if o.skip != nil && o.skip(m.Subject) {
			continue
		}
		got = append(got, m.Subject)
		if m.Subject == sentinel {
			return got
		}
	}
}

// refused publishes on subject as cl, waits for the server's refusal,
// then has by publish sentinel, and fails unless the sentinel is the only
// thing the observer saw: the refused publish reached no one.
func (o *observer) refused(t *testing.T, cl *client, subject string, by *client, sentinel string) {
	t.Helper()
	if err := cl.nc.Publish(subject, []byte("forged")); err != nil {
		t.Fatal(err)
	}
	cl.violation(t, subject)
	if err := by.nc.Publish(sentinel, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if got := o.next(t, sentinel); len(got) != 1 {
		t.Fatalf("the forbidden publish on %s arrived: observer got %v", subject, got)
	}
}

// TestSecureModePermissionMatrix runs every forbidden action of plugin A
// against a coordinator in secure mode and shows it had no effect: what A
// publishes reaches no one, what A subscribes to brings it nothing, the
// streams, consumers and records of others stay as they were, and
// credentials that are wrong, removed or rotated do not connect.
func TestSecureModePermissionMatrix(t *testing.T) {
	d := startSecure(t)
	const p = "plugbus"
	aSeed := d.add("a", []string{"a.in"}, []string{"a.req"}, []string{"a.out"})
	bSeed := d.add("b", []string{"b.in"}, []string{"b.req"}, []string{"b.out"})
	admin := d.mustDial("admin", d.seed("admin"))
	a := d.mustDial("a", aSeed)
	b := d.mustDial("b", bSeed)

	// The observer sees every event and request on the bus.
	seen := d.observe(admin, p+".>", nil)
	sentinel := p + ".events.a.a.out"

	t.Run("allowed", func(t *testing.T) {
		if err := a.nc.Publish(sentinel, []byte("ok")); err != nil {
			t.Fatal(err)
		}
		if got := seen.next(t, sentinel); len(got) != 1 {
			t.Fatalf("observer got %v, want only %s", got, sentinel)
		}
		// A answers its own type's requests in its own queue group.
		sub, err := a.nc.QueueSubscribe(p+".invoke.*.a.req", "a", func(m *nats.Msg) { _ = m.Respond([]byte("answer")) })
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := a.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		reply, err := b.nc.Request(p+".invoke.b.a.req", []byte("q"), 10*time.Second)
		if err != nil || string(reply.Data) != "answer" {
			t.Fatalf("b invoking a: %v %v", reply, err)
		}
		seen.next(t, p+".invoke.b.a.req")
	})

	publishRows := []struct{ name, subject string }{
		{"as another plugin", p + ".events.b.b.out"},
		{"as the coordinator", p + ".events.coordinator.io.plugbus.coordinator.started"},
		{"another plugin's lifecycle", p + ".events.b.io.plugbus.plugin.stopped"},
		{"a type it did not declare", p + ".events.a.x.undeclared"},
		{"a request as another plugin", p + ".invoke.b.b.req"},
		{"another plugin's dead letters", p + ".deadletter.b"},
		{"a replay to another plugin", p + ".replay.b.x.b.in"},
	}
	for _, row := range publishRows {
		t.Run("publish "+row.name, func(t *testing.T) { seen.refused(t, a, row.subject, a, sentinel) })
	}

	subscribeRows := []struct{ name, subject, queue, probe string }{
		{"everything", ">", "", p + ".events.b.b.out"},
		{"another plugin's handled type", p + ".events.*.b.in", "", p + ".events.x.b.in"},
		{"another plugin's inbox", "_INBOX.b.>", "", "_INBOX.b.abc"},
		{"the system account", "$SYS.>", "", "$SYS.ACCOUNT.x.CONNECT"},
		{"another plugin's queue group on its invoke subject", p + ".invoke.*.b.req", "b", p + ".invoke.x.b.req"},
		{"another queue group on its own invoke subject", p + ".invoke.*.a.req", "b", p + ".invoke.x.a.req"},
		{"its own invoke subject outside a queue group", p + ".invoke.*.a.req", "", p + ".invoke.x.a.req"},
	}
	// A's own handled type is where the sentinel arrives.
	own, err := a.nc.SubscribeSync(p + ".events.*.a.in")
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range subscribeRows {
		t.Run("subscribe "+row.name, func(t *testing.T) {
			var sub *nats.Subscription
			var err error
			if row.queue == "" {
				sub, err = a.nc.SubscribeSync(row.subject)
			} else {
				sub, err = a.nc.QueueSubscribeSync(row.subject, row.queue)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			a.violation(t, row.subject)
			if err := admin.nc.Publish(row.probe, []byte("secret")); err != nil {
				t.Fatal(err)
			}
			if err := admin.nc.Publish(p+".events.x.a.in", []byte("sentinel")); err != nil {
				t.Fatal(err)
			}
			if _, err := own.NextMsg(10 * time.Second); err != nil {
				t.Fatalf("sentinel: %v", err)
			}
			if n, _, _ := sub.Pending(); n != 0 {
				t.Fatalf("the forbidden subscription got %d messages", n)
			}
		})
	}

	// JetStream: an event for each plugin waits in the stream.
	adminJS, _ := jetstream.New(admin.nc)
	ctx := context.Background()
	for _, s := range []string{p + ".events.x.b.in", p + ".events.x.a.in"} {
		if _, err := adminJS.Publish(ctx, s, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	state := func() (msgs uint64, consumers int, bPending uint64) {
		t.Helper()
		st, err := adminJS.Stream(ctx, bus.DefaultEventsStream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		bc, err := st.Consumer(ctx, "b")
		if err != nil {
			t.Fatal(err)
		}
		ci, err := bc.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs, info.State.Consumers, ci.NumPending + uint64(ci.NumAckPending)
	}
	msgs0, cons0, pending0 := state()
	if pending0 == 0 {
		t.Fatal("b's consumer has nothing pending; the rows below would prove nothing")
	}
	create, _ := json.Marshal(map[string]any{"stream_name": bus.DefaultEventsStream, "config": map[string]any{"durable_name": "spy", "filter_subject": p + ".events.>", "ack_policy": "explicit"}})
	jsRows := []struct{ name, subject string }{
		{"delete the stream", "$JS.API.STREAM.DELETE." + bus.DefaultEventsStream},
		{"purge the stream", "$JS.API.STREAM.PURGE." + bus.DefaultEventsStream},
		{"create a stream", "$JS.API.STREAM.CREATE.SPY"},
		{"create a consumer", "$JS.API.CONSUMER.CREATE." + bus.DefaultEventsStream + ".spy"},
		{"delete another plugin's consumer", "$JS.API.CONSUMER.DELETE." + bus.DefaultEventsStream + ".b"},
		{"read another plugin's consumer", "$JS.API.CONSUMER.MSG.NEXT." + bus.DefaultEventsStream + ".b"},
		{"look at another plugin's consumer", "$JS.API.CONSUMER.INFO." + bus.DefaultEventsStream + ".b"},
		{"ack for another plugin", "$JS.ACK." + bus.DefaultEventsStream + ".b.1.1.1.0.0"},
		{"read a stream's messages", "$JS.API.STREAM.MSG.GET." + bus.DefaultEventsStream},
		{"read another plugin's records", "$JS.API.DIRECT.GET.KV_" + bus.DefaultDedupBucket + ".$KV." + bus.DefaultDedupBucket + ".b.key"},
		{"write another plugin's records", "$KV." + bus.DefaultDedupBucket + ".b.key"},
	}
	for _, row := range jsRows {
		t.Run("jetstream "+row.name, func(t *testing.T) {
			if err := a.nc.PublishRequest(row.subject, a.nc.NewRespInbox(), create); err != nil {
				t.Fatal(err)
			}
			a.violation(t, row.subject)
			if msgs, cons, pending := state(); msgs != msgs0 || cons != cons0 || pending != pending0 {
				t.Fatalf("stream had %d events, %d consumers, b %d pending; now %d, %d, %d", msgs0, cons0, pending0, msgs, cons, pending)
			}
		})
	}
	t.Run("jetstream own consumer", func(t *testing.T) {
		js, _ := jetstream.New(a.nc)
		cons, err := js.Consumer(ctx, bus.DefaultEventsStream, "a")
		if err != nil {
			t.Fatal(err)
		}
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if n != 1 {
			t.Fatalf("fetched %d events from its own consumer (%v), want 1", n, batch.Error())
		}
	})

	t.Run("wrong credentials", func(t *testing.T) {
		kp, _ := nkeys.CreateUser()
		seed, _ := kp.Seed()
		file := filepath.Join(t.TempDir(), "stranger.nk")
		if err := os.WriteFile(file, seed, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := d.dial("stranger", file); !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("a key the server does not know: got %v, want an authorization violation", err)
		}
		nc, err := nats.Connect(d.c.NATSURL(), nats.MaxReconnects(0))
		if err == nil {
			nc.Close()
			t.Fatal("a client without credentials connected")
		}
		// b's public key, with the nonce signed by another key.
		nc, err = nats.Connect(d.c.NATSURL(), nats.MaxReconnects(0), nats.Nkey(publicKey(t, bSeed), kp.Sign))
		if !errors.Is(err, nats.ErrAuthorization) {
			if err == nil {
				nc.Close()
			}
			t.Fatalf("b's key with another's signature: got %v, want an authorization violation", err)
		}
	})

	// The coordinator's own users: the HTTP API's publisher (in-process
	// only, its key made at every start) and the command line's cli.nk.
	// Neither may do what a plugin may not, nor answer invokes or read
	// events beyond what it needs.
	if _, err := d.dial("http", d.seed("http")); err == nil {
		t.Fatal("the HTTP API's key connected over a socket; it is for in-process connections only")
	}
	d.natsOpt = []nats.Option{coordinator.InProcessOption(d.c)}
	httpUser := d.mustDial("http", d.seed("http"))
	d.natsOpt = nil
	cliUser := d.mustDial("cli", d.seed("cli"))
	users := []struct {
		user     string
		cl       *client
		allowed  string // a subject it may publish to
		publish  []string
		subcribe []struct{ subject, queue, probe string }
		js       []string
	}{
		{
			user: "http", cl: httpUser, allowed: p + ".events.http.x.allowed",
			publish: []string{p + ".events.b.b.out", p + ".events.coordinator.io.plugbus.coordinator.started", p + ".deadletter.b", p + ".replay.b.x.b.in"},
			subcribe: []struct{ subject, queue, probe string }{
				{">", "", p + ".events.b.b.out"},
				{p + ".events.>", "", p + ".events.b.b.out"},
				{"$SYS.>", "", "$SYS.ACCOUNT.x.CONNECT"},
				{p + ".invoke.*.b.req", "b", p + ".invoke.x.b.req"},
				{"_INBOX.b.>", "", "_INBOX.b.abc"},
			},
			js: []string{
				"$JS.API.STREAM.PURGE." + bus.DefaultEventsStream,
				"$JS.API.STREAM.DELETE." + bus.DefaultEventsStream,
				"$JS.API.CONSUMER.CREATE." + bus.DefaultEventsStream + ".spy",
				"$JS.API.CONSUMER.MSG.NEXT." + bus.DefaultEventsStream + ".b",
				"$JS.API.STREAM.MSG.GET." + bus.DefaultEventsStream,
			},
		},
		{
			user: "cli", cl: cliUser, allowed: p + ".events.cli.x.allowed",
			publish: []string{p + ".events.b.b.out", p + ".events.http.x.forged", p + ".invoke.cli.b.req", p + ".invoke.b.b.req", p + ".replay.b.x.b.in"},
			subcribe: []struct{ subject, queue, probe string }{
				{">", "", p + ".invoke.x.b.req"},
				{"$SYS.>", "", "$SYS.ACCOUNT.x.CONNECT"},
				{p + ".invoke.*.b.req", "b", p + ".invoke.x.b.req"},
				{"_INBOX.b.>", "", "_INBOX.b.abc"},
			},
			js: []string{
				"$JS.API.STREAM.PURGE." + bus.DefaultEventsStream,
				"$JS.API.CONSUMER.CREATE." + bus.DefaultEventsStream + ".spy",
				"$JS.API.CONSUMER.MSG.NEXT." + bus.DefaultEventsStream + ".b",
				"$JS.API.STREAM.MSG.GET." + bus.DefaultEventsStream,
			},
		},
	}
	for _, u := range users {
		t.Run(u.user+" allowed", func(t *testing.T) {
			if err := u.cl.nc.Publish(u.allowed, []byte("ok")); err != nil {
				t.Fatal(err)
			}
			seen.next(t, u.allowed) // after the probes of the rows before
		})
		for _, subject := range u.publish {
			t.Run(u.user+" publish "+subject, func(t *testing.T) {
				if err := u.cl.nc.Publish(subject, []byte("forged")); err != nil {
					t.Fatal(err)
				}
				u.cl.violation(t, subject)
				if err := u.cl.nc.Publish(u.allowed, []byte("ok")); err != nil {
					t.Fatal(err)
				}
				if got := seen.next(t, u.allowed); len(got) != 1 {
					t.Fatalf("the forbidden publish arrived: observer got %v", got)
				}
			})
		}
		for _, row := range u.subcribe {
			t.Run(u.user+" subscribe "+row.subject+" "+row.queue, func(t *testing.T) {
				sub, err := u.cl.nc.QueueSubscribeSync(row.subject, row.queue)
				if err != nil {
					t.Fatal(err)
				}
				defer sub.Unsubscribe()
				u.cl.violation(t, row.subject)
				if err := admin.nc.Publish(row.probe, []byte("secret")); err != nil {
					t.Fatal(err)
				}
				// Once the admin's publish is through the server, the
				// probe (had it been delivered) is ahead of the PONG
				// answering the user's flush.
				if err := admin.nc.Flush(); err != nil {
					t.Fatal(err)
				}
				if err := u.cl.nc.Flush(); err != nil {
					t.Fatal(err)
				}
				if n, _, _ := sub.Pending(); n != 0 {
					t.Fatalf("the forbidden subscription got %d messages", n)
				}
			})
		}
		// The stream stores what the observer saw above after the
		// observer got it; a publish the stream acknowledges is stored
		// after all of it, so the counts include the user's allowed
		// publishes.
		if _, err := adminJS.Publish(ctx, p+".events.x.test.stored", []byte("{}")); err != nil {
			t.Fatal(err)
		}
		msgs1, cons1, pending1 := state()
		for _, subject := range u.js {
			t.Run(u.user+" jetstream "+subject, func(t *testing.T) {
				if err := u.cl.nc.PublishRequest(subject, u.cl.nc.NewRespInbox(), create); err != nil {
					t.Fatal(err)
				}
				u.cl.violation(t, subject)
				if msgs, cons, pending := state(); msgs != msgs1 || cons != cons1 || pending != pending1 {
					t.Fatalf("stream had %d events, %d consumers, b %d pending; now %d, %d, %d", msgs1, cons1, pending1, msgs, cons, pending)
				}
			})
		}
	}
	t.Run("cli publishes with the command line", func(t *testing.T) {
		cmd := exec.Command(filepath.Join(binDir, "coordinator"), "publish", "x.from.cli", "--data", `{"n":1}`,
			"--nats-url", d.c.NATSURL(), "--nkey", d.seed("cli"))
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "published and stored") {
			t.Fatalf("coordinator publish with cli.nk: %v\n%s", err, out)
		}
		seen.next(t, p+".events.cli.x.from.cli")
	})

	t.Run("rotated credentials", func(t *testing.T) {
		closed := b.closes()
		status, body := d.call("POST", "/v1/identities/b/rotate", testHTTPToken, nil)
		if status != http.StatusOK {
			t.Fatalf("rotate: %d %s", status, body)
		}
		waitClosed(t, closed, "the connection with the old key")
		if _, err := d.dial("b", bSeed); err == nil {
			t.Fatal("the old key still connects")
		}
		d.mustDial("b", d.writeSeed("b", body))
	})

	t.Run("removed credentials", func(t *testing.T) {
		closed := a.closes()
		if status, body := d.call("DELETE", "/v1/identities/a", testHTTPToken, nil); status != http.StatusNoContent {
			t.Fatalf("rm: %d %s", status, body)
		}
		waitClosed(t, closed, "the removed identity's connection")
		if _, err := d.dial("a", aSeed); err == nil {
			t.Fatal("the removed key still connects")
		}
	})

	t.Run("HTTP without the token", func(t *testing.T) {
		for _, token := range []string{"", "wrong"} {
			req, _ := http.NewRequest("POST", d.api+"/v1/events", strings.NewReader(`{"specversion":"1.0","id":"1","source":"s","type":"x.forged"}`))
			req.Header.Set("Content-Type", "application/cloudevents+json")
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("token %q: status %d, want 401", token, resp.StatusCode)
			}
			for _, path := range []string{"/v1/identities", "/v1/identities/b/rotate"} {
				if status, _ := d.call("POST", path, token, map[string]any{"name": "c"}); status != http.StatusUnauthorized {
					t.Fatalf("token %q: POST %s: status %d, want 401", token, path, status)
				}
			}
		}
		// The next event the observer sees is the one sent with the token.
		req, _ := http.NewRequest("POST", d.api+"/v1/events", strings.NewReader(`{"specversion":"1.0","id":"2","source":"s","type":"x.real"}`))
		req.Header.Set("Content-Type", "application/cloudevents+json")
		req.Header.Set("Authorization", "Bearer "+testHTTPToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for _, s := range seen.next(t, p+".events.http.x.real") {
			if strings.Contains(s, "x.forged") {
				t.Fatalf("an event sent without the token was published: %s", s)
			}
		}
	})
}

// TestSecureModeSupervisedPlugin runs a real plugin process under a
// coordinator in secure mode: the coordinator makes its identity and hands
// it over, and the plugin connects, is discovered, handles durable events
// from its coordinator-made consumer, and answers invokes.
func TestSecureModeSupervisedPlugin(t *testing.T) {
	d := startSecure(t, coordinator.PluginSpec{
		Name: "hello", Exec: filepath.Join(binDir, "hello"), Replicas: 1,
		Handles: []string{"com.example.greet.requested"}, Answers: []string{"com.example.greet.requested"},
		Emits: []string{"com.example.greet.sent"},
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, body := d.call("GET", "/v1/plugins", testHTTPToken, nil)
		var plugins []struct{ Name string }
		_ = json.Unmarshal(body, &plugins)
		if len(plugins) == 1 && plugins[0].Name == "hello" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hello not discovered: %s", body)
		}
		time.Sleep(100 * time.Millisecond) // polling for the plugin to come up
	}
	for {
		status, body := d.call("POST", "/v1/invoke/com.example.greet.requested", testHTTPToken, map[string]string{"name": "Ada"})
		if status == http.StatusOK {
			var reply struct{ Data struct{ Text string } }
			if err := json.Unmarshal(body, &reply); err != nil || reply.Data.Text != "hello, Ada" {
				t.Fatalf("invoke: %s (%v), want the greeting", body, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("invoke: %d %s", status, body)
		}
		time.Sleep(100 * time.Millisecond) // polling for the plugin to come up
	}
	info, err := os.Stat(d.seed("hello"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("hello's seed file: %v, %v; want mode 0600", info, err)
	}
	if info, err := os.Stat(filepath.Join(d.dataDir, "identities")); err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("identities directory: %v, %v; want mode 0700", info, err)
	}
	// A durable event reaches hello through the consumer the coordinator
	// made: the consumer's delivered count moves.
	admin := d.mustDial("admin", d.seed("admin"))
	js, _ := jetstream.New(admin.nc)
	req, _ := http.NewRequest("POST", d.api+"/v1/events", strings.NewReader(`{"specversion":"1.0","id":"d1","source":"t","type":"com.example.greet.requested","datacontenttype":"application/json","data":{"name":"Lin"}}`))
	req.Header.Set("Content-Type", "application/cloudevents+json")
	req.Header.Set("Authorization", "Bearer "+testHTTPToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish: %s", resp.Status)
	}
	for {
		cons, err := js.Consumer(context.Background(), bus.DefaultEventsStream, "hello")
		if err != nil {
			t.Fatal(err)
		}
		ci, err := cons.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if ci.AckFloor.Consumer >= 1 && ci.NumAckPending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hello's consumer: %+v; the durable event was not handled", ci)
		}
		time.Sleep(100 * time.Millisecond) // polling the consumer's state
	}
	// Junk is rejected by the plugin and counted in /metrics.
	if err := admin.nc.Publish("plugbus.events.x.com.example.greet.requested", []byte("junk")); err != nil {
		t.Fatal(err)
	}
	for {
		_, body := d.call("GET", "/metrics", "", nil)
		if strings.Contains(string(body), `plugbus_plugin_invalid_messages{plugin="hello"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no invalid message counted for hello in /metrics")
		}
		time.Sleep(100 * time.Millisecond) // polling the registry's STATS
	}
}

// waitListed polls until GET /v1/plugins lists every named plugin running
// with the types it handles. The registry takes those types from the
// instances' STATS replies, sent on the connection that made the
// endpoints' subscriptions, so a plugin listed with its types receives
// what is published from then on.
func (d *secureDeployment) waitListed(names ...string) {
	d.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, body := d.call("GET", "/v1/plugins", testHTTPToken, nil)
		var plugins []struct {
			Name    string
			Running int
			Handles []string
		}
		_ = json.Unmarshal(body, &plugins)
		listed := map[string]bool{}
		for _, p := range plugins {
			listed[p.Name] = p.Running > 0 && len(p.Handles) > 0
		}
		missing := ""
		for _, n := range names {
			if !listed[n] {
				missing = n
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%s not listed: %s", missing, body)
		}
		time.Sleep(100 * time.Millisecond) // polling the registry
	}
}

// waitInvoke polls until the plugin answers the greeting through the API.
func (d *secureDeployment) waitInvoke() {
	d.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, body := d.call("POST", "/v1/invoke/com.example.greet.requested?timeout=2s", testHTTPToken, map[string]string{"name": "Ada"})
		if status == http.StatusOK && strings.Contains(string(body), "hello, Ada") {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("invoke: %d %s", status, body)
		}
		time.Sleep(100 * time.Millisecond) // polling for the plugin to come up
	}
}

// TestSecureModeTLS runs the embedded NATS server with TLS and client
// certificates required, and the HTTP API over HTTPS: a supervised plugin
// connects with the CA and client certificate it is given, and clients
// without TLS, without a certificate or with one from another CA are
// refused.
func TestSecureModeTLS(t *testing.T) {
	certs := testcert.New(t)
	d := startSecureWith(t, func(c *coordinator.Config) {
		c.NATSTLS = coordinator.TLSSettings{Cert: certs.ServerCert, Key: certs.ServerKey, CA: certs.CA, Verify: true}
		c.HTTPTLS = coordinator.TLSSettings{Cert: certs.ServerCert, Key: certs.ServerKey}
	}, coordinator.PluginSpec{
		Name: "hello", Exec: filepath.Join(binDir, "hello"), Replicas: 1,
		Handles: []string{"com.example.greet.requested"}, Answers: []string{"com.example.greet.requested"},
		Emits: []string{"com.example.greet.sent"},
		Env:   []string{"PLUGBUS_TLS_CERT=" + certs.ClientCert, "PLUGBUS_TLS_KEY=" + certs.ClientKey},
	})
	pem, err := os.ReadFile(certs.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	plain := d.api
	d.hc = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if !strings.HasPrefix(d.api, "https://") {
		t.Fatalf("API at %s, want https", d.api)
	}
	d.waitInvoke()

	adminSeed := d.seed("admin")
	t.Run("plaintext NATS client", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(d.c.NATSURL(), "nats://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(conn)
		info, err := r.ReadString('\n')
		if err != nil || !strings.Contains(info, `"tls_required":true`) {
			t.Fatalf("INFO %q (%v), want tls_required", info, err)
		}
		if _, err := conn.Write([]byte("CONNECT {\"verbose\":false}\r\nPING\r\nPUB plugbus.events.x.a 2\r\nhi\r\n")); err != nil {
			t.Fatal(err)
		}
		rest, _ := io.ReadAll(r)
		if strings.Contains(string(rest), "PONG") {
			t.Fatalf("a plaintext client was served: %q", rest)
		}
	})
	t.Run("NATS client without a certificate", func(t *testing.T) {
		d.natsOpt = []nats.Option{nats.RootCAs(certs.CA)}
		if _, err := d.dial("admin", adminSeed); err == nil {
			t.Fatal("connected without a client certificate")
		}
	})
	t.Run("NATS client with a certificate from another CA", func(t *testing.T) {
		d.natsOpt = []nats.Option{nats.RootCAs(certs.CA), nats.ClientCert(certs.OtherClientCert, certs.OtherClientKey)}
		if _, err := d.dial("admin", adminSeed); err == nil {
			t.Fatal("connected with a certificate from another CA")
		}
	})
	t.Run("NATS client with its certificate", func(t *testing.T) {
		d.natsOpt = []nats.Option{nats.RootCAs(certs.CA), nats.ClientCert(certs.ClientCert, certs.ClientKey)}
		cl := d.mustDial("admin", adminSeed)
		if err := cl.nc.Flush(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("plain HTTP", func(t *testing.T) {
		resp, err := http.Post("http://"+strings.TrimPrefix(plain, "https://")+"/v1/events", "application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Fatalf("plain HTTP to the HTTPS API: %s", resp.Status)
			}
		}
	})
}

// TestCredentialsInNATSURLStayHidden: a token in --nats-url appears neither
// in the log nor in the coordinator.started event.
func TestCredentialsInNATSURLStayHidden(t *testing.T) {
	const token = "very-secret-nats-token"
	srv, err := embedded.Start(embedded.Config{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Options: &server.Options{Authorization: token}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	url := "nats://" + token + "@" + srv.Addr().String()
	watch, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	started, err := watch.SubscribeSync("plugbus.events.coordinator.io.plugbus.coordinator.started")
	if err != nil {
		t.Fatal(err)
	}
	if err := watch.Flush(); err != nil {
		t.Fatal(err)
	}
	var log lockedLog
	c, err := coordinator.New(coordinator.Config{NATSURLs: []string{url}, HTTPListen: "127.0.0.1:0", DataDir: t.TempDir()}, slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	m, err := started.NextMsg(60 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(m.Data), token) || !strings.Contains(string(m.Data), "redacted@") {
		t.Errorf("coordinator.started: %s; want the URL without its token", m.Data)
	}
	if s := log.String(); strings.Contains(s, token) {
		t.Errorf("the log holds the token:\n%s", s)
	}
}

// lockedLog is a log destination read while the coordinator writes.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
