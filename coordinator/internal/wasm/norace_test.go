//go:build !race

package wasm_test

import (
	"strings"
	"testing"

	"github.com/plugbus/plugbus/coordinator/internal/wasm"
	"github.com/plugbus/plugbus/internal/stdioproto"
)

// TestUninterruptibleGreets runs the module compiled without termination
// checks: it answers as it does with them. (Not under the race detector:
// this compile is not in the precompiled cache, and takes minutes there.)
func TestUninterruptibleGreets(t *testing.T) {
	s, _ := start(t, wasm.Sandbox{Uninterruptible: true})
	s.send("com.example.wasm.greet", `{"name":"Ada"}`)
	o := s.read()
	e, err := stdioproto.ParseEvent(o.Event)
	if err != nil || o.ID != "1" || e.Type() != "com.example.wasm.greeted" || !strings.Contains(string(e.Data()), "hello, Ada") {
		t.Fatalf("answer %+v (%v)", o, err)
	}
}
