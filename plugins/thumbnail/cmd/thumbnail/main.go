// Command thumbnail runs the thumbnail plugin as a program of its own; see
// plugins/thumbnail/README.md for its settings.
package main

import (
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
	"github.com/plugbus/plugbus/plugins/thumbnail"
)

func main() { pluginkit.Main(thumbnail.New()) }
