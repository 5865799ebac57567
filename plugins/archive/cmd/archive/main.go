// Command archive runs the archive plugin as a program of its own; see
// plugins/archive/README.md for its settings.
package main

import (
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
	"github.com/plugbus/plugbus/plugins/archive"
)

func main() { pluginkit.Main(archive.New()) }
