// Command kv runs the kv plugin as a program of its own: go-plugin's
// plugin.Serve becomes pluginkit.Main.
package main

import (
	"github.com/plugbus/plugbus/examples/kv"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

func main() { pluginkit.Main(kv.New()) }
