package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator/internal/agent"
)

// store connects to NATS and opens the orders and agents of the bus.
func (f *clientFlags) store(ctx context.Context) (*agent.Store, func(), error) {
	nc, err := f.connect()
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := agent.OpenStore(ctx, js, f.prefix, 0)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("%w (is JetStream on? the bus keeps the orders in a key-value bucket)", err)
	}
	return s, nc.Close, nil
}

func newAgentCmd() *cobra.Command {
	var name, natsURL, token, nkey, dataDir, natsCA, prefix, logFormat, logLevel string
	var replicas int
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run plugins on this host on orders from any coordinator",
		Long: `Run the supervisor as a process of its own: it announces itself on the bus
(coordinator agents lists it), carries out the orders of coordinator run, stop,
scale and restart that name it, restarts its plugins with backoff, sends their
log lines to the bus (coordinator logs), and keeps them running while
coordinators restart. The orders are stored in the bus's key-value store, so
an agent that was away catches up when it returns.

Plugins get PLUGBUS_URL, PLUGBUS_PREFIX and the token of the agent.

In the coordinator's secure mode the agent connects with its own identity
(--nkey, made with coordinator agents add): it asks the coordinator for its
orders, and for an identity for each plugin it starts, whose seed it keeps in
--data-dir (mode 0600) and hands to the plugin as PLUGBUS_NKEY. The plugin's
permissions are those its order declares (coordinator run --handles, --answers,
--emits).`,
		Example: `  coordinator agent --name host1 --nats-url nats://n1:4222,nats://n2:4222 --nats-token secret
  coordinator agent --name host1 --nats-url nats://bus-host:4222 --nkey host1.nk   # secure mode`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(logFormat, logLevel)
			if err != nil {
				return err
			}
			conn := bus.ConnConfig{URLs: strings.Split(natsURL, ","), Name: "plugbus-agent-" + name, Token: token, CAFile: natsCA}
			seedDir := ""
			if nkey != "" {
				if token != "" {
					return fmt.Errorf("--nkey and --nats-token: pick one; --nkey is for the coordinator's secure mode")
				}
				if err := bus.ValidateProducer(name); err != nil {
					return fmt.Errorf("--name %q: in secure mode the agent's name is a token of its subjects: %w; pick another with --name", name, err)
				}
				conn.NKeySeedFile, conn.InboxPrefix = nkey, agent.InboxPrefix(name)
				seedDir = filepath.Join(dataDir, "identities")
			}
			conn.OnEvent = func(ev bus.ConnEvent) {
				switch ev.Kind {
				case bus.Disconnected:
					logger.Warn("disconnected from NATS; the plugins keep running; reconnecting", "err", ev.Err)
				case bus.Reconnected:
					logger.Info("reconnected to NATS", "url", ev.URL)
				}
			}
			nc, err := bus.Connect(cmd.Context(), conn)
			if err != nil {
				return err
			}
			defer nc.Close()
			env := []string{"PLUGBUS_URL=" + natsURL, "PLUGBUS_PREFIX=" + prefix}
			if token != "" {
				env = append(env, "PLUGBUS_TOKEN="+token)
			}
			if natsCA != "" {
				abs, err := filepath.Abs(natsCA)
				if err != nil {
					return err
				}
				env = append(env, "PLUGBUS_TLS_CA="+abs)
			}
			a, err := agent.New(agent.Config{Conn: nc, Prefix: prefix, Name: name, BaseEnv: env, Replicas: replicas, Logger: logger, SeedDir: seedDir})
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	host, _ := os.Hostname()
	fl := cmd.Flags()
	fl.StringVar(&name, "name", envOr("PLUGBUS_AGENT_NAME", host), "the agent's name, unique among agents; orders name it [PLUGBUS_AGENT_NAME]")
	fl.StringVar(&natsURL, "nats-url", envOr("PLUGBUS_URL", "nats://127.0.0.1:4222"), "NATS server URL(s), comma-separated [PLUGBUS_URL]")
	fl.StringVar(&token, "nats-token", os.Getenv("PLUGBUS_TOKEN"), "NATS token [PLUGBUS_TOKEN]")
	fl.StringVar(&nkey, "nkey", os.Getenv("PLUGBUS_NKEY"), "the agent's own nkey seed file, in secure mode (coordinator agents add) [PLUGBUS_NKEY]")
	fl.StringVar(&dataDir, "data-dir", envOr("PLUGBUS_AGENT_DATA_DIR", "agent-data"), "where the agent keeps its plugins' seeds in secure mode (mode 0700) [PLUGBUS_AGENT_DATA_DIR]")
	fl.StringVar(&natsCA, "tls-ca", os.Getenv("PLUGBUS_TLS_CA"), "CA certificate to trust for NATS over TLS; handed to the plugins too [PLUGBUS_TLS_CA]")
	fl.StringVar(&prefix, "prefix", envOr("PLUGBUS_PREFIX", bus.DefaultPrefix), "subject prefix [PLUGBUS_PREFIX]")
	fl.IntVar(&replicas, "replicas", 0, "copies of the orders bucket, agents bucket and log stream if this agent creates them [PLUGBUS_REPLICAS]")
	fl.StringVar(&logFormat, "log-format", envOr("PLUGBUS_LOG_FORMAT", "text"), "log format: text or json [PLUGBUS_LOG_FORMAT]")
	fl.StringVar(&logLevel, "log-level", envOr("PLUGBUS_LOG_LEVEL", "info"), "log level [PLUGBUS_LOG_LEVEL]")
	if v, err := strconv.Atoi(os.Getenv("PLUGBUS_REPLICAS")); err == nil {
		replicas = v
	}
	return cmd
}

func newAgentsCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "agents",
		Short: "List the agents running now and their plugins' instances",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, done, err := f.store(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			agents, err := s.Agents(cmd.Context())
			if err != nil {
				return err
			}
			if f.asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(agents)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "AGENT\tHOST\tPID\tUP\tINSTANCES")
			for _, a := range agents {
				var ins []string
				for _, in := range a.Instances {
					ins = append(ins, fmt.Sprintf("%s(%s)", in.Instance, in.State))
				}
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", a.Name, a.Host, a.PID, time.Since(a.Started).Round(time.Second), strings.Join(ins, " "))
			}
			if len(agents) == 0 {
				fmt.Fprintln(w, "(no agents: start `coordinator agent` on a host)")
			}
			return w.Flush()
		},
	}
	addClientFlags(cmd, &f, true, false)
	cmd.AddCommand(newAgentsAddCmd(), newAgentsRemoveCmd(), newAgentsRotateCmd())
	return cmd
}

func newRunCmd() *cobra.Command {
	var f clientFlags
	var spec agent.Spec
	cmd := &cobra.Command{
		Use:   "run NAME --exec PATH [--replicas N] [--agent NAME] [-- ARGS...]",
		Short: "Run a plugin on an agent, until stopped; survives coordinator restarts",
		Long: `Order an agent to run a plugin: the executable PATH on the agent's host, with
ARGS. Without --agent, the agent running the fewest instances takes it. The
order is kept in the bus's key-value store: the plugin comes back after its
agent or any coordinator restarts, until coordinator stop NAME.`,
		Example: `  coordinator run hello --exec /usr/local/bin/hello --replicas 2
  coordinator run archive --exec /opt/plugins/archive --agent host2 -- -dir /var/lib/archive`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec.Name, spec.Args = args[0], args[1:]
			s, done, err := f.store(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			spec, err = s.Run(cmd.Context(), spec)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d instance(s) ordered on agent %s\n", spec.Name, spec.Replicas, spec.Agent)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&spec.Exec, "exec", "", "the plugin's executable, on the agent's host")
	fl.IntVar(&spec.Replicas, "replicas", 1, "how many instances")
	fl.StringVar(&spec.Agent, "agent", "", "the agent to run it on (default: the one running the fewest instances)")
	fl.StringArrayVar(&spec.Env, "env", nil, "extra environment, KEY=VALUE (repeatable)")
	fl.StringVar(&spec.Dir, "dir", "", "working directory on the agent's host")
	fl.StringVar(&spec.SHA256, "sha256", "", "the executable's SHA-256, checked before each start")
	fl.StringArrayVar(&spec.Handles, "handles", nil, "an event type (or pattern) the plugin observes; in secure mode its permissions (repeatable)")
	fl.StringArrayVar(&spec.Answers, "answers", nil, "an event type whose requests the plugin answers (repeatable)")
	fl.StringArrayVar(&spec.Emits, "emits", nil, "an event type the plugin publishes (repeatable; none: any type under its name)")
	_ = cmd.MarkFlagRequired("exec")
	addClientFlags(cmd, &f, true, false)
	return cmd
}

// newOrderCmd makes stop, scale and restart.
func newOrderCmd(use, short string, nargs int, do func(ctx context.Context, s *agent.Store, args []string) (string, error)) *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(nargs),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, done, err := f.store(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			msg, err := do(cmd.Context(), s, args)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), msg)
			return nil
		},
	}
	addClientFlags(cmd, &f, true, false)
	return cmd
}

