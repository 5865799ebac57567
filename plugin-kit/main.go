package pluginkit

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Main runs p as a program: it reads settings from flags and the
// environment, logs JSON (or text) to stderr, runs the plugin until SIGTERM
// or SIGINT, and drains. After a clean stop it returns, so main can flush
// what it holds; on an error it exits with status 1, and with 2 on a bad
// setting. The plugin's own settings are the flags on [Plugin.Flags], with
// environment variables bound by [Plugin.BindEnv]; Main parses them with
// the connection settings below, then calls the functions given to
// [Plugin.Setup] (an error there is a bad setting too).
//
// Settings, flag and environment variable (the flag wins):
//
//	-nats-url   PLUGBUS_URL        NATS server URL(s), comma-separated (default nats://127.0.0.1:4222)
//	-creds      PLUGBUS_CREDS      NATS credentials file (user JWT and nkey seed)
//	-nkey       PLUGBUS_NKEY       file holding an nkey seed
//	-user       PLUGBUS_USER       NATS user name (password from PLUGBUS_PASSWORD)
//	-token      PLUGBUS_TOKEN      NATS authentication token (environment only)
//	-tls-ca     PLUGBUS_TLS_CA     CA certificate to trust for NATS TLS
//	-tls-cert   PLUGBUS_TLS_CERT   client certificate for NATS mutual TLS
//	-tls-key    PLUGBUS_TLS_KEY    client key for NATS mutual TLS
//	-prefix     PLUGBUS_PREFIX     subject prefix (default plugbus)
//	-log-format PLUGBUS_LOG_FORMAT json or text (default json)
//	-log-level  PLUGBUS_LOG_LEVEL  debug, info, warn or error (default info)
//	-drain-timeout PLUGBUS_DRAIN_TIMEOUT  wait for running handlers on stop (default 10s)
//	-durable    PLUGBUS_DURABLE    durable delivery through JetStream (see WithDurable)
//	-effectively-once PLUGBUS_EFFECTIVELY_ONCE  with -durable, never run a handler twice for one event
//
// With PLUGBUS_STDIO=1 in the environment (the coordinator sets it for a
// plugin whose spec says stdio: true), and always when the program is built
// for GOOS=wasip1 (a WebAssembly plugin), Main serves the plugin over the
// stdio protocol with [Plugin.ServeStdio] instead of connecting to NATS;
// the connection settings are then unused.
//
// With OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
// set, and no [WithTracerProvider], Main traces the plugin and exports the
// spans with OTLP over HTTP, as the other OTEL_ variables say
// (OTEL_SERVICE_NAME defaults to the plugin's name); it sends the last
// spans before returning.
//
// Main is for a program's main function: it reads os.Args and the
// environment and may exit the process. A plugin without [WithLogger] logs
// to the logger Main builds; Main leaves slog's default logger alone.
func Main(p *Plugin) {
	fs := p.flags
	env := func(name, def string) string {
		if v, ok := os.LookupEnv(name); ok {
			return v
		}
		return def
	}
	// A WithConnConfig given to New supplies the defaults; flags and the
	// environment override it field by field.
	given := p.connCfg
	defaultURL := "nats://127.0.0.1:4222"
	if len(given.URLs) > 0 {
		defaultURL = strings.Join(given.URLs, ",")
	}
	url := fs.String("nats-url", env("PLUGBUS_URL", defaultURL), "NATS server URL(s), comma-separated [PLUGBUS_URL]")
	creds := fs.String("creds", env("PLUGBUS_CREDS", given.CredsFile), "NATS credentials file [PLUGBUS_CREDS]")
	nkey := fs.String("nkey", env("PLUGBUS_NKEY", given.NKeySeedFile), "file holding an nkey seed [PLUGBUS_NKEY]")
	user := fs.String("user", env("PLUGBUS_USER", given.User), "NATS user; the password comes from PLUGBUS_PASSWORD [PLUGBUS_USER]")
	ca := fs.String("tls-ca", env("PLUGBUS_TLS_CA", given.CAFile), "CA certificate for NATS TLS [PLUGBUS_TLS_CA]")
	cert := fs.String("tls-cert", env("PLUGBUS_TLS_CERT", given.CertFile), "client certificate for NATS TLS [PLUGBUS_TLS_CERT]")
	key := fs.String("tls-key", env("PLUGBUS_TLS_KEY", given.KeyFile), "client key for NATS TLS [PLUGBUS_TLS_KEY]")
	prefix := fs.String("prefix", env("PLUGBUS_PREFIX", p.prefix), "subject prefix [PLUGBUS_PREFIX]")
	logFormat := fs.String("log-format", env("PLUGBUS_LOG_FORMAT", "json"), "log format: json or text [PLUGBUS_LOG_FORMAT]")
	logLevel := fs.String("log-level", env("PLUGBUS_LOG_LEVEL", "info"), "log level: debug, info, warn or error [PLUGBUS_LOG_LEVEL]")
	drain := fs.String("drain-timeout", env("PLUGBUS_DRAIN_TIMEOUT", p.drainTimeout.String()), "wait this long for running handlers on stop [PLUGBUS_DRAIN_TIMEOUT]")
	durable := fs.Bool("durable", env("PLUGBUS_DURABLE", "") == "true" || env("PLUGBUS_DURABLE", "") == "1", "durable delivery through JetStream: at least once, retries, dead letters [PLUGBUS_DURABLE]")
	once := fs.Bool("effectively-once", env("PLUGBUS_EFFECTIVELY_ONCE", "") == "true" || env("PLUGBUS_EFFECTIVELY_ONCE", "") == "1", "with -durable: record handled events so a redelivery never runs a handler twice [PLUGBUS_EFFECTIVELY_ONCE]")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s %s: a Plugbus plugin.\n\n", p.name, p.version)
		if p.description != "" {
			fmt.Fprintf(fs.Output(), "%s\n\n", p.description)
		}
		fmt.Fprintf(fs.Output(), "Usage: %s [flags]\n\nFlags:\n", os.Args[0])
		fs.PrintDefaults()
	}
	fs.Init(os.Args[0], flag.ExitOnError)
	_ = fs.Parse(os.Args[1:]) // ExitOnError: exits on a bad flag, and after -h
	if err := setFromEnv(fs, p.envFlags, os.LookupEnv); err != nil {
		exitBadConfig(p, err)
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "%s: -log-level %q: want debug, info, warn or error\n", p.name, *logLevel)
		os.Exit(2)
	}
	hopts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationsAsText}
	var h slog.Handler
	switch *logFormat {
	case "json":
		h = slog.NewJSONHandler(os.Stderr, hopts)
	case "text":
		h = slog.NewTextHandler(os.Stderr, hopts)
	default:
		fmt.Fprintf(os.Stderr, "%s: -log-format %q: want json or text\n", p.name, *logFormat)
		os.Exit(2)
	}
	logger := slog.New(h)
	if p.logger == nil {
		p.logger = logger
	}
	d, err := time.ParseDuration(*drain)
	if err != nil || d <= 0 {
		fmt.Fprintf(os.Stderr, "%s: -drain-timeout %q: want a duration such as 10s\n", p.name, *drain)
		os.Exit(2)
	}
	p.drainTimeout = d
	if (*durable || *once) && p.durable == nil {
		WithDurable(Durable{EffectivelyOnce: *once})(p)
	} else if *once {
		p.durable.EffectivelyOnce = true
	}
	p.prefix = *prefix
	cfg := given
	cfg.URLs = strings.Split(*url, ",")
	if cfg.Name == "" {
		cfg.Name = p.name
	}
	cfg.CredsFile, cfg.NKeySeedFile, cfg.User = *creds, *nkey, *user
	cfg.Password = env("PLUGBUS_PASSWORD", given.Password)
	cfg.Token = env("PLUGBUS_TOKEN", given.Token)
	cfg.CAFile, cfg.CertFile, cfg.KeyFile = *ca, *cert, *key
	p.connCfg = cfg
	if err := p.setUp(); err != nil {
		var none error
		p.cleanUp(&none)
		exitBadConfig(p, err)
	}

	flushSpans, err := tracerFromEnv(p)
	if err != nil {
		exitBadConfig(p, err)
	}
	defer flushSpans()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if stdioOnly || os.Getenv("PLUGBUS_STDIO") == "1" {
		// Served by a coordinator's bridge: no NATS, and stdout is the
		// protocol's (logs go to stderr as always).
		if err := p.ServeStdio(ctx, os.Stdin, os.Stdout); err != nil {
			p.logger.Error("plugin failed", "plugin", p.name, "err", err)
			stop()
			flushSpans()
			os.Exit(1)
		}
		return
	}
	if err := p.Run(ctx); err != nil {
		p.logger.Error("plugin failed", "plugin", p.name, "err", err)
		stop()
		flushSpans()
		os.Exit(1)
	}
}

// exitBadConfig reports a bad setting of plugin p and exits with status 2,
// as the flag package does on a bad flag.
func exitBadConfig(p *Plugin, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", p.name, err)
	os.Exit(2)
}
