// Command testplugin is a plugin for plugin-kit's process tests. It handles
// com.example.work.requested (or the types -types names) and reports, in its com.example.work.done
// result, which process handled the event, so tests can tell instances apart.
//
// Settings (flags fall back to the environment, as Plugin.BindEnv makes them):
//
//	TESTPLUGIN_NAME              plugin name (default "worker"; environment only, as New needs it)
//	-sleep  TESTPLUGIN_SLEEP     how long each handler runs, a Go duration (default 0)
//	-types  TESTPLUGIN_TYPES     type patterns handled, comma-separated (default com.example.work.requested)
//	PLUGBUS_INSTANCE             reported as is in every result
//
// When -sleep is set, the handler first emits com.example.work.began, so a
// test knows a handler is running.
package main

import (
	"context"
	"errors"
	"os"
	"strings"
	"time"

	"github.com/plugbus/plugbus/bus"
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
	opts := []pluginkit.Option{pluginkit.WithDescription("works for plugin-kit's process tests"), pluginkit.WithEmits("com.example.work.began", "com.example.work.done")}
	if url := os.Getenv("TESTPLUGIN_CONN_URL"); url != "" {
		// Settings a program gives New, which Main must keep.
		opts = append(opts, pluginkit.WithConnConfig(bus.ConnConfig{URLs: []string{url}}))
	}
	p := pluginkit.New(name, "1.0.0", opts...)
	sleep := p.Flags().Duration("sleep", 0, "how long each handler runs")
	types := p.Flags().String("types", "com.example.work.requested", "type patterns handled, comma-separated")
	p.BindEnv("sleep", "TESTPLUGIN_SLEEP")
	p.BindEnv("types", "TESTPLUGIN_TYPES")
	work := func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		if *sleep > 0 {
			if err := pluginkit.Emit(ctx, pluginkit.NewEvent("com.example.work.began", nil)); err != nil {
				return nil, err
			}
			time.Sleep(*sleep) // deliberately ignores ctx: a drain must wait for it
		}
		return pluginkit.NewEvent("com.example.work.done", Result{
			Plugin:   name,
			Instance: os.Getenv("PLUGBUS_INSTANCE"),
			ID:       p.ID(),
			PID:      os.Getpid(),
			Trigger:  e.ID(),
		}), nil
	}
	p.Setup(func(p *pluginkit.Plugin) error {
		if *types == "" {
			return errors.New("-types: no type pattern")
		}
		for _, t := range strings.Split(*types, ",") {
			p.HandleFunc(t, work)
		}
		return nil
	})
	pluginkit.Main(p)
}
