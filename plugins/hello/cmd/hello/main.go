// Command hello runs the hello plugin as a program of its own.
package main

import (
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
	"github.com/plugbus/plugbus/plugins/hello"
)

func main() {
	pluginkit.Main(hello.New()) // settings from PLUGBUS_URL and flags; runs until SIGTERM
}
