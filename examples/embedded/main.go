// Command embedded is a program of its own that embeds the coordinator and
// links its plugins in (static mode): hello from plugins/, and a plugin
// written here. They run in this process over the in-process connection to
// the embedded NATS server, and other processes reach them through it
// (127.0.0.1:4222, HTTP on 127.0.0.1:8090) as they reach any plugin.
package main

import (
	"context"
	"log"
	"os"
	"os/signal"
	"strings"

	"github.com/plugbus/plugbus/coordinator"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
	_ "github.com/plugbus/plugbus/plugins/hello" // registers "hello" at init
)

func init() {
	pluginkit.Register("shout", func() *pluginkit.Plugin {
		p := pluginkit.New("shout", "1.0.0")
		p.HandleFunc("com.example.shout.requested", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
			return pluginkit.NewEvent("com.example.shout.sent", strings.ToUpper(string(e.Data()))), nil
		})
		return p
	})
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	c, err := coordinator.New(coordinator.Config{Plugins: []coordinator.PluginSpec{
		{Name: "hello", Static: true, Replicas: 2},
		{Name: "shout", Static: true},
	}}, nil)
	if err == nil {
		err = c.Run(ctx)
	}
	if err != nil {
		log.Fatal(err)
	}
}
