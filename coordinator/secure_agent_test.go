package coordinator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator"
	"github.com/plugbus/plugbus/coordinator/internal/agent"
	"github.com/plugbus/plugbus/coordinator/internal/supervise"
	"github.com/plugbus/plugbus/internal/proctest"
)

// cli runs the coordinator's command line against d and returns its
// output, failing the test if it fails.
func (d *secureDeployment) cli(args ...string) string {
	d.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "coordinator"), append(args, "--api", d.api)...)
	cmd.Env = append(os.Environ(), "PLUGBUS_HTTP_TOKEN="+testHTTPToken)
	out, err := cmd.CombinedOutput()
	if err != nil {
		d.t.Fatalf("coordinator %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// connKeys returns the public keys the embedded server's connections
// authenticated with, by connection name.
func connKeys(t *testing.T, c *coordinator.Coordinator) map[string][]string {
	t.Helper()
	connz, err := coordinator.Connz(c)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	for _, ci := range connz.Conns {
		keys[ci.Name] = append(keys[ci.Name], ci.AuthorizedUser)
	}
	return keys
}

func publicKey(t *testing.T, seedFile string) string {
	t.Helper()
	seed, err := os.ReadFile(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// TestSecureModeAgent runs a real agent process with its own identity
// against a coordinator in secure mode. The agent gets its orders and,
// for the plugin it starts, an identity from the coordinator: the plugin
// process connects with its own key and the permissions its order
// declares. The agent's identity can do nothing beyond that (publish as a
// plugin, manage streams, read events or orders); a plugin's identity
// cannot ask for identities; stopping the order releases the plugin's
// identity, and removing the agent's closes its and its plugins'
// connections.
func TestSecureModeAgent(t *testing.T) {
	d := startSecure(t)
	const p = "plugbus"
	admin := d.mustDial("admin", d.seed("admin"))
	ctx := context.Background()
	adminJS, _ := jetstream.New(admin.nc)
	orders, err := agent.OpenStore(ctx, adminJS, p, 0)
	if err != nil {
		t.Fatal(err)
	}

	// The agent's identity, made with the command line.
	agentSeed := filepath.Join(t.TempDir(), "host1.nk")
	if out := d.cli("agents", "add", "host1", "--nkey-out", agentSeed); !strings.Contains(out, "added agent host1") {
		t.Fatalf("agents add: %s", out)
	}
	if info, err := os.Stat(agentSeed); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("the agent's seed file: %v, %v; want mode 0600", info, err)
	}
	agentKey := publicKey(t, agentSeed)

	// The data directory is relative to the agent's working directory,
	// and hello runs in another: the seed's path it gets is absolute.
	agentHome := t.TempDir()
	agentData := filepath.Join(agentHome, "agent-data")
	var agentLog proctest.Output
	cmd := exec.Command(filepath.Join(binDir, "coordinator"), "agent", "--name", "host1", "--nats-url", d.c.NATSURL(),
		"--nkey", agentSeed, "--data-dir", "agent-data", "--log-level", "debug")
	cmd.Dir = agentHome
	cmd.Stdout, cmd.Stderr = &agentLog, &agentLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	agentDone := make(chan struct{})
	go func() { _ = cmd.Wait(); close(agentDone) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-agentDone:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-agentDone
		}
		if t.Failed() {
			t.Logf("agent's log:\n%s", agentLog.String())
		}
	})
	waitFor(t, "agent host1 announced", 60*time.Second, func() error {
		as, err := orders.Agents(ctx)
		if err != nil || len(as) != 1 || as[0].Name != "host1" {
			return fmt.Errorf("agents %v, err %v", as, err)
		}
		return nil
	})
	if _, err := orders.Run(ctx, agent.Spec{Agent: "host1", Spec: supervise.Spec{
		Name: "hello", Exec: filepath.Join(binDir, "hello"), Dir: t.TempDir(),
		Handles: []string{"com.example.greet.requested"}, Answers: []string{"com.example.greet.requested"},
		Emits: []string{"com.example.greet.sent"},
	}}); err != nil {
		t.Fatal(err)
	}
	d.waitInvoke()

	helloSeed := filepath.Join(agentData, "identities", "hello.nk")
	info, err := os.Stat(helloSeed)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("hello's seed file in the agent's data directory: %v, %v; want mode 0600", info, err)
	}
	if info, err := os.Stat(filepath.Dir(helloSeed)); err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("the agent's seed directory: %v, %v; want mode 0700", info, err)
	}
	helloKey := publicKey(t, helloSeed)
	t.Run("each connects with its own key", func(t *testing.T) {
		keys := connKeys(t, d.c)
		if got := keys["hello"]; len(got) != 1 || got[0] != helloKey {
			t.Fatalf("hello connected as %v, want its own key %s", got, helloKey)
		}
		if got := keys["plugbus-agent-host1"]; len(got) != 1 || got[0] != agentKey {
			t.Fatalf("the agent connected as %v, want its own key %s", got, agentKey)
		}
		_, body := d.call("GET", "/v1/identities", testHTTPToken, nil)
		type held struct {
			Name      string `json:"name"`
			PublicKey string `json:"public_key"`
			Agent     string `json:"agent"`
		}
		var ids []held
		if err := json.Unmarshal(body, &ids); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(ids, held{"hello", helloKey, "host1"}) {
			t.Fatalf("identities %s: want hello, with the agent's key for it, held by host1", body)
		}
	})
	t.Run("the plugin's log lines reach the log stream", func(t *testing.T) {
		waitFor(t, "hello's log lines", 30*time.Second, func() error {
			var lines []string
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := orders.Logs(lctx, "hello", 0, false, func(l []byte) { lines = append(lines, string(l)) }); err != nil {
				return err
			}
			if !strings.Contains(strings.Join(lines, "\n"), `"plugin":"hello"`) {
				return fmt.Errorf("%d lines: %q", len(lines), lines)
			}
			return nil
		})
	})

	// The observer sees everything but the agent's own heartbeats and
	// requests, hello's log lines, the JetStream and discovery traffic,
	// and the lifecycle events of a loaded machine (a late poll marks hello
	// gone, then back).
	seen := d.observe(admin, ">", func(subject string) bool {
		return subject == "$KV."+agent.AgentsBucket+".host1" || subject == p+".logs.hello" ||
			strings.HasPrefix(subject, "$JS.") || strings.HasPrefix(subject, "_INBOX.") || strings.HasPrefix(subject, "$SRV.") ||
			strings.HasPrefix(subject, p+".agent.host1.orders") ||
			strings.HasPrefix(subject, p+".events.coordinator.io.plugbus.plugin.") || strings.HasPrefix(subject, p+".events.hello.io.plugbus.plugin.")
	})

	// The plugin's key allows what its order declares, and no more.
	t.Run("the plugin's permissions are its declaration's", func(t *testing.T) {
		hello := d.mustDial("hello-test", helloSeed)
		declared := p + ".events.hello.com.example.greet.sent"
		for _, forbidden := range []string{p + ".events.hello.x.undeclared", p + ".events.b.com.example.greet.sent"} {
			seen.refused(t, hello, forbidden, hello, declared)
		}
		hello.nc.Close()
	})

	// A second connection with the agent's key, to try what the agent
	// may not do.
	d.natsOpt = []nats.Option{nats.CustomInboxPrefix(agent.InboxPrefix("host1"))}
	ag := d.mustDial("host1", agentSeed)
	d.natsOpt = nil
	sentinel := p + ".events.cli.x.sentinel"
	cliUser := d.mustDial("cli", d.seed("cli"))
	t.Run("agent publishes", func(t *testing.T) {
		for _, subject := range []string{
			p + ".events.hello.com.example.greet.sent",               // as its plugin
			p + ".events.coordinator.io.plugbus.coordinator.started", // as the coordinator
			p + ".invoke.host1.com.example.greet.requested",          // a request
			p + ".agent.host2.identity",                              // as another agent
			"$KV." + agent.SpecsBucket + ".hello",                    // an order
			"$KV." + agent.AgentsBucket + ".host2",                   // another agent's entry
			p + ".logs.other",                                        // logs of a plugin it does not run
			p + ".events.agent-host2." + bus.TypePluginCrashlooping,  // a crash loop as another agent
			p + ".events.agent." + bus.TypePluginCrashlooping,        // as every agent once did
		} {
			seen.refused(t, ag, subject, cliUser, sentinel)
		}
	})
	t.Run("agent announces a crash loop as itself", func(t *testing.T) {
		if _, err := orders.Run(ctx, agent.Spec{Agent: "host1", Spec: supervise.Spec{Name: "quitter", Exec: "false"}}); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := orders.Stop(ctx, "quitter"); err != nil {
				t.Error(err)
			}
		}()
		want := p + ".events." + agent.Producer("host1") + "." + bus.TypePluginCrashlooping
		deadline := time.Now().Add(90 * time.Second)
		for {
			m, err := seen.sub.NextMsg(time.Until(deadline))
			if err != nil {
				t.Fatalf("no crash loop announced on %s: %v", want, err)
			}
			if m.Subject != want {
				continue
			}
			var data struct{ Plugin, Agent string }
			if err := json.Unmarshal(m.Data, &data); err != nil || data.Plugin != "quitter" || data.Agent != "host1" {
				t.Fatalf("crash loop %s: want quitter on host1", m.Data)
			}
			return
		}
	})
	t.Run("agent subscribes", func(t *testing.T) {
		for _, row := range []struct{ subject, probe string }{
			{">", p + ".events.b.x"},
			{p + ".events.>", p + ".events.b.x"},
			{"$KV." + agent.SpecsBucket + ".>", "$KV." + agent.SpecsBucket + ".x"},
			{"_INBOX.hello.>", "_INBOX.hello.x"},
		} {
			sub, err := ag.nc.SubscribeSync(row.subject)
			if err != nil {
				t.Fatal(err)
			}
			ag.violation(t, row.subject)
			if err := admin.nc.Publish(row.probe, []byte("secret")); err != nil {
				t.Fatal(err)
			}
			if err := admin.nc.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := ag.nc.Flush(); err != nil {
				t.Fatal(err)
			}
			if n, _, _ := sub.Pending(); n != 0 {
				t.Fatalf("the forbidden subscription to %s got %d messages", row.subject, n)
			}
			_ = sub.Unsubscribe()
		}
	})
	t.Run("agent and JetStream", func(t *testing.T) {
		if _, err := adminJS.Publish(ctx, p+".events.x.com.example.greet.requested.kept", []byte("{}")); err != nil {
			t.Fatal(err)
		}
		state := func() string {
			t.Helper()
			var parts []string
			for _, name := range []string{bus.DefaultEventsStream, "KV_" + agent.SpecsBucket} {
				st, err := adminJS.Stream(ctx, name)
				if err != nil {
					t.Fatal(err)
				}
				info, err := st.Info(ctx)
				if err != nil {
					t.Fatal(err)
				}
				// The orders' consumers come and go: the coordinator lists
				// the orders for each agent's poll.
				parts = append(parts, fmt.Sprint(name, " ", info.State.Msgs, " msgs"))
				if name == bus.DefaultEventsStream {
					parts = append(parts, fmt.Sprint(info.State.Consumers, " consumers"))
				}
				if _, err := st.Consumer(ctx, "spy"); err == nil {
					parts = append(parts, "a consumer spy on "+name)
				}
			}
			return strings.Join(parts, ", ")
		}
		before := state()
		create, _ := json.Marshal(map[string]any{"stream_name": "KV_" + agent.SpecsBucket, "config": map[string]any{"name": "spy", "deliver_subject": p + ".events.coordinator.x"}})
		for _, subject := range []string{
			"$JS.API.STREAM.PURGE." + bus.DefaultEventsStream,
			"$JS.API.STREAM.DELETE." + bus.DefaultEventsStream,
			"$JS.API.STREAM.PURGE." + agent.LogsStream,
			"$JS.API.STREAM.PURGE.KV_" + agent.SpecsBucket,
			"$JS.API.CONSUMER.CREATE.KV_" + agent.SpecsBucket + ".spy",
			"$JS.API.CONSUMER.CREATE." + bus.DefaultEventsStream + ".spy",
			"$JS.API.CONSUMER.MSG.NEXT." + bus.DefaultEventsStream + ".hello",
			"$JS.API.DIRECT.GET.KV_" + agent.SpecsBucket + ".$KV." + agent.SpecsBucket + ".hello",
		} {
			if err := ag.nc.PublishRequest(subject, ag.nc.NewRespInbox(), create); err != nil {
				t.Fatal(err)
			}
			ag.violation(t, subject)
			if now := state(); now != before {
				t.Fatalf("%s: before %s; now %s", subject, before, now)
			}
		}
	})

	ask := func(cl *client, subject string, req any) (agent.IdentityReply, error) {
		b, _ := json.Marshal(req)
		m, err := cl.nc.Request(subject, b, 10*time.Second)
		if err != nil {
			return agent.IdentityReply{}, err
		}
		var reply agent.IdentityReply
		return reply, json.Unmarshal(m.Data, &reply)
	}
	identities := func() string {
		_, body := d.call("GET", "/v1/identities", testHTTPToken, nil)
		return string(body)
	}
	kp, _ := nkeys.CreateUser()
	strangerKey, _ := kp.PublicKey()
	t.Run("agent asks for a plugin not ordered on it", func(t *testing.T) {
		// An order for another agent, written as an operator would.
		b, _ := json.Marshal(agent.Spec{Agent: "host2", Spec: supervise.Spec{Name: "elsewhere", Exec: "/nonexistent/elsewhere"}})
		kv, err := adminJS.KeyValue(ctx, agent.SpecsBucket)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, "elsewhere", b); err != nil {
			t.Fatal(err)
		}
		for _, plugin := range []string{"elsewhere", "nothing-ordered", "coordinator"} {
			reply, err := ask(ag, agent.RequestSubject(p, "host1", agent.RequestIdentity), agent.IdentityRequest{Plugin: plugin, PublicKey: strangerKey})
			if err != nil || reply.Error == "" {
				t.Fatalf("identity for %s: %+v, %v; want a refusal", plugin, reply, err)
			}
		}
		if strings.Contains(identities(), strangerKey) {
			t.Fatalf("an identity was made: %s", identities())
		}
	})
	t.Run("answers go to the asking agent's inboxes only", func(t *testing.T) {
		forged := p + ".events.coordinator.x.forged.reply"
		if err := ag.nc.PublishRequest(agent.RequestSubject(p, "host1", agent.RequestOrders), forged, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := ask(ag, agent.RequestSubject(p, "host1", agent.RequestOrders), agent.OrdersRequest{}); err != nil {
			t.Fatal(err)
		}
		if err := cliUser.nc.Publish(sentinel, []byte("ok")); err != nil {
			t.Fatal(err)
		}
		for _, s := range seen.next(t, sentinel) {
			if s == forged {
				t.Fatalf("the coordinator answered on %s", forged)
			}
		}
	})
	t.Run("no identity for a plugin's or an unknown key", func(t *testing.T) {
		bSeed := d.add("b", []string{"b.in"}, nil, nil)
		b := d.mustDial("b", bSeed)
		for _, subject := range []string{agent.RequestSubject(p, "host1", agent.RequestIdentity), agent.RequestSubject(p, "b", agent.RequestIdentity)} {
			if err := b.nc.PublishRequest(subject, "_INBOX.b.x", []byte(`{"plugin":"hello","public_key":"`+strangerKey+`"}`)); err != nil {
				t.Fatal(err)
			}
			b.violation(t, subject)
		}
		// Even the admin, asking for an agent that has no identity, gets
		// none: the coordinator answers only agents it knows.
		d.natsOpt = []nats.Option{nats.CustomInboxPrefix(agent.InboxPrefix("ghost"))}
		ghost := d.mustDial("ghost", d.seed("admin"))
		d.natsOpt = nil
		if reply, err := ask(ghost, agent.RequestSubject(p, "ghost", agent.RequestIdentity), agent.IdentityRequest{Plugin: "hello", PublicKey: strangerKey}); err != nil || !strings.Contains(reply.Error, "no agent identity") {
			t.Fatalf("an unknown agent's request: %+v, %v; want a refusal", reply, err)
		}
		if strings.Contains(identities(), strangerKey) {
			t.Fatalf("an identity was made: %s", identities())
		}
	})

	t.Run("stopping the order releases the plugin's identity and consumer", func(t *testing.T) {
		hasConsumer(t, adminJS, "hello")
		if err := orders.Stop(ctx, "hello"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "hello's identity released", 60*time.Second, func() error {
			if s := identities(); strings.Contains(s, `"hello"`) {
				return fmt.Errorf("identities %s", s)
			}
			if _, err := os.Stat(helloSeed); err == nil {
				return fmt.Errorf("the agent still keeps hello's seed")
			}
			return nil
		})
		noConsumer(t, adminJS, "hello")
		// The store changes before the server's users do: the agent may
		// no longer send hello's log lines once they have.
		waitFor(t, "the agent's permission to send hello's log lines withdrawn", 30*time.Second, func() error {
			if err := ag.nc.Publish(p+".logs.hello", []byte("late")); err != nil {
				return err
			}
			deadline := time.After(time.Second)
			for {
				select {
				case err := <-ag.errs:
					if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), p+".logs.hello") {
						return nil
					}
				case <-deadline:
					return errors.New("published without a violation")
				}
			}
		})
	})

	t.Run("removing the agent closes its and its plugins' connections, and removes their consumers", func(t *testing.T) {
		if _, err := orders.Run(ctx, agent.Spec{Agent: "host1", Spec: supervise.Spec{
			Name: "hello", Exec: filepath.Join(binDir, "hello"),
			Handles: []string{"com.example.greet.requested"}, Answers: []string{"com.example.greet.requested"},
		}}); err != nil {
			t.Fatal(err)
		}
		d.waitInvoke()
		hasConsumer(t, adminJS, "hello")
		closed := ag.closes()
		if out := d.cli("agents", "rm", "host1"); !strings.Contains(out, "removed agent host1") {
			t.Fatalf("agents rm: %s", out)
		}
		waitClosed(t, closed, "the removed agent's connection")
		waitFor(t, "no connection of the agent or its plugin", 30*time.Second, func() error {
			keys := connKeys(t, d.c)
			if got := append(keys["hello"], keys["plugbus-agent-host1"]...); len(got) != 0 {
				return fmt.Errorf("still connected: %v", got)
			}
			return nil
		})
		if s := identities(); strings.Contains(s, `"hello"`) {
			t.Fatalf("hello's identity outlived its agent's: %s", s)
		}
		noConsumer(t, adminJS, "hello")
		if _, err := d.dial("host1", agentSeed); err == nil {
			t.Fatal("the removed agent's key still connects")
		}
		if status, _ := d.call(http.MethodGet, "/v1/agent-identities", testHTTPToken, nil); status != http.StatusOK {
			t.Fatalf("GET /v1/agent-identities: %d", status)
		}
	})
}

// hasConsumer fails unless the events stream has the consumer of plugin.
func hasConsumer(t *testing.T, js jetstream.JetStream, plugin string) {
	t.Helper()
	if _, err := js.Consumer(context.Background(), bus.DefaultEventsStream, plugin); err != nil {
		t.Fatalf("%s's consumer: %v", plugin, err)
	}
}

// noConsumer waits until the events stream has no consumer of plugin: the
// coordinator deletes it right after the plugin's identity.
func noConsumer(t *testing.T, js jetstream.JetStream, plugin string) {
	t.Helper()
	waitFor(t, plugin+"'s consumer deleted", 30*time.Second, func() error {
		if _, err := js.Consumer(context.Background(), bus.DefaultEventsStream, plugin); !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("the consumer: %v, want none", err)
		}
		return nil
	})
}
