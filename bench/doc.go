// Package bench measures Plugbus against the alternatives a Go program has
// for talking to plugins: raw nats.go, the CloudEvents sdk-go client with its
// stock NATS binding, hashicorp/go-plugin (gRPC and net/rpc), a child
// process answering JSON lines on stdin/stdout, and a plain function call.
//
// It is a module of its own so that go-plugin, gRPC and sdk-go's NATS
// binding stay out of Plugbus's go.mod. The benchmarks build the programs
// they talk to (plugins/hello and the coordinator from the main module, the
// peers under cmd/ from this one) and run them as child processes:
//
//	cd bench && go test -run '^$' -bench . -benchmem
//
// make bench runs them with the main module's benchmarks and writes
// docs/benchmarks.md.
package bench
