package pluginkit

import (
	"fmt"
	"slices"
	"sync"

	"github.com/plugbus/plugbus/bus"
)

// The plugins linked into this program, by name: see Register. Like
// database/sql's drivers, the list is the program's, filled by the init
// functions of the plugin packages it imports.
var (
	registryMu sync.RWMutex
	registry   = map[string]func() *Plugin{}
)

// Register makes a plugin available by name to whatever in this program
// runs plugins in-process, such as the coordinator's static mode: a plugin
// package calls it from its init function, as database/sql drivers do, so
// importing the package (even as _) links the plugin in.
//
// newPlugin returns a fresh plugin on every call, one per instance, with
// its settings defined on [Plugin.Flags] but not yet set, its handlers or
// its [Plugin.Setup] registered; the host sets the settings from its own
// configuration and runs it. The plugin's own program is main calling
// [Main] with newPlugin(), which reads the settings from the command line
// and the environment instead.
//
// Register panics when name is not a valid plugin name, is registered
// twice, or newPlugin is nil: all mistakes in the program.
func Register(name string, newPlugin func() *Plugin) {
	if err := bus.ValidateProducer(name); err != nil {
		panic(fmt.Sprintf("pluginkit: Register: plugin %v", err))
	}
	if newPlugin == nil {
		panic(fmt.Sprintf("pluginkit: Register(%q): nil constructor", name))
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[name]; dup {
		panic(fmt.Sprintf("pluginkit: Register(%q): a plugin of this name is already registered; is its package linked twice under two paths?", name))
	}
	registry[name] = newPlugin
}

// Lookup returns the constructor [Register] registered under name.
func Lookup(name string) (newPlugin func() *Plugin, ok bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	newPlugin, ok = registry[name]
	return newPlugin, ok
}

// Registered returns the names of the registered plugins, sorted.
func Registered() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	names := make([]string, 0, len(registry))
	for name := range registry {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
