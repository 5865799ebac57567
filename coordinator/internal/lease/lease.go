// Package lease lets one of several coordinators hold a lease, kept in a
// NATS key-value bucket, so that things only one of them should do (such
// as announcing that a plugin instance turned unhealthy) are done once.
//
// The lease is one key. Its holder writes its name there and renews it
// every TTL/3 with an update that names the revision it last wrote, so a
// renewal fails if anyone else wrote the key meanwhile. The bucket keeps
// values for TTL only: when the holder stops renewing (it died, or lost its
// connection), the value expires and the first other coordinator to create
// the key holds the lease. A holder that stops cleanly deletes the key, so
// another takes over at its next attempt.
//
// A holder counts itself the holder only until TTL after its last
// successful write, so after a partition the old holder has stopped acting
// by the time a new one can have started.
package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Defaults for [Config].
const (
	DefaultBucket = "PLUGBUS_LEASE"
	DefaultKey    = "lifecycle"
	DefaultTTL    = 6 * time.Second
)

// Config configures a [Lease].
type Config struct {
	// JetStream reaches the bucket.
	JetStream jetstream.JetStream
	// Bucket is the key-value bucket, created when missing; default
	// PLUGBUS_LEASE.
	Bucket string
	// Replicas of the bucket when this lease creates it; default 1.
	Replicas int
	// Key is the lease's key in the bucket; default "lifecycle".
	Key string
	// Holder names this contender, as others will see it; required.
	Holder string
	// TTL is how long the lease lasts without renewal; default 6s. Every
	// contender should use the same; the bucket keeps the one it was
	// created with.
	TTL time.Duration
	// OnChange, if set, hears of this contender gaining (true) or losing
	// (false) the lease. Calls come in order from Run's goroutine.
	OnChange func(held bool)
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// A Lease is one contender for the lease; [Lease.Run] contends.
type Lease struct {
	cfg Config

	mu      sync.Mutex
	alone   bool // the server has no JetStream: no lease to share, held for good
	held    bool
	renewed time.Time // last successful write while held
	holder  string    // the holder as last seen, "" if none
}

// New returns a contender for the lease.
func New(cfg Config) (*Lease, error) {
	if cfg.JetStream == nil || cfg.Holder == "" {
		return nil, errors.New("lease: JetStream and Holder are required")
	}
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if cfg.Key == "" {
		cfg.Key = DefaultKey
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.OnChange == nil {
		cfg.OnChange = func(bool) {}
	}
	return &Lease{cfg: cfg}, nil
}

// Held reports whether this contender holds the lease now.
func (l *Lease) Held() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.alone || l.held && time.Since(l.renewed) < l.cfg.TTL
}

// Holder returns the name of the holder as last seen, "" if none.
func (l *Lease) Holder() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.holder
}

// Run contends for the lease, and renews it while held, until ctx ends;
// then it gives the lease up if held and returns nil. Failures to reach the
// bucket are retried; while they last this contender does not hold the
// lease.
func (l *Lease) Run(ctx context.Context) error {
	every := l.cfg.TTL / 3
	var kv jetstream.KeyValue
	var rev uint64 // revision of our last write, 0 when not held
	defer func() {
		if rev != 0 && kv != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			_ = kv.Delete(dctx, l.cfg.Key, jetstream.LastRevision(rev))
			l.set(false, l.cfg.Holder, "")
		}
	}()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		t.Reset(every)
		actx, cancel := context.WithTimeout(ctx, every)
		if kv == nil {
			var err error
			if kv, err = l.bucket(actx); errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
				cancel()
				l.cfg.Logger.Warn("lease: NATS has no JetStream, so there is no lease to share: this coordinator announces lifecycle changes on its own; run only one coordinator on this bus")
				l.mu.Lock()
				l.alone, l.holder = true, l.cfg.Holder
				l.mu.Unlock()
				l.cfg.OnChange(true)
				<-ctx.Done()
				return nil
			}
			if err != nil {
				cancel()
				l.cfg.Logger.Warn("lease: no key-value bucket yet; retrying", "bucket", l.cfg.Bucket, "err", err)
				kv = nil
				continue
			}
		}
		rev = l.attempt(actx, kv, rev)
		cancel()
	}
}

// attempt renews the lease (rev != 0) or tries to take it, and returns
// the revision written, or 0 when the lease is not held.
func (l *Lease) attempt(ctx context.Context, kv jetstream.KeyValue, rev uint64) uint64 {
	me := []byte(l.cfg.Holder)
	var err error
	var next uint64
	if rev != 0 {
		next, err = kv.Update(ctx, l.cfg.Key, me, rev)
		if err == nil {
			l.set(true, l.cfg.Holder, l.cfg.Holder)
			return next
		}
		if ctx.Err() != nil || !isWrongRevision(err) {
			// Unreachable: keep the revision and try again; Held turns
			// false by itself once the TTL has passed.
			l.cfg.Logger.Warn("lease: renewal failed; retrying", "err", err)
			return rev
		}
	}
	next, err = kv.Create(ctx, l.cfg.Key, me)
	if err == nil {
		l.set(true, l.cfg.Holder, l.cfg.Holder)
		return next
	}
	holder := ""
	if e, gerr := kv.Get(ctx, l.cfg.Key); gerr == nil {
		holder = string(e.Value())
	}
	l.set(false, l.cfg.Holder, holder)
	return 0
}

// isWrongRevision: someone else wrote the key since our last write.
func isWrongRevision(err error) bool {
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists)
}

// set records the state and reports a change of holding.
func (l *Lease) set(held bool, me, holder string) {
	l.mu.Lock()
	was := l.held
	l.held, l.holder = held, holder
	if held {
		l.renewed = time.Now()
	}
	l.mu.Unlock()
	if was != held {
		if held {
			l.cfg.Logger.Info("lease: this coordinator holds the lease", "holder", me, "bucket", l.cfg.Bucket, "key", l.cfg.Key)
		} else {
			l.cfg.Logger.Info("lease: this coordinator no longer holds the lease", "holder", holder)
		}
		l.cfg.OnChange(held)
	}
}

// bucket opens the bucket, creating it when missing.
func (l *Lease) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := l.cfg.JetStream.KeyValue(ctx, l.cfg.Bucket)
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return kv, err
	}
	kv, err = l.cfg.JetStream.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      l.cfg.Bucket,
		Description: "Plugbus: which coordinator announces lifecycle changes",
		TTL:         l.cfg.TTL,
		History:     1,
		Replicas:    l.cfg.Replicas,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		return l.cfg.JetStream.KeyValue(ctx, l.cfg.Bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", l.cfg.Bucket, err)
	}
	return kv, nil
}
