//go:build linux && cgo

package soload

import (
	"fmt"
	"plugin"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// Available reports whether this program can load .so plugins.
const Available = true

// Open loads the .so file at path and returns the constructor of the plugin
// named name in it: the function the file exports as New (a
// func() *pluginkit.Plugin), or else the plugin it registered under name at
// init with pluginkit.Register. Go loads a file once per process; opening
// it again returns the same plugin.
func Open(path, name string) (func() *pluginkit.Plugin, error) {
	p, err := plugin.Open(path)
	if err != nil {
		return nil, refused(path, err)
	}
	if sym, err := p.Lookup("New"); err == nil {
		newPlugin, ok := sym.(func() *pluginkit.Plugin)
		if !ok {
			return nil, fmt.Errorf("so: %s exports New as a %T; want func() *pluginkit.Plugin", path, sym)
		}
		return newPlugin, nil
	}
	if newPlugin, ok := pluginkit.Lookup(name); ok {
		return newPlugin, nil
	}
	return nil, fmt.Errorf("so: %s neither exports New (a func() *pluginkit.Plugin) nor registers a plugin %q at init (pluginkit.Register); plugins registered in this process: %s",
		path, name, strings.Join(pluginkit.Registered(), ", "))
}

// differentPackage finds the package named in Go's refusal of a plugin
// built against other sources.
var differentPackage = regexp.MustCompile(`different version of package (\S+)`)

// refused explains Go's refusal to load the file at path: Go's reason, and
// what to rebuild with what.
func refused(path string, err error) error {
	self := fmt.Sprintf("%s %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if raceEnabled {
		self += " with -race"
	}
	fix := fmt.Sprintf("a .so must be built by the same Go toolchain with the same flags as the coordinator (%s) and with exactly the same version of every package the two share", self)
	if m := differentPackage.FindStringSubmatch(err.Error()); m != nil {
		pkg := m[1]
		if isStd(pkg) {
			fix = fmt.Sprintf("the Go toolchain or build flags differ (standard package %s): rebuild the .so with %s, as this coordinator was built", pkg, self)
		} else {
			fix = fmt.Sprintf("package %s differs between the .so and the coordinator: rebuild the .so against %s (with %s), for instance in the coordinator's module with go build -buildmode=plugin", pkg, moduleOf(pkg), self)
		}
	}
	return fmt.Errorf("so: Go refused to load %s: %v; %s", path, err, fix)
}

// isStd reports whether pkg is in Go's standard library, whose first path
// element has no dot.
func isStd(pkg string) bool {
	first, _, _ := strings.Cut(pkg, "/")
	return !strings.Contains(first, ".")
}

// moduleOf names the module holding pkg in this program, with its version,
// from the build information.
func moduleOf(pkg string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "the coordinator's versions of its modules"
	}
	best, version := "", ""
	for _, m := range append([]*debug.Module{&bi.Main}, bi.Deps...) {
		if m.Replace != nil {
			m = m.Replace
		}
		if (pkg == m.Path || strings.HasPrefix(pkg, m.Path+"/")) && len(m.Path) > len(best) {
			best, version = m.Path, m.Version
		}
	}
	switch {
	case best == "":
		return "the coordinator's versions of its modules"
	case version == "" || version == "(devel)":
		rev := ""
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = " at commit " + s.Value
			}
		}
		return fmt.Sprintf("the same source of %s as the coordinator%s (its own module)", best, rev)
	}
	return fmt.Sprintf("%s %s, as the coordinator has it", best, version)
}
