package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/plugbus/plugbus/coordinator"
	"github.com/plugbus/plugbus/internal/tracing"
)

// serveFlags are the serve command's settings. Each may also come from an
// environment variable; a flag given on the command line wins over the
// environment, which wins over the configuration file.
type serveFlags struct {
	configFile, natsListen, httpListen, dataDir, natsURL, prefix string
	natsToken, natsUser, httpToken                               string
	goneAfter                                                    time.Duration
	secure                                                       bool
	natsTLS, httpTLS                                             coordinator.TLSSettings
	logFormat, logLevel                                          string

	serverName, clusterName, clusterListen, routes, clusterUser string
	leafRemotes, leafListen, leafUser                           string
	replicas                                                    int
	durable, syncAlways                                         bool
}

var serveEnv = map[string]string{
	"nats-listen":     "PLUGBUS_NATS_LISTEN",
	"http-listen":     "PLUGBUS_HTTP_LISTEN",
	"data-dir":        "PLUGBUS_DATA_DIR",
	"nats-url":        "PLUGBUS_NATS_URL",
	"config":          "PLUGBUS_CONFIG",
	"prefix":          "PLUGBUS_PREFIX",
	"nats-token":      "PLUGBUS_NATS_TOKEN",
	"nats-user":       "PLUGBUS_NATS_USER",
	"http-token":      "PLUGBUS_HTTP_TOKEN",
	"gone-after":      "PLUGBUS_GONE_AFTER",
	"secure":          "PLUGBUS_SECURE",
	"nats-tls-cert":   "PLUGBUS_NATS_TLS_CERT",
	"nats-tls-key":    "PLUGBUS_NATS_TLS_KEY",
	"nats-tls-ca":     "PLUGBUS_NATS_TLS_CA",
	"nats-tls-verify": "PLUGBUS_NATS_TLS_VERIFY",
	"http-tls-cert":   "PLUGBUS_HTTP_TLS_CERT",
	"http-tls-key":    "PLUGBUS_HTTP_TLS_KEY",
	"log-format":      "PLUGBUS_LOG_FORMAT",
	"log-level":       "PLUGBUS_LOG_LEVEL",

	"server-name":    "PLUGBUS_SERVER_NAME",
	"cluster-name":   "PLUGBUS_CLUSTER_NAME",
	"cluster-listen": "PLUGBUS_CLUSTER_LISTEN",
	"routes":         "PLUGBUS_ROUTES",
	"cluster-user":   "PLUGBUS_CLUSTER_USER",
	"leaf-remotes":   "PLUGBUS_LEAF_REMOTES",
	"leaf-listen":    "PLUGBUS_LEAF_LISTEN",
	"leaf-user":      "PLUGBUS_LEAF_USER",
	"replicas":       "PLUGBUS_REPLICAS",
	"durable":        "PLUGBUS_DURABLE",
	"sync-always":    "PLUGBUS_SYNC_ALWAYS",
}

