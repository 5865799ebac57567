// Command ledger is the plugin of the fault tests (package faults). It is a
// durable plugin whose handler's effect is one line, "<event id>\n",
// appended to an effects file (O_APPEND, fsync), so a test can count how
// many times each event had its effect. How the handler behaves on an event
// is driven by the event's data:
//
//	{"sleep":"3s"}           sleep (watching the context) before the effect
//	{"fail":"always"}        return an error: retried, then a dead letter
//	{"panic":true}           panic (plugin-kit turns it into an error)
//	{"crash":"always"}       exit with status 137 before the effect, every time
//	{"crash":"after-effect"} exit with status 137 right after the effect,
//	                         before the handler returns (so before plugin-kit
//	                         records the event as handled and acknowledges it)
//
// The crash modes are obeyed only while LEDGER_CRASH is not "off", so that a
// test can restart a crashed plugin without it crashing again.
//
// Before anything else the handler appends "<event id> <pid>\n" to a calls
// file (fsync), so a test knows a handler started and how often.
//
// Settings, all from the environment (plugin-kit's own PLUGBUS_* settings
// apply too: PLUGBUS_URL, PLUGBUS_EFFECTIVELY_ONCE, PLUGBUS_LOG_LEVEL...):
//
//	LEDGER_NAME             plugin name (default "ledger")
//	LEDGER_TYPES            type pattern handled (default com.example.ledger.>)
//	LEDGER_DIR              directory of the files "effects" and "calls" (required)
//	LEDGER_DELAY            how long every handler takes before its effect (default 0)
//	LEDGER_CRASH            "off" ignores the crash modes (default on)
//	LEDGER_CONCURRENCY      handler concurrency (default plugin-kit's)
//	LEDGER_MAX_DELIVER      Durable.MaxDeliver
//	LEDGER_BACKOFF          Durable.Backoff, comma-separated durations
//	LEDGER_ACK_WAIT         Durable.AckWait
//	LEDGER_MAX_ACK_PENDING  Durable.MaxAckPending
//
// With LEDGER_MODE=publish it is no plugin but a publisher: it publishes an
// event of type LEDGER_PUBLISH_TYPE every LEDGER_PUBLISH_EVERY with
// bus.PublishDurable (ids p-0, p-1, ...) as producer LEDGER_NAME, and appends
// the id of every event the stream acknowledged to LEDGER_DIR/published,
// until SIGTERM.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/bus"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// order is what an event's data may ask of the handler.
type order struct {
	Sleep string `json:"sleep"`
	Fail  string `json:"fail"`
	Panic bool   `json:"panic"`
	Crash string `json:"crash"`
}

func main() {
	dir := os.Getenv("LEDGER_DIR")
	if dir == "" {
		fatal(errors.New("LEDGER_DIR is not set"))
	}
	name := envOr("LEDGER_NAME", "ledger")
	if os.Getenv("LEDGER_MODE") == "publish" {
		publish(name, dir)
		return
	}

	d := pluginkit.Durable{StartAt: pluginkit.StartAll}
	var err error
	if d.MaxDeliver, err = envInt("LEDGER_MAX_DELIVER"); err != nil {
		fatal(err)
	}
	if d.MaxAckPending, err = envInt("LEDGER_MAX_ACK_PENDING"); err != nil {
		fatal(err)
	}
	if d.AckWait, err = envDuration("LEDGER_ACK_WAIT"); err != nil {
		fatal(err)
	}
	if v := os.Getenv("LEDGER_BACKOFF"); v != "" {
		for _, s := range strings.Split(v, ",") {
			b, err := time.ParseDuration(s)
			if err != nil {
				fatal(fmt.Errorf("LEDGER_BACKOFF: %w", err))
			}
			d.Backoff = append(d.Backoff, b)
		}
	}
	delay, err := envDuration("LEDGER_DELAY")
	if err != nil {
		fatal(err)
	}
	concurrency, err := envInt("LEDGER_CONCURRENCY")
	if err != nil {
		fatal(err)
	}
	crashes := os.Getenv("LEDGER_CRASH") != "off"

	effects, err := os.OpenFile(filepath.Join(dir, "effects"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		fatal(err)
	}
	calls, err := os.OpenFile(filepath.Join(dir, "calls"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		fatal(err)
	}
	appendLine := func(f *os.File, line string) error {
		if _, err := f.WriteString(line + "\n"); err != nil {
			return err
		}
		return f.Sync()
	}

	opts := []pluginkit.Option{pluginkit.WithDurable(d)}
	if concurrency > 0 {
		opts = append(opts, pluginkit.WithConcurrency(concurrency))
	}
	p := pluginkit.New(name, "1.0.0", opts...)
	p.HandleFunc(envOr("LEDGER_TYPES", "com.example.ledger.>"), func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		if err := appendLine(calls, e.ID()+" "+strconv.Itoa(os.Getpid())); err != nil {
			return nil, err
		}
		var o order
		if len(e.Data()) > 0 {
			if err := e.DataAs(&o); err != nil {
				return nil, pluginkit.Permanent(err)
			}
		}
		if crashes && o.Crash == "always" {
			os.Exit(137)
		}
		if o.Panic {
			panic("ledger: asked to panic on " + e.ID())
		}
		if o.Fail != "" {
			return nil, errors.New("ledger: asked to fail on " + e.ID())
		}
		wait := delay
		if o.Sleep != "" {
			s, err := time.ParseDuration(o.Sleep)
			if err != nil {
				return nil, pluginkit.Permanent(err)
			}
			wait += s
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			case <-t.C:
			}
		}
		if err := appendLine(effects, e.ID()); err != nil {
			return nil, err
		}
		if crashes && o.Crash == "after-effect" {
			os.Exit(137)
		}
		return nil, nil
	})
	pluginkit.Main(p)
}

// publish runs the publisher mode.
func publish(name, dir string) {
	typ := envOr("LEDGER_PUBLISH_TYPE", "com.example.ledger.ticked")
	every, err := envDuration("LEDGER_PUBLISH_EVERY")
	if err != nil || every <= 0 {
		fatal(fmt.Errorf("LEDGER_PUBLISH_EVERY: want a positive duration (%v)", err))
	}
	published, err := os.OpenFile(filepath.Join(dir, "published"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("publisher", name)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	nc, err := bus.Connect(ctx, bus.ConnConfig{URLs: strings.Split(envOr("PLUGBUS_URL", "nats://127.0.0.1:4222"), ","), Name: name})
	if err != nil {
		fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fatal(err)
	}
	log.Info("publishing", "type", typ, "every", every)
	t := time.NewTicker(every)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			log.Info("stopped", "published", n)
			return
		case <-t.C:
		}
		e := pluginkit.NewEvent(typ, map[string]int{"n": n})
		e.SetID("p-" + strconv.Itoa(n))
		pctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := bus.PublishDurable(pctx, js, bus.DefaultPrefix, name, e)
		cancel()
		if err != nil {
			log.Warn("not acknowledged", "id", e.ID(), "err", err)
			continue
		}
		if _, err := published.WriteString(e.ID() + "\n"); err != nil {
			fatal(err)
		}
		if err := published.Sync(); err != nil {
			fatal(err)
		}
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(name string) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return n, nil
}

func envDuration(name string) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return d, nil
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "ledger:", err)
	os.Exit(2)
}
