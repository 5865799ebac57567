package pluginkit

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

// envFlag binds a flag of flag.CommandLine to an environment variable.
type envFlag struct{ flag, env string }

// envFlags are the bindings BindEnv made, in the order it made them. Like
// flag.CommandLine itself, they belong to main's goroutine.
var envFlags []envFlag

// BindEnv makes the flag named name on flag.CommandLine fall back to the
// environment variable env: when the command line does not set the flag
// and env is set (even to ""), [Main] and [MainSetup] set the flag from env
// once they have parsed the command line, so the flag wins over the
// variable and the flag's default applies when neither is given. A value
// the flag rejects stops the program with exit status 2 and a message
// naming the variable. A repeatable flag (one defined with flag.Func, say)
// gets the variable's value as one more Set call.
//
// Call BindEnv in main, after defining the flag and before Main; it adds
// " [env]" to the flag's usage, so that -h lists the variable. It panics
// when no such flag is defined or the flag is already bound, as both are
// mistakes in the program.
func BindEnv(name, env string) {
	f := flag.CommandLine.Lookup(name)
	if f == nil {
		panic(fmt.Sprintf("pluginkit: BindEnv(%q, %q): no flag -%s on flag.CommandLine; define it first", name, env, name))
	}
	if env == "" {
		panic(fmt.Sprintf("pluginkit: BindEnv(%q): empty environment variable name", name))
	}
	for _, b := range envFlags {
		if b.flag == name {
			panic(fmt.Sprintf("pluginkit: BindEnv(%q, %q): the flag is already bound to %s", name, env, b.env))
		}
	}
	f.Usage += " [" + env + "]"
	envFlags = append(envFlags, envFlag{flag: name, env: env})
}

// setFromEnv sets each bound flag of fs that the parsed command line left
// unset from its environment variable, as lookup (os.LookupEnv) reads it.
func setFromEnv(fs *flag.FlagSet, bound []envFlag, lookup func(string) (string, bool)) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	for _, b := range bound {
		v, ok := lookup(b.env)
		if !ok || given[b.flag] {
			continue
		}
		if err := fs.Set(b.flag, v); err != nil {
			errs = append(errs, fmt.Errorf("environment variable %s=%q (for -%s): %v", b.env, v, b.flag, err))
		}
	}
	return errors.Join(errs...)
}

// MainSetup is [Main] for a plugin whose handlers depend on its settings,
// such as the event types it handles or their concurrency. Define the
// plugin's flags on flag.CommandLine, bind them to environment variables
// with [BindEnv], create p, and call MainSetup instead of Main. Once the
// command line and the environment are read, before p connects, MainSetup
// calls setup with p: setup checks the plugin's settings, builds what the
// handlers need, and registers them with [Plugin.Handle].
//
// An error from setup is a bad configuration: MainSetup prints it and exits
// with status 2. So is a panic of Handle's (an invalid or duplicate type
// pattern, which here comes from configuration, not from the program); any
// other panic goes on. -h lists the flags and exits before setup runs.
//
// Otherwise MainSetup is Main: it returns after a clean stop, once every
// handler has returned, so main can close what setup opened.
//
// setup is a plain function of p, so a test registers the handlers the same
// way on a plugin it runs with [Plugin.Serve] or package kittest.
func MainSetup(p *Plugin, setup func(p *Plugin) error) {
	runMain(p, setup)
}

// callSetup runs setup on p, turning a panic raised by plugin-kit (whose
// message starts "pluginkit: ", as Handle's do) into an error.
func callSetup(p *Plugin, setup func(*Plugin) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			msg, ok := v.(string)
			if !ok || !strings.HasPrefix(msg, "pluginkit: ") {
				panic(v)
			}
			err = errors.New(msg)
		}
	}()
	return setup(p)
}

// exitBadConfig reports a bad setting of plugin p and exits with status 2,
// as the flag package does on a bad flag.
func exitBadConfig(p *Plugin, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", p.name, err)
	os.Exit(2)
}
