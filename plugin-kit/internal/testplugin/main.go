// Command testplugin is a plugin for plugin-kit's process tests. It handles
// com.example.work.requested and reports, in its com.example.work.done
// result, which process handled the event, so tests can tell instances apart.
//
// The environment sets it up, as flags belong to pluginkit.Main:
//
//	TESTPLUGIN_NAME   plugin name (default "worker")
//	TESTPLUGIN_SLEEP  how long each handler runs, a Go duration (default 0)
//	PLUGBUS_INSTANCE  reported as is in every result
//
// When TESTPLUGIN_SLEEP is set, the handler first emits
// com.example.work.began, so a test knows a handler is running.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// Result is the data of com.example.work.done.
type Result struct {
	Plugin   string `json:"plugin"`
	Instance string `json:"instance"` // PLUGBUS_INSTANCE
	ID       string `json:"id"`       // the micro service instance id
	PID      int    `json:"pid"`
	Trigger  string `json:"trigger"` // id of the event handled
}

func main() {
	name := os.Getenv("TESTPLUGIN_NAME")
	if name == "" {
		name = "worker"
	}
	var sleep time.Duration
	if v := os.Getenv("TESTPLUGIN_SLEEP"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "testplugin: TESTPLUGIN_SLEEP %q: %v\n", v, err)
			os.Exit(2)
		}
		sleep = d
	}
	p := pluginkit.New(name, "1.0.0", pluginkit.WithEmits("com.example.work.began", "com.example.work.done"))
	p.HandleFunc("com.example.work.requested", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		if sleep > 0 {
			if err := pluginkit.Emit(ctx, pluginkit.NewEvent("com.example.work.began", nil)); err != nil {
				return nil, err
			}
			time.Sleep(sleep) // deliberately ignores ctx: a drain must wait for it
		}
		return pluginkit.NewEvent("com.example.work.done", Result{
			Plugin:   name,
			Instance: os.Getenv("PLUGBUS_INSTANCE"),
			ID:       p.ID(),
			PID:      os.Getpid(),
			Trigger:  e.ID(),
		}), nil
	})
	pluginkit.Main(p)
}
