package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator/internal/identity"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// clientFlags are the connection settings of the commands that talk to a
// running deployment.
type clientFlags struct {
	natsURL, prefix, token, nkey, natsCA, api, apiCA, httpToken string
	asJSON                                                      bool
}

func addClientFlags(cmd *cobra.Command, f *clientFlags, nats, http bool) {
	fl := cmd.Flags()
	if nats {
		fl.StringVar(&f.natsURL, "nats-url", envOr("PLUGBUS_URL", "nats://127.0.0.1:4222"), "NATS server URL(s) [PLUGBUS_URL]")
		fl.StringVar(&f.prefix, "prefix", envOr("PLUGBUS_PREFIX", bus.DefaultPrefix), "subject prefix [PLUGBUS_PREFIX]")
		fl.StringVar(&f.token, "nats-token", os.Getenv("PLUGBUS_TOKEN"), "NATS token [PLUGBUS_TOKEN]")
		fl.StringVar(&f.natsCA, "tls-ca", os.Getenv("PLUGBUS_TLS_CA"), "CA to trust for NATS over TLS [PLUGBUS_TLS_CA]")
		fl.StringVar(&f.nkey, "nkey", os.Getenv("PLUGBUS_NKEY"), "file holding an nkey seed, in secure mode: identities/cli.nk in the data directory for publish and tail, identities/admin.nk for the rest [PLUGBUS_NKEY]")
	}
	if http {
		fl.StringVar(&f.api, "api", envOr("PLUGBUS_API", "http://127.0.0.1:8090"), "coordinator HTTP API [PLUGBUS_API]")
		fl.StringVar(&f.apiCA, "api-ca", os.Getenv("PLUGBUS_API_CA"), "CA to trust for an https:// --api [PLUGBUS_API_CA]")
		fl.StringVar(&f.httpToken, "http-token", os.Getenv("PLUGBUS_HTTP_TOKEN"), "HTTP API bearer token [PLUGBUS_HTTP_TOKEN]")
	}
	fl.BoolVar(&f.asJSON, "json", false, "print JSON instead of text")
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

// connect dials NATS once, failing fast: a command-line user wants an
// error, not a retry loop.
func (f *clientFlags) connect() (*nats.Conn, error) {
	// Replies come to _INBOX.cli.>, the only inboxes the command line's
	// identity (cli.nk in secure mode) may read.
	opts := []nats.Option{nats.Name("plugbus-cli"), nats.Timeout(3 * time.Second), nats.CustomInboxPrefix(bus.InboxPrefix(cliProducer))}
	if f.token != "" {
		opts = append(opts, nats.Token(f.token))
	}
	if f.natsCA != "" {
		opts = append(opts, nats.RootCAs(f.natsCA))
	}
	if f.nkey != "" {
		o, err := nats.NkeyOptionFromSeed(f.nkey)
		if err != nil {
			return nil, fmt.Errorf("--nkey %s: %w", f.nkey, err)
		}
		opts = append(opts, o)
	}
	nc, err := nats.Connect(f.natsURL, opts...)
	if errors.Is(err, nats.ErrAuthorization) {
		return nil, fmt.Errorf("connect to NATS at %s: %w (in secure mode pass --nkey or PLUGBUS_NKEY: identities/cli.nk in the coordinator's data directory publishes and tails, identities/admin.nk does everything)", f.natsURL, err)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w (is the coordinator running? set --nats-url or PLUGBUS_URL)", f.natsURL, err)
	}
	return nc, nil
}

// get reads a GET endpoint of the coordinator's HTTP API: the body of a
// 2xx answer, or an error saying what went wrong.
func (f *clientFlags) get(ctx context.Context, path string) ([]byte, error) {
	return f.request(ctx, http.MethodGet, path)
}

// post sends an empty POST to an endpoint of the coordinator's HTTP API,
// with the same answer as get.
func (f *clientFlags) post(ctx context.Context, path string) ([]byte, error) {
	return f.request(ctx, http.MethodPost, path)
}

func (f *clientFlags) request(ctx context.Context, method, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(f.api, "/")+path, nil)
	if err != nil {
		return nil, fmt.Errorf("--api %q: %w", f.api, err)
	}
	if f.httpToken != "" {
		req.Header.Set("Authorization", "Bearer "+f.httpToken)
	}
	hc, err := f.httpClient()
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach the coordinator at %s: %w (is it running? set --api or PLUGBUS_API)", f.api, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// httpClient is the client for the HTTP API, trusting --api-ca when set.
func (f *clientFlags) httpClient() (*http.Client, error) {
	if f.apiCA == "" {
		return http.DefaultClient, nil
	}
	pem, err := os.ReadFile(f.apiCA)
	if err != nil {
		return nil, fmt.Errorf("--api-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--api-ca %s: no PEM certificate in it", f.apiCA)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}, nil
}

const cliProducer = identity.CLIProducer

func newPluginsCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "plugins",
		Short: "List plugins, their instances and health (from the coordinator's HTTP API)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := f.get(cmd.Context(), "/v1/plugins")
			if err != nil {
				return err
			}
			if f.asJSON {
				_, err := cmd.OutOrStdout().Write(body)
				return err
			}
			var plugins []struct {
				Name        string   `json:"name"`
				Description string   `json:"description"`
				State       string   `json:"state"`
				Versions    []string `json:"versions"`
				Handles     []string `json:"handles"`
				Answers     []string `json:"answers"`
				Ambiguous   []struct {
					Type    string   `json:"type"`
					Plugins []string `json:"plugins"`
				} `json:"ambiguous"`
				Running   int      `json:"running"`
				Modes     []string `json:"modes"`
				Instances []struct {
					ID, Host, State, Reason string
				} `json:"instances"`
			}
			if err := json.Unmarshal(body, &plugins); err != nil {
				return fmt.Errorf("unexpected answer from %s: %w", f.api, err)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "PLUGIN\tSTATE\tINSTANCES\tMODE\tVERSION\tHANDLES\tANSWERS\tDESCRIPTION")
			ambiguous := map[string][]string{} // type -> the plugins answering it
			for _, p := range plugins {
				answers := strings.Join(p.Answers, ",")
				if answers == "" {
					answers = "-"
				}
				fmt.Fprintf(w, "%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.State, p.Running, len(p.Instances), strings.Join(p.Modes, ","), strings.Join(p.Versions, ","), strings.Join(p.Handles, ","), answers, shorten(p.Description, 60))
				for _, a := range p.Ambiguous {
					ambiguous[a.Type] = a.Plugins
				}
			}
			if len(plugins) == 0 {
				fmt.Fprintln(w, "(no plugins)")
			}
			if err := w.Flush(); err != nil {
				return err
			}
			types := slices.Sorted(maps.Keys(ambiguous))
			for _, typ := range types {
				fmt.Fprintf(cmd.OutOrStdout(), "ambiguous: %s is answered by %s; invoke it with --plugin NAME\n", typ, strings.Join(ambiguous[typ], " and "))
			}
			printQuarantines(cmd.Context(), cmd.OutOrStdout(), &f)
			return nil
		},
	}
	addClientFlags(cmd, &f, false, true)
	cmd.AddCommand(newPluginsAddCmd(), newPluginsRemoveCmd(), newPluginsRotateCmd(), newPluginsPermissionsCmd())
	return cmd
}

