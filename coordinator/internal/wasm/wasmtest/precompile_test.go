package wasmtest

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/plugbus/plugbus/coordinator/internal/wasm"
)

// TestPrecompile compiles the modules listed in PLUGBUS_WASM_PRECOMPILE
// (cache directory, then module paths, separated by os.PathListSeparator)
// into the cache; [Build] runs it. It is a test, not a command, because
// wazero keys its cache by its own version, read from the binary's build
// information, which test binaries lack: only a test binary fills a cache
// that other test binaries hit.
func TestPrecompile(t *testing.T) {
	list := os.Getenv(precompileEnv)
	if list == "" {
		t.Skip(precompileEnv + " is not set")
	}
	parts := strings.Split(list, string(os.PathListSeparator))
	ctx := context.Background()
	h, err := wasm.NewHost(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(ctx)
	for _, path := range parts[1:] {
		m, err := h.Load(ctx, "precompile", path, "", wasm.Sandbox{})
		if err != nil {
			t.Fatal(err)
		}
		m.Close(ctx)
	}
}
