package pluginkit

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

// envFlag binds a flag of a plugin's flag set to an environment variable.
type envFlag struct{ flag, env string }

// Flags returns the plugin's own settings: a flag set of its own, named
// after the plugin, so that several plugins in one process (the
// coordinator's static mode) keep theirs apart. Define the plugin's flags
// on it where the plugin is built, bind them to environment variables with
// [Plugin.BindEnv], and read their values in a function given to
// [Plugin.Setup].
//
// Who sets the values depends on how the plugin runs: [Main] parses the
// command line and the environment into it (and adds the connection flags
// it lists); a host that runs the plugin in-process sets them from its own
// configuration with flag.FlagSet.Set, and never from its environment.
func (p *Plugin) Flags() *flag.FlagSet { return p.flags }

// BindEnv makes the flag named name on the plugin's [Plugin.Flags] fall back
// to the environment variable env: when the command line does not set the
// flag and env is set (even to ""), [Main] sets the flag from env once it
// has parsed the command line, so the flag wins over the variable and the
// flag's default applies when neither is given. A value the flag rejects
// stops the program with exit status 2 and a message naming the variable.
// A repeatable flag (one defined with flag.Func, say) gets the variable's
// value as one more Set call. Hosts that run plugins in-process ignore the
// environment.
//
// BindEnv adds " [env]" to the flag's usage, so that -h lists the variable.
// It panics when no such flag is defined or the flag is already bound, as
// both are mistakes in the program.
func (p *Plugin) BindEnv(name, env string) {
	f := p.flags.Lookup(name)
	if f == nil {
		panic(fmt.Sprintf("pluginkit: BindEnv(%q, %q): plugin %q has no flag -%s; define it on Flags() first", name, env, p.name, name))
	}
	if env == "" {
		panic(fmt.Sprintf("pluginkit: BindEnv(%q): empty environment variable name", name))
	}
	for _, b := range p.envFlags {
		if b.flag == name {
			panic(fmt.Sprintf("pluginkit: BindEnv(%q, %q): the flag is already bound to %s", name, env, b.env))
		}
	}
	f.Usage += " [" + env + "]"
	p.envFlags = append(p.envFlags, envFlag{flag: name, env: env})
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

// Setup registers f to prepare the plugin once its settings hold their
// values and before it connects: f checks the settings read from
// [Plugin.Flags], builds what the handlers need, and registers them with
// [Plugin.Handle]. [Main], [Plugin.Run] and [Plugin.Serve] call the
// functions given to Setup once, in the order given; a plugin whose
// handlers do not depend on its settings needs none.
//
// An error from f is a bad configuration: the plugin does not start, and
// [Main] prints it and exits with status 2. So is a panic of Handle's (an
// invalid or duplicate type pattern, which here comes from configuration,
// not from the program); any other panic goes on. What f opens, it closes
// in a function given to [Plugin.Cleanup].
func (p *Plugin) Setup(f func(p *Plugin) error) {
	if p.started.Load() {
		panic(fmt.Sprintf("pluginkit: plugin %q: Setup called after the plugin started", p.name))
	}
	p.setups = append(p.setups, f)
}

// Cleanup registers f to be called once the plugin has stopped, after every
// handler has returned: [Plugin.Run] and [Plugin.Serve] call the functions
// given to Cleanup before they return, the last one given first, as
// testing.T's Cleanup does, and return their errors with their own. They
// are called even when the plugin could not start, so a function given to
// [Plugin.Setup] can register the closing of what it opened.
func (p *Plugin) Cleanup(f func() error) { p.cleanups = append(p.cleanups, f) }

// setUp runs the functions given to Setup, once. Its error is the
// setting's own, for Main to print after the plugin's name.
func (p *Plugin) setUp() error {
	if p.setUpDone {
		return p.setUpErr
	}
	p.setUpDone = true
	for _, f := range p.setups {
		if err := callSetup(p, f); err != nil {
			p.setUpErr = err
			return err
		}
	}
	return nil
}

// cleanUp calls the functions given to Cleanup, the last one first, and
// joins their errors to *err.
func (p *Plugin) cleanUp(err *error) {
	fs := p.cleanups
	p.cleanups = nil
	errs := []error{*err}
	for i := len(fs) - 1; i >= 0; i-- {
		if cerr := fs[i](); cerr != nil {
			errs = append(errs, fmt.Errorf("pluginkit: plugin %q: cleanup: %w", p.name, cerr))
		}
	}
	*err = errors.Join(errs...)
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
