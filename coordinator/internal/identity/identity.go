// Package identity keeps the NATS identities of secure mode: one nkey user
// per plugin, with the least privileges its declared types need (see
// [PluginRules]), an admin identity for operators, and the files that hold
// them in the coordinator's data directory.
//
// The store keeps public keys and declarations in identities.json. Seeds
// it hands to plugins the coordinator runs itself (and the admin's) live
// beside it, one file per identity, mode 0600; the seed of an identity
// added for a plugin run elsewhere is handed out once and not kept.
package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/nats-io/nkeys"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator/internal/agent"
)

// Identity is one plugin's identity on the bus.
type Identity struct {
	// Name is the plugin's name, the producer token it may publish as.
	Name string `json:"name"`
	// PublicKey is its nkey (U...).
	PublicKey string `json:"public_key"`
	// Handles are the event types (or patterns) it observes.
	Handles []string `json:"handles,omitempty"`
	// Answers are the event types (or patterns) whose requests it answers.
	Answers []string `json:"answers,omitempty"`
	// Emits are the event types (or patterns) it publishes; none means
	// any type, under its own name.
	Emits []string `json:"emits,omitempty"`
	// Managed says the coordinator keeps the seed, for a plugin it runs.
	Managed bool `json:"managed,omitempty"`
	// Agent names the agent that holds the seed, for a plugin an agent
	// runs on order (see [Store.Grant]).
	Agent string `json:"agent,omitempty"`
}

// Declaration returns what id declares.
func (id Identity) Declaration() Declaration {
	return Declaration{Handles: id.Handles, Answers: id.Answers, Emits: id.Emits}
}

// AgentIdentity is an agent's identity on the bus (see [AgentRules]).
type AgentIdentity struct {
	// Name is the agent's name, as orders name it.
	Name string `json:"name"`
	// PublicKey is its nkey (U...).
	PublicKey string `json:"public_key"`
}

// Declaration is what an identity may do, as given to [Store.Add].
type Declaration struct {
	Handles, Answers, Emits []string
}

// Reserved are the producer names of the coordinator's own users, and the
// token of the agents' inboxes (_INBOX.agent); no plugin identity may take
// them, nor a name beginning as an agent's producer does
// (agent.ProducerPrefix).
var reserved = []string{"coordinator", "http", "cli", "admin", agent.InboxToken}

// Errors of the store.
var (
	ErrExists   = errors.New("identity: already exists")
	ErrNotFound = errors.New("identity: no such identity")
	ErrInvalid  = errors.New("identity: invalid")
)

// Validate reports a name or declaration that cannot make permissions.
func Validate(name string, d Declaration) error {
	var errs []error
	if err := bus.ValidateProducer(name); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrInvalid, err))
	} else if slices.Contains(reserved, name) {
		errs = append(errs, fmt.Errorf("%w: name %q is the coordinator's own; pick another plugin name", ErrInvalid, name))
	} else if strings.HasPrefix(name, agent.ProducerPrefix) {
		errs = append(errs, fmt.Errorf("%w: name %q begins as the agents' producer names (%s<agent>) do; pick another plugin name", ErrInvalid, name, agent.ProducerPrefix))
	}
	check := func(what string, types []string) {
		for _, t := range types {
			if err := bus.ValidateTypePattern(t); err != nil {
				errs = append(errs, fmt.Errorf("%w: %s: %w", ErrInvalid, what, err))
			}
		}
	}
	check("handles", d.Handles)
	check("answers", d.Answers)
	check("emits", d.Emits)
	return errors.Join(errs...)
}

// Store holds the identities of one deployment in a directory. It is safe
// for concurrent use.
type Store struct {
	dir string

	mu     sync.Mutex
	ids    map[string]Identity
	agents map[string]AgentIdentity
}

const (
	indexFile  = "identities.json"
	agentsFile = "agents.json"
)

// Open opens (creating it, mode 0700) the store in dir.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	s := &Store{dir: dir, ids: map[string]Identity{}, agents: map[string]AgentIdentity{}}
	var ids []Identity
	if err := readIndex(filepath.Join(dir, indexFile), &ids); err != nil {
		return nil, err
	}
	for _, id := range ids {
		s.ids[id.Name] = id
	}
	var agents []AgentIdentity
	if err := readIndex(filepath.Join(dir, agentsFile), &agents); err != nil {
		return nil, err
	}
	for _, a := range agents {
		s.agents[a.Name] = a
	}
	return s, nil
}

