// Command webhook runs the webhook plugin as a program of its own; see
// plugins/webhook/README.md for its settings.
package main

import (
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
	"github.com/plugbus/plugbus/plugins/webhook"
)

func main() { pluginkit.Main(webhook.New()) }
