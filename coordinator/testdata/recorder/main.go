// Command recorder is a test plugin: for every event it handles it emits
// test.recorded naming itself, its supervised instance and the event's id,
// so end-to-end tests can count who got what.
package main

import (
	"context"
	"flag"
	"os"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

func main() {
	name := flag.String("name", "recorder", "plugin name")
	types := flag.String("types", "com.example.>", "type pattern to handle")
	flag.Parse() // Main parses again; the plugin name is needed before New
	p := pluginkit.New(*name, "1.0.0")
	p.HandleFunc(*types, func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		return pluginkit.NewEvent("test.recorded", map[string]any{
			"plugin": *name, "instance": os.Getenv("PLUGBUS_INSTANCE"), "pid": os.Getpid(), "id": e.ID(),
		}), nil
	})
	pluginkit.Main(p)
}
