package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator/internal/deadletter"
)

// Time limits of the deadletter commands; replaying or purging many
// letters gets longer.
const (
	deadLetterTimeout     = 30 * time.Second
	deadLetterBulkTimeout = 5 * time.Minute
)

// deadLetterFlags are the flags every deadletter command has.
type deadLetterFlags struct {
	clientFlags
	stream string
}

func addDeadLetterFlags(cmd *cobra.Command, f *deadLetterFlags) {
	addClientFlags(cmd, &f.clientFlags, true, false)
	cmd.Flags().StringVar(&f.stream, "stream", bus.DefaultDeadLetterStream, "dead letter stream")
}

// store connects to NATS and returns the dead letter store and a function
// that closes the connection.
func (f *deadLetterFlags) store() (*deadletter.Store, func(), error) {
	if err := bus.ValidatePrefix(f.prefix); err != nil {
		return nil, nil, fmt.Errorf("--prefix: %w", err)
	}
	nc, err := f.connect()
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("JetStream: %w", err)
	}
	return deadletter.New(js, f.prefix, f.stream), nc.Close, nil
}

func newDeadletterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "deadletter",
		Aliases: []string{"deadletters", "dl"},
		Short:   "List, show, replay and purge dead letters of durable plugins (over NATS)",
		Long: `A durable plugin that gives up on an event (after its attempts, or at once for a
permanent error or an event that does not decode) keeps it as a dead letter in
the stream PLUGBUS_DEADLETTER, with the error and the number of attempts.

Replaying a dead letter sends the original event again to that plugin only, and
deletes the dead letter once the events stream has stored the replay. Types may
be patterns with NATS wildcards on whole dot-separated parts: com.example.*.created,
com.example.>.`,
		Example: `  coordinator deadletter ls
  coordinator deadletter ls --plugin archive --type 'com.example.order.>'
  coordinator deadletter show 42
  coordinator deadletter replay 42
  coordinator deadletter replay --all --plugin archive
  coordinator deadletter purge --plugin archive --type com.example.order.placed`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newDeadLetterLsCmd(), newDeadLetterShowCmd(), newDeadLetterReplayCmd(), newDeadLetterPurgeCmd())
	return cmd
}

