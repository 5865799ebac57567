// Package soload loads plugin-kit plugins from files built with
// -buildmode=plugin (Go's plugin package), for the coordinator's .so mode.
//
// The loader works on Linux in a program built with cgo; elsewhere [Open]
// returns [ErrUnavailable] saying so. Go loads a .so only when it was built
// by the same toolchain, for the same platform and with the same build
// flags (-race among them), and with exactly the same version of every
// package it shares with the program; when Go refuses one, Open's error
// gives Go's reason and what to rebuild with what.
package soload

import "errors"

// ErrUnavailable is returned by [Open] in a program that cannot load .so
// plugins (not Linux, or built with CGO_ENABLED=0).
var ErrUnavailable = errors.New("so: this coordinator cannot load .so plugins: it was built without cgo or not for Linux; rebuild it on Linux with CGO_ENABLED=1 (and gcc installed), or run the plugin as a process (exec)")
