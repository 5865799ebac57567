package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/plugbus/plugbus/bus"
)

// In the coordinator's secure mode an agent has an identity of its own
// (coordinator agents add) that may not read the orders' bucket: a
// consumer of it would let the agent choose where JetStream delivers, and
// that is not checked against its permissions. The coordinator answers
// instead, on subjects only that agent may publish to:
//
//	<prefix>.agent.<name>.orders     OrdersRequest -> OrdersReply: the orders naming the agent
//	<prefix>.agent.<name>.identity   IdentityRequest -> IdentityReply: a plugin's identity
//
// The agent makes each plugin's nkey itself and sends only the public key;
// the coordinator gives it the permissions of the plugin's declaration in
// its order, if the order names this agent. The seed stays in the agent's
// seed directory (mode 0600) and reaches the plugin as PLUGBUS_NKEY.
// Replies go to the agent's own inboxes, below [InboxPrefix].

// OrdersPoll is how often an agent in secure mode asks for its orders.
const OrdersPoll = time.Second

// Request kinds, the last token of an agent's request subjects.
const (
	RequestOrders   = "orders"
	RequestIdentity = "identity"
)

// InboxPrefix is the prefix of the agent called name's reply subjects: its
// connection must use it (nats.go's CustomInboxPrefix), as it may read no
// other.
func InboxPrefix(name string) string { return bus.InboxPrefix(InboxToken) + "." + name }

// InboxToken is the token below _INBOX of every agent's inboxes; no plugin
// may be called so in the coordinator's secure mode.
const InboxToken = "agent"

// RequestSubject is where the agent called name sends requests of kind.
func RequestSubject(prefix, name, kind string) string {
	return prefix + ".agent." + name + "." + kind
}

// RequestSubjects matches every request subject of the agent called name.
func RequestSubjects(prefix, name string) string { return RequestSubject(prefix, name, "*") }

// ParseRequest returns the agent and the kind of request of a subject
// matching RequestSubjects(prefix, "*").
func ParseRequest(prefix, subject string) (name, kind string, ok bool) {
	rest, ok := strings.CutPrefix(subject, prefix+".agent.")
	if !ok {
		return "", "", false
	}
	name, kind, ok = strings.Cut(rest, ".")
	return name, kind, ok && name != "" && !strings.Contains(kind, ".")
}

// OrdersRequest asks for the orders naming an agent. Running lists the
// plugins the agent still runs: the coordinator releases the identities
// of plugins neither ordered on the agent nor running there.
type OrdersRequest struct {
	Running []string `json:"running"`
}

// OrdersReply holds the orders naming the agent, or an error.
type OrdersReply struct {
	Orders []Spec `json:"orders"`
	Error  string `json:"error,omitempty"`
}

// IdentityRequest asks for the identity of a plugin ordered on the agent,
// with the key the agent made for it.
type IdentityRequest struct {
	Plugin    string `json:"plugin"`
	PublicKey string `json:"public_key"`
}

// IdentityReply confirms the identity, or holds an error.
type IdentityReply struct {
	Plugin    string `json:"plugin,omitempty"`
	PublicKey string `json:"public_key,omitempty"`
	Error     string `json:"error,omitempty"`
}

// ask sends a request to the coordinator and decodes its answer into out.
func (a *Agent) ask(ctx context.Context, kind string, req, out any) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	msg, err := a.cfg.Conn.RequestWithContext(ctx, RequestSubject(a.cfg.Prefix, a.cfg.Name, kind), b)
	if err != nil {
		return fmt.Errorf("ask the coordinator for %s: %w (does a coordinator in secure mode run, with this agent's identity?)", kind, err)
	}
	if err := json.Unmarshal(msg.Data, out); err != nil {
		return fmt.Errorf("the coordinator's answer about %s: %w", kind, err)
	}
	return nil
}

// poll carries out the orders the coordinator answers, asking every
// OrdersPoll until ctx ends.
func (a *Agent) poll(ctx context.Context, store *Store) {
	t := time.NewTicker(OrdersPoll)
	defer t.Stop()
	var lastErr string
	for {
		var reply OrdersReply
		err := a.ask(ctx, RequestOrders, OrdersRequest{Running: a.runningNames()}, &reply)
		if err == nil && reply.Error != "" {
			err = errors.New(reply.Error)
		}
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if err.Error() != lastErr {
				a.cfg.Logger.Warn("agent: cannot get this agent's orders; asking again", "err", err)
			}
			lastErr = err.Error()
		default:
			lastErr = ""
			a.reconcile(ctx, store, reply.Orders)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// reconcile runs what orders say and stops what they no longer name.
func (a *Agent) reconcile(ctx context.Context, store *Store, orders []Spec) {
	for _, name := range a.runningNames() {
		if !slices.ContainsFunc(orders, func(s Spec) bool { return s.Name == name && s.Agent == a.cfg.Name }) {
			a.stop(name, "its order was removed or moved")
			_ = os.Remove(a.seedFile(name))
		}
	}
	for _, spec := range orders {
		if spec.Agent == a.cfg.Name {
			a.apply(ctx, store, spec)
		}
	}
}

func (a *Agent) runningNames() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	names := make([]string, 0, len(a.running))
	for name := range a.running {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func (a *Agent) seedFile(plugin string) string { return filepath.Join(a.cfg.SeedDir, plugin+".nk") }

// identity returns the environment that gives plugin its identity: its
// key (kept in the seed directory, made on first use) confirmed by the
// coordinator.
func (a *Agent) identity(ctx context.Context, plugin string) ([]string, error) {
	if err := bus.ValidateProducer(plugin); err != nil {
		return nil, err
	}
	file := a.seedFile(plugin)
	pub, err := keptKey(file)
	if err != nil {
		return nil, err
	}
	var reply IdentityReply
	if err := a.ask(ctx, RequestIdentity, IdentityRequest{Plugin: plugin, PublicKey: pub}, &reply); err != nil {
		return nil, err
	}
	if reply.Error != "" {
		return nil, fmt.Errorf("the coordinator refused an identity for plugin %s: %s", plugin, reply.Error)
	}
	return []string{"PLUGBUS_NKEY=" + file}, nil
}

// keptKey returns the public key of the seed in file, making the seed
// (mode 0600) when there is none.
func keptKey(file string) (string, error) {
	if seed, err := os.ReadFile(file); err == nil {
		if kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed)))); err == nil {
			return kp.PublicKey()
		}
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", err
	}
	seed, err := kp.Seed()
	if err != nil {
		return "", err
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, append(seed, '\n'), 0o600); err != nil {
		return "", fmt.Errorf("agent: seed file: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return "", fmt.Errorf("agent: seed file: %w", err)
	}
	return kp.PublicKey()
}
