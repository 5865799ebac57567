// Command coordinator runs the Plugbus core and talks to a running one.
//
//	coordinator [serve]           run the coordinator (embedded NATS by default)
//	coordinator plugins           list plugins and their instances
//	coordinator publish TYPE      publish an event
//	coordinator invoke TYPE       invoke the plugin that answers TYPE and print its answer
//	coordinator tail [PATTERN]    follow live events
//	coordinator dev PACKAGE       build and run a plugin, rebuilding it on every change
//	coordinator version           print the version
//
// Run "coordinator help COMMAND" for each command's flags.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	if err := root.ExecuteContext(ctx); err != nil {
		var exit exitError
		if errors.As(err, &exit) {
			os.Exit(int(exit)) // the command said why on standard error
		}
		// Errors from package coordinator name it already.
		fmt.Fprintln(os.Stderr, "coordinator:", strings.TrimPrefix(err.Error(), "coordinator: "))
		os.Exit(1)
	}
}

// exitError carries a specific exit status. A command returns it after
// printing its message to standard error itself, so main prints nothing
// more.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func newRootCmd() *cobra.Command {
	serve := newServeCmd()
	root := &cobra.Command{
		Use:   "coordinator",
		Short: "Plugbus: a plugin system for Go over CloudEvents and NATS",
		Long: `Plugbus runs plugins as separate processes that talk through CloudEvents on NATS.

With no command, the coordinator starts: an embedded NATS server on 127.0.0.1:4222,
the HTTP API and dashboard on http://127.0.0.1:8090, and the plugins listed in
--config. The other commands talk to a running coordinator or to NATS.`,
		Example: `  coordinator serve --config examples/demo.yaml
  coordinator plugins
  coordinator publish com.example.greet.requested --data '{"name":"Ada"}'
  coordinator invoke com.example.greet.requested --data '{"name":"Ada"}'
  coordinator tail 'com.example.>'`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE:          serve.RunE,
	}
	root.Flags().AddFlagSet(serve.Flags())
	root.AddCommand(serve, newPluginsCmd(), newTypesCmd(), newPublishCmd(), newInvokeCmd(), newTailCmd(), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), "coordinator", version) },
	})
	root.AddCommand(newDeadletterCmd(), newDevCmd())
	root.AddCommand(newAgentCmd(), newAgentsCmd(), newRunCmd(), newStopCmd(), newScaleCmd(), newRestartCmd(), newLogsCmd())
	return root
}
