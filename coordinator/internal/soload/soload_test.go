//go:build linux && cgo

package soload_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugbus/plugbus/coordinator/internal/soload"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
	"github.com/plugbus/plugbus/plugin-kit/kittest"
)

// buildSO builds testdata/greeter with -buildmode=plugin as this test
// binary was built (with -race when it has the race detector), with the
// overlay given if any, and returns the file's path.
func buildSO(t *testing.T, name, overlay, target string) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build a .so with")
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc: -buildmode=plugin needs a C toolchain (install gcc to run the .so loader's tests)")
	}
	if soload.RaceEnabledForTest {
		// A race-enabled .so recompiles every dependency for dynamic
		// linking with the race detector: minutes on a small machine.
		t.Skip("skipped under -race: building a .so with -race rebuilds every dependency (minutes); run go test ./coordinator/internal/soload/ without -race")
	}
	out := filepath.Join(t.TempDir(), name+".so")
	args := []string{"build", "-buildmode=plugin", "-o", out}
	if overlay != "" {
		args = append(args, "-overlay", overlay)
	}
	cmd := exec.Command(gobin, append(args, target)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -buildmode=plugin: %v\n%s", err, b)
	}
	return out
}

// A .so exporting New is loaded and its plugin runs in this process.
func TestOpen(t *testing.T) {
	newPlugin, err := soload.Open(buildSO(t, "greeter", "", "./testdata/greeter"), "greeter")
	if err != nil {
		t.Fatal(err)
	}
	h := kittest.Start(t, newPlugin())
	reply, err := h.Request(pluginkit.NewEvent("com.example.greet.requested", map[string]string{"name": "Ada"}))
	if err != nil || !strings.Contains(string(reply.Data()), "hello from a .so, Ada") {
		t.Fatalf("got %v, %v; want the .so's greeting", reply, err)
	}
}

// A .so built against another version of a package the program has is
// refused with Go's reason and what to rebuild with what.
func TestOpenChangedDependency(t *testing.T) {
	// plugin-kit with one more exported function: another version of it.
	dir := t.TempDir()
	changed := filepath.Join(dir, "changed.go")
	if err := os.WriteFile(changed, []byte("package pluginkit\n\n// Changed makes this plugin-kit another version.\nfunc Changed() int { return 1 }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pk, err := filepath.Abs("../../../plugin-kit/zz_changed.go")
	if err != nil {
		t.Fatal(err)
	}
	overlay, _ := json.Marshal(map[string]any{"Replace": map[string]string{pk: changed}})
	overlayFile := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(overlayFile, overlay, 0o600); err != nil {
		t.Fatal(err)
	}
	// Built from its file, not its package path: Go loads a plugin path
	// once per process, and TestOpen loads the package's.
	_, err = soload.Open(buildSO(t, "greeter-changed", overlayFile, "./testdata/greeter/main.go"), "greeter")
	if err == nil {
		t.Fatal("loaded a .so built against another plugin-kit; want Go's refusal")
	}
	t.Log(err)
	for _, want := range []string{
		"Go refused to load",
		"different version of package github.com/plugbus/plugbus/plugin-kit", // Go's reason
		"package github.com/plugbus/plugbus/plugin-kit differs",              // what differs
		"rebuild the .so against",                                            // what to do
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestOpenMissingFile(t *testing.T) {
	_, err := soload.Open(filepath.Join(t.TempDir(), "none.so"), "greeter")
	if err == nil || !strings.Contains(err.Error(), "none.so") {
		t.Fatalf("got %v, want an error naming the file", err)
	}
}
