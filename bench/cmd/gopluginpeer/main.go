// Command gopluginpeer is a hashicorp/go-plugin plugin serving a Greeter,
// over gRPC, or over net/rpc when PLUGBUS_BENCH_PROTOCOL=netrpc. The host
// starts it; run alone, it says it is a plugin and exits.
package main

import (
	"os"

	"github.com/hashicorp/go-plugin"

	"github.com/plugbus/plugbus/bench/goplugin"
	"github.com/plugbus/plugbus/bench/greet"
)

type greeter struct{}

func (greeter) Greet(data []byte) ([]byte, error) { return greet.Greet(data) }

func main() {
	cfg := &plugin.ServeConfig{
		HandshakeConfig: goplugin.Handshake,
		Plugins:         plugin.PluginSet{goplugin.Name: &goplugin.Plugin{Impl: greeter{}}},
		GRPCServer:      plugin.DefaultGRPCServer,
	}
	if os.Getenv(goplugin.ProtocolEnv) == "netrpc" {
		cfg.GRPCServer = nil
	}
	plugin.Serve(cfg)
}
