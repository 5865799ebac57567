package identity_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/plugbus/plugbus/coordinator/internal/identity"
)

func rules() identity.Rules {
	return identity.PluginRules(identity.Scope{}, identity.Identity{
		Name: "resizer", Handles: []string{"com.example.image.uploaded"},
		Answers: []string{"com.example.image.resize"}, Emits: []string{"com.example.image.resized"},
	})
}

// The authorization block is one nats-server reads back into the very
// permissions secure mode installs.
func TestServerConfigParses(t *testing.T) {
	pub, _, err := identity.NewUser()
	if err != nil {
		t.Fatal(err)
	}
	r := rules()
	var opts server.Options
	if err := opts.ProcessConfigString(r.ServerConfig(pub)); err != nil {
		t.Fatalf("nats-server rejects the block: %v\n%s", err, r.ServerConfig(pub))
	}
	if len(opts.Nkeys) != 1 || opts.Nkeys[0].Nkey != pub {
		t.Fatalf("nkeys %+v, want the one user %s", opts.Nkeys, pub)
	}
	got, want := opts.Nkeys[0].Permissions, r.Permissions()
	if !slices.Equal(got.Publish.Allow, want.Publish.Allow) || !slices.Equal(got.Subscribe.Allow, want.Subscribe.Allow) {
		t.Errorf("parsed %+v %+v, want %+v %+v", got.Publish, got.Subscribe, want.Publish, want.Subscribe)
	}
	if got.Response == nil || got.Response.MaxMsgs != 1 || got.Response.Expires != identity.ResponseExpiry {
		t.Errorf("allow_responses parsed as %+v", got.Response)
	}
}

// The JWT template's claims read as nats-io/jwt's user permissions.
func TestJWTTemplate(t *testing.T) {
	r := rules()
	out := r.JWTTemplate("resizer")
	if !strings.Contains(out, "nsc add user --name resizer") {
		t.Errorf("no nsc command in:\n%s", out)
	}
	var claims struct{ Nats jwt.User }
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &claims); err != nil {
		t.Fatalf("claims: %v\n%s", err, out)
	}
	u := claims.Nats
	if !slices.Equal(u.Pub.Allow, jwt.StringList(r.Publish)) || !slices.Equal(u.Sub.Allow, jwt.StringList(r.Subscribe)) || u.Resp == nil || u.Resp.MaxMsgs != 1 {
		t.Errorf("claims %+v, want the rules %+v", u, r)
	}
}

func TestStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ids")
	s, err := identity.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Add("coordinator", identity.Declaration{}); err == nil {
		t.Error("a plugin took the coordinator's name")
	}
	if _, _, err := s.Add("agent-host1", identity.Declaration{}); err == nil {
		t.Error("a plugin took agent host1's producer name")
	}
	if _, _, err := s.Add("a", identity.Declaration{Handles: []string{"bad..type"}}); err == nil {
		t.Error("an invalid type was accepted")
	}
	id, seed, err := s.Add("a", identity.Declaration{Handles: []string{"x.y"}})
	if err != nil || len(seed) == 0 || id.PublicKey == "" {
		t.Fatalf("Add: %+v %v", id, err)
	}
	if _, _, err := s.Add("a", identity.Declaration{}); err == nil {
		t.Error("added twice")
	}
	_, file, err := s.Ensure("b", identity.Declaration{})
	if err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{dir: 0o700, file: 0o600, filepath.Join(dir, "identities.json"): 0o600} {
		if info, err := os.Stat(path); err != nil || info.Mode().Perm() != mode {
			t.Errorf("%s: %v %v, want mode %v", path, info.Mode(), err, mode)
		}
	}
	rotated, _, err := s.Rotate("a")
	if err != nil || rotated.PublicKey == id.PublicKey {
		t.Fatalf("Rotate: %+v %v", rotated, err)
	}
	// A reopened store knows what was saved.
	s2, err := identity.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := s2.Get("a"); !ok || got.PublicKey != rotated.PublicKey {
		t.Errorf("reopened: %+v %v", got, ok)
	}
	if err := s2.Remove("b"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("b's seed file is still there: %v", err)
	}
}

