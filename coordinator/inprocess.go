package coordinator

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/plugbus/plugbus/coordinator/internal/soload"
	"github.com/plugbus/plugbus/coordinator/internal/supervise"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// runInProcess runs one instance of a static or .so plugin in the
// coordinator's process until ctx ends: the plugin's own code, built by its
// constructor, with its settings from the configuration, connected to the
// bus like any plugin (over the in-process connection to the embedded
// server). The supervisor restarts it when it returns early.
func (c *Coordinator) runInProcess(ctx context.Context, sp *supervise.Spec, instance string) error {
	newPlugin, err := constructor(sp)
	if err != nil {
		return err
	}
	p := newPlugin()
	if p.Name() != sp.Name {
		return fmt.Errorf("the constructor built a plugin named %q, not %q: name the spec after the plugin", p.Name(), sp.Name)
	}
	if err := applySettings(p, sp.Settings); err != nil {
		return err
	}
	conn := c.pluginConn(sp.Name)
	conn.Name = sp.Name
	opts := []pluginkit.Option{
		pluginkit.WithConnConfig(conn),
		pluginkit.WithPrefix(c.cfg.Prefix),
		pluginkit.WithLogger(c.log.With("replica", instance, "mode", sp.Mode())),
		pluginkit.WithMode(sp.Mode()),
	}
	if c.cfg.Durable {
		opts = append(opts, pluginkit.WithDurable(pluginkit.Durable{}))
	}
	if c.cfg.TracerProvider != nil {
		opts = append(opts, pluginkit.WithTracerProvider(c.cfg.TracerProvider))
	}
	for _, opt := range opts {
		opt(p)
	}
	return p.Run(ctx)
}

// constructor returns what builds the spec's plugin: the one registered
// under its name (static), or the one in its .so file.
func constructor(sp *supervise.Spec) (func() *pluginkit.Plugin, error) {
	if sp.So != "" {
		return soload.Open(sp.So, sp.Name)
	}
	newPlugin, ok := pluginkit.Lookup(sp.Name)
	if !ok {
		return nil, notLinked(sp.Name)
	}
	return newPlugin, nil
}

func notLinked(name string) error {
	linked := pluginkit.Registered()
	list := "none"
	if len(linked) > 0 {
		list = strings.Join(linked, ", ")
	}
	return fmt.Errorf("static: no plugin %q is linked into this program (linked: %s); import its package in the program's main, or run it with exec", name, list)
}

// checkStatic checks a static spec before the coordinator starts: the
// plugin is linked in and takes the settings given.
func checkStatic(sp supervise.Spec) error {
	newPlugin, ok := pluginkit.Lookup(sp.Name)
	if !ok {
		return notLinked(sp.Name)
	}
	return applySettings(newPlugin(), sp.Settings)
}

// applySettings sets the plugin's own flags from the configuration: a
// string, number or boolean each, or a list of them for a repeatable flag.
func applySettings(p *pluginkit.Plugin, settings map[string]any) error {
	fs := p.Flags()
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(settings)) {
		if fs.Lookup(name) == nil {
			var have []string
			fs.VisitAll(func(f *flag.Flag) { have = append(have, f.Name) })
			list := "none"
			if len(have) > 0 {
				list = strings.Join(have, ", ")
			}
			errs = append(errs, fmt.Errorf("settings.%s: plugin %q has no such setting (its settings: %s)", name, p.Name(), list))
			continue
		}
		values, ok := settings[name].([]any)
		if !ok {
			values = []any{settings[name]}
		}
		for _, v := range values {
			s, err := settingString(v)
			if err == nil {
				err = fs.Set(name, s)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("settings.%s %v: %v", name, v, err))
			}
		}
	}
	return errors.Join(errs...)
}

// settingString writes a setting's value as its flag reads it.
func settingString(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case int:
		return strconv.Itoa(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	}
	return "", fmt.Errorf("want a string, number or boolean, or a list of them, not %T", v)
}
