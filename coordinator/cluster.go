package coordinator

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// ClusterSettings join the embedded NATS server to other NATS servers
// (embedded in other coordinators, or plain nats-server) through routes,
// so that they form one cluster: clients of any server reach every other,
// and JetStream keeps stream.replicas copies of every stream on different
// servers.
type ClusterSettings struct {
	// Name is the cluster's name, the same on every server; default
	// "plugbus".
	Name string `json:"name,omitempty"`
	// Listen is where this server accepts routes from the others,
	// host:port (NATS's usual port is 6222). Setting it turns clustering on.
	Listen string `json:"listen,omitempty"`
	// Routes are the other servers' cluster addresses, such as
	// nats://n2:6222. Listing every server on every server is simplest;
	// servers also learn of each other through those they reach.
	Routes []string `json:"routes,omitempty"`
	// User and Password, when set, are what routes must present; the
	// coordinator adds them to route URLs that carry none. Required to
	// listen beyond loopback. The password may also come from
	// PLUGBUS_CLUSTER_PASSWORD.
	User     string `json:"user,omitempty"`
	Password string `json:"password,omitempty"`
}

// LeafSettings connect the embedded server to other NATS servers as a leaf
// node, or let leaf nodes connect to it. A leaf node serves its own clients
// on its own: plugins connected to an edge host's leaf keep talking to each
// other while the link to the hub is down, and reach the hub's plugins
// while it is up.
type LeafSettings struct {
	// Remotes are hubs to connect to as a leaf node, such as
	// nats-leaf://user:password@hub:7422; the first that answers is used.
	Remotes []string `json:"remotes,omitempty"`
	// Listen is where this server accepts leaf nodes, host:port (NATS's
	// usual port is 7422).
	Listen string `json:"listen,omitempty"`
	// User and Password, when set, are what leaf nodes connecting here must
	// present. Required to listen beyond loopback. The password may also
	// come from PLUGBUS_LEAF_PASSWORD.
	User     string `json:"user,omitempty"`
	Password string `json:"password,omitempty"`
	// Domain is this server's JetStream domain. A leaf node's streams are
	// its own, apart from the hub's, so with Remotes it defaults to the
	// server's name.
	Domain string `json:"domain,omitempty"`
}

// defaultServerName is the host name and the NATS port, so that two
// coordinators on one machine and coordinators on different hosts get
// different names, and a restarted coordinator gets its old one back
// (JetStream knows the peers of a cluster by name). Without a fixed port
// a random suffix makes it unique, though not stable.
func defaultServerName(listen string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "plugbus"
	}
	host = strings.NewReplacer(" ", "-", ".", "-").Replace(host)
	if _, port, err := net.SplitHostPort(listen); err == nil && port != "" && port != "0" {
		return host + "-" + port
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return host + "-" + hex.EncodeToString(b)
}

