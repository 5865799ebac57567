// Package webhook is a plugin that delivers events of configured types to
// HTTP endpoints as CloudEvents in HTTP binary content mode, retrying failed
// deliveries with backoff and reporting the ones that fail for good as
// io.plugbus.webhook.failed events. See README.md; its program is in
// cmd/webhook.
package webhook

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// The plugin's name and version.
const (
	Name    = "webhook"
	Version = "0.1.0"
)

func init() { pluginkit.Register(Name, New) }

// config is what the settings set beside the Deliverer.
type config struct {
	types       []string
	concurrency int
}

// New returns the webhook plugin with its settings (see README.md) defined
// on its flag set, each bound to an environment variable. When it starts,
// it checks them and registers the [Deliverer] they configure.
func New() *pluginkit.Plugin {
	p := newPlugin()
	p.Setup(defineFlags(p.Flags()))
	for _, flag := range []string{"url", "types", "producers", "header", "max-attempts", "timeout", "backoff", "max-backoff", "concurrency", "emit-delivered"} {
		env := "PLUGBUS_WEBHOOK_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
		if flag == "header" {
			env = "PLUGBUS_WEBHOOK_HEADERS" // several, one a line
		}
		p.BindEnv(flag, env)
	}
	return p
}

// defineFlags defines the plugin's flags on fs. Once fs is parsed, the
// setup it returns checks them and registers the Deliverer they configure.
func defineFlags(fs *flag.FlagSet) (setup func(*pluginkit.Plugin) error) {
	d := &Deliverer{Header: http.Header{}, Self: Name, UserAgent: "plugbus-" + Name + "/" + Version}
	fs.Func("url", "endpoint URL; repeat the flag or separate URLs with commas", func(v string) error {
		d.URLs = append(d.URLs, list(v)...)
		return nil
	})
	types := fs.String("types", "com.example.>", "event type patterns to deliver, comma-separated; NATS wildcards * and > allowed")
	producers := fs.String("producers", "", "deliver only events from these producers, comma-separated; empty: from any")
	fs.Func("header", `extra request header "Name: value", such as an Authorization header; repeatable (newline-separated in the environment)`, func(v string) error {
		return addHeaders(d.Header, v)
	})
	fs.IntVar(&d.MaxAttempts, "max-attempts", 5, "tries per endpoint and event, the first included")
	fs.DurationVar(&d.Timeout, "timeout", 10*time.Second, "time limit of each attempt")
	fs.DurationVar(&d.Backoff, "backoff", 500*time.Millisecond, "wait before the first retry; doubles for each further one")
	fs.DurationVar(&d.MaxBackoff, "max-backoff", 30*time.Second, "longest wait between retries, Retry-After included")
	concurrency := fs.Int("concurrency", 64, "events delivered at once")
	fs.BoolVar(&d.EmitDelivered, "emit-delivered", false, "emit io.plugbus.webhook.delivered after each successful delivery")
	return func(p *pluginkit.Plugin) error {
		d.Producers = list(*producers)
		cfg := config{types: list(*types), concurrency: *concurrency}
		if err := validate(d, cfg); err != nil {
			return err
		}
		handle(p, d, cfg)
		return nil
	}
}

func newPlugin() *pluginkit.Plugin {
	return pluginkit.New(Name, Version,
		pluginkit.WithDescription("delivers events to HTTP endpoints as CloudEvents (binary mode), with retries"),
		pluginkit.WithEmits(TypeFailed, TypeDelivered),
	)
}

// handle registers d for each of cfg's type patterns.
func handle(p *pluginkit.Plugin, d *Deliverer, cfg config) {
	for _, t := range cfg.types {
		p.Handle(t, d, pluginkit.Concurrency(cfg.concurrency))
	}
}

// list splits a comma-separated setting, dropping spaces and empty items.
func list(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

func validate(d *Deliverer, cfg config) error {
	var errs []error
	if len(d.URLs) == 0 {
		errs = append(errs, errors.New("no endpoint: set -url or PLUGBUS_WEBHOOK_URL"))
	}
	for _, u := range d.URLs {
		if err := checkURL(u); err != nil {
			errs = append(errs, fmt.Errorf("-url: %w", err))
		}
	}
	if len(cfg.types) == 0 {
		errs = append(errs, errors.New("-types: no event type pattern"))
	}
	if d.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("-max-attempts %d: must be at least 1", d.MaxAttempts))
	}
	if d.Timeout < 0 || d.Backoff < 0 || d.MaxBackoff < d.Backoff {
		errs = append(errs, errors.New("-timeout and -backoff must not be negative, and -max-backoff must be at least -backoff"))
	}
	if cfg.concurrency < 1 {
		errs = append(errs, fmt.Errorf("-concurrency %d: must be at least 1", cfg.concurrency))
	}
	return errors.Join(errs...)
}

// addHeaders adds the "Name: value" headers in v to h, one per line (the
// environment variable holds several lines).
func addHeaders(h http.Header, v string) error {
	for _, line := range strings.Split(v, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, val, err := parseHeader(line)
		if err != nil {
			return err
		}
		h.Add(k, val)
	}
	return nil
}
