//go:build !(linux && cgo)

package soload

import (
	"fmt"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// Available reports whether this program can load .so plugins.
const Available = false

// Open returns ErrUnavailable: this program cannot load .so plugins.
func Open(path, name string) (func() *pluginkit.Plugin, error) {
	return nil, fmt.Errorf("%w (loading plugin %q from %s)", ErrUnavailable, name, path)
}
