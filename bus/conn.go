package bus

import (
	"context"
	"errors"
	"fmt"
	neturl "net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// ConnConfig says how to reach NATS. The zero value connects to
// nats://127.0.0.1:4222 with no credentials.
type ConnConfig struct {
	// URLs lists servers of one cluster; nats.go picks among them and learns
	// the rest of the cluster from the server. Empty means nats.DefaultURL.
	URLs []string
	// Name identifies the connection in server monitoring.
	Name string

	// Credentials: at most one of CredsFile, NKeySeedFile, User/Password
	// and Token is normally set.
	CredsFile    string // a .creds file holding a user JWT and nkey seed
	NKeySeedFile string // a file holding an nkey seed (SU...)
	User         string
	Password     string
	Token        string

	// TLS: a CA to trust, and a client certificate and key for mutual TLS.
	CAFile   string
	CertFile string
	KeyFile  string

	// InboxPrefix, when set, replaces "_INBOX" as the prefix of the
	// connection's reply subjects (nats.go's CustomInboxPrefix); see
	// [InboxPrefix].
	InboxPrefix string

	// InProcess, when set, connects to this embedded server without a
	// socket; URLs are ignored.
	InProcess nats.InProcessConnProvider

	// ReconnectBufSize is how many bytes of publishes are kept while
	// disconnected; default 8 MiB. Publishes beyond it fail.
	ReconnectBufSize int

	// OnEvent, when set, hears about every change of the connection's
	// state and every asynchronous error, once each.
	OnEvent func(ConnEvent)
}

// ConnEvent is a change in a connection's state, or an asynchronous error.
type ConnEvent struct {
	Kind ConnEventKind
	URL  string // the server concerned, when known (credentials redacted), or InProcessURL
	Err  error  // the cause, when there is one
	// Failures counts, for ConnectFailed, the failed attempts since the
	// last ConnectFailed event (1 for the first).
	Failures int
}

// InProcessURL stands for the server in a [ConnEvent] of an in-process
// connection, which has no URL.
const InProcessURL = "in-process"

// ConnEventKind names what happened to a connection.
type ConnEventKind string

// Kinds of [ConnEvent].
const (
	// Connecting is reported once, before the first attempt, with the
	// server URL(s) about to be tried.
	Connecting ConnEventKind = "connecting"
	// ConnectFailed is an attempt to connect or reconnect that failed,
	// with its cause. The first failure after a connection (or before the
	// first) is reported at once, then at most one every
	// [ConnectFailedEvery], counting the attempts in between.
	ConnectFailed ConnEventKind = "connect failed"
	Connected     ConnEventKind = "connected"
	Disconnected  ConnEventKind = "disconnected"
	Reconnected   ConnEventKind = "reconnected"
	Closed        ConnEventKind = "closed"
	AsyncError    ConnEventKind = "error"
)

// Connect dials NATS. A first connect that fails is retried in the
// background like a reconnect (the returned connection buffers publishes
// meanwhile), and reconnects go on forever with jitter, so a plugin outlives
// any NATS outage. Connect fails only for settings that can never work (a
// missing credentials file, a bad certificate) or when ctx ends before the
// first connect succeeds.
func Connect(ctx context.Context, cfg ConnConfig) (*nats.Conn, error) {
	opts, err := cfg.options()
	if err != nil {
		return nil, err
	}
	url := strings.Join(cfg.URLs, ",")
	if url == "" {
		url = nats.DefaultURL
	}
	shown := redactURLs(url)
	if cfg.InProcess != nil {
		shown = InProcessURL // no socket: a URL would mislead whoever reads the log
	}
	connected := make(chan struct{}, 1)
	notify := func(kind ConnEventKind, nc *nats.Conn, err error) {
		if cfg.OnEvent == nil {
			return
		}
		url := shown
		if cfg.InProcess == nil {
			url = nc.ConnectedUrlRedacted()
		}
		cfg.OnEvent(ConnEvent{Kind: kind, URL: url, Err: err})
	}
	var failed failures
	if cfg.OnEvent != nil {
		cfg.OnEvent(ConnEvent{Kind: Connecting, URL: shown})
	}
	opts = append(opts,
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			if n, ok := failed.add(err, time.Now()); ok && cfg.OnEvent != nil {
				cfg.OnEvent(ConnEvent{Kind: ConnectFailed, URL: shown, Err: err, Failures: n})
			}
		}),
		nats.ConnectHandler(func(nc *nats.Conn) {
			failed.reset()
			notify(Connected, nc, nil)
			select {
			case connected <- struct{}{}:
			default:
			}
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) { notify(Disconnected, nc, err) }),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			failed.reset()
			notify(Reconnected, nc, nil)
		}),
		nats.ClosedHandler(func(nc *nats.Conn) { notify(Closed, nc, nc.LastError()) }),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			if refusedStatsToAll(err) {
				return
			}
			if sub != nil {
				err = fmt.Errorf("subscription %q: %w", sub.Subject, err)
			}
			notify(AsyncError, nc, err)
		}),
	)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("bus: connect to %s: %w", shown, err)
	}
	if nc.IsConnected() {
		return nc, nil
	}
	// The first connect failed and is being retried in the background.
	select {
	case <-connected:
		return nc, nil
	case <-ctx.Done():
		last := failed.last()
		nc.Close()
		if last == nil {
			return nil, fmt.Errorf("bus: connect to %s: %w (before any attempt failed)", shown, ctx.Err())
		}
		return nil, fmt.Errorf("bus: connect to %s: %w (last error: %v)", shown, ctx.Err(), last)
	}
}

