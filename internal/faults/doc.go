// Package faults holds the fault tests of durable delivery: real processes
// (nats-server, the coordinator, plugins built from testdata/ledger) are
// killed with SIGKILL, stopped with SIGSTOP, crash on poison events and run
// under load, and each test checks against ledgers that
//
//   - nothing is missing: every event whose publish was acknowledged by the
//     bus (bus.PublishDurable returned nil, or POST /v1/events answered 202)
//     had its effect, and
//   - with effectively-once on, nothing had its effect twice, within the
//     windows that plugin-kit's effectively-once records cover.
//
// The ledger plugin (testdata/ledger) appends "<event id>\n" to an effects
// file for each handled event, with fsync, and "<event id> <pid>\n" to a
// calls file when its handler starts; crash, sleep, fail and panic modes are
// driven by the event's data.
//
// Effectively-once is tested with one instance and with two and three
// instances of the plugin (a redelivery after a crash of NATS, of the
// coordinator or of an instance goes to any instance). What it does not
// cover, and the tests pin down: a process that dies after a handler's
// effect and before plugin-kit stored the event's record (the handler runs
// again on the redelivery), and an instance stopped in the middle of its
// handler for longer than its claim's lease (another instance runs the
// handler too; the stopped one may complete its effect when it resumes).
// Handlers whose effect must never repeat make it idempotent, keyed by the
// event's producer, source and id.
//
// The processes under test are built without -race, once per run: the
// ledger plugin, nats-server (from the module's own dependency) and the
// coordinator. The tests are skipped with -short.
//
// BenchmarkDurable compares plugin-kit's durable path with raw nats.go
// JetStream on the same embedded server.
//
// The package has no code of its own: only tests.
package faults
