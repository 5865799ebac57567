package pluginkit

// stdioOnly: a WebAssembly module has no sockets to reach NATS with; it
// speaks the stdio protocol over WASI's standard input and output.
const stdioOnly = true
