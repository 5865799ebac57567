package main

// The bundled plugins, linked in so that a configuration can run them in
// the coordinator's own process (static: true). Each registers itself at
// init; a program of your own that embeds the coordinator package links
// its plugins the same way (see examples/embedded).
import (
	_ "github.com/plugbus/plugbus/plugins/archive"
	_ "github.com/plugbus/plugbus/plugins/hello"
	_ "github.com/plugbus/plugbus/plugins/thumbnail"
	_ "github.com/plugbus/plugbus/plugins/webhook"
)