func newStopCmd() *cobra.Command {
	return newOrderCmd("stop NAME", "Stop a plugin started with run", 1, func(ctx context.Context, s *agent.Store, args []string) (string, error) {
		return args[0] + ": stop ordered", s.Stop(ctx, args[0])
	})
}

func newScaleCmd() *cobra.Command {
	return newOrderCmd("scale NAME N", "Run N instances of a plugin started with run", 2, func(ctx context.Context, s *agent.Store, args []string) (string, error) {
		n, err := strconv.Atoi(args[1])
		if err != nil {
			return "", fmt.Errorf("instance count %q: want a number, such as 3", args[1])
		}
		spec, err := s.Scale(ctx, args[0], n)
		return fmt.Sprintf("%s: %d instance(s) ordered on agent %s", spec.Name, spec.Replicas, spec.Agent), err
	})
}

func newRestartCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "restart NAME",
		Short: "Restart every instance of a plugin: one started with run, or one the coordinator runs itself",
		Long: `Restart every instance of a plugin, each drained first. A plugin started with
run is restarted by its agent (an order in the bus's key-value bucket); any
other is asked of the coordinator that runs it (--api): a process, stdio or
wasm plugin of its configuration starts again from its file as it is now, so
a wasm plugin runs its module's new code. Static and .so plugins are part of
the coordinator and restart with it.`,
		Example: `  coordinator restart hello`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, name := cmd.Context(), args[0]
			out := cmd.OutOrStdout()
			s, done, err := f.store(ctx)
			if err == nil {
				var spec agent.Spec
				spec, err = s.Restart(ctx, name)
				done()
				if err == nil {
					fmt.Fprintf(out, "%s: restart ordered on agent %s\n", spec.Name, spec.Agent)
					return nil
				}
				if !errors.Is(err, agent.ErrNotFound) {
					return err
				}
			}
			// Not started with run (or no bus to keep orders in): a plugin
			// of the coordinator's own configuration.
			body, herr := f.post(ctx, "/v1/supervised/"+url.PathEscape(name)+"/restart")
			if herr != nil {
				return fmt.Errorf("%s: not started with run (%v), and the coordinator: %w", name, err, herr)
			}
			var got struct {
				Instances int `json:"instances"`
			}
			if err := json.Unmarshal(body, &got); err != nil {
				return fmt.Errorf("the coordinator's answer: %w", err)
			}
			fmt.Fprintf(out, "%s: %d instance(s) restarting in the coordinator\n", name, got.Instances)
			return nil
		},
	}
	addClientFlags(cmd, &f, true, true)
	return cmd
}

func newLogsCmd() *cobra.Command {
	var f clientFlags
	var follow bool
	var n int
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print the log lines of a plugin run by agents (-f to follow)",
		Long: `Print a plugin's own log lines, as its agents captured them (one JSON record a
line, with the instance and the stream, stdout or stderr), from the bus's
stream PLUGBUS_LOGS.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, done, err := f.store(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			out := cmd.OutOrStdout()
			return s.Logs(cmd.Context(), args[0], n, follow, func(line []byte) {
				fmt.Fprintf(out, "%s\n", line)
			})
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines")
	cmd.Flags().IntVarP(&n, "lines", "n", 100, "how many of the last lines to print; 0 for all")
	addClientFlags(cmd, &f, true, false)
	return cmd
}