// eventFlags describe an event given on the command line.
type eventFlags struct {
	data, source, contentType string
}

func addEventFlags(cmd *cobra.Command, e *eventFlags) {
	cmd.Flags().StringVar(&e.data, "data", "", "event data: JSON text, or @FILE to read it from a file (@- for stdin)")
	cmd.Flags().StringVar(&e.source, "source", "", "event source (default urn:plugbus:cli)")
	cmd.Flags().StringVar(&e.contentType, "content-type", "application/json", "data content type")
}

func (ef *eventFlags) event(typ string) (*event.Event, error) {
	if err := bus.ValidateType(typ); err != nil {
		return nil, err
	}
	data := []byte(ef.data)
	if strings.HasPrefix(ef.data, "@") {
		var err error
		if ef.data == "@-" {
			data, err = io.ReadAll(os.Stdin)
		} else {
			data, err = os.ReadFile(ef.data[1:])
		}
		if err != nil {
			return nil, fmt.Errorf("--data %s: %w", ef.data, err)
		}
	}
	if ef.contentType == "application/json" && len(data) > 0 && !json.Valid(data) {
		return nil, fmt.Errorf("--data is not valid JSON; quote it for your shell ('{\"name\":\"Ada\"}') or set --content-type")
	}
	e := pluginkit.NewEvent(typ, nil)
	if len(data) > 0 {
		e.DataEncoded = data
		e.SetDataContentType(ef.contentType)
	}
	if ef.source != "" {
		e.SetSource(ef.source)
	}
	return e, nil
}