func newDeadLetterLsCmd() *cobra.Command {
	var f deadLetterFlags
	var filter deadletter.Filter
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List dead letters, oldest first (the newest --limit of them)",
		Example: `  coordinator deadletter ls --plugin archive
  coordinator deadletter ls --type 'com.example.*.created' --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if filter.Limit < 1 || filter.Limit > deadletter.MaxLimit {
				return fmt.Errorf("--limit %d: want 1 to %d", filter.Limit, deadletter.MaxLimit)
			}
			store, closeConn, err := f.store()
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := context.WithTimeout(cmd.Context(), deadLetterTimeout)
			defer cancel()
			letters, err := store.List(ctx, filter)
			out := cmd.OutOrStdout()
			if errors.Is(err, deadletter.ErrNoStream) && !cmd.Flags().Changed("stream") {
				// Not a failure: with durable mode off there are none.
				// (A --stream that does not exist is one.)
				if f.asJSON {
					_, err := fmt.Fprintln(out, "[]")
					return err
				}
				_, err := fmt.Fprintln(out, "(no dead letters: durable mode is off, so nothing keeps them; turn it on with coordinator serve --durable or a plugin's -durable)")
				return err
			}
			if err != nil {
				return err
			}
			if f.asJSON {
				if letters == nil {
					letters = []deadletter.Letter{}
				}
				return json.NewEncoder(out).Encode(letters)
			}
			w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "SEQ\tPLUGIN\tTYPE\tID\tATTEMPTS\tTIME\tERROR")
			for _, l := range letters {
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", l.Seq, l.Plugin, orDash(l.Type), orDash(l.ID), l.Attempts,
					l.Time.Local().Format("2006-01-02 15:04:05"), shorten(l.Error, 80))
			}
			if len(letters) == 0 {
				fmt.Fprintln(w, "(no dead letters)")
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if len(letters) == filter.Limit {
				fmt.Fprintf(cmd.ErrOrStderr(), "(the newest %d; there may be more: raise --limit)\n", filter.Limit)
			}
			return nil
		},
	}
	addDeadLetterFlags(cmd, &f)
	cmd.Flags().StringVar(&filter.Plugin, "plugin", "", "only this plugin's dead letters")
	cmd.Flags().StringVar(&filter.Type, "type", "", "only this event type or type pattern (NATS wildcards * and >)")
	cmd.Flags().IntVar(&filter.Limit, "limit", deadletter.DefaultLimit, "list at most this many, the newest")
	return cmd
}

func newDeadLetterShowCmd() *cobra.Command {
	var f deadLetterFlags
	cmd := &cobra.Command{
		Use:     "show SEQ",
		Short:   "Show one dead letter: why it failed, its headers and its data",
		Example: `  coordinator deadletter show 42`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, err := parseSeq(args[0])
			if err != nil {
				return err
			}
			store, closeConn, err := f.store()
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := context.WithTimeout(cmd.Context(), deadLetterTimeout)
			defer cancel()
			l, err := store.Get(ctx, seq)
			if err != nil {
				return err
			}
			if f.asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(l)
			}
			return printLetter(cmd.OutOrStdout(), l)
		},
	}
	addDeadLetterFlags(cmd, &f)
	return cmd
}

func printLetter(out io.Writer, l deadletter.Letter) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, row := range [][2]string{
		{"seq", strconv.FormatUint(l.Seq, 10)},
		{"plugin", l.Plugin},
		{"type", orDash(l.Type)},
		{"producer", orDash(l.Producer)},
		{"id", orDash(l.ID)},
		{"source", orDash(l.Source)},
		{"subject", orDash(l.Subject)},
		{"attempts", strconv.Itoa(l.Attempts)},
		{"time", l.Time.Local().Format(time.RFC3339)},
		{"error", l.Error},
	} {
		fmt.Fprintf(w, "%s:\t%s\n", row[0], row[1])
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out, "\nheaders:")
	names := make([]string, 0, len(l.Header))
	for k := range l.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		for _, v := range l.Header[k] {
			fmt.Fprintf(out, "  %s: %s\n", k, v)
		}
	}
	switch {
	case len(l.Data) == 0:
		fmt.Fprintln(out, "\ndata: (none)")
	case isText(l.Data):
		fmt.Fprintf(out, "\ndata (%d bytes):\n%s\n", len(l.Data), strings.TrimRight(string(l.Data), "\n"))
	default:
		fmt.Fprintf(out, "\ndata (%d bytes, binary, base64):\n%s\n", len(l.Data), base64.StdEncoding.EncodeToString(l.Data))
	}
	return nil
}

// isText reports whether data prints as it is: valid UTF-8 without control
// characters other than whitespace.
func isText(data []byte) bool {
	if !utf8.Valid(data) {
		return false
	}
	for _, r := range string(data) {
		if unicode.IsControl(r) && !unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

func newDeadLetterReplayCmd() *cobra.Command {
	var f deadLetterFlags
	var filter deadletter.Filter
	var all bool
	cmd := &cobra.Command{
		Use:   "replay {SEQ | --all --plugin NAME [--type PATTERN]}",
		Short: "Send dead letters again to their plugin, then delete them",
		Long: `Publish a dead letter's original event again, to the plugin that gave up on it
only (on <prefix>.replay.<plugin>.<producer>.<type> in the events stream), and
delete the dead letter once the stream has stored it. With --all, every dead
letter of --plugin (of --type, when given) is replayed, oldest first.`,
		Example: `  coordinator deadletter replay 42
  coordinator deadletter replay --all --plugin archive --type 'com.example.order.>'`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			const usage = "give a sequence (coordinator deadletter replay 42, see coordinator deadletter ls) or --all --plugin NAME [--type PATTERN]"
			switch {
			case len(args) == 1 && (all || filter.Plugin != "" || filter.Type != ""):
				return errors.New("a sequence and --all, --plugin or --type exclude each other; " + usage)
			case len(args) == 0 && !all:
				return errors.New("nothing to replay: " + usage)
			case all && filter.Plugin == "":
				return errors.New("--all needs --plugin: replays go to one plugin at a time; " + usage)
			}
			var seq uint64
			if len(args) == 1 {
				var err error
				if seq, err = parseSeq(args[0]); err != nil {
					return err
				}
			}
			store, closeConn, err := f.store()
			if err != nil {
				return err
			}
			defer closeConn()
			out := cmd.OutOrStdout()
			if !all {
				ctx, cancel := context.WithTimeout(cmd.Context(), deadLetterTimeout)
				defer cancel()
				l, err := store.Get(ctx, seq)
				if err != nil {
					return err
				}
				if err := store.Replay(ctx, seq); err != nil {
					return err
				}
				if f.asJSON {
					return json.NewEncoder(out).Encode(map[string]any{"replayed": 1, "seq": seq})
				}
				fmt.Fprintf(out, "replayed dead letter %d (%s %s) to plugin %s\n", seq, orDash(l.Type), orDash(l.ID), l.Plugin)
				return nil
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), deadLetterBulkTimeout)
			defer cancel()
			n, err := store.ReplayAll(ctx, filter)
			if err != nil {
				return fmt.Errorf("replayed %d dead letters, then: %w", n, err)
			}
			if f.asJSON {
				return json.NewEncoder(out).Encode(map[string]int{"replayed": n})
			}
			fmt.Fprintf(out, "replayed %d dead letters to plugin %s\n", n, filter.Plugin)
			return nil
		},
	}
	addDeadLetterFlags(cmd, &f)
	cmd.Flags().BoolVar(&all, "all", false, "replay every dead letter of --plugin")
	cmd.Flags().StringVar(&filter.Plugin, "plugin", "", "with --all: the plugin whose dead letters to replay")
	cmd.Flags().StringVar(&filter.Type, "type", "", "with --all: only this event type or type pattern")
	return cmd
}

func newDeadLetterPurgeCmd() *cobra.Command {
	var f deadLetterFlags
	var filter deadletter.Filter
	var all bool
	cmd := &cobra.Command{
		Use:   "purge {SEQ | --plugin NAME [--type PATTERN] | --all [--type PATTERN]}",
		Short: "Delete dead letters for good, without replaying them",
		Example: `  coordinator deadletter purge 42
  coordinator deadletter purge --plugin archive
  coordinator deadletter purge --plugin archive --type 'com.example.order.*'
  coordinator deadletter purge --all`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			const usage = "say which: coordinator deadletter purge SEQ, purge --plugin NAME [--type PATTERN], or purge --all [--type PATTERN] for every plugin's"
			switch {
			case len(args) == 1 && (all || filter.Plugin != "" || filter.Type != ""):
				return errors.New("a sequence and --all, --plugin or --type exclude each other; " + usage)
			case all && filter.Plugin != "":
				return errors.New("--all and --plugin exclude each other; " + usage)
			case len(args) == 0 && !all && filter.Plugin == "":
				return errors.New("purge deletes dead letters for good; " + usage)
			}
			store, closeConn, err := f.store()
			if err != nil {
				return err
			}
			defer closeConn()
			out := cmd.OutOrStdout()
			if len(args) == 1 {
				seq, err := parseSeq(args[0])
				if err != nil {
					return err
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), deadLetterTimeout)
				defer cancel()
				if err := store.Delete(ctx, seq); err != nil {
					return err
				}
				if f.asJSON {
					return json.NewEncoder(out).Encode(map[string]any{"purged": 1, "seq": seq})
				}
				fmt.Fprintf(out, "purged dead letter %d\n", seq)
				return nil
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), deadLetterBulkTimeout)
			defer cancel()
			n, err := store.Purge(ctx, filter)
			if err != nil {
				if n > 0 {
					return fmt.Errorf("purged %d dead letters, then: %w", n, err)
				}
				return err
			}
			if f.asJSON {
				return json.NewEncoder(out).Encode(map[string]int{"purged": n})
			}
			fmt.Fprintf(out, "purged %d dead letters\n", n)
			return nil
		},
	}
	addDeadLetterFlags(cmd, &f)
	cmd.Flags().BoolVar(&all, "all", false, "purge every plugin's dead letters")
	cmd.Flags().StringVar(&filter.Plugin, "plugin", "", "the plugin whose dead letters to purge")
	cmd.Flags().StringVar(&filter.Type, "type", "", "only this event type or type pattern (NATS wildcards * and >)")
	return cmd
}

func parseSeq(s string) (uint64, error) {
	seq, err := strconv.ParseUint(s, 10, 64)
	if err != nil || seq == 0 {
		return 0, fmt.Errorf("%q is no dead letter sequence: want a whole number from 1, as in the SEQ column of coordinator deadletter ls", s)
	}
	return seq, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