func newServeCmd() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the coordinator (the default command)",
		Long: `Run the coordinator: the NATS bus (embedded, or external with --nats-url), the
registry of plugins, the HTTP API and dashboard, and the plugins listed in --config.

It listens on loopback only unless authentication is configured: NATS beyond
loopback runs in secure mode (every plugin its own nkey, see "coordinator plugins
add"; --secure turns it on for loopback too), HTTP beyond loopback needs an HTTP token.
Every flag can also be set from the environment variable shown in brackets.
The NATS password comes from PLUGBUS_NATS_PASSWORD only, the cluster's from
PLUGBUS_CLUSTER_PASSWORD, the leaf nodes' from PLUGBUS_LEAF_PASSWORD.

Several coordinators can share one bus: their embedded servers form a
cluster (--cluster-listen, --routes, a --server-name each), or they all
connect to an external cluster (--nats-url). One of them, holding a lease
in the bus's key-value store, announces plugins turning unhealthy.`,
		Example: `  coordinator serve
  coordinator serve --config examples/demo.yaml
  coordinator serve --nats-url nats://nats1:4222,nats://nats2:4222
  PLUGBUS_HTTP_LISTEN=127.0.0.1:9090 coordinator serve --nats-listen 127.0.0.1:4333 --data-dir /tmp/pb2
  # one of three coordinators whose embedded servers form a cluster
  PLUGBUS_CLUSTER_PASSWORD=s3cret coordinator serve --server-name n1 --nats-listen 0.0.0.0:4222 --nats-token t \
    --cluster-listen 0.0.0.0:6222 --cluster-user route --routes nats://n2:6222,nats://n3:6222 \
    --durable --replicas 3 --sync-always --http-listen 0.0.0.0:8090 --http-token h
  # an edge host: a leaf node of the hub, its plugins keep talking while the hub is away
  coordinator serve --leaf-remotes nats-leaf://leaf:secret@hub:7422`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(f.logFormat, f.logLevel)
			if err != nil {
				return err
			}
			cfg, err := f.resolve(cmd.Flags())
			if err != nil {
				return err
			}
			tp, flushSpans, err := tracing.FromEnv("plugbus-coordinator", version)
			if err != nil {
				return err
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := flushSpans(ctx); err != nil {
					logger.Warn("could not send the last spans", "err", err)
				}
			}()
			cfg.TracerProvider = tp
			c, err := coordinator.New(cfg, logger)
			if err != nil {
				return err
			}
			return c.Run(cmd.Context())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.configFile, "config", "", "YAML configuration file (settings and plugins to run)")
	fl.StringVar(&f.natsListen, "nats-listen", coordinator.DefaultNATSListen, "address of the embedded NATS server")
	fl.StringVar(&f.httpListen, "http-listen", coordinator.DefaultHTTPListen, "address of the HTTP API and dashboard")
	fl.StringVar(&f.dataDir, "data-dir", "", "directory for the embedded server's data (default $TMPDIR/plugbus)")
	fl.StringVar(&f.natsURL, "nats-url", "", "use this external NATS server or cluster (comma-separated URLs) instead of the embedded one")
	fl.StringVar(&f.prefix, "prefix", "plugbus", "subject prefix")
	fl.StringVar(&f.natsToken, "nats-token", "", "token NATS clients must present (and the coordinator presents to external NATS)")
	fl.StringVar(&f.natsUser, "nats-user", "", "NATS user name; the password comes from PLUGBUS_NATS_PASSWORD")
	fl.StringVar(&f.httpToken, "http-token", "", "bearer token the HTTP API requires on /v1/")
	fl.BoolVar(&f.secure, "secure", false, "secure mode: every plugin connects to the embedded NATS server with its own nkey and least privileges (default: on when --nats-listen is not loopback)")
	fl.StringVar(&f.natsTLS.Cert, "nats-tls-cert", "", "TLS certificate of the embedded NATS server (PEM); clients must then use TLS")
	fl.StringVar(&f.natsTLS.Key, "nats-tls-key", "", "TLS key of the embedded NATS server (PEM)")
	fl.StringVar(&f.natsTLS.CA, "nats-tls-ca", "", "CA of NATS client certificates, also handed to supervised plugins to trust the server")
	fl.BoolVar(&f.natsTLS.Verify, "nats-tls-verify", false, "require NATS clients to present a certificate signed by --nats-tls-ca")
	fl.StringVar(&f.httpTLS.Cert, "http-tls-cert", "", "TLS certificate of the HTTP API (PEM): serve HTTPS")
	fl.StringVar(&f.httpTLS.Key, "http-tls-key", "", "TLS key of the HTTP API (PEM)")
	fl.DurationVar(&f.goneAfter, "gone-after", 5*time.Second, "mark an instance gone after this long without answering discovery")
	fl.StringVar(&f.serverName, "server-name", "", "name of the embedded NATS server, unique in a cluster and stable across restarts (default: host name and NATS port)")
	fl.StringVar(&f.clusterName, "cluster-name", "plugbus", "cluster name, the same on every server")
	fl.StringVar(&f.clusterListen, "cluster-listen", "", "address where the embedded server accepts routes from the other cluster servers, such as 0.0.0.0:6222")
	fl.StringVar(&f.routes, "routes", "", "the other cluster servers' route URLs, comma-separated, such as nats://n2:6222,nats://n3:6222")
	fl.StringVar(&f.clusterUser, "cluster-user", "", "user routes present; the password comes from PLUGBUS_CLUSTER_PASSWORD")
	fl.StringVar(&f.leafRemotes, "leaf-remotes", "", "connect the embedded server as a leaf node to these hub URLs, comma-separated, such as nats-leaf://user:pw@hub:7422")
	fl.StringVar(&f.leafListen, "leaf-listen", "", "address where the embedded server accepts leaf nodes, such as 0.0.0.0:7422")
	fl.StringVar(&f.leafUser, "leaf-user", "", "user leaf nodes present; the password comes from PLUGBUS_LEAF_PASSWORD")
	fl.IntVar(&f.replicas, "replicas", 0, "copies of every stream and key-value bucket the coordinator creates (3 in a 3-server cluster; default 1)")
	fl.BoolVar(&f.durable, "durable", false, "durable delivery for the whole deployment (JetStream streams; HTTP events acknowledged once stored)")
	fl.BoolVar(&f.syncAlways, "sync-always", false, "the embedded server syncs every stored event to disk before acknowledging it")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fl.VisitAll(func(fl *pflag.Flag) {
		if env := serveEnv[fl.Name]; env != "" {
			fl.Usage += " [" + env + "]"
		}
	})
	return cmd
}

