package wasm

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/tetratelabs/wazero"
)

// calls is a module, written out byte by byte, with what instrument
// renumbers: an imported function, calls to it and between the module's
// own functions, a table whose element segment names them, a global, an
// export, a start function and a loop.
var calls = []byte{
	0x00, 'a', 's', 'm', 1, 0, 0, 0,
	1, 4, 1, 0x60, 0, 0, // type 0: () -> ()
	2, 9, 1, 3, 'e', 'n', 'v', 1, 'f', 0, 0, // import env.f: function 0, type 0
	3, 3, 2, 0, 0, // functions 1 and 2, type 0
	4, 4, 1, 0x70, 0, 2, // a funcref table of 2
	6, 6, 1, 0x7f, 1, 0x41, 0, 0x0b, // a mutable i32 global, 0
	7, 9, 2, 1, 'a', 0, 1, 1, 't', 1, 0, // export "a" = function 1, "t" = table 0
	8, 1, 2, // start: function 2
	9, 8, 1, 0, 0x41, 0, 0x0b, 2, 1, 2, // table[0..1] = functions 1, 2
	10, 23, 2,
	11, 0, 0x10, 0, 0x03, 0x40, 0x23, 0, 0x0d, 0, 0x0b, 0x0b, // call 0; (loop (br_if 0 (global.get 0)))
	9, 0, 0x10, 1, 0x41, 0, 0x11, 0, 0, 0x0b, // call 1; (call_indirect (i32.const 0))
}

// FuzzInstrument holds instrument to what the coordinator relies on when
// it loads a module anyone may have written: it reads every input without
// going wrong (a panic it recovers is errRewriteBug), and a module wazero
// accepts is either rewritten into one wazero accepts too, or refused with
// errNotInstrumented (and then run with wazero's checks).
func FuzzInstrument(f *testing.F) {
	for _, seed := range [][]byte{loopForever, calls} {
		f.Add(seed)
	}
	ctx := context.Background()
	// The interpreter validates a module as the compiler does, without
	// compiling it to machine code: quicker per input.
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	f.Cleanup(func() { rt.Close(ctx) })
	valid := func(bin []byte) error {
		m, err := rt.CompileModule(ctx, bin)
		if err == nil {
			m.Close(ctx)
		}
		return err
	}
	f.Fuzz(func(t *testing.T, bin []byte) {
		in := bytes.Clone(bin)
		out, err := instrument(bin)
		if !bytes.Equal(in, bin) {
			t.Fatal("instrument changed its input")
		}
		if err != nil {
			if !errors.Is(err, errNotInstrumented) || errors.Is(err, errRewriteBug) {
				t.Fatalf("instrument: %v, want errNotInstrumented or nil", err)
			}
			return
		}
		if valid(in) != nil {
			return // wazero refuses the rewrite as it would the original
		}
		if err := valid(out); err != nil {
			t.Fatalf("wazero accepts the module but not its rewrite: %v", err)
		}
	})
}

// TestInstrumentSeeds checks that the fuzz seeds are modules wazero
// accepts, so that the fuzzer starts from the rewrite's real work.
func TestInstrumentSeeds(t *testing.T) {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	for name, bin := range map[string][]byte{"loopForever": loopForever, "calls": calls} {
		out, err := instrument(bin)
		if err != nil {
			t.Fatalf("%s: instrument: %v", name, err)
		}
		for _, b := range [][]byte{bin, out} {
			if _, err := rt.CompileModule(ctx, b); err != nil {
				t.Fatalf("%s: wazero refuses it: %v", name, err)
			}
		}
	}
}
