package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/coordinator"
	"github.com/plugbus/plugbus/coordinator/internal/devloop"
)

func newDevCmd() *cobra.Command {
	var (
		f        clientFlags
		embedded bool
		httpAddr string
	)
	cmd := &cobra.Command{
		Use:   "dev PACKAGE [-- PLUGIN-ARGS...]",
		Short: "Build a plugin, run it, and rebuild and restart it when its Go files change",
		Long: `Build the plugin's main package (a directory, perhaps of another module, or an
import path), run it against the bus, print its logs, and on every change of
its Go files (looked at every 300ms) build it again and swap the running
process for the new one. A build that fails prints the compiler's errors and
leaves the last good build running.

The bus: the NATS server at --nats-url when one answers there (a running
coordinator), else a coordinator started in this process with its embedded
server on --nats-url's address and the dashboard on --http-listen.
--embedded always starts one. Ctrl-C stops the plugin, and that coordinator.`,
		Example: `  coordinator dev ./plugins/hello/cmd/hello
  coordinator dev ./myplugin -- -dir /tmp/out
  coordinator dev --embedded --nats-url nats://127.0.0.1:14222 --http-listen 127.0.0.1:18090 ./plugins/hello/cmd/hello`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			log := cmd.ErrOrStderr()
			url := f.natsURL
			if !embedded {
				if nc, err := f.connect(); err == nil {
					nc.Close()
					fmt.Fprintf(log, "dev: using the bus at %s\n", url)
				} else {
					fmt.Fprintf(log, "dev: no bus at %s (%v); starting a coordinator here\n", url, err)
					embedded = true
				}
			}
			if embedded {
				var stop func() error
				var err error
				url, stop, err = startDevCoordinator(ctx, f, httpAddr)
				if err != nil {
					return err
				}
				defer func() {
					if err := stop(); err != nil {
						fmt.Fprintf(log, "dev: coordinator: %v\n", err)
					}
				}()
			}
			env := []string{"PLUGBUS_URL=" + url, "PLUGBUS_PREFIX=" + f.prefix}
			if f.token != "" {
				env = append(env, "PLUGBUS_TOKEN="+f.token)
			}
			if f.nkey != "" {
				env = append(env, "PLUGBUS_NKEY="+f.nkey) // the plugin's own identity on a secure bus
			}
			if _, ok := os.LookupEnv("PLUGBUS_LOG_FORMAT"); !ok {
				env = append(env, "PLUGBUS_LOG_FORMAT=text") // for a terminal
			}
			return devloop.Run(ctx, devloop.Config{
				Package: args[0], Args: args[1:], Env: env,
				Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr(),
			})
		},
	}
	addClientFlags(cmd, &f, true, false)
	cmd.Flags().BoolVar(&embedded, "embedded", false, "start a coordinator here even if a bus answers at --nats-url")
	cmd.Flags().StringVar(&httpAddr, "http-listen", coordinator.DefaultHTTPListen, "with a coordinator started here: its HTTP API and dashboard")
	return cmd
}

// startDevCoordinator runs a coordinator in this process, its embedded NATS
// server listening where f's URL points, and returns the URL and a stop
// function that waits for it to end.
func startDevCoordinator(ctx context.Context, f clientFlags, httpAddr string) (string, func() error, error) {
	listen := strings.TrimPrefix(strings.Split(f.natsURL, ",")[0], "nats://")
	dataDir, err := os.MkdirTemp("", "plugbus-dev-data-")
	if err != nil {
		return "", nil, err
	}
	logger, err := newLogger("text", "warn") // the plugin's output is what matters here
	if err != nil {
		return "", nil, err
	}
	c, err := coordinator.New(coordinator.Config{
		NATSListen: listen, HTTPListen: httpAddr, DataDir: filepath.Join(dataDir, "data"),
		Prefix: f.prefix, NATSToken: f.token,
	}, logger)
	if err != nil {
		os.RemoveAll(dataDir)
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-c.Ready():
	case err := <-done:
		cancel()
		os.RemoveAll(dataDir)
		return "", nil, fmt.Errorf("dev: starting a coordinator: %w", err)
	}
	fmt.Fprintf(os.Stderr, "dev: coordinator started: NATS %s, dashboard http://%s/\n", c.NATSURL(), c.HTTPAddr())
	return c.NATSURL(), func() error {
		cancel()
		err := <-done
		os.RemoveAll(dataDir)
		return err
	}, nil
}
