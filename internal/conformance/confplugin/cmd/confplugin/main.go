// Command confplugin runs the conformance plugin named by CONFORMANCE_NAME
// as a process.
package main

import (
	"os"

	"github.com/plugbus/plugbus/internal/conformance/confplugin"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

func main() { pluginkit.Main(confplugin.New(os.Getenv("CONFORMANCE_NAME"))) }
