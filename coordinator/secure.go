package coordinator

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator/internal/api"
	"github.com/plugbus/plugbus/coordinator/internal/identity"
)

// security is the state of secure mode: the identities the embedded server
// knows, and the coordinator's own.
type security struct {
	store *identity.Store
	scope identity.Scope

	// The coordinator's own key, made afresh at every start and valid on
	// in-process connections only.
	selfKey, selfSeedFile string
	// The HTTP API publisher's key, made the same way: it may publish
	// events and requests as "http" and read its inboxes, nothing more.
	httpKey, httpSeedFile string
	adminKey, cliKey      string
	// seedFiles are the seed files of the plugins the coordinator runs.
	seedFiles map[string]string
	// users are the users the embedded server accepts: the server asks
	// them to authenticate each client.
	users identity.Users
	// guard quarantines identities the server keeps refusing; srv is the
	// embedded server, once it runs, for the guard's logger.
	guard *identity.Guard
	srv   atomic.Pointer[server.Server]

	mu sync.Mutex // serialises changes of identities and their application
}

// IsSecure reports whether the coordinator runs in secure mode: an embedded
// server on which every plugin has its own nkey and least privileges. It is
// on when Secure says so and, unless Secure says otherwise, whenever the
// embedded server listens beyond loopback without a shared token or user
// (which choose the shared-secret mode).
func (c *Config) IsSecure() bool {
	switch {
	case len(c.NATSURLs) > 0:
		return false
	case c.Secure != nil:
		return *c.Secure
	case c.NATSToken != "" || c.NATSUser != "":
		return false
	default:
		return c.NATSListen != "" && !isLoopback(c.NATSListen)
	}
}

// setupSecurity opens the identity store, makes the coordinator's and the
// admin's keys and the identities of the plugins the coordinator runs, and
// makes the server's options authenticate clients with them.
func (c *Coordinator) setupSecurity(opts *server.Options) error {
	store, err := identity.Open(filepath.Join(c.cfg.DataDir, "identities"))
	if err != nil {
		return fmt.Errorf("coordinator: secure mode: %w", err)
	}
	streams := c.cfg.Stream.busConfig(c.cfg.Prefix)
	streams.SetDefaults()
	sec := &security{store: store, scope: identity.Scope{Prefix: c.cfg.Prefix, Stream: streams.Name}, seedFiles: map[string]string{}}
	sec.selfSeedFile = filepath.Join(store.Dir(), "coordinator.nk")
	sec.httpSeedFile = filepath.Join(store.Dir(), "http.nk")
	if sec.selfKey, err = freshKey(sec.selfSeedFile); err != nil {
		return err
	}
	if sec.httpKey, err = freshKey(sec.httpSeedFile); err != nil {
		return err
	}
	if sec.adminKey, _, err = store.Admin(); err != nil {
		return fmt.Errorf("coordinator: secure mode: %w", err)
	}
	if sec.cliKey, _, err = store.CLI(); err != nil {
		return fmt.Errorf("coordinator: secure mode: %w", err)
	}
	for _, p := range c.cfg.Plugins {
		_, file, err := store.Ensure(p.Name, identity.Declaration{Handles: p.Handles, Answers: p.Answers, Emits: p.Emits})
		if err != nil {
			return fmt.Errorf("coordinator: secure mode: plugin %s: %w", p.Name, err)
		}
		sec.seedFiles[p.Name] = file
		if len(p.Handles) == 0 && len(p.Answers) == 0 {
			c.log.Warn("in secure mode a plugin may subscribe only to the types it declares, and this one declares none; list them under handles and answers in its spec", "plugin", p.Name)
		}
	}
	for _, id := range store.List() {
		if err := identity.Validate(id.Name, id.Declaration()); err != nil {
			c.log.Warn("an identity stored before its name was reserved does not connect; remove it (plugins rm) and add it under another name", "plugin", id.Name, "err", err)
		}
	}
	sec.users.RequireClientCert = c.cfg.NATSTLS.On() && c.cfg.NATSTLS.Verify
	sec.guard = c.newGuard(sec)
	sec.users.Guard = sec.guard
	if err := sec.users.Set(nil, sec.nkeyUsers()); err != nil {
		return err
	}
	opts.CustomClientAuthentication = &sec.users
	opts.AlwaysEnableNonce = true // the challenge each client signs
	c.sec = sec
	return nil
}