// refusedStatsToAll reports whether err is the server refusing a micro
// service's subscription to $SRV.STATS, the STATS request sent to every
// service. A plugin's identity in secure mode may not hear it (the
// coordinator asks each plugin by name instead, so no plugin can answer for
// another), and nats.go's micro subscribes to it anyway: the refusal is
// expected, and not reported.
func refusedStatsToAll(err error) bool {
	return errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `Subscription to "$SRV.STATS"`)
}

// ConnectFailedEvery is how often at most [Connect] reports failed
// attempts to connect after the first: nats.go retries several times a
// second.
const ConnectFailedEvery = 5 * time.Second

// failures remembers the last failed connect attempt and paces their
// reports.
type failures struct {
	mu      sync.Mutex
	err     error
	next    time.Time // no report before this
	pending int       // failures not reported yet
}

// add records a failed attempt at now and reports whether to tell of it,
// with the attempts since the last report.
func (f *failures) add(err error, now time.Time) (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending++
	if errors.Is(err, nats.ErrNoServers) {
		// What nats.go says of a refused first attempt, hiding the cause;
		// the retries that follow at once say it.
		if f.err == nil {
			f.err = err
		}
		return 0, false
	}
	f.err = err
	if now.Before(f.next) {
		return 0, false
	}
	n := f.pending
	f.pending, f.next = 0, now.Add(ConnectFailedEvery)
	return n, true
}

// reset makes the next failure, after a connection, reported at once.
func (f *failures) reset() {
	f.mu.Lock()
	f.pending, f.next = 0, time.Time{}
	f.mu.Unlock()
}

func (f *failures) last() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// redactURLs returns the comma-separated URLs with any password or token
// hidden.
func redactURLs(urls string) string {
	list := strings.Split(urls, ",")
	for i, s := range list {
		u, err := neturl.Parse(strings.TrimSpace(s))
		if err != nil || u.User == nil {
			continue
		}
		if _, ok := u.User.Password(); !ok {
			u.User = neturl.User("xxxxx") // a token in the user part
		}
		list[i] = u.Redacted()
	}
	return strings.Join(list, ",")
}

func (cfg ConnConfig) options() ([]nats.Option, error) {
	buf := cfg.ReconnectBufSize
	if buf == 0 {
		buf = 8 << 20
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.ReconnectBufSize(buf),
	}
	for what, path := range map[string]string{"credentials file": cfg.CredsFile, "nkey seed file": cfg.NKeySeedFile, "TLS CA file": cfg.CAFile, "TLS certificate file": cfg.CertFile, "TLS key file": cfg.KeyFile} {
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("bus: %s: %w", what, err)
		}
	}
	if cfg.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(cfg.InboxPrefix))
	}
	if cfg.InProcess != nil {
		opts = append(opts, nats.InProcessServer(cfg.InProcess))
	}
	switch {
	case cfg.CredsFile != "":
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	case cfg.NKeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(cfg.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("bus: nkey seed file %q: %w", cfg.NKeySeedFile, err)
		}
		opts = append(opts, o)
	}
	if cfg.User != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.CAFile))
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("bus: TLS client certificate needs both a certificate file and a key file")
	}
	if cfg.CertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.CertFile, cfg.KeyFile))
	}
	return opts, nil
}

// RedactURLs returns comma-separated NATS URLs with any credentials in
// them (user and password, or a token in the user's place) replaced by
// "redacted", for logs and events.
func RedactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := neturl.Parse(strings.TrimSpace(p))
		if err != nil {
			if strings.Contains(p, "@") {
				parts[i] = "(an unparsable URL with credentials)"
			}
			continue
		}
		if u.User != nil {
			u.User = neturl.User("redacted")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}
