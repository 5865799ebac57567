// Command recorder is a test plugin: for every event it handles it emits
// test.recorded naming itself, its supervised instance and the event's id,
// so end-to-end tests can count who got what. With -reject, an event whose
// data holds the given text fails for good instead.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

func main() {
	// The plugin's name is needed before New: read the flags first, then
	// define them again on the plugin's own flags, which Main parses.
	pre := flag.NewFlagSet("recorder", flag.ExitOnError)
	name := pre.String("name", "recorder", "plugin name")
	types := pre.String("types", "com.example.>", "type pattern to handle")
	reject := pre.String("reject", "", "fail for good on data holding this text")
	_ = pre.Parse(os.Args[1:])
	p := pluginkit.New(*name, "1.0.0")
	p.Flags().String("name", *name, "plugin name")
	p.Flags().String("types", *types, "type pattern to handle")
	p.Flags().String("reject", *reject, "fail for good on data holding this text")
	p.HandleFunc(*types, func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		if *reject != "" && bytes.Contains(e.Data(), []byte(*reject)) {
			return nil, pluginkit.Permanent(fmt.Errorf("%s rejects data holding %q", *name, *reject))
		}
		return pluginkit.NewEvent("test.recorded", map[string]any{
			"plugin": *name, "instance": os.Getenv("PLUGBUS_INSTANCE"), "pid": os.Getpid(), "id": e.ID(),
		}), nil
	})
	pluginkit.Main(p)
}