// freshKey makes a new key and writes its seed to file.
func freshKey(file string) (string, error) {
	pub, seed, err := identity.NewUser()
	if err != nil {
		return "", err
	}
	return pub, identity.WriteSeed(file, seed)
}

// nkeyUsers are the users the embedded server accepts.
func (s *security) nkeyUsers() []*server.NkeyUser {
	inProcess := map[string]struct{}{jwt.ConnectionTypeInProcess: {}}
	users := []*server.NkeyUser{
		{Nkey: s.selfKey, Permissions: identity.CoordinatorRules(s.scope).Permissions(), AllowedConnectionTypes: inProcess},
		{Nkey: s.httpKey, Permissions: identity.HTTPRules(s.scope, api.DefaultProducer).Permissions(), AllowedConnectionTypes: inProcess},
		{Nkey: s.adminKey},
		{Nkey: s.cliKey, Permissions: identity.CLIRules(s.scope).Permissions()},
	}
	for _, id := range s.store.List() {
		if identity.Validate(id.Name, id.Declaration()) != nil {
			continue // stored before its name was reserved; see setupSecurity
		}
		users = append(users, &server.NkeyUser{Nkey: id.PublicKey, Permissions: identity.PluginRules(s.scope, id).Permissions()})
	}
	for _, a := range s.store.Agents() {
		users = append(users, &server.NkeyUser{Nkey: a.PublicKey, Permissions: identity.AgentRules(s.scope, a.Name, s.store.Held(a.Name)).Permissions()})
	}
	return users
}

