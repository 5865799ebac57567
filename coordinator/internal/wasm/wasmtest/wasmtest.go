// Package wasmtest builds WebAssembly modules for tests, once per test
// binary: it compiles Go main packages for GOOS=wasip1 and precompiles
// them into a wasm compilation cache outside the race detector, under which
// wazero's compile of a Go module takes minutes rather than seconds.
package wasmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Build compiles each main package in pkgs (paths the go command
// understands from dir) for wasip1 into outDir, named after the package
// with ".wasm", then compiles the modules into the compilation cache
// cacheDir (with this package's TestPrecompile, run without the race
// detector). It returns the modules' paths in the order of pkgs. It is
// meant for TestMain; root is the module root.
func Build(root, dir, outDir, cacheDir string, pkgs ...string) ([]string, error) {
	var paths []string
	for _, pkg := range pkgs {
		out := filepath.Join(outDir, filepath.Base(filepath.Clean(pkg))+".wasm")
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("GOOS=wasip1 GOARCH=wasm go build %s: %v\n%s", pkg, err, b)
		}
		paths = append(paths, out)
	}
	cmd := exec.Command("go", "test", "-count=1", "-run", "^TestPrecompile$", "./coordinator/internal/wasm/wasmtest")
	cmd.Dir = root
	cmd.Env = append(removeEnv(os.Environ(), "GOFLAGS"), // never -race
		precompileEnv+"="+strings.Join(append([]string{cacheDir}, paths...), string(os.PathListSeparator)))
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("precompiling %s: %v\n%s", strings.Join(paths, " "), err, b)
	}
	return paths, nil
}

const precompileEnv = "PLUGBUS_WASM_PRECOMPILE"

func removeEnv(env []string, key string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}
