package coordinator_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/coordinator"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  coordinator.Config
		want []string // substrings of the error; none means valid
	}{
		{"defaults", coordinator.Config{}, nil},
		{"NATS beyond loopback: secure mode", coordinator.Config{NATSListen: "0.0.0.0:4222"}, nil},
		{"NATS beyond loopback with a token", coordinator.Config{NATSListen: "0.0.0.0:4222", NATSToken: "s3cret"}, nil},
		{"NATS beyond loopback, secure mode off, without auth", coordinator.Config{NATSListen: "0.0.0.0:4222", Secure: new(false)}, []string{"nats_listen", "--nats-token"}},
		{"secure mode with a token", coordinator.Config{Secure: new(true), NATSToken: "s3cret"}, []string{"secure", "nats_token"}},
		{"secure mode with external NATS", coordinator.Config{Secure: new(true), NATSURLs: []string{"nats://n:4222"}}, []string{"secure", "nats_urls"}},
		{"HTTP beyond loopback without auth", coordinator.Config{HTTPListen: "0.0.0.0:8090"}, []string{"http_listen", "--http-token"}},
		{"HTTP beyond loopback with a token", coordinator.Config{HTTPListen: "[::]:8090", HTTPToken: "s3cret"}, nil},
		{"external NATS needs no listener", coordinator.Config{NATSURLs: []string{"nats://nats1:4222"}}, nil},
		{"bad address", coordinator.Config{HTTPListen: "8090"}, []string{"http_listen", "host:port"}},
		{"user without password", coordinator.Config{NATSUser: "admin"}, []string{"nats_password"}},
		{"bad prefix", coordinator.Config{Prefix: "plug bus"}, []string{"prefix", "plug bus"}},
		{"gone_after too short", coordinator.Config{GoneAfter: coordinator.Duration(time.Millisecond)}, []string{"gone_after"}},
		{"plugin without exec", coordinator.Config{Plugins: []coordinator.PluginSpec{{Name: "hello"}}}, []string{"plugins[0]", "exec"}},
		{"plugin listed twice", coordinator.Config{Plugins: []coordinator.PluginSpec{{Name: "a", Exec: "x"}, {Name: "a", Exec: "x"}}}, []string{"plugins[1]", "twice"}},
		{"plugin with a dotted name", coordinator.Config{Plugins: []coordinator.PluginSpec{{Name: "a.b", Exec: "x"}}}, []string{"plugins[0].name", "a.b"}},
		{"cluster on loopback", coordinator.Config{Cluster: coordinator.ClusterSettings{Listen: "127.0.0.1:6222", Routes: []string{"nats://127.0.0.1:6223"}}}, nil},
		{"cluster beyond loopback without auth", coordinator.Config{Cluster: coordinator.ClusterSettings{Listen: "0.0.0.0:6222"}}, []string{"cluster.listen", "PLUGBUS_CLUSTER_PASSWORD"}},
		{"cluster user without password", coordinator.Config{Cluster: coordinator.ClusterSettings{Listen: "0.0.0.0:6222", User: "route"}}, []string{"cluster.user", "PLUGBUS_CLUSTER_PASSWORD"}},
		{"routes without a cluster listener", coordinator.Config{Cluster: coordinator.ClusterSettings{Routes: []string{"nats://n2:6222"}}}, []string{"cluster.routes", "cluster.listen"}},
		{"bad route", coordinator.Config{Cluster: coordinator.ClusterSettings{Listen: "127.0.0.1:6222", Routes: []string{"n2"}}}, []string{"cluster.routes", "nats://n2:6222"}},
		{"cluster with external NATS", coordinator.Config{NATSURLs: []string{"nats://n1:4222"}, Cluster: coordinator.ClusterSettings{Listen: "127.0.0.1:6222"}}, []string{"nats_urls"}},
		{"replicas without a cluster", coordinator.Config{Stream: coordinator.StreamSettings{Replicas: 3}}, []string{"stream.replicas 3", "cluster"}},
		{"bad server name", coordinator.Config{ServerName: "a b"}, []string{"server_name"}},
		{"leaf remote", coordinator.Config{Leaf: coordinator.LeafSettings{Remotes: []string{"nats-leaf://hub:7422"}}}, nil},
		{"leaf beyond loopback without auth", coordinator.Config{Leaf: coordinator.LeafSettings{Listen: "0.0.0.0:7422"}}, []string{"leaf.listen", "PLUGBUS_LEAF_PASSWORD"}},
		{"bad leaf remote", coordinator.Config{Leaf: coordinator.LeafSettings{Remotes: []string{"hub"}}}, []string{"leaf.remotes", "nats-leaf://"}},
		{"quarantine off", coordinator.Config{Quarantine: coordinator.QuarantineSettings{Off: true, Refusals: -1}}, nil},
		{"quarantine with negative refusals", coordinator.Config{Quarantine: coordinator.QuarantineSettings{Refusals: -1}}, []string{"quarantine.refusals -1", "quarantine.off"}},
		{"quarantine window too short", coordinator.Config{Quarantine: coordinator.QuarantineSettings{Window: coordinator.Duration(time.Millisecond)}}, []string{"quarantine.window 1ms"}},
		{"quarantine cool-down too short", coordinator.Config{Quarantine: coordinator.QuarantineSettings{CoolDown: coordinator.Duration(10 * time.Millisecond)}}, []string{"quarantine.cool_down 10ms"}},
		{"quarantine cool-down longer than its maximum", coordinator.Config{Quarantine: coordinator.QuarantineSettings{CoolDown: coordinator.Duration(time.Hour), MaxCoolDown: coordinator.Duration(time.Minute)}}, []string{"quarantine.max_cool_down 1m0s", "shorter"}},
		{"env without =", coordinator.Config{Plugins: []coordinator.PluginSpec{{Name: "a", Exec: "x", Env: []string{"FOO"}}}}, []string{"KEY=VALUE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.SetDefaults()
			err := cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want one mentioning %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestConfigIsSecure(t *testing.T) {
	tests := []struct {
		name string
		cfg  coordinator.Config
		want bool
	}{
		{"loopback", coordinator.Config{}, false},
		{"loopback, asked for", coordinator.Config{Secure: new(true)}, true},
		{"beyond loopback", coordinator.Config{NATSListen: "0.0.0.0:4222"}, true},
		{"beyond loopback, turned off", coordinator.Config{NATSListen: "0.0.0.0:4222", Secure: new(false)}, false},
		{"beyond loopback with a shared token", coordinator.Config{NATSListen: "0.0.0.0:4222", NATSToken: "s"}, false},
		{"external NATS", coordinator.Config{NATSURLs: []string{"nats://n:4222"}}, false},
	}
	for _, tt := range tests {
		cfg := tt.cfg
		cfg.SetDefaults()
		if got := cfg.IsSecure(); got != tt.want {
			t.Errorf("%s: IsSecure() = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "plugbus.yaml")
	os.WriteFile(path, []byte(`
data_dir: data
gone_after: 3s
plugins:
  - name: hello
    exec: ../bin/hello
    replicas: 2
  - name: tool
    exec: sometool
`), 0o600)
	cfg, err := coordinator.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "data"); cfg.DataDir != want {
		t.Errorf("data_dir: got %q, want %q", cfg.DataDir, want)
	}
	if time.Duration(cfg.GoneAfter) != 3*time.Second {
		t.Errorf("gone_after: got %v, want 3s", time.Duration(cfg.GoneAfter))
	}
	if want := filepath.Join(filepath.Dir(dir), "bin", "hello"); cfg.Plugins[0].Exec != want {
		t.Errorf("exec: got %q, want %q", cfg.Plugins[0].Exec, want)
	}
	if cfg.Plugins[1].Exec != "sometool" {
		t.Errorf("a bare command name must stay for PATH lookup: got %q", cfg.Plugins[1].Exec)
	}
	if cfg.Plugins[0].Dir != dir || cfg.Plugins[0].Replicas != 2 {
		t.Errorf("plugin: got %+v, want dir %s and 2 replicas", cfg.Plugins[0], dir)
	}

	for _, bad := range []struct{ text, want string }{
		{"gone_afterr: 3s\n", "gone_afterr"},
		{"gone_after: soon\n", "soon"},
		{"plugins: {name: x}\n", "plugins"},
	} {
		os.WriteFile(path, []byte(bad.text), 0o600)
		if _, err := coordinator.LoadConfig(path); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("config %q: got %v, want an error naming %q", bad.text, err, bad.want)
		}
	}
}
