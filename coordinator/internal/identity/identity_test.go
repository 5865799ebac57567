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