// ensureConsumers creates (or updates to the declared types) the consumer
// of every identity that handles types, and the effectively-once bucket:
// in secure mode plugins may read their consumer but not make it.
func (c *Coordinator) ensureConsumers(ctx context.Context) error {
	streams := c.cfg.Stream.busConfig(c.cfg.Prefix)
	streams.SetDefaults()
	if err := bus.EnsureStreams(ctx, c.js, streams); err != nil {
		return err
	}
	if _, err := bus.DedupBucket(ctx, c.js, streams.MaxAge, streams.Replicas); err != nil {
		return fmt.Errorf("bucket %s: %w", bus.DefaultDedupBucket, err)
	}
	var errs []error
	for _, id := range c.sec.store.List() {
		if err := c.ensureConsumer(ctx, streams.Name, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c *Coordinator) ensureConsumer(ctx context.Context, stream string, id identity.Identity) error {
	if len(id.Handles) == 0 {
		return nil
	}
	cfg, err := bus.ConsumerConfig(c.cfg.Prefix, id.Name, id.Handles)
	if err != nil {
		return err
	}
	if cons, err := c.js.Consumer(ctx, stream, id.Name); err == nil {
		old := cons.CachedInfo().Config
		old.FilterSubject, old.FilterSubjects = "", cfg.FilterSubjects
		old.AckWait, old.MaxAckPending = cfg.AckWait, cfg.MaxAckPending
		cfg = old // keep where it is
	}
	if _, err := c.js.CreateOrUpdateConsumer(ctx, stream, cfg); err != nil {
		return fmt.Errorf("consumer of plugin %s: %w", id.Name, err)
	}
	return nil
}

// deleteConsumers deletes the consumers of the plugins whose identities
// are gone (the plugins, not the events they did not read yet: a plugin of
// that name given an identity again gets a new consumer, from the events
// stored then on). c.sec.mu is held, so no identity of those names came
// back meanwhile.
func (c *Coordinator) deleteConsumers(ctx context.Context, plugins ...string) {
	streams := c.cfg.Stream.busConfig(c.cfg.Prefix)
	streams.SetDefaults()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, name := range plugins {
		if err := c.js.DeleteConsumer(ctx, streams.Name, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			c.log.Warn("identity removed, but not its consumer", "plugin", name, "err", err)
		}
	}
}

// applyIdentities makes the embedded server enforce the store's
// identities now: the connections of identities removed, rotated or
// whose permissions changed are closed or given their new permissions,
// and every other keeps its state (see identity.Users.Set).
func (c *Coordinator) applyIdentities() error {
	return c.sec.users.Set(c.server.Server, c.sec.nkeyUsers())
}

// identityAdmin serves the HTTP API's identity endpoints.
type identityAdmin struct{ c *Coordinator }

// IdentityView is an identity as the HTTP API shows it, with its seed
// when it was just made.
type IdentityView struct {
	identity.Identity
	Seed string `json:"seed,omitempty"`
	// Refusals counts the publishes and subscriptions the server refused
	// its connections since the coordinator started; Quarantine is its
	// quarantine in force, if any.
	Refusals    uint64               `json:"refusals,omitempty"`
	LastRefused string               `json:"last_refused,omitempty"`
	Quarantine  *identity.Quarantine `json:"quarantine,omitempty"`
}

// List lists the plugin identities, each with its refusals and its
// quarantine in force.
func (a identityAdmin) List() any {
	stats := a.c.sec.guard.Stats()
	out := []IdentityView{}
	for _, id := range a.c.sec.store.List() {
		s := stats[id.PublicKey]
		out = append(out, IdentityView{Identity: id, Refusals: s.Refusals, LastRefused: s.Last, Quarantine: s.Quarantine})
	}
	return out
}

func (a identityAdmin) Add(ctx context.Context, name string, handles, answers, emits []string) (any, error) {
	sec := a.c.sec
	sec.mu.Lock()
	defer sec.mu.Unlock()
	id, seed, err := sec.store.Add(name, identity.Declaration{Handles: handles, Answers: answers, Emits: emits})
	if err != nil {
		return nil, err
	}
	if err := a.apply(ctx, id); err != nil {
		_ = sec.store.Remove(name)
		_ = a.c.applyIdentities()
		return nil, err
	}
	a.c.log.Info("identity added", "plugin", name, "public_key", id.PublicKey)
	return IdentityView{Identity: id, Seed: string(seed)}, nil
}

func (a identityAdmin) Remove(ctx context.Context, name string) error {
	sec := a.c.sec
	sec.mu.Lock()
	defer sec.mu.Unlock()
	if err := sec.store.Remove(name); err != nil {
		return err
	}
	if err := a.c.applyIdentities(); err != nil {
		return err
	}
	a.c.deleteConsumers(ctx, name)
	a.c.log.Info("identity removed", "plugin", name)
	return nil
}

func (a identityAdmin) Rotate(ctx context.Context, name string) (any, error) {
	sec := a.c.sec
	sec.mu.Lock()
	defer sec.mu.Unlock()
	id, seed, err := sec.store.Rotate(name)
	if err != nil {
		return nil, err
	}
	if err := a.c.applyIdentities(); err != nil {
		return nil, err
	}
	a.c.log.Info("identity rotated", "plugin", name, "public_key", id.PublicKey)
	return IdentityView{Identity: id, Seed: string(seed)}, nil
}

func (a identityAdmin) Permissions(name string) (any, error) {
	id, ok := a.c.sec.store.Get(name)
	if !ok {
		return nil, fmt.Errorf("%w: %q", identity.ErrNotFound, name)
	}
	return identity.PluginRules(a.c.sec.scope, id), nil
}

// apply makes the server enforce the identities and creates id's consumer.
func (a identityAdmin) apply(ctx context.Context, id identity.Identity) error {
	if err := a.c.applyIdentities(); err != nil {
		return err
	}
	streams := a.c.cfg.Stream.busConfig(a.c.cfg.Prefix)
	streams.SetDefaults()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return a.c.ensureConsumer(ctx, streams.Name, id)
}
