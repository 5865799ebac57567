// Command hog is a test plugin that leaks: each com.example.hog.grow
// request makes it take and keep 16 MiB more (touched, so resident), and
// it answers with how much it holds. Tests run it under a memory limit.
package main

import (
	"context"
	"sync"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

func main() {
	var (
		mu   sync.Mutex
		held [][]byte
	)
	p := pluginkit.New("hog", "1.0.0")
	p.HandleFunc("com.example.hog.grow", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		b := make([]byte, 16<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		mu.Lock()
		held = append(held, b)
		n := len(held)
		mu.Unlock()
		return pluginkit.NewEvent("com.example.hog.grown", map[string]int{"mib": 16 * n}), nil
	})
	pluginkit.Main(p)
}
