// Package coordinator is the core of a Plugbus deployment: it runs (or
// connects to) the NATS bus, keeps the registry of plugins built from their
// discovery answers and lifecycle events, supervises the plugins it is asked
// to run, and serves the HTTP API, metrics and dashboard.
//
// The coordinator holds no state plugins need: when it stops, plugins keep
// running and reconnect, and a restarted coordinator rebuilds its registry
// from discovery. With the embedded server (the default) the bus lives in
// the coordinator's process, so plugins cannot reach each other while it is
// down; run NATS outside it (Config.NATSURLs) where they must.
//
// The binary is in coordinator/cmd/coordinator; a Go program can embed the
// core with [New] and [Coordinator.Run].
package coordinator
