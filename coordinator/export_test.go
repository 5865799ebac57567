package coordinator

import (
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// InProcessOption connects a test's client to c's embedded server
// in-process, as the coordinator's own connections do: the only way its
// own users (coordinator.nk, http.nk) may connect.
func InProcessOption(c *Coordinator) nats.Option { return nats.InProcessServer(c.server) }

// Connz lists the embedded server's connections with the users they
// authenticated as.
func Connz(c *Coordinator) (*server.Connz, error) {
	return c.server.Connz(&server.ConnzOptions{Username: true, Limit: 1000})
}
