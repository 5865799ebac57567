// Package pluginkit is what a Plugbus plugin author imports.
//
// A plugin is a program that handles CloudEvents arriving on NATS subjects and
// may return or emit events of its own. The whole program is usually:
//
//	func main() {
//		p := pluginkit.New("hello", "0.1.0")
//		p.HandleFunc("com.example.greet.requested", func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
//			var req struct{ Name string }
//			if err := e.DataAs(&req); err != nil {
//				return nil, pluginkit.Permanent(err)
//			}
//			return pluginkit.NewEvent("com.example.greet.sent", map[string]string{"text": "hello, " + req.Name}), nil
//		})
//		pluginkit.Main(p)
//	}
//
// # Delivery
//
// Every plugin whose handled types match an event gets it (fan-out), and the
// instances of one plugin share a queue group named after the plugin, so each
// event reaches one instance of each plugin (load balancing). [Broadcast]
// asks for every instance to get every event instead.
//
// A handler's returned event is published as a result, with the plugin as its
// source, a fresh id, the trigger's id in the causeid extension and the
// trigger's traceparent. When the trigger was a request, the result is also
// the reply. An error is the reply to a request (NATS micro error headers);
// [Permanent] marks an error that retrying cannot fix.
//
// Core NATS delivers at most once: an event published while no instance of a
// plugin runs is not delivered to it.
//
// # Running
//
// [Main] reads settings from flags and the environment (PLUGBUS_URL,
// PLUGBUS_CREDS, PLUGBUS_PREFIX...), connects, registers the instance as a
// NATS micro service, runs until SIGTERM or SIGINT, and drains. A plugin's
// own settings are flags on its own flag set, [Plugin.Flags], each falling
// back to an environment variable bound with [Plugin.BindEnv]; when its
// handlers depend on them, such as type patterns taken from configuration,
// a function given to [Plugin.Setup] registers the handlers once the
// settings hold their values, and one given to [Plugin.Cleanup] closes what
// it opened. [Plugin.Run] and [Plugin.Serve] do the same under the caller's
// control, for tests and programs that embed a plugin. Package kittest runs
// a plugin against a real in-process NATS server in a unit test.
//
// # Plugins linked into another program
//
// Nothing in a plugin is process-wide: two plugins, or two instances of
// one, can run in one program, each with its settings and logger. A plugin
// package registers its constructor at init with [Register], as
// database/sql drivers do, and keeps its main to a line beside it
// (pluginkit.Main(hello.New())). The coordinator's static mode runs
// registered plugins in its own process over NATS's in-process connection,
// setting their flags from its configuration instead of the command line
// and environment.
//
// # Tracing
//
// [WithTracerProvider] traces a plugin with OpenTelemetry: a span for each
// event handled, continuing the trace named by the event's traceparent
// extension, and spans for its results, published events and requests,
// whose events carry their context on. [Main] builds a provider exporting
// with OTLP over HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set. Without one
// nothing is traced, at no cost on the event path.
package pluginkit
