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
	// The plugin's name is needed before New: read the flags first, then
	// define them again on the plugin's own flags, which Main parses.
	pre := flag.NewFlagSet("recorder", flag.ExitOnError)
	name := pre.String("name", "recorder", "plugin name")
	types := pre.String("types", "com.example.>", "type pattern to handle")
	_ = pre.Parse(os.Args[1:])
	p := pluginkit.New(*name, "1.0.0")
	p.Flags().String("name", *name, "plugin name")
	p.Flags().String("types", *types, "type pattern to handle")
	p.HandleFunc(*types, func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		return pluginkit.NewEvent("test.recorded", map[string]any{
			"plugin": *name, "instance": os.Getenv("PLUGBUS_INSTANCE"), "pid": os.Getpid(), "id": e.ID(),
		}), nil
	})
	pluginkit.Main(p)
}