// config merges the configuration file, the environment and the flags.
func (f *serveFlags) resolve(fl *pflag.FlagSet) (coordinator.Config, error) {
	// Environment variables fill flags not given on the command line.
	var envErr error
	fl.VisitAll(func(flag *pflag.Flag) {
		env := serveEnv[flag.Name]
		if v, ok := os.LookupEnv(env); ok && env != "" && !flag.Changed {
			if err := fl.Set(flag.Name, v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s=%q: %v", env, v, err)
			}
		}
	})
	if envErr != nil {
		return coordinator.Config{}, envErr
	}
	var cfg coordinator.Config
	if f.configFile != "" {
		var err error
		if cfg, err = coordinator.LoadConfig(f.configFile); err != nil {
			return cfg, err
		}
	}
	// A setting given as a flag or in the environment wins over the file;
	// the file wins over a flag's default.
	set := func(name string) bool { return fl.Changed(name) || f.configFile == "" }
	if set("nats-listen") {
		cfg.NATSListen = f.natsListen
	}
	if set("http-listen") {
		cfg.HTTPListen = f.httpListen
	}
	if set("data-dir") && f.dataDir != "" {
		cfg.DataDir = f.dataDir
	}
	if f.natsURL != "" {
		cfg.NATSURLs = strings.Split(f.natsURL, ",")
	}
	if set("prefix") {
		cfg.Prefix = f.prefix
	}
	if f.natsToken != "" {
		cfg.NATSToken = f.natsToken
	}
	if f.natsUser != "" {
		cfg.NATSUser = f.natsUser
	}
	if pw := os.Getenv("PLUGBUS_NATS_PASSWORD"); pw != "" {
		cfg.NATSPassword = pw
	}
	if f.httpToken != "" {
		cfg.HTTPToken = f.httpToken
	}
	for name, dst := range map[string]*string{
		"nats-tls-cert": &cfg.NATSTLS.Cert, "nats-tls-key": &cfg.NATSTLS.Key, "nats-tls-ca": &cfg.NATSTLS.CA,
		"http-tls-cert": &cfg.HTTPTLS.Cert, "http-tls-key": &cfg.HTTPTLS.Key,
	} {
		if fl.Changed(name) {
			*dst = fl.Lookup(name).Value.String()
		}
	}
	if fl.Changed("nats-tls-verify") {
		cfg.NATSTLS.Verify = f.natsTLS.Verify
	}
	if fl.Changed("secure") {
		cfg.Secure = &f.secure
	}
	if set("gone-after") {
		cfg.GoneAfter = coordinator.Duration(f.goneAfter)
	}
	if f.serverName != "" {
		cfg.ServerName = f.serverName
	}
	if fl.Changed("cluster-name") {
		cfg.Cluster.Name = f.clusterName
	}
	if f.clusterListen != "" {
		cfg.Cluster.Listen = f.clusterListen
	}
	if f.routes != "" {
		cfg.Cluster.Routes = strings.Split(f.routes, ",")
	}
	if f.clusterUser != "" {
		cfg.Cluster.User = f.clusterUser
	}
	if pw := os.Getenv("PLUGBUS_CLUSTER_PASSWORD"); pw != "" {
		cfg.Cluster.Password = pw
	}
	if f.leafRemotes != "" {
		cfg.Leaf.Remotes = strings.Split(f.leafRemotes, ",")
	}
	if f.leafListen != "" {
		cfg.Leaf.Listen = f.leafListen
	}
	if f.leafUser != "" {
		cfg.Leaf.User = f.leafUser
	}
	if pw := os.Getenv("PLUGBUS_LEAF_PASSWORD"); pw != "" {
		cfg.Leaf.Password = pw
	}
	if f.replicas != 0 {
		cfg.Stream.Replicas = f.replicas
	}
	if f.durable {
		cfg.Durable = true
	}
	if f.syncAlways {
		cfg.SyncAlways = true
	}
	return cfg, nil
}

// durationsAsText logs durations as "10s" in JSON too, where slog writes
// nanoseconds (and a reader of floats then shows 1e+10).
func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

func newLogger(format, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l, ReplaceAttr: durationsAsText}
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(os.Stderr, opts)
	case "json":
		h = slog.NewJSONHandler(os.Stderr, opts)
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
	logger := slog.New(h)
	slog.SetDefault(logger)
	return logger, nil
}
