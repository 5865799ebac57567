package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator/internal/identity"
)

// apiCall sends a request to the coordinator's HTTP API and decodes a
// successful JSON answer into out (when not nil).
func (f *clientFlags) apiCall(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(f.api, "/")+path, rd)
	if err != nil {
		return fmt.Errorf("--api %q: %w", f.api, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if f.httpToken != "" {
		req.Header.Set("Authorization", "Bearer "+f.httpToken)
	}
	hc, err := f.httpClient()
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("reach the coordinator at %s: %w (is it running? set --api or PLUGBUS_API)", f.api, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s", resp.Status, e.Error)
		}
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("unexpected answer from %s: %w", f.api, err)
		}
	}
	return nil
}

// identityAnswer is the API's answer to adding or rotating an identity.
type identityAnswer struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
	Seed      string `json:"seed"`
}

// writeSeedFile writes a seed to path with mode 0600, refusing to replace
// a file unless force.
func writeSeedFile(path, seed string, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	fh, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return fmt.Errorf("--nkey-out: %w", err)
	}
	if err := fh.Chmod(0o600); err != nil {
		fh.Close()
		return fmt.Errorf("--nkey-out: %w", err)
	}
	if _, err := fh.WriteString(seed + "\n"); err != nil {
		fh.Close()
		return fmt.Errorf("--nkey-out: %w", err)
	}
	return fh.Close()
}

func newPluginsAddCmd() *cobra.Command {
	var f clientFlags
	var handles, answers, emits []string
	var out string
	var force bool
	cmd := &cobra.Command{
		Use:   "add NAME --nkey-out FILE",
		Short: "Give a plugin its own identity on the bus (secure mode)",
		Long: `Create an nkey for the plugin NAME in the running coordinator (through its HTTP
API, with the HTTP token) and write its seed to FILE, mode 0600. The embedded
NATS server enforces the identity's permissions at once, without a restart:
the plugin may publish its events (the types given with --emits, or any type
under its own name when none is given) and requests, subscribe to the types it
--handles, answer the types it --answers (in its own queue group only), and read
its own durable consumer, and nothing else.

Run the plugin with PLUGBUS_NKEY=FILE (or -nkey FILE); nats --nkey FILE works too.
The coordinator keeps only the public key: keep FILE safe.`,
		Example: `  coordinator plugins add resizer --handles com.example.image.uploaded --emits com.example.image.resized --nkey-out resizer.nk
  PLUGBUS_NKEY=resizer.nk ./resizer`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("--nkey-out FILE is required: where to write the plugin's seed")
			}
			if _, err := os.Stat(out); err == nil && !force {
				return fmt.Errorf("--nkey-out %s: the file exists; remove it or pass --force", out)
			}
			var a identityAnswer
			body := map[string]any{"name": args[0], "handles": handles, "answers": answers, "emits": emits}
			if err := f.apiCall(cmd.Context(), http.MethodPost, "/v1/identities", body, &a); err != nil {
				return err
			}
			if err := writeSeedFile(out, a.Seed, force); err != nil {
				return err
			}
			abs, _ := filepath.Abs(out)
			fmt.Fprintf(cmd.OutOrStdout(), "added %s (%s); run it with PLUGBUS_NKEY=%s\n", a.Name, a.PublicKey, abs)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&handles, "handles", nil, "an event type (or pattern) the plugin observes; repeat for more")
	fl.StringArrayVar(&answers, "answers", nil, "an event type whose requests the plugin answers; repeat for more")
	fl.StringArrayVar(&emits, "emits", nil, "an event type the plugin publishes; repeat for more (none: any type under its name)")
	fl.StringVar(&out, "nkey-out", "", "file to write the plugin's nkey seed to (mode 0600)")
	fl.BoolVar(&force, "force", false, "replace the --nkey-out file if it exists")
	addClientFlags(cmd, &f, false, true)
	return cmd
}

func newPluginsRemoveCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a plugin's identity; its connections are closed at once (secure mode)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.apiCall(cmd.Context(), http.MethodDelete, "/v1/identities/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", args[0])
			return nil
		},
	}
	addClientFlags(cmd, &f, false, true)
	return cmd
}