// readIndex reads the JSON list in file into v; a missing file is empty.
func readIndex(file string, v any) error {
	b, err := os.ReadFile(file)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("identity: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("identity: %s: %w", file, err)
	}
	return nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// List returns every identity, by name.
func (s *Store) List() []Identity {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Identity, 0, len(s.ids))
	for _, id := range s.ids {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Get returns the identity called name.
func (s *Store) Get(name string) (Identity, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.ids[name]
	return id, ok
}

// Add creates an identity for a plugin run elsewhere and returns its seed,
// which the store does not keep.
func (s *Store) Add(name string, d Declaration) (Identity, []byte, error) {
	if err := Validate(name, d); err != nil {
		return Identity{}, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ids[name]; ok {
		return Identity{}, nil, fmt.Errorf("%w: %q; remove it first (plugins rm %s) or rotate its key (plugins rotate %s)", ErrExists, name, name, name)
	}
	pub, seed, err := NewUser()
	if err != nil {
		return Identity{}, nil, err
	}
	id := Identity{Name: name, PublicKey: pub, Handles: d.Handles, Answers: d.Answers, Emits: d.Emits}
	if err := s.put(id); err != nil {
		return Identity{}, nil, err
	}
	return id, seed, nil
}

// Ensure makes the identity of a plugin the coordinator runs: it keeps the
// existing seed file (updating the declaration) or creates one, and returns
// the seed file's path.
func (s *Store) Ensure(name string, d Declaration) (Identity, string, error) {
	if err := Validate(name, d); err != nil {
		return Identity{}, "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	file := s.seedFile(name)
	id, ok := s.ids[name]
	if ok && id.Agent != "" {
		return Identity{}, "", fmt.Errorf("%w: %q is run by agent %s (coordinator run); stop it there (coordinator stop %s) to let the coordinator run the plugin", ErrExists, name, id.Agent, name)
	}
	if ok && !id.Managed {
		return Identity{}, "", fmt.Errorf("%w: %q was added for a plugin run elsewhere (plugins add); remove it (plugins rm %s) to let the coordinator run the plugin", ErrExists, name, name)
	}
	if _, err := os.Stat(file); !ok || err != nil {
		pub, seed, err := NewUser()
		if err != nil {
			return Identity{}, "", err
		}
		if err := writeSeed(file, seed); err != nil {
			return Identity{}, "", err
		}
		id.PublicKey = pub
	}
	id.Name, id.Managed = name, true
	id.Handles, id.Answers, id.Emits = d.Handles, d.Answers, d.Emits
	if err := s.put(id); err != nil {
		return Identity{}, "", err
	}
	return id, file, nil
}

// Remove deletes the identity called name (and its seed file, if kept).
func (s *Store) Remove(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.ids[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	delete(s.ids, name)
	if err := s.save(); err != nil {
		s.ids[name] = id
		return err
	}
	if id.Managed {
		_ = os.Remove(s.seedFile(name))
	}
	return nil
}

// Rotate gives the identity called name a new key. The seed of an identity
// for a plugin run elsewhere is returned; a managed one's is written to its
// seed file (and returned too).
func (s *Store) Rotate(name string) (Identity, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.ids[name]
	if !ok {
		return Identity{}, nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	pub, seed, err := NewUser()
	if err != nil {
		return Identity{}, nil, err
	}
	if id.Managed {
		if err := writeSeed(s.seedFile(name), seed); err != nil {
			return Identity{}, nil, err
		}
	}
	id.PublicKey = pub
	if err := s.put(id); err != nil {
		return Identity{}, nil, err
	}
	return id, seed, nil
}

// Admin returns the operators' identity, creating its seed file (mode
// 0600) on first use: full rights on the bus's account, for `nats --nkey`
// and the coordinator's NATS commands. It is not listed with the plugins.
func (s *Store) Admin() (publicKey, seedFile string, err error) { return s.kept("admin") }

// CLI returns the command line's identity (see [CLIRules]), creating its
// seed file (mode 0600) on first use. It is not listed with the plugins.
func (s *Store) CLI() (publicKey, seedFile string, err error) { return s.kept(CLIProducer) }

// kept returns the key kept in the seed file <name>.nk, creating it on
// first use.
func (s *Store) kept(name string) (publicKey, seedFile string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	file := filepath.Join(s.dir, name+".nk")
	seed, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		var pub string
		if pub, seed, err = NewUser(); err != nil {
			return "", "", err
		}
		if err := writeSeed(file, seed); err != nil {
			return "", "", err
		}
		return pub, file, nil
	}
	if err != nil {
		return "", "", fmt.Errorf("identity: %s seed: %w", name, err)
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return "", "", fmt.Errorf("identity: %s seed %s: %w; delete it to make a new one", name, file, err)
	}
	pub, err := kp.PublicKey()
	return pub, file, err
}

func (s *Store) seedFile(name string) string { return filepath.Join(s.dir, name+".nk") }

// put stores id and saves the index; s.mu is held.
func (s *Store) put(id Identity) error {
	old, had := s.ids[id.Name]
	s.ids[id.Name] = id
	if err := s.save(); err != nil {
		if had {
			s.ids[id.Name] = old
		} else {
			delete(s.ids, id.Name)
		}
		return err
	}
	return nil
}

// save writes the index atomically; s.mu is held.
func (s *Store) save() error {
	ids := make([]Identity, 0, len(s.ids))
	for _, id := range s.ids {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].Name < ids[j].Name })
	return writeIndex(filepath.Join(s.dir, indexFile), ids)
}

// saveAgents writes the agents' index atomically; s.mu is held.
func (s *Store) saveAgents() error {
	agents := make([]AgentIdentity, 0, len(s.agents))
	for _, a := range s.agents {
		agents = append(agents, a)
	}
	sort.Slice(agents, func(i, j int) bool { return agents[i].Name < agents[j].Name })
	return writeIndex(filepath.Join(s.dir, agentsFile), agents)
}

// writeIndex writes v as JSON to file atomically, mode 0600.
func writeIndex(file string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	return nil
}

// NewUser makes a user nkey: its public key and its seed.
func NewUser() (pub string, seed []byte, err error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", nil, fmt.Errorf("identity: new nkey: %w", err)
	}
	if pub, err = kp.PublicKey(); err != nil {
		return "", nil, err
	}
	seed, err = kp.Seed()
	return pub, seed, err
}

// WriteSeed writes seed to file with mode 0600, replacing it.
func WriteSeed(file string, seed []byte) error { return writeSeed(file, seed) }

func writeSeed(file string, seed []byte) error {
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, append(seed, '\n'), 0o600); err != nil {
		return fmt.Errorf("identity: seed file: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fmt.Errorf("identity: seed file: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return fmt.Errorf("identity: seed file: %w", err)
	}
	return nil
}
