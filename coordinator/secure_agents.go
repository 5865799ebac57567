package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/coordinator/internal/agent"
	"github.com/plugbus/plugbus/coordinator/internal/identity"
)

// serveAgents answers the requests of agents in secure mode (see package
// agent, secure.go): the orders naming an agent, and the identities of
// the plugins it runs on order. Only the agent called NAME may publish on
// <prefix>.agent.NAME.*, so the subject says who asks.
func (c *Coordinator) serveAgents(fleet *agent.Store) error {
	_, err := c.nc.Subscribe(agent.RequestSubjects(c.cfg.Prefix, "*"), func(m *nats.Msg) { c.answerAgent(fleet, m) })
	if err != nil {
		return fmt.Errorf("coordinator: secure mode: agents' requests: %w", err)
	}
	return nil
}

func (c *Coordinator) answerAgent(fleet *agent.Store, m *nats.Msg) {
	name, kind, ok := agent.ParseRequest(c.cfg.Prefix, m.Subject)
	if !ok || !strings.HasPrefix(m.Reply, agent.InboxPrefix(name)+".") {
		// An answer goes to the asking agent's inboxes only: any other
		// reply subject would make the coordinator publish there.
		c.log.Debug("agent request without a reply subject of its own; ignored", "subject", m.Subject)
		return
	}
	var reply any
	if _, known := c.sec.store.Agent(name); !known {
		reply = map[string]string{"error": fmt.Sprintf("no agent identity %q (coordinator agents add %s)", name, name)}
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		switch kind {
		case agent.RequestOrders:
			reply = c.agentOrders(ctx, fleet, name, m.Data)
		case agent.RequestIdentity:
			reply = c.agentIdentity(ctx, fleet, name, m.Data)
		default:
			reply = map[string]string{"error": fmt.Sprintf("no agent request %q; want %s or %s", truncate(kind), agent.RequestOrders, agent.RequestIdentity)}
		}
	}
	b, err := json.Marshal(reply)
	if err == nil {
		err = m.Respond(b)
	}
	if err != nil {
		c.log.Warn("could not answer an agent", "agent", name, "request", kind, "err", err)
	}
}

// agentOrders answers the orders naming the agent, and releases the
// identities it holds of plugins it neither runs nor is ordered to, and
// the consumers of those no longer ordered at all.
func (c *Coordinator) agentOrders(ctx context.Context, fleet *agent.Store, name string, data []byte) agent.OrdersReply {
	var req agent.OrdersRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return agent.OrdersReply{Error: fmt.Sprintf("request: %v", err)}
	}
	all, err := fleet.Orders(ctx)
	if err != nil {
		return agent.OrdersReply{Error: fmt.Sprintf("orders: %v", err)}
	}
	mine := []agent.Spec{}
	keep := slices.Clone(req.Running)
	ordered := map[string]bool{}
	for _, spec := range all {
		ordered[spec.Name] = true
		if spec.Agent == name {
			mine = append(mine, spec)
			keep = append(keep, spec.Name)
		}
	}
	sec := c.sec
	sec.mu.Lock()
	defer sec.mu.Unlock()
	gone, err := sec.store.Release(name, keep)
	if err == nil && len(gone) > 0 {
		err = c.applyIdentities()
		// The consumer of a plugin whose order moved to another agent
		// keeps what that agent's instances are still to handle.
		var unordered []string
		for _, plugin := range gone {
			if !ordered[plugin] {
				unordered = append(unordered, plugin)
			}
		}
		c.deleteConsumers(ctx, unordered...)
		c.log.Info("identities of plugins no longer run by their agent released", "agent", name, "plugins", gone, "consumers_deleted", unordered)
	}
	if err != nil {
		c.log.Warn("could not release the identities of an agent's stopped plugins", "agent", name, "err", err)
	}
	return agent.OrdersReply{Orders: mine}
}