func newPublishCmd() *cobra.Command {
	var f clientFlags
	var ef eventFlags
	cmd := &cobra.Command{
		Use:     "publish TYPE",
		Short:   "Publish an event (from producer \"cli\", over NATS)",
		Example: `  coordinator publish com.example.greet.requested --data '{"name":"Ada"}'`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := ef.event(args[0])
			if err != nil {
				return err
			}
			nc, err := f.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			stored, err := publish(cmd.Context(), nc, f.prefix, e)
			if err != nil {
				return err
			}
			if f.asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"id": e.ID(), "type": e.Type(), "stored": stored})
			}
			if stored {
				fmt.Fprintln(cmd.OutOrStdout(), "published and stored", e.Type(), e.ID())
				return nil
			}
			fmt.Fprintln(cmd.OutOrStdout(), "published", e.Type(), e.ID())
			return nil
		},
	}
	addClientFlags(cmd, &f, true, false)
	addEventFlags(cmd, &ef)
	return cmd
}

func newInvokeCmd() *cobra.Command {
	var f clientFlags
	var ef eventFlags
	var timeout time.Duration
	var plugin string
	cmd := &cobra.Command{
		Use:   "invoke TYPE",
		Short: "Invoke the plugin that answers TYPE and print its answer (through the coordinator's HTTP API)",
		Long: `Send an event as a request to the plugin that answers its type, through the
coordinator's POST /v1/invoke/{type}, and print the answer event's data; --json
prints the whole answer event. When two different plugins answer the type, name
one with --plugin ("coordinator plugins" shows who answers what).

Exit status 3 when no plugin answers the type, 4 on timeout, 5 when the plugin
answered with an error (its code and message on standard error), 6 when two
plugins answer the type and --plugin names none, 1 for any other error.`,
		Example: `  coordinator invoke com.example.greet.requested --data '{"name":"Ada"}'
  coordinator invoke com.example.greet.requested --data '{"name":"Ada"}' --plugin hello`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := ef.event(args[0])
			if err != nil {
				return err
			}
			if plugin != "" {
				if err := bus.ValidateProducer(plugin); err != nil {
					return fmt.Errorf("--plugin: %w", err)
				}
			}
			reply, err := invokeHTTP(cmd.Context(), &f, e, plugin, timeout)
			if err != nil {
				var ie *invokeError
				if errors.As(err, &ie) {
					fmt.Fprintln(cmd.ErrOrStderr(), "coordinator:", ie.msg)
					return exitError(ie.exit)
				}
				return err
			}
			if reply == nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "(the plugin answered with no event)")
				return nil
			}
			out := cmd.OutOrStdout()
			if f.asJSON {
				return json.NewEncoder(out).Encode(reply)
			}
			fmt.Fprintln(out, string(reply.Data()))
			return nil
		},
	}
	addClientFlags(cmd, &f, false, true)
	addEventFlags(cmd, &ef)
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for the answer")
	cmd.Flags().StringVar(&plugin, "plugin", "", "the plugin that should answer, when two different plugins answer the type")
	return cmd
}

// invokeError is an invoke the coordinator or the plugin refused: its
// message and the CLI's exit status for it.
type invokeError struct {
	msg  string
	exit int
}

func (e *invokeError) Error() string { return e.msg }

