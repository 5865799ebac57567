package identity_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/plugbus/plugbus/bus/embedded"
	"github.com/plugbus/plugbus/coordinator/internal/identity"
)

type testUser struct {
	kp  nkeys.KeyPair
	pub string
}

func newTestUser(t *testing.T) testUser {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return testUser{kp, pub}
}

func (u testUser) option() nats.Option { return nats.Nkey(u.pub, u.kp.Sign) }

// allow is a user allowed to publish to pub and subscribe to sub,
// answering requests.
func allow(u testUser, pub, sub []string) *server.NkeyUser {
	return &server.NkeyUser{Nkey: u.pub, Permissions: identity.Rules{Publish: pub, Subscribe: sub, Responses: true}.Permissions()}
}

// TestUsersSet changes one user at a time on a real server: the others'
// connections keep their state (a request in flight is still answered), a
// user whose publish permissions alone change keeps its connection with
// the new permissions, and one whose subscribe permissions change or that
// is gone is disconnected.
func TestUsersSet(t *testing.T) {
	answerer, caller, pubOnly, subChange, gone := newTestUser(t), newTestUser(t), newTestUser(t), newTestUser(t), newTestUser(t)
	users := &identity.Users{}
	table := map[string]*server.NkeyUser{
		answerer.pub:  allow(answerer, nil, []string{"q"}),
		caller.pub:    allow(caller, []string{"q"}, []string{"_INBOX.>"}),
		pubOnly.pub:   allow(pubOnly, []string{"old"}, []string{"s"}),
		subChange.pub: allow(subChange, nil, []string{"s"}),
		gone.pub:      allow(gone, nil, []string{"s"}),
	}
	list := func() []*server.NkeyUser {
		var out []*server.NkeyUser
		for _, u := range table {
			out = append(out, u)
		}
		return out
	}
	if err := users.Set(nil, list()); err != nil {
		t.Fatal(err)
	}
	srv, err := embedded.Start(embedded.Config{Listen: "127.0.0.1:0", Options: &server.Options{CustomClientAuthentication: users, AlwaysEnableNonce: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	errs := make(chan error, 10)
	connect := func(u testUser) *nats.Conn {
		t.Helper()
		nc, err := nats.Connect(srv.ClientURL(), u.option(), nats.MaxReconnects(0),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				select {
				case errs <- err:
				default:
				}
			}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	closes := func(nc *nats.Conn) <-chan struct{} {
		closed := make(chan struct{})
		nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		return closed
	}
	ans, call, po, sc, gn := connect(answerer), connect(caller), connect(pubOnly), connect(subChange), connect(gone)
	scClosed, gnClosed, poClosed := closes(sc), closes(gn), closes(po)

	got := make(chan *nats.Msg, 1)
	if _, err := ans.Subscribe("q", func(m *nats.Msg) { got <- m }); err != nil {
		t.Fatal(err)
	}
	if err := ans.Flush(); err != nil {
		t.Fatal(err)
	}
	reply := make(chan error, 1)
	go func() {
		_, err := call.Request("q", nil, 30*time.Second)
		reply <- err
	}()
	var req *nats.Msg
	select {
	case req = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no request")
	}

	table[pubOnly.pub] = allow(pubOnly, []string{"new"}, []string{"s"})
	table[subChange.pub] = allow(subChange, nil, []string{"s", "t"})
	delete(table, gone.pub)
	if err := users.Set(srv.Server, list()); err != nil {
		t.Fatal(err)
	}
	for what, closed := range map[string]<-chan struct{}{"the removed user's": gnClosed, "the user's whose subscriptions changed": scClosed} {
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s connection is still open", what)
		}
	}
	if err := req.Respond([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	if err := <-reply; err != nil {
		t.Fatalf("the request in flight: %v", err)
	}
	if err := po.Publish("old", nil); err != nil {
		t.Fatal(err)
	}
	if err := po.Publish("new", nil); err != nil {
		t.Fatal(err)
	}
	if err := po.Flush(); err != nil {
		t.Fatal(err)
	}
	for refused := false; !refused; {
		select {
		case err := <-errs:
			refused = errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"old"`)
			if errors.Is(err, nats.ErrPermissionViolation) && !refused {
				t.Fatalf("refused: %v; want only the old subject refused", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the user's old publish permission still holds")
		}
	}
	select {
	case <-poClosed:
		t.Fatal("the user whose publish permissions alone changed was disconnected")
	default:
	}
	if _, err := nats.Connect(srv.ClientURL(), gone.option(), nats.MaxReconnects(0)); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("the removed user connects: %v", err)
	}
}

// TestUsersCheck refuses a known key signed by another, and a key allowed
// in-process only over TCP, as nats-server does.
func TestUsersCheck(t *testing.T) {
	known, inProcess, other := newTestUser(t), newTestUser(t), newTestUser(t)
	users := &identity.Users{}
	if err := users.Set(nil, []*server.NkeyUser{
		{Nkey: known.pub},
		{Nkey: inProcess.pub, AllowedConnectionTypes: map[string]struct{}{jwt.ConnectionTypeInProcess: {}}},
	}); err != nil {
		t.Fatal(err)
	}
	srv, err := embedded.Start(embedded.Config{Listen: "127.0.0.1:0", Options: &server.Options{CustomClientAuthentication: users, AlwaysEnableNonce: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	for _, c := range []struct {
		what string
		opts []nats.Option
		ok   bool
	}{
		{"the known key", []nats.Option{known.option()}, true},
		{"the known key signed by another", []nats.Option{nats.Nkey(known.pub, other.kp.Sign)}, false},
		{"an unknown key", []nats.Option{other.option()}, false},
		{"no key", nil, false},
		{"an in-process key over TCP", []nats.Option{inProcess.option()}, false},
		{"an in-process key in-process", []nats.Option{inProcess.option(), nats.InProcessServer(srv)}, true},
	} {
		nc, err := nats.Connect(srv.ClientURL(), append(c.opts, nats.MaxReconnects(0))...)
		if err == nil {
			nc.Close()
		}
		if (err == nil) != c.ok {
			t.Errorf("%s: connect: %v, want ok %v", c.what, err, c.ok)
		}
	}
}

// TestUsersHoldQuarantinedConnects: a quarantined key's connect is refused
// after a hold (a flooder connecting again back to back is slowed), while
// other keys connect at once.
func TestUsersHoldQuarantinedConnects(t *testing.T) {
	bad, good := newTestUser(t), newTestUser(t)
	guard := identity.NewGuard(identity.Policy{Refusals: 1, Window: time.Minute, CoolDown: time.Minute, MaxCoolDown: time.Minute}, nil)
	users := &identity.Users{Guard: guard}
	if err := users.Set(nil, []*server.NkeyUser{{Nkey: bad.pub}, {Nkey: good.pub}}); err != nil {
		t.Fatal(err)
	}
	srv, err := embedded.Start(embedded.Config{Listen: "127.0.0.1:0", Options: &server.Options{CustomClientAuthentication: users, AlwaysEnableNonce: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	guard.Refused(bad.pub, "plugbus.events.other.x")
	start := time.Now()
	if nc, err := nats.Connect(srv.ClientURL(), bad.option(), nats.MaxReconnects(0)); !errors.Is(err, nats.ErrAuthorization) {
		if err == nil {
			nc.Close()
		}
		t.Fatalf("quarantined key: %v, want an authorization violation", err)
	}
	if held := time.Since(start); held < 200*time.Millisecond {
		t.Errorf("quarantined key refused after %v, want it held first", held)
	}
	nc, err := nats.Connect(srv.ClientURL(), good.option(), nats.MaxReconnects(0))
	if err != nil {
		t.Fatalf("another key: %v", err)
	}
	nc.Close()
}
