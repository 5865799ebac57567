package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newTypesCmd() *cobra.Command {
	var f clientFlags
	var schemas bool
	cmd := &cobra.Command{
		Use:   "types",
		Short: "List the event types plugins emit, handle and answer, with their schemas (from the coordinator's HTTP API)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := f.get(cmd.Context(), "/v1/types")
			if err != nil {
				return err
			}
			if f.asJSON {
				_, err := cmd.OutOrStdout().Write(body)
				return err
			}
			var types []struct {
				Type       string          `json:"type"`
				Pattern    bool            `json:"pattern"`
				EmittedBy  []string        `json:"emitted_by"`
				HandledBy  []string        `json:"handled_by"`
				AnsweredBy []string        `json:"answered_by"`
				Schema     json.RawMessage `json:"schema"`
				Conflict   string          `json:"conflict"`
			}
			if err := json.Unmarshal(body, &types); err != nil {
				return fmt.Errorf("unexpected answer from %s: %w", f.api, err)
			}
			out := cmd.OutOrStdout()
			w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TYPE\tEMITTED BY\tHANDLED BY\tANSWERED BY\tSCHEMA")
			var patterns []string
			for _, t := range types {
				if t.Pattern {
					// Patterns are no type of their own: each plugin handling
					// one is already listed on every type above it matches.
					patterns = append(patterns, fmt.Sprintf("%s\t%s\t%s", t.Type, list(t.HandledBy), list(t.AnsweredBy)))
					continue
				}
				schema := "-"
				switch {
				case t.Conflict != "":
					schema = "CONFLICT: " + t.Conflict
				case len(t.Schema) > 0:
					schema = "yes"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.Type, list(t.EmittedBy), list(t.HandledBy), list(t.AnsweredBy), schema)
			}
			if len(types) == 0 {
				fmt.Fprintln(w, "(no types: no plugin is running)")
			}
			if len(patterns) > 0 {
				fmt.Fprintln(w, "\nPATTERN\tHANDLED BY\tANSWERED BY")
				for _, p := range patterns {
					fmt.Fprintln(w, p)
				}
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if schemas {
				for _, t := range types {
					if len(t.Schema) > 0 {
						fmt.Fprintf(out, "\n%s:\n%s\n", t.Type, t.Schema)
					}
				}
			}
			return nil
		},
	}
	addClientFlags(cmd, &f, false, true)
	cmd.Flags().BoolVar(&schemas, "schemas", false, "print each type's JSON Schema after the table")
	return cmd
}

// list joins names for a table cell, "-" for none.
func list(names []string) string {
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, ",")
}
