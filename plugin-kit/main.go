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

	"github.com/plugbus/plugbus/bus"
)

// Main runs p as a program: it reads settings from flags and the
// environment, logs JSON (or text) to stderr, runs the plugin until SIGTERM
// or SIGINT, drains, and exits: status 0 after a clean stop, 1 on an error,
// 2 on a bad flag. Plugins may define flags of their own on
// flag.CommandLine before calling Main.
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
func Main(p *Plugin) {
	fs := flag.CommandLine
	env := func(name, def string) string {
		if v, ok := os.LookupEnv(name); ok {
			return v
		}
		return def
	}
	url := fs.String("nats-url", env("PLUGBUS_URL", "nats://127.0.0.1:4222"), "NATS server URL(s), comma-separated [PLUGBUS_URL]")
	creds := fs.String("creds", env("PLUGBUS_CREDS", ""), "NATS credentials file [PLUGBUS_CREDS]")
	nkey := fs.String("nkey", env("PLUGBUS_NKEY", ""), "file holding an nkey seed [PLUGBUS_NKEY]")
	user := fs.String("user", env("PLUGBUS_USER", ""), "NATS user; the password comes from PLUGBUS_PASSWORD [PLUGBUS_USER]")
	ca := fs.String("tls-ca", env("PLUGBUS_TLS_CA", ""), "CA certificate for NATS TLS [PLUGBUS_TLS_CA]")
	cert := fs.String("tls-cert", env("PLUGBUS_TLS_CERT", ""), "client certificate for NATS TLS [PLUGBUS_TLS_CERT]")
	key := fs.String("tls-key", env("PLUGBUS_TLS_KEY", ""), "client key for NATS TLS [PLUGBUS_TLS_KEY]")
	prefix := fs.String("prefix", env("PLUGBUS_PREFIX", p.prefix), "subject prefix [PLUGBUS_PREFIX]")
	logFormat := fs.String("log-format", env("PLUGBUS_LOG_FORMAT", "json"), "log format: json or text [PLUGBUS_LOG_FORMAT]")
	logLevel := fs.String("log-level", env("PLUGBUS_LOG_LEVEL", "info"), "log level: debug, info, warn or error [PLUGBUS_LOG_LEVEL]")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s %s: a Plugbus plugin.\n\nUsage: %s [flags]\n\nFlags:\n", p.name, p.version, os.Args[0])
		fs.PrintDefaults()
	}
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "%s: -log-level %q: want debug, info, warn or error\n", p.name, *logLevel)
		os.Exit(2)
	}
	hopts := &slog.HandlerOptions{Level: level}
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
	slog.SetDefault(logger) // a plugin without WithLogger logs here too
	p.prefix = *prefix
	p.connCfg = bus.ConnConfig{
		URLs:         strings.Split(*url, ","),
		Name:         p.name,
		CredsFile:    *creds,
		NKeySeedFile: *nkey,
		User:         *user,
		Password:     os.Getenv("PLUGBUS_PASSWORD"),
		Token:        os.Getenv("PLUGBUS_TOKEN"),
		CAFile:       *ca,
		CertFile:     *cert,
		KeyFile:      *key,
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := p.Run(ctx); err != nil {
		logger.Error("plugin failed", "plugin", p.name, "err", err)
		stop()
		os.Exit(1)
	}
}
