package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// settings are the plugin's own flags, each with an environment variable to
// fall back on (the flag wins).
//
// pluginkit.Main parses the command line only once it runs, but a plugin
// needs its settings before that: its handlers' type patterns and their
// configuration must be registered before Main. So parse reads this plugin's
// flags out of the arguments first, then defines the same flags on
// flag.CommandLine, where Main's own parse accepts them again (without
// effect) and -h lists them next to Main's settings.
type settings struct {
	fs  *flag.FlagSet
	env map[string]string // flag name -> environment variable
}

// errHelp is returned by parse when the arguments ask for -h or -help.
var errHelp = errors.New("help requested")

func newSettings(name string) *settings {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &settings{fs: fs, env: map[string]string{}}
}

// Var defines a flag of any type, falling back to the environment variable env.
func (s *settings) Var(v flag.Value, name, env, usage string) {
	s.fs.Var(v, name, usage+" ["+env+"]")
	s.env[name] = env
}

func (s *settings) String(name, env, def, usage string) *string {
	p := new(string)
	s.fs.StringVar(p, name, def, usage+" ["+env+"]")
	s.env[name] = env
	return p
}

func (s *settings) Int(name, env string, def int, usage string) *int {
	p := new(int)
	s.fs.IntVar(p, name, def, usage+" ["+env+"]")
	s.env[name] = env
	return p
}

func (s *settings) Int64(name, env string, def int64, usage string) *int64 {
	p := new(int64)
	s.fs.Int64Var(p, name, def, usage+" ["+env+"]")
	s.env[name] = env
	return p
}

func (s *settings) Bool(name, env string, def bool, usage string) *bool {
	p := new(bool)
	s.fs.BoolVar(p, name, def, usage+" ["+env+"]")
	s.env[name] = env
	return p
}

func (s *settings) Duration(name, env string, def time.Duration, usage string) *time.Duration {
	p := new(time.Duration)
	s.fs.DurationVar(p, name, def, usage+" ["+env+"]")
	s.env[name] = env
	return p
}

// parse sets the flags from args, then from the environment for the flags
// args do not give, and defines them on dst (normally flag.CommandLine) so
// that a later dst.Parse accepts them. Arguments that are not this plugin's
// flags are left for dst. It returns errHelp when args ask for help; the
// flags are defined on dst in every case.
func (s *settings) parse(args []string, dst *flag.FlagSet) error {
	s.fs.VisitAll(func(f *flag.Flag) {
		if dst.Lookup(f.Name) == nil {
			dst.Var(parsedValue{f.Value}, f.Name, f.Usage)
		}
	})
	own, help := s.extract(args)
	if help {
		return errHelp
	}
	if err := s.fs.Parse(own); err != nil {
		return err
	}
	given := map[string]bool{}
	s.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	names := make([]string, 0, len(s.env))
	for name := range s.env {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		env := s.env[name]
		v, ok := os.LookupEnv(env)
		if given[name] || !ok {
			continue
		}
		if err := s.fs.Set(name, v); err != nil {
			return fmt.Errorf("environment variable %s=%q (for -%s): %v", env, v, name, err)
		}
	}
	return nil
}

// extract picks this plugin's flags, with their values, out of args, the
// way the flag package would read them: -name value, -name=value, and
// --name forms, bool flags without a value, nothing after "--".
func (s *settings) extract(args []string) (own []string, help bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if len(a) < 2 || a[0] != '-' {
			continue
		}
		name := strings.TrimPrefix(a[1:], "-")
		name, value, hasValue := strings.Cut(name, "=")
		if name == "h" || name == "help" {
			return nil, true
		}
		f := s.fs.Lookup(name)
		if f == nil {
			continue
		}
		switch {
		case hasValue:
			own = append(own, "-"+name+"="+value)
		case isBool(f.Value):
			own = append(own, "-"+name)
		case i+1 < len(args):
			own = append(own, "-"+name, args[i+1])
			i++
		default:
			own = append(own, "-"+name) // the parse reports the missing value
		}
	}
	return own, false
}

func isBool(v flag.Value) bool {
	b, ok := v.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// parsedValue shows a flag already parsed by settings.parse to another flag
// set: it prints the value and ignores a second Set, so that list flags are
// not appended to twice.
type parsedValue struct{ v flag.Value }

func (p parsedValue) String() string {
	if p.v == nil {
		return ""
	}
	return p.v.String()
}
func (p parsedValue) Set(string) error { return nil }
func (p parsedValue) IsBoolFlag() bool { return isBool(p.v) }

// listFlag is a repeatable flag whose values may also be comma-separated.
// The first Set replaces the default.
type listFlag struct {
	values []string
	set    bool
}

func newListFlag(defaults ...string) *listFlag { return &listFlag{values: defaults} }

func (l *listFlag) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(l.values, ",")
}

func (l *listFlag) Set(v string) error {
	if !l.set {
		l.values, l.set = nil, true
	}
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			l.values = append(l.values, s)
		}
	}
	return nil
}
