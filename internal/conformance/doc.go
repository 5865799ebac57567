// Package conformance runs the same behaviour through every way a plugin
// runs (process, static and .so so far; a mode is one more row) with the same
// plugin code, package confplugin, through a real coordinator.
package conformance
