package conformance_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The wasm row's module (confplugin's command built for wasip1 from its
// unchanged source) and the compilation cache it was compiled into.
var wasmFile, wasmCache string

// buildWasm builds the module once for the wasm row, and compiles it into wasmCache with
// coordinator/internal/wasm/wasmtest's TestPrecompile outside the race
// detector (under it, wazero's compile of a Go module takes minutes).
func buildWasm(t *testing.T) string {
	t.Helper()
	if wasmFile != "" {
		return wasmFile
	}
	out, cache := filepath.Join(buildDir, "confplugin.wasm"), filepath.Join(buildDir, "cache")
	cmd := exec.Command("go", "build", "-o", out, "./confplugin/cmd/confplugin")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=wasip1 GOARCH=wasm go build ./confplugin/cmd/confplugin: %v\n%s", err, b)
	}
	cmd = exec.Command("go", "test", "-count=1", "-run", "^TestPrecompile$", "./coordinator/internal/wasm/wasmtest")
	cmd.Dir = "../.."
	cmd.Env = append(withoutGOFLAGS(os.Environ()), "PLUGBUS_WASM_PRECOMPILE="+cache+string(os.PathListSeparator)+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("precompiling %s: %v\n%s", out, err, b)
	}
	wasmFile, wasmCache = out, cache
	return out
}

func withoutGOFLAGS(env []string) []string {
	var out []string
	for _, kv := range env {
		if len(kv) < 8 || kv[:8] != "GOFLAGS=" {
			out = append(out, kv)
		}
	}
	return out
}
