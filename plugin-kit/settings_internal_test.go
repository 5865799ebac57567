package pluginkit

import (
	"context"
	"errors"
	"flag"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSetFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    []string // list, str, n, d, b
		wantErr []string // what the error names
	}{
		{name: "defaults", want: []string{"", "def", "1", "1s", "false"}},
		{
			name: "flags",
			args: []string{"-list", "a", "--list=b", "-str=s", "-n", "7", "-d", "2m", "-b"},
			want: []string{"a,b", "s", "7", "2m0s", "true"},
		},
		{
			name: "environment fallback",
			env:  map[string]string{"T_LIST": "x", "T_STR": "envs", "T_N": "3", "T_D": "5ms", "T_B": "true"},
			want: []string{"x", "envs", "3", "5ms", "true"},
		},
		{
			name: "set to empty",
			env:  map[string]string{"T_STR": ""},
			want: []string{"", "", "1", "1s", "false"},
		},
		{
			name: "flag wins over environment",
			args: []string{"-list", "a", "-str", "flag", "-b=false"},
			env:  map[string]string{"T_LIST": "x", "T_STR": "env", "T_B": "true", "T_N": "9"},
			want: []string{"a", "flag", "9", "1s", "false"},
		},
		{
			name:    "bad environment values",
			env:     map[string]string{"T_D": "soon", "T_N": "many", "T_STR": "fine"},
			wantErr: []string{`T_D="soon" (for -d)`, `T_N="many" (for -n)`},
		},
		{
			name: "bad value under a flag given",
			args: []string{"-n", "2"},
			env:  map[string]string{"T_N": "many"},
			want: []string{"", "def", "2", "1s", "false"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var list []string // repeatable
			fs.Func("list", "a list", func(v string) error { list = append(list, v); return nil })
			str := fs.String("str", "def", "a string")
			n := fs.Int("n", 1, "a number")
			d := fs.Duration("d", time.Second, "a duration")
			b := fs.Bool("b", false, "a bool")
			fs.String("unbound", "u", "a flag with no variable")
			bound := []envFlag{{"list", "T_LIST"}, {"str", "T_STR"}, {"n", "T_N"}, {"d", "T_D"}, {"b", "T_B"}}
			lookup := func(name string) (string, bool) {
				v, ok := tt.env[name]
				return v, ok
			}
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			err := setFromEnv(fs, bound, lookup)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatal("setFromEnv succeeded; want an error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not name %s", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := []string{strings.Join(list, ","), *str, strconv.Itoa(*n), d.String(), strconv.FormatBool(*b)}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBindEnv(t *testing.T) {
	p := New("bind", "1.0.0")
	p.Flags().String("dir", "", "a test flag")
	p.BindEnv("dir", "PLUGINKIT_TEST_BIND")
	if got := p.Flags().Lookup("dir").Usage; got != "a test flag [PLUGINKIT_TEST_BIND]" {
		t.Errorf("usage %q: want the variable's name in it, for -h", got)
	}
	if got := p.envFlags[len(p.envFlags)-1]; got != (envFlag{"dir", "PLUGINKIT_TEST_BIND"}) {
		t.Errorf("binding %+v", got)
	}
	if flag.CommandLine.Lookup("dir") != nil {
		t.Error("the plugin's flag landed on flag.CommandLine")
	}
	for _, tt := range []struct{ flag, env, want string }{
		{"nosuch", "X", "no flag -nosuch"},
		{"dir", "OTHER", "already bound to PLUGINKIT_TEST_BIND"},
		{"dir", "", "empty environment variable name"},
	} {
		msg := func() (msg string) {
			defer func() { msg, _ = recover().(string) }()
			p.BindEnv(tt.flag, tt.env)
			return ""
		}()
		if !strings.Contains(msg, tt.want) {
			t.Errorf("BindEnv(%q, %q) panicked with %q, want a panic saying %q", tt.flag, tt.env, msg, tt.want)
		}
	}
}

// Two plugins in one process define the same flag and bind the same
// variable without meeting: each has its own settings.
func TestSettingsPerPlugin(t *testing.T) {
	a, b := New("a", "1.0.0"), New("b", "1.0.0")
	da := a.Flags().String("dir", "a-default", "")
	db := b.Flags().String("dir", "b-default", "")
	a.BindEnv("dir", "DIR")
	b.BindEnv("dir", "DIR")
	if err := a.Flags().Set("dir", "/a"); err != nil {
		t.Fatal(err)
	}
	if err := setFromEnv(b.Flags(), b.envFlags, func(string) (string, bool) { return "/from-env", true }); err != nil {
		t.Fatal(err)
	}
	if *da != "/a" || *db != "/from-env" {
		t.Errorf("got a=%q b=%q, want /a and /from-env", *da, *db)
	}
}

// Setup runs once before the plugin starts; Cleanup runs in reverse order
// after it stops, even when setup failed, and its errors are returned.
func TestSetupAndCleanup(t *testing.T) {
	var order []string
	p := New("setup", "1.0.0")
	p.Setup(func(p *Plugin) error {
		order = append(order, "setup")
		p.Cleanup(func() error { order = append(order, "first cleanup"); return nil })
		p.Cleanup(func() error { order = append(order, "second cleanup"); return errors.New("disk full") })
		return errors.New("-dir: not a directory")
	})
	err := p.Serve(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "-dir: not a directory") || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Serve: got %v, want the setup's error and the cleanup's", err)
	}
	if want := []string{"setup", "second cleanup", "first cleanup"}; !slices.Equal(order, want) {
		t.Errorf("calls %q, want %q", order, want)
	}
}

// A setup error, and Handle's panic on a pattern from configuration, are
// the setup's error; other panics go on.
func TestCallSetup(t *testing.T) {
	h := func(ctx context.Context, e Event) (*Event, error) { return nil, nil }
	tests := []struct {
		name  string
		setup func(p *Plugin) error
		want  string // in the error; "" for none
	}{
		{"ok", func(p *Plugin) error { p.HandleFunc("com.example.a", h); return nil }, ""},
		{"error", func(p *Plugin) error { return errors.New("-dir: not a directory") }, "-dir: not a directory"},
		{"invalid pattern", func(p *Plugin) error { p.HandleFunc("com..bad", h); return nil }, "com..bad"},
		{"duplicate pattern", func(p *Plugin) error {
			p.HandleFunc("com.example.a", h)
			p.HandleFunc("com.example.a", h)
			return nil
		}, "already registered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := callSetup(New("setup", "1.0.0"), tt.setup)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("got %v, want an error saying %q", err, tt.want)
			}
		})
	}

	defer func() {
		if v := recover(); v != "a bug" {
			t.Errorf("recovered %v, want the setup's own panic to go on", v)
		}
	}()
	_ = callSetup(New("setup", "1.0.0"), func(p *Plugin) error { panic("a bug") })
	t.Error("callSetup swallowed a panic that is not plugin-kit's")
}