// An agent's identity, and the plugin identities it is granted: kept
// across a reopen, refused over a plugin the coordinator runs or one
// added by hand, released with the agent.
func TestStoreAgents(t *testing.T) {
	dir := t.TempDir()
	s, err := identity.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AddAgent("host.one"); err == nil {
		t.Error("an agent name with a dot was accepted")
	}
	a, seed, err := s.AddAgent("host1")
	if err != nil || len(seed) == 0 || a.PublicKey == "" {
		t.Fatalf("add agent: %+v, %v", a, err)
	}
	if _, _, err := s.AddAgent("host1"); err == nil {
		t.Error("the same agent was added twice")
	}
	pub, _, _ := identity.NewUser()
	decl := identity.Declaration{Handles: []string{"x.in"}}
	if _, _, err := s.Grant("host2", "p", pub, decl); err == nil {
		t.Error("an identity was granted to an agent without one")
	}
	if _, _, err := s.Grant("host1", "p", "not-a-key", decl); err == nil {
		t.Error("an identity was granted with a key that is not a user nkey")
	}
	for _, name := range []string{"agent", "agent-host2"} {
		if _, _, err := s.Grant("host1", name, pub, decl); err == nil {
			t.Errorf("the reserved name %s was granted", name)
		}
	}
	id, changed, err := s.Grant("host1", "p", pub, decl)
	if err != nil || !changed || id.Agent != "host1" {
		t.Fatalf("grant: %+v, %v, %v", id, changed, err)
	}
	if _, changed, _ := s.Grant("host1", "p", pub, decl); changed {
		t.Error("granting the same key and declaration again changed something")
	}
	if _, changed, _ := s.Grant("host1", "p", pub, identity.Declaration{Handles: []string{"x.other"}}); !changed {
		t.Error("a new declaration changed nothing")
	}
	if _, _, err := s.Ensure("managed", identity.Declaration{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Add("by-hand", identity.Declaration{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"managed", "by-hand"} {
		if _, _, err := s.Grant("host1", name, pub, decl); err == nil {
			t.Errorf("an agent took over the identity %s", name)
		}
	}
	if _, _, err := s.Ensure("p", decl); err == nil {
		t.Error("the coordinator took over an agent's plugin's identity")
	}

	s, err = identity.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := s.Agent("host1"); !ok || got != a {
		t.Fatalf("reopened: agent %+v, %v; want %+v", got, ok, a)
	}
	if held := s.Held("host1"); !slices.Equal(held, []string{"p"}) {
		t.Fatalf("reopened: host1 holds %v, want [p]", held)
	}
	if gone, err := s.Release("host1", []string{"p"}); err != nil || len(gone) != 0 {
		t.Fatalf("release keeping p: %v, %v", gone, err)
	}
	rotated, _, err := s.RotateAgent("host1")
	if err != nil || rotated.PublicKey == a.PublicKey {
		t.Fatalf("rotate: %+v, %v", rotated, err)
	}
	if held := s.Held("host1"); !slices.Equal(held, []string{"p"}) {
		t.Fatalf("after rotating the agent it holds %v, want [p]", held)
	}
	gone, err := s.RemoveAgent("host1")
	if err != nil || !slices.Equal(gone, []string{"p"}) {
		t.Fatalf("remove agent: %v, %v; want p released", gone, err)
	}
	if _, ok := s.Get("p"); ok {
		t.Error("p's identity outlived its agent's")
	}
	if _, ok := s.Get("managed"); !ok {
		t.Error("removing the agent removed a plugin it did not hold")
	}
}

// An agent's permissions: its requests, entry and plugins' log lines, and
// no event, order or consumer.
func TestAgentRules(t *testing.T) {
	r := identity.AgentRules(identity.Scope{}, "host1", []string{"hello"})
	for _, want := range []string{"plugbus.agent.host1.*", "$KV.PLUGBUS_AGENTS.host1", "plugbus.logs.hello"} {
		if !slices.Contains(r.Publish, want) {
			t.Errorf("publish %v: want %s", r.Publish, want)
		}
	}
	for _, s := range r.Publish {
		if strings.Contains(s, ">") || strings.HasPrefix(s, "$JS.API.CONSUMER") || strings.Contains(s, "PLUGBUS_PLUGINS.") {
			t.Errorf("publish %s: more than an agent needs", s)
		}
	}
	if !slices.Equal(r.Subscribe, []string{"_INBOX.agent.host1.>"}) || r.Responses {
		t.Errorf("subscribe %v, responses %v: want its inboxes only", r.Subscribe, r.Responses)
	}
}
