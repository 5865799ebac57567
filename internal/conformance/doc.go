// Package conformance runs the same behaviour through every way a plugin
// runs, one row per mode, through a real coordinator: process, static, .so
// and wasm with the same plugin code (package confplugin), and stdio with
// the Python example (examples/stdio/hello.py), which answers the same
// requests the same way. Cases: fan-out to two plugins, load balancing
// across instances, invoke with a result and with an error, an unanswered
// type, durable delivery with a redelivery, and drain on stop.
package conformance
