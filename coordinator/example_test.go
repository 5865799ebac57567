package coordinator_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"

	"github.com/plugbus/plugbus/coordinator"
)

// A Go program can embed the coordinator: its embedded NATS server, HTTP
// API and dashboard, registry and supervisor.
func ExampleNew() {
	cfg := coordinator.Config{
		NATSListen: "127.0.0.1:4222",
		HTTPListen: "127.0.0.1:8090",
		DataDir:    "data",
	}
	c, err := coordinator.New(cfg, slog.Default())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	go func() {
		<-c.Ready()
		for _, p := range c.Plugins() {
			fmt.Println(p.Name, p.Running)
		}
	}()
	if err := c.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
