package identity

import (
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// Users are the nkey users an embedded nats-server accepts, checked by
// the coordinator rather than by the server's own configuration: set it
// as the server's Options.CustomClientAuthentication, with
// Options.AlwaysEnableNonce so that every client is sent a nonce to sign.
//
// Changing the users ([Users.Set]) swaps a table and touches only the
// connections of the users that changed. A configuration reload would set
// every client's permissions afresh, and with them forget the requests
// each may still answer (allow_responses): a plugin's reply to a request
// it got before the change would be refused.
//
// The zero value accepts no one.
type Users struct {
	// RequireClientCert refuses connections over the network that did not
	// present a verified client certificate (the listener's TLS with
	// verify); in-process connections have none.
	RequireClientCert bool
	// Guard, when set, refuses the keys it has quarantined.
	Guard *Guard

	table atomic.Pointer[map[string]*server.NkeyUser]
	mu    sync.Mutex   // serialises Set
	held  atomic.Int32 // quarantined connects being held (see refusalHold)
}

// A quarantined identity's connect is held for refusalHold before it is
// refused: a client connecting again back to back, as a flooder cut off
// does, then costs the server a few connections a second instead of
// hundreds. At most maxHeldRefusals are held at a time (each holds only
// its own connection's goroutine); more are refused at once.
const (
	refusalHold     = 250 * time.Millisecond
	maxHeldRefusals = 256
)

// nkeyClient is what nats-server's clients offer beyond
// server.ClientAuthentication: taking the user they authenticated as.
type nkeyClient interface {
	server.ClientAuthentication
	RegisterNkeyUser(*server.NkeyUser) error
}

// Check authenticates a client as nats-server does an nkey user: the
// client's key is one of the users, its connection of a type the user
// allows, and its signature of the nonce the server sent it valid. The
// client then has that user's permissions.
func (u *Users) Check(c server.ClientAuthentication) bool {
	nc, ok := c.(nkeyClient)
	if !ok {
		return false
	}
	opts := c.GetOpts()
	if opts == nil || opts.Nkey == "" || opts.Sig == "" {
		return false
	}
	table := u.table.Load()
	if table == nil {
		return false
	}
	user, ok := (*table)[opts.Nkey]
	if !ok {
		return false
	}
	// Before the signature's check: a quarantined identity's attempts
	// cost the server as little as they can.
	if _, q := u.Guard.Quarantined(opts.Nkey); q {
		if u.held.Add(1) <= maxHeldRefusals {
			time.Sleep(refusalHold)
		}
		u.held.Add(-1)
		return false
	}
	kind := connectionType(c)
	if !allowed(user.AllowedConnectionTypes, kind) {
		return false
	}
	if u.RequireClientCert && kind != jwt.ConnectionTypeInProcess {
		tls := c.GetTLSConnectionState()
		if tls == nil || len(tls.VerifiedChains) == 0 {
			return false
		}
	}
	sig, err := base64.RawURLEncoding.DecodeString(opts.Sig)
	if err != nil {
		// nats-server takes standard base64 too.
		if sig, err = base64.StdEncoding.DecodeString(opts.Sig); err != nil {
			return false
		}
	}
	pub, err := nkeys.FromPublicKey(opts.Nkey)
	if err != nil {
		return false
	}
	nonce := c.GetNonce()
	if len(nonce) == 0 || pub.Verify(nonce, sig) != nil {
		return false
	}
	if nc.RegisterNkeyUser(user) != nil {
		return false
	}
	// A Set between the look-up and here may have missed this client
	// (it looks for connections already registered): refused, it connects
	// again and meets the new table.
	if now := u.table.Load(); (*now)[opts.Nkey] != user {
		return false
	}
	return true
}

// connectionType is the client's connection type as nats-server's user
// configuration names them (AllowedConnectionTypes): in-process
// connections are pipes.
func connectionType(c server.ClientAuthentication) string {
	switch c.Kind() {
	case server.CLIENT:
		if addr := c.RemoteAddress(); addr != nil && addr.Network() == "pipe" { // net.Pipe's

			return jwt.ConnectionTypeInProcess
		}
		return jwt.ConnectionTypeStandard
	case server.LEAF:
		return jwt.ConnectionTypeLeafnode
	default:
		return ""
	}
}

// allowed reports whether kind is among types; none means any.
func allowed(types map[string]struct{}, kind string) bool {
	if len(types) == 0 {
		return kind != ""
	}
	_, ok := types[kind]
	return ok
}

// Set makes users the users srv accepts. Connections of a user that is
// gone are closed; those of a user whose permissions changed get them at
// once when it may subscribe to what it could (only what it may publish
// changed: it keeps its subscriptions, its requests to answer reset), and
// are closed otherwise, so that they connect again under the new
// permissions. Every other connection keeps its state. srv may be nil,
// before the server runs.
func (u *Users) Set(srv *server.Server, users []*server.NkeyUser) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	next := make(map[string]*server.NkeyUser, len(users))
	var old map[string]*server.NkeyUser
	if t := u.table.Load(); t != nil {
		old = *t
	}
	for _, nu := range users {
		if prev, ok := old[nu.Nkey]; ok && sameUser(prev, nu) {
			nu = prev // unchanged: its connections keep their state
		}
		next[nu.Nkey] = nu
	}
	u.table.Store(&next)
	if srv == nil {
		return nil
	}
	var errs []error
	for key, prev := range old {
		nu, ok := next[key]
		if ok && nu == prev {
			continue
		}
		inPlace := ok && sameSubscribe(prev, nu)
		for _, cid := range connections(srv, key) {
			if inPlace {
				if c := srv.GetClient(cid); c != nil {
					if err := c.RegisterNkeyUser(nu); err == nil {
						continue
					}
				}
			}
			if err := srv.DisconnectClientByID(cid); err != nil && srv.GetClient(cid) != nil {
				errs = append(errs, fmt.Errorf("identity: close connection %d of %s: %w", cid, key, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Close closes the connections of the user with key key (which stays a
// user: a quarantine refuses it meanwhile).
func (u *Users) Close(srv *server.Server, key string) error {
	var errs []error
	for _, cid := range connections(srv, key) {
		if err := srv.DisconnectClientByID(cid); err != nil && srv.GetClient(cid) != nil {
			errs = append(errs, fmt.Errorf("identity: close connection %d of %s: %w", cid, key, err))
		}
	}
	return errors.Join(errs...)
}

// connections returns the ids of srv's connections that authenticated (or
// are authenticating) with key.
func connections(srv *server.Server, key string) []uint64 {
	connz, err := srv.Connz(&server.ConnzOptions{User: key, Limit: srv.NumClients() + 1})
	if err != nil {
		return nil
	}
	ids := make([]uint64, 0, len(connz.Conns))
	for _, ci := range connz.Conns {
		ids = append(ids, ci.Cid)
	}
	return ids
}

func sameUser(a, b *server.NkeyUser) bool {
	return reflect.DeepEqual(a.Permissions, b.Permissions) && reflect.DeepEqual(a.AllowedConnectionTypes, b.AllowedConnectionTypes)
}

// sameSubscribe reports whether a and b may subscribe to the same
// subjects and answer the same way: b's permissions can then replace a's
// on a live connection, which nats-server does not check again against
// the subscriptions it already has.
func sameSubscribe(a, b *server.NkeyUser) bool {
	if a.Permissions == nil || b.Permissions == nil {
		return a.Permissions == b.Permissions && reflect.DeepEqual(a.AllowedConnectionTypes, b.AllowedConnectionTypes)
	}
	return reflect.DeepEqual(a.Permissions.Subscribe, b.Permissions.Subscribe) &&
		reflect.DeepEqual(a.Permissions.Response, b.Permissions.Response) &&
		reflect.DeepEqual(a.AllowedConnectionTypes, b.AllowedConnectionTypes)
}
