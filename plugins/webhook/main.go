// Command webhook delivers events of configured types to HTTP endpoints as
// CloudEvents in HTTP binary content mode, retrying failed deliveries with
// backoff and reporting the ones that fail for good as
// io.plugbus.webhook.failed events. See README.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

const (
	name    = "webhook"
	version = "0.1.0"
)

// config is what the command line and environment set.
type config struct {
	types       []string
	concurrency int
}

func main() {
	s := newSettings(name)
	urls := newListFlag()
	s.Var(urls, "url", "PLUGBUS_WEBHOOK_URL", "endpoint URL; repeat the flag or separate URLs with commas")
	types := newListFlag("com.example.>")
	s.Var(types, "types", "PLUGBUS_WEBHOOK_TYPES", "event type patterns to deliver, comma-separated; NATS wildcards * and > allowed")
	headers := &headerFlag{}
	s.Var(headers, "header", "PLUGBUS_WEBHOOK_HEADERS", `extra request header "Name: value", such as an Authorization header; repeatable (newline-separated in the environment)`)
	attempts := s.Int("max-attempts", "PLUGBUS_WEBHOOK_MAX_ATTEMPTS", 5, "tries per endpoint and event, the first included")
	timeout := s.Duration("timeout", "PLUGBUS_WEBHOOK_TIMEOUT", 10*time.Second, "time limit of each attempt")
	backoff := s.Duration("backoff", "PLUGBUS_WEBHOOK_BACKOFF", 500*time.Millisecond, "wait before the first retry; doubles for each further one")
	maxBackoff := s.Duration("max-backoff", "PLUGBUS_WEBHOOK_MAX_BACKOFF", 30*time.Second, "longest wait between retries, Retry-After included")
	concurrency := s.Int("concurrency", "PLUGBUS_WEBHOOK_CONCURRENCY", 64, "events delivered at once")
	emitDelivered := s.Bool("emit-delivered", "PLUGBUS_WEBHOOK_EMIT_DELIVERED", false, "emit io.plugbus.webhook.delivered after each successful delivery")

	err := s.parse(os.Args[1:], flag.CommandLine)
	d := &Deliverer{
		URLs:          urls.values,
		Header:        headers.h,
		MaxAttempts:   *attempts,
		Timeout:       *timeout,
		Backoff:       *backoff,
		MaxBackoff:    *maxBackoff,
		EmitDelivered: *emitDelivered,
		Self:          name,
		UserAgent:     "plugbus-" + name + "/" + version,
	}
	cfg := config{types: types.values, concurrency: *concurrency}
	if err == nil {
		err = validate(d, cfg)
	}
	if errors.Is(err, errHelp) {
		cfg = config{types: []string{"com.example.>"}, concurrency: 1}
	} else if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	p, err := newPlugin(d, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	pluginkit.Main(p) // parses the rest of the flags (and prints -h); runs until SIGTERM
}

// newPlugin returns the webhook plugin delivering cfg's types through d.
func newPlugin(d *Deliverer, cfg config) (*pluginkit.Plugin, error) {
	p := pluginkit.New(name, version,
		pluginkit.WithDescription("delivers events to HTTP endpoints as CloudEvents (binary mode), with retries"),
		pluginkit.WithEmits(TypeFailed, TypeDelivered),
	)
	for _, t := range cfg.types {
		if err := handle(p, t, d, pluginkit.Concurrency(cfg.concurrency)); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// handle is p.Handle returning an error instead of panicking on a bad
// pattern, which here comes from configuration, not from the program.
func handle(p *pluginkit.Plugin, pattern string, h pluginkit.Handler, opts ...pluginkit.HandleOption) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("-types: %v", v)
		}
	}()
	p.Handle(pattern, h, opts...)
	return nil
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

// headerFlag collects "Name: value" headers; a value holding several lines
// (from the environment) gives one header per line.
type headerFlag struct{ h http.Header }

func (f *headerFlag) String() string {
	if f == nil || len(f.h) == 0 {
		return ""
	}
	names := make([]string, 0, len(f.h))
	for k := range f.h {
		names = append(names, k+": ...") // values may be secrets
	}
	return strings.Join(names, ", ")
}

func (f *headerFlag) Set(v string) error {
	for _, line := range strings.Split(v, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, val, err := parseHeader(line)
		if err != nil {
			return err
		}
		if f.h == nil {
			f.h = http.Header{}
		}
		f.h.Add(k, val)
	}
	return nil
}
