package identity

import (
	"fmt"
	"slices"
	"sort"

	"github.com/nats-io/nkeys"

	"github.com/plugbus/plugbus/bus"
)

// ValidateAgent reports an agent name that cannot make permissions: it is
// a token of the agent's subjects, so it follows the rules of a producer
// name.
func ValidateAgent(name string) error {
	if err := bus.ValidateProducer(name); err != nil {
		return fmt.Errorf("%w: agent name: %w", ErrInvalid, err)
	}
	return nil
}

// Agents returns every agent's identity, by name.
func (s *Store) Agents() []AgentIdentity {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]AgentIdentity, 0, len(s.agents))
	for _, a := range s.agents {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Agent returns the identity of the agent called name.
func (s *Store) Agent(name string) (AgentIdentity, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.agents[name]
	return a, ok
}

// AddAgent creates the identity of the agent called name and returns its
// seed, which the store does not keep.
func (s *Store) AddAgent(name string) (AgentIdentity, []byte, error) {
	if err := ValidateAgent(name); err != nil {
		return AgentIdentity{}, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.agents[name]; ok {
		return AgentIdentity{}, nil, fmt.Errorf("%w: agent %q; remove it first (agents rm %s) or rotate its key (agents rotate %s)", ErrExists, name, name, name)
	}
	pub, seed, err := NewUser()
	if err != nil {
		return AgentIdentity{}, nil, err
	}
	a := AgentIdentity{Name: name, PublicKey: pub}
	s.agents[name] = a
	if err := s.saveAgents(); err != nil {
		delete(s.agents, name)
		return AgentIdentity{}, nil, err
	}
	return a, seed, nil
}

// RotateAgent gives the agent called name a new key and returns its seed.
func (s *Store) RotateAgent(name string) (AgentIdentity, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.agents[name]
	if !ok {
		return AgentIdentity{}, nil, fmt.Errorf("%w: agent %q", ErrNotFound, name)
	}
	pub, seed, err := NewUser()
	if err != nil {
		return AgentIdentity{}, nil, err
	}
	a := AgentIdentity{Name: name, PublicKey: pub}
	s.agents[name] = a
	if err := s.saveAgents(); err != nil {
		s.agents[name] = old
		return AgentIdentity{}, nil, err
	}
	return a, seed, nil
}

// RemoveAgent deletes the identity of the agent called name and those of
// the plugins it holds, whose names it returns.
func (s *Store) RemoveAgent(name string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.agents[name]
	if !ok {
		return nil, fmt.Errorf("%w: agent %q", ErrNotFound, name)
	}
	delete(s.agents, name)
	if err := s.saveAgents(); err != nil {
		s.agents[name] = a
		return nil, err
	}
	return s.release(name, nil)
}

// Held returns the names of the plugins whose identities the agent called
// name holds, sorted.
func (s *Store) Held(agent string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, id := range s.ids {
		if id.Agent == agent {
			out = append(out, id.Name)
		}
	}
	sort.Strings(out)
	return out
}

// Grant makes the identity of plugin, run by agent on order, with the key
// publicKey (the agent made it and keeps its seed) and the permissions of
// declaration d. It replaces one another agent held, but not that of a
// plugin the coordinator runs or of one added for a plugin run elsewhere.
// changed says whether the server must be told of the change.
func (s *Store) Grant(agent, plugin, publicKey string, d Declaration) (id Identity, changed bool, err error) {
	if err := Validate(plugin, d); err != nil {
		return Identity{}, false, err
	}
	if !nkeys.IsValidPublicUserKey(publicKey) {
		return Identity{}, false, fmt.Errorf("%w: public key %q: not a user nkey (U...)", ErrInvalid, truncate(publicKey))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.agents[agent]; !ok {
		return Identity{}, false, fmt.Errorf("%w: agent %q", ErrNotFound, agent)
	}
	old, ok := s.ids[plugin]
	if ok && old.Agent == "" {
		how := "added for a plugin run elsewhere (plugins add)"
		if old.Managed {
			how = "of a plugin the coordinator runs"
		}
		return Identity{}, false, fmt.Errorf("%w: %q is the identity %s; pick another name for the plugin run on order", ErrExists, plugin, how)
	}
	id = Identity{Name: plugin, PublicKey: publicKey, Handles: d.Handles, Answers: d.Answers, Emits: d.Emits, Agent: agent}
	if ok && old.PublicKey == id.PublicKey && old.Agent == id.Agent &&
		slices.Equal(old.Handles, id.Handles) && slices.Equal(old.Answers, id.Answers) && slices.Equal(old.Emits, id.Emits) {
		return old, false, nil
	}
	if err := s.put(id); err != nil {
		return Identity{}, false, err
	}
	return id, true, nil
}

// Release deletes the identities agent holds of plugins that keep does
// not list, and returns their names.
func (s *Store) Release(agent string, keep []string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.release(agent, keep)
}

// release is Release with s.mu held.
func (s *Store) release(agent string, keep []string) ([]string, error) {
	var gone []string
	old := map[string]Identity{}
	for name, id := range s.ids {
		if id.Agent == agent && !slices.Contains(keep, name) {
			gone = append(gone, name)
			old[name] = id
			delete(s.ids, name)
		}
	}
	if len(gone) == 0 {
		return nil, nil
	}
	if err := s.save(); err != nil {
		for name, id := range old {
			s.ids[name] = id
		}
		return nil, err
	}
	sort.Strings(gone)
	return gone, nil
}

// truncate shortens what a client sent for an error message.
func truncate(s string) string {
	if len(s) > 64 {
		return fmt.Sprintf("%s... (%d bytes)", s[:64], len(s))
	}
	return s
}
