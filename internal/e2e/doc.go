// Package e2e tests the compose deployment (compose/docker-compose.yml) on
// a real Docker engine: three NATS nodes, two coordinators and the bundled
// plugins in containers, with durable events sent over HTTP while nodes,
// coordinators and plugins are stopped, and while a NATS node is cut off
// from the others.
//
// It runs only with PLUGBUS_E2E=1 (make e2e builds the binaries first and
// sets it); COMPOSE names the compose command, "docker compose" or
// "docker-compose" (the default).
package e2e
