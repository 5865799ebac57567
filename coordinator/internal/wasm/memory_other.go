//go:build !linux

package wasm

import "context"

// A reservation is wazero's own linear memory on systems other than Linux
// (see memory_linux.go).
type reservation struct{}

func (r *reservation) with(ctx context.Context) context.Context { return ctx }

func (r *reservation) release() {}
