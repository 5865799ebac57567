// Command wasmtest is a stdio plugin for the wasm tests, built for
// GOOS=wasip1. It uses the standard library only (plugin-kit's wasm build is
// tested with plugins/hello), so that it compiles fast. It greets, and on
// request loops forever, allocates without bound, traps, or tells what its
// sandbox lets it see.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"unsafe"
)

type line struct {
	ID    string `json:"id"`
	Event struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	} `json:"event"`
}

func main() {
	out := json.NewEncoder(os.Stdout)
	out.Encode(map[string]any{"manifest": map[string]any{
		"version": "1.0.0",
		"answers": []string{"com.example.wasm.greet", "com.example.wasm.loop", "com.example.wasm.bomb", "com.example.wasm.trap", "com.example.wasm.sandbox"},
	}})
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var l line
		if err := json.Unmarshal(in.Bytes(), &l); err != nil {
			fmt.Fprintln(os.Stderr, "wasmtest: bad line:", err)
			continue
		}
		answer := func(typ string, data any) {
			out.Encode(map[string]any{"id": l.ID, "event": map[string]any{"type": typ, "data": data}})
		}
		switch l.Event.Type {
		case "com.example.wasm.greet":
			var req struct{ Name string }
			if err := json.Unmarshal(l.Event.Data, &req); err != nil {
				out.Encode(map[string]any{"id": l.ID, "error": map[string]any{"message": err.Error(), "permanent": true}})
				continue
			}
			answer("com.example.wasm.greeted", map[string]string{"text": "hello, " + req.Name})
		case "com.example.wasm.loop":
			n := 0
			for n >= 0 { // never ends, and never calls out
				n = (n + 1) & 0xffff
			}
		case "com.example.wasm.bomb":
			var keep [][]byte
			for {
				b := make([]byte, 1<<20)
				b[0] = 1
				keep = append(keep, b)
			}
		case "com.example.wasm.trap":
			// Beyond the end of linear memory: an out-of-bounds trap,
			// which Go's runtime cannot recover.
			*(*byte)(unsafe.Pointer(uintptr(0xfffffff0))) = 1
		case "com.example.wasm.sandbox":
			_, errRoot := os.ReadDir("/")
			data, errData := os.ReadFile("/data/hello.txt")
			errWrite := os.WriteFile("/data/new.txt", []byte("x"), 0o600)
			answer("com.example.wasm.sandboxed", map[string]any{
				"env":      os.Getenv("GRANTED") + "|" + os.Getenv("HOME"),
				"root":     errRoot == nil,
				"data":     string(data),
				"data_err": errData != nil,
				"writable": errWrite == nil,
			})
		default:
			out.Encode(map[string]any{"id": l.ID, "error": map[string]any{"message": "no handler for " + l.Event.Type, "permanent": true}})
		}
	}
}