// invokeHTTP sends e to POST /v1/invoke/{type} as a structured CloudEvent
// and returns the answer event, nil for an empty answer.
func invokeHTTP(ctx context.Context, f *clientFlags, e *event.Event, plugin string, timeout time.Duration) (*event.Event, error) {
	if e.Source() == "" {
		e.SetSource(bus.Source(cliProducer))
	}
	body, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	q := url.Values{"timeout": {timeout.String()}}
	if plugin != "" {
		q.Set("plugin", plugin)
	}
	target := strings.TrimSuffix(f.api, "/") + "/v1/invoke/" + url.PathEscape(e.Type()) + "?" + q.Encode()
	ctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("--api %q: %w", f.api, err)
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	if f.httpToken != "" {
		req.Header.Set("Authorization", "Bearer "+f.httpToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach the coordinator at %s: %w (is it running? set --api or PLUGBUS_API)", f.api, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusNoContent:
		return nil, nil
	case resp.StatusCode == http.StatusOK:
		reply := event.New()
		if err := json.Unmarshal(answer, &reply); err != nil {
			return nil, fmt.Errorf("the answer from %s is not a CloudEvent: %w", f.api, err)
		}
		return &reply, nil
	}
	var eb struct {
		Error       string `json:"error"`
		Code        string `json:"code"`
		PluginError bool   `json:"plugin_error"`
	}
	msg := strings.TrimSpace(string(answer))
	if json.Unmarshal(answer, &eb) == nil && eb.Error != "" {
		msg = eb.Error
	}
	ie := &invokeError{msg: msg, exit: 1}
	switch {
	case eb.PluginError:
		ie.exit, ie.msg = 5, fmt.Sprintf("the plugin answered with error %s: %s", eb.Code, msg)
	case resp.StatusCode == http.StatusNotFound:
		ie.exit = 3
	case resp.StatusCode == http.StatusGatewayTimeout:
		ie.exit = 4
	case resp.StatusCode == http.StatusConflict:
		ie.exit = 6
	default:
		ie.msg = resp.Status + ": " + msg
	}
	return nil, ie
}

func newTailCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "tail [TYPE-PATTERN]",
		Short: "Follow live events, one line each (over NATS)",
		Long: `Print every event whose type matches the pattern as it passes, one line each:
time, producer, type, id and data. Patterns use NATS wildcards on whole
dot-separated parts: com.example.*.created, com.example.>. Default: every event.
--json prints each event as a structured-mode JSON line.`,
		Example: `  coordinator tail
  coordinator tail 'com.example.>' --json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			subject := bus.AllEventsSubject(f.prefix)
			if len(args) == 1 && args[0] != ">" {
				var err error
				if subject, err = bus.TypeSubject(f.prefix, args[0]); err != nil {
					return err
				}
			}
			nc, err := f.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			out := cmd.OutOrStdout()
			enc := json.NewEncoder(out)
			msgs := make(chan *nats.Msg, 1024)
			sub, err := nc.ChanSubscribe(subject, msgs)
			if err != nil {
				return err
			}
			defer sub.Unsubscribe()
			if err := nc.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "following %s (Ctrl-C to stop)\n", subject)
			cols := tailColumns{widths: []int{len("15:04:05.000"), 12, 32, 22}}
			for {
				select {
				case <-cmd.Context().Done():
					return nil
				case msg := <-msgs:
					producer, _, _ := bus.ParseEventSubject(f.prefix, msg.Subject)
					e, err := bus.Decode(msg)
					if err != nil {
						fmt.Fprintln(out, cols.line(time.Now().Format("15:04:05.000"), producer, fmt.Sprintf("(not a valid event on %s: %v)", msg.Subject, err)))
						continue
					}
					if f.asJSON {
						if err := enc.Encode(e); err != nil {
							return err
						}
						continue
					}
					fmt.Fprintln(out, cols.line(e.Time().Local().Format("15:04:05.000"), producer, e.Type(), e.ID(), shorten(string(e.Data()), 120)))
				}
			}
		},
	}
	addClientFlags(cmd, &f, true, false)
	return cmd
}

// tailColumns lines up the fields of tail's lines: each column but the
// last is padded to the widest value seen in it so far (the lines stream,
// so a table cannot wait for its widest row).
type tailColumns struct{ widths []int }

func (c *tailColumns) line(fields ...string) string {
	var b strings.Builder
	for i, f := range fields {
		if i == len(fields)-1 {
			b.WriteString(f)
			break
		}
		n := utf8.RuneCountInString(f)
		if i == len(c.widths) {
			c.widths = append(c.widths, n)
		}
		c.widths[i] = max(c.widths[i], n)
		b.WriteString(f)
		b.WriteString(strings.Repeat(" ", c.widths[i]-n+2))
	}
	return b.String()
}

func shorten(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// publish sends e from the CLI. When the events stream exists (durable
// mode) it waits until the stream has stored the event and reports stored;
// otherwise it waits until the NATS server has it.
func publish(ctx context.Context, nc *nats.Conn, prefix string, e *event.Event) (stored bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if js, err := jetstream.New(nc); err == nil {
		if _, err := js.Stream(ctx, bus.DefaultEventsStream); err == nil {
			return true, bus.PublishDurable(ctx, js, prefix, cliProducer, e)
		}
	}
	if err := bus.Publish(nc, prefix, cliProducer, e); err != nil {
		return false, err
	}
	if err := nc.FlushTimeout(3 * time.Second); err != nil {
		return false, fmt.Errorf("publish: %w", err)
	}
	return false, nil
}

// printQuarantines lists the identities quarantined now, in secure mode
// (nothing when the coordinator has no identities or the token is not
// given: the plugins' list stands alone then).
func printQuarantines(ctx context.Context, w io.Writer, f *clientFlags) {
	body, err := f.get(ctx, "/v1/identities")
	if err != nil {
		return
	}
	var ids []struct {
		Name        string `json:"name"`
		Refusals    uint64 `json:"refusals"`
		LastRefused string `json:"last_refused"`
		Quarantine  *struct {
			Until  time.Time `json:"until"`
			Strike int       `json:"strike"`
		} `json:"quarantine"`
	}
	if json.Unmarshal(body, &ids) != nil {
		return
	}
	for _, id := range ids {
		if q := id.Quarantine; q != nil {
			fmt.Fprintf(w, "quarantined: %s until %s (strike %d; %d refusals, the last of %q); rotate its key to end it now\n",
				id.Name, q.Until.Local().Format(time.DateTime), q.Strike, id.Refusals, id.LastRefused)
		}
	}
}