func newPluginsRotateCmd() *cobra.Command {
	var f clientFlags
	var out string
	cmd := &cobra.Command{
		Use:   "rotate NAME --nkey-out FILE",
		Short: "Give a plugin's identity a new key; the old key's connections are closed at once (secure mode)",
		Long: `Replace the nkey of the plugin NAME and write the new seed to FILE (mode 0600,
replacing it). Connections with the old key are closed at once: restart the
plugin with the new file. For a plugin the coordinator runs, the coordinator
keeps the new seed itself; --nkey-out is then optional.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var a identityAnswer
			if err := f.apiCall(cmd.Context(), http.MethodPost, "/v1/identities/"+url.PathEscape(args[0])+"/rotate", nil, &a); err != nil {
				return err
			}
			if out != "" {
				if err := writeSeedFile(out, a.Seed, true); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rotated %s (%s)\n", a.Name, a.PublicKey)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "nkey-out", "", "file to write the new nkey seed to (mode 0600)")
	addClientFlags(cmd, &f, false, true)
	return cmd
}

func newPluginsPermissionsCmd() *cobra.Command {
	var f clientFlags
	var handles, answers, emits []string
	var format, prefix string
	cmd := &cobra.Command{
		Use:   "permissions NAME",
		Short: "Print a plugin's permissions as a nats-server authorization block or a user JWT template",
		Long: `Print what the plugin NAME may publish and subscribe to: the permissions secure
mode enforces, for a NATS server the coordinator does not run.

With --handles, --answers or --emits the permissions are worked out here from
that declaration; without them they are those of NAME's identity in the running
coordinator (through its HTTP API). --format conf (the default) prints a
nats-server authorization block, jwt the nsc command and user JWT claims of
operator mode, list the subjects.`,
		Example: `  coordinator plugins permissions resizer --handles com.example.image.uploaded --emits com.example.image.resized
  coordinator plugins permissions hello --format jwt`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, key := args[0], "U...(the plugin's public nkey)"
			decl := identity.Declaration{Handles: handles, Answers: answers, Emits: emits}
			if len(handles)+len(answers)+len(emits) == 0 {
				var ids []identity.Identity
				if err := f.apiCall(cmd.Context(), http.MethodGet, "/v1/identities", nil, &ids); err != nil {
					return fmt.Errorf("%w (or declare the plugin's types with --handles, --answers and --emits)", err)
				}
				i := slices.IndexFunc(ids, func(id identity.Identity) bool { return id.Name == name })
				if i < 0 {
					return fmt.Errorf("the coordinator has no identity %q; add it with coordinator plugins add, or declare its types with --handles, --answers and --emits", name)
				}
				key, decl = ids[i].PublicKey, identity.Declaration{Handles: ids[i].Handles, Answers: ids[i].Answers, Emits: ids[i].Emits}
			} else if err := identity.Validate(name, decl); err != nil {
				return err
			}
			rules := identity.PluginRules(identity.Scope{Prefix: prefix}, identity.Identity{Name: name, Handles: decl.Handles, Answers: decl.Answers, Emits: decl.Emits})
			// A coordinator on a server it does not run knows no identities,
			// so it polls every plugin with the $SRV.STATS sent to all, which
			// its own embedded server keeps from plugins (it asks them by
			// name): here they must hear it.
			rules.Subscribe = append(rules.Subscribe, "$SRV.STATS")
			w := cmd.OutOrStdout()
			switch format {
			case "conf":
				_, err := io.WriteString(w, rules.ServerConfig(key))
				return err
			case "jwt":
				_, err := io.WriteString(w, rules.JWTTemplate(name))
				return err
			case "list":
				fmt.Fprintln(w, "publish:")
				for _, s := range rules.Publish {
					fmt.Fprintln(w, "  "+s)
				}
				fmt.Fprintln(w, "subscribe:")
				for _, s := range rules.Subscribe {
					fmt.Fprintln(w, "  "+s)
				}
				fmt.Fprintln(w, "responses: one reply to each request it receives")
				return nil
			default:
				return fmt.Errorf("--format %q: want conf, jwt or list", format)
			}
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&handles, "handles", nil, "an event type (or pattern) the plugin observes; repeat for more")
	fl.StringArrayVar(&answers, "answers", nil, "an event type whose requests the plugin answers; repeat for more")
	fl.StringArrayVar(&emits, "emits", nil, "an event type the plugin publishes; repeat for more")
	fl.StringVar(&format, "format", "conf", "conf (nats-server authorization block), jwt (nsc command and user claims) or list")
	fl.StringVar(&prefix, "prefix", envOr("PLUGBUS_PREFIX", bus.DefaultPrefix), "subject prefix [PLUGBUS_PREFIX]")
	addClientFlags(cmd, &f, false, true)
	return cmd
}

func newAgentsAddCmd() *cobra.Command {
	var f clientFlags
	var out string
	var force bool
	cmd := &cobra.Command{
		Use:   "add NAME --nkey-out FILE",
		Short: "Give an agent its own identity on the bus (secure mode)",
		Long: `Create an nkey for the agent NAME in the running coordinator (through its HTTP
API, with the HTTP token) and write its seed to FILE, mode 0600. The embedded
NATS server enforces it at once: the agent may ask the coordinator for its
orders and for an identity for each plugin it starts (with the permissions the
plugin's order declares), announce itself, and send its plugins' log lines,
and nothing else: it reads no events and publishes as no plugin.

Run the agent with --nkey FILE (PLUGBUS_NKEY). The coordinator keeps only the
public key: keep FILE safe.`,
		Example: `  coordinator agents add host1 --nkey-out host1.nk
  coordinator agent --name host1 --nats-url nats://bus-host:4222 --nkey host1.nk`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("--nkey-out FILE is required: where to write the agent's seed")
			}
			if _, err := os.Stat(out); err == nil && !force {
				return fmt.Errorf("--nkey-out %s: the file exists; remove it or pass --force", out)
			}
			var a identityAnswer
			if err := f.apiCall(cmd.Context(), http.MethodPost, "/v1/agent-identities", map[string]any{"name": args[0]}, &a); err != nil {
				return err
			}
			if err := writeSeedFile(out, a.Seed, force); err != nil {
				return err
			}
			abs, _ := filepath.Abs(out)
			fmt.Fprintf(cmd.OutOrStdout(), "added agent %s (%s); run it with coordinator agent --name %s --nkey %s\n", a.Name, a.PublicKey, a.Name, abs)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "nkey-out", "", "file to write the agent's nkey seed to (mode 0600)")
	cmd.Flags().BoolVar(&force, "force", false, "replace the --nkey-out file if it exists")
	addClientFlags(cmd, &f, false, true)
	return cmd
}

func newAgentsRemoveCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove an agent's identity and those of its plugins; their connections are closed at once (secure mode)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.apiCall(cmd.Context(), http.MethodDelete, "/v1/agent-identities/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed agent %s\n", args[0])
			return nil
		},
	}
	addClientFlags(cmd, &f, false, true)
	return cmd
}

func newAgentsRotateCmd() *cobra.Command {
	var f clientFlags
	var out string
	cmd := &cobra.Command{
		Use:   "rotate NAME --nkey-out FILE",
		Short: "Give an agent's identity a new key; the old key's connections are closed at once (secure mode)",
		Long: `Replace the nkey of the agent NAME and write the new seed to FILE (mode 0600,
replacing it). The agent's connection with the old key is closed at once:
restart it with the new file. Its plugins keep their identities.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("--nkey-out FILE is required: where to write the agent's new seed")
			}
			var a identityAnswer
			if err := f.apiCall(cmd.Context(), http.MethodPost, "/v1/agent-identities/"+url.PathEscape(args[0])+"/rotate", nil, &a); err != nil {
				return err
			}
			if err := writeSeedFile(out, a.Seed, true); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rotated agent %s (%s)\n", a.Name, a.PublicKey)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "nkey-out", "", "file to write the new nkey seed to (mode 0600)")
	addClientFlags(cmd, &f, false, true)
	return cmd
}