// validateServer reports the problems of the embedded server's cluster and
// leaf settings.
func (c *Config) validateServer(bad func(string, ...any)) {
	cl, lf := c.Cluster, c.Leaf
	if len(c.NATSURLs) > 0 {
		if cl.Listen != "" || len(cl.Routes) > 0 || lf.Listen != "" || len(lf.Remotes) > 0 {
			bad("cluster and leaf settings configure the embedded NATS server; with nats_urls (an external server) configure that server instead")
		}
		return
	}
	if strings.ContainsAny(c.ServerName, " \t\n*>.") {
		bad("server_name %q: use letters, digits, - and _ only", c.ServerName)
	}
	if cl.Listen != "" {
		if err := checkAddr(cl.Listen, "0.0.0.0:6222"); err != nil {
			bad("cluster.listen: %v", err)
		} else if !isLoopback(cl.Listen) && cl.User == "" {
			bad("cluster.listen %q is not a loopback address and routes have no authentication: set cluster.user (--cluster-user) and PLUGBUS_CLUSTER_PASSWORD, the same on every server", cl.Listen)
		}
	} else if len(cl.Routes) > 0 {
		bad("cluster.routes needs cluster.listen (--cluster-listen, such as 0.0.0.0:6222): the other servers route back to it")
	}
	if strings.ContainsAny(cl.Name, " \t\n*>.") {
		bad("cluster.name %q: use letters, digits, - and _ only", cl.Name)
	}
	if cl.User != "" && cl.Password == "" {
		bad("cluster.user %q needs a password: set PLUGBUS_CLUSTER_PASSWORD", cl.User)
	}
	for _, r := range cl.Routes {
		if _, err := routeURL(r, "", ""); err != nil {
			bad("cluster.routes: %v", err)
		}
	}
	if lf.Listen != "" {
		if err := checkAddr(lf.Listen, "0.0.0.0:7422"); err != nil {
			bad("leaf.listen: %v", err)
		} else if !isLoopback(lf.Listen) && lf.User == "" {
			bad("leaf.listen %q is not a loopback address and leaf nodes have no authentication: set leaf.user (--leaf-user) and PLUGBUS_LEAF_PASSWORD", lf.Listen)
		}
	}
	if lf.User != "" && lf.Password == "" {
		bad("leaf.user %q needs a password: set PLUGBUS_LEAF_PASSWORD", lf.User)
	}
	for _, r := range lf.Remotes {
		if _, err := url.Parse(r); err != nil || !strings.Contains(r, "://") {
			bad("leaf.remotes %q: want a URL such as nats-leaf://user:password@hub:7422", r)
		}
	}
	if c.Stream.Replicas > 1 && cl.Listen == "" {
		bad("stream.replicas %d needs a cluster of at least %d servers: set cluster.listen and cluster.routes, or use nats_urls to an external cluster", c.Stream.Replicas, c.Stream.Replicas)
	}
}

// serverOptions are the embedded server's options from the configuration.
func (c *Config) serverOptions() (*server.Options, error) {
	opts := &server.Options{
		ServerName:    c.ServerName,
		Authorization: c.NATSToken, Username: c.NATSUser, Password: c.NATSPassword,
		SyncAlways: c.SyncAlways,
	}
	if cl := c.Cluster; cl.Listen != "" {
		host, port, err := hostPort(cl.Listen)
		if err != nil {
			return nil, fmt.Errorf("cluster.listen: %w", err)
		}
		opts.Cluster = server.ClusterOpts{Name: cl.Name, Host: host, Port: port, Username: cl.User, Password: cl.Password}
		for _, r := range cl.Routes {
			u, err := routeURL(r, cl.User, cl.Password)
			if err != nil {
				return nil, fmt.Errorf("cluster.routes: %w", err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	if lf := c.Leaf; lf.Listen != "" || len(lf.Remotes) > 0 {
		if lf.Listen != "" {
			host, port, err := hostPort(lf.Listen)
			if err != nil {
				return nil, fmt.Errorf("leaf.listen: %w", err)
			}
			opts.LeafNode.Host, opts.LeafNode.Port = host, port
			opts.LeafNode.Username, opts.LeafNode.Password = lf.User, lf.Password
		}
		if len(lf.Remotes) > 0 {
			remote := &server.RemoteLeafOpts{}
			for _, r := range lf.Remotes {
				u, err := url.Parse(r)
				if err != nil {
					return nil, fmt.Errorf("leaf.remotes %q: %w", r, err)
				}
				remote.URLs = append(remote.URLs, u)
			}
			opts.LeafNode.Remotes = []*server.RemoteLeafOpts{remote}
			opts.JetStreamDomain = lf.Domain
			if opts.JetStreamDomain == "" {
				opts.JetStreamDomain = c.ServerName
			}
		}
	}
	return opts, nil
}

// routeURL parses a route and adds user and password when it has none.
func routeURL(r, user, password string) (*url.URL, error) {
	u, err := url.Parse(r)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("%q: want a URL such as nats://n2:6222", r)
	}
	if u.User == nil && user != "" {
		u.User = url.UserPassword(user, password)
	}
	return u, nil
}

// hostPort splits host:port; port 0 picks a free port.
func hostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q: %v; write it as host:port", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("%q: port must be a number from 0 to 65535", addr)
	}
	if p == 0 {
		p = server.RANDOM_PORT
	}
	return host, p, nil
}
