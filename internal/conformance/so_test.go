//go:build linux && cgo && !race

package conformance_test

import (
	"os/exec"
	"path/filepath"
	"testing"
)

var soFile string

// buildSO builds the conformance plugin with -buildmode=plugin once.
func buildSO(t *testing.T) string {
	t.Helper()
	if soFile != "" {
		return soFile
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc: -buildmode=plugin needs a C toolchain")
	}
	out := filepath.Join(buildDir, "conf.so")
	if b, err := exec.Command("go", "build", "-buildmode=plugin", "-o", out, "./confplugin/so").CombinedOutput(); err != nil {
		t.Fatalf("go build -buildmode=plugin: %v\n%s", err, b)
	}
	soFile = out
	return out
}