// agentIdentity gives a plugin ordered on the agent the key the agent
// made for it, with the permissions of the plugin's declaration in its
// order (the order, not the agent, says what the plugin may do).
func (c *Coordinator) agentIdentity(ctx context.Context, fleet *agent.Store, name string, data []byte) agent.IdentityReply {
	var req agent.IdentityRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return agent.IdentityReply{Error: fmt.Sprintf("request: %v", err)}
	}
	spec, err := fleet.Get(ctx, req.Plugin)
	if err != nil {
		return agent.IdentityReply{Error: fmt.Sprintf("plugin %q: %v", truncate(req.Plugin), err)}
	}
	if spec.Agent != name {
		return agent.IdentityReply{Error: fmt.Sprintf("plugin %q is ordered on agent %q, not on %q", spec.Name, spec.Agent, name)}
	}
	sec := c.sec
	sec.mu.Lock()
	defer sec.mu.Unlock()
	id, changed, err := sec.store.Grant(name, spec.Name, req.PublicKey, identity.Declaration{Handles: spec.Handles, Answers: spec.Answers, Emits: spec.Emits})
	if err != nil {
		return agent.IdentityReply{Error: err.Error()}
	}
	if changed {
		if err := (identityAdmin{c}).apply(ctx, id); err != nil {
			return agent.IdentityReply{Error: err.Error()}
		}
		c.log.Info("identity given to a plugin run by an agent", "plugin", id.Name, "agent", name, "public_key", id.PublicKey)
	}
	return agent.IdentityReply{Plugin: id.Name, PublicKey: id.PublicKey}
}

// truncate shortens what a client sent for a message.
func truncate(s string) string {
	if len(s) > 64 {
		return fmt.Sprintf("%s... (%d bytes)", s[:64], len(s))
	}
	return s
}

// AgentView is an agent's identity as the HTTP API shows it, with its
// seed when it was just made, and the plugins whose identities it holds.
type AgentView struct {
	identity.AgentIdentity
	Plugins []string `json:"plugins"`
	Seed    string   `json:"seed,omitempty"`
}

func (a identityAdmin) AgentList() any {
	out := []AgentView{}
	for _, ag := range a.c.sec.store.Agents() {
		out = append(out, AgentView{AgentIdentity: ag, Plugins: a.c.sec.store.Held(ag.Name)})
	}
	return out
}

func (a identityAdmin) AgentAdd(ctx context.Context, name string) (any, error) {
	sec := a.c.sec
	sec.mu.Lock()
	defer sec.mu.Unlock()
	ag, seed, err := sec.store.AddAgent(name)
	if err != nil {
		return nil, err
	}
	if err := a.c.applyIdentities(); err != nil {
		_, _ = sec.store.RemoveAgent(name)
		return nil, err
	}
	a.c.log.Info("agent identity added", "agent", name, "public_key", ag.PublicKey)
	return AgentView{AgentIdentity: ag, Plugins: []string{}, Seed: string(seed)}, nil
}

func (a identityAdmin) AgentRemove(ctx context.Context, name string) error {
	sec := a.c.sec
	sec.mu.Lock()
	defer sec.mu.Unlock()
	plugins, err := sec.store.RemoveAgent(name)
	if err != nil {
		return err
	}
	if err := a.c.applyIdentities(); err != nil {
		return err
	}
	a.c.deleteConsumers(ctx, plugins...)
	a.c.log.Info("agent identity removed, with the identities of its plugins and their consumers", "agent", name, "plugins", plugins)
	return nil
}

func (a identityAdmin) AgentRotate(ctx context.Context, name string) (any, error) {
	sec := a.c.sec
	sec.mu.Lock()
	defer sec.mu.Unlock()
	ag, seed, err := sec.store.RotateAgent(name)
	if err != nil {
		return nil, err
	}
	if err := a.c.applyIdentities(); err != nil {
		return nil, err
	}
	a.c.log.Info("agent identity rotated", "agent", name, "public_key", ag.PublicKey)
	return AgentView{AgentIdentity: ag, Plugins: sec.store.Held(name), Seed: string(seed)}, nil
}
