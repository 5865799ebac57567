// Package api is the coordinator's HTTP API: CloudEvents ingest, invoke,
// the plugin list, health and readiness, Prometheus metrics and the
// dashboard, all in one [http.Handler] built by [New].
//
// # Endpoints
//
//	POST /v1/events          publish CloudEvents (HTTP binding: binary, structured or batch mode); 202
//	POST /v1/invoke/{type}   send a request of {type} and answer with the reply event; 200, 204
//	GET  /v1/plugins         the registry's snapshot as JSON
//	GET  /v1/supervised      the processes the coordinator runs, with restarts
//	GET  /v1/stream          server-sent events: the events on the bus, live (stream.go)
//	GET  /v1/overview        server-sent events: plugin summaries and rates (overview.go)
//	GET  /v1/plugins/{name}/instances   a page of one plugin's instances
//	GET  /healthz            200 while the process serves HTTP
//	GET  /readyz             200 when ready, 503 with the reason otherwise
//	GET  /metrics            Prometheus text exposition
//	GET  /                   the dashboard (embedded HTML, CSS and JavaScript; no build step)
//
// When [Config.Token] is set every /v1/ endpoint wants the header
// "Authorization: Bearer <token>". Every answer but the dashboard and
// /metrics is JSON; an error is
//
//	{"error": "what was wrong and how to fix it", "field": "id"}
//
// where field names the CloudEvents attribute or the request parameter at
// fault when there is one. Batch errors also carry "index", the position of
// the bad event in the array.
//
// # Ingest
//
// Events from HTTP are published as producer [Config.Producer] (default
// "http"), so an event of type T travels on <prefix>.events.http.T. Every
// event is checked with bus.Validate and bus.ValidateType; a batch is
// published only when every event in it is valid. Header values of binary
// mode are read as the HTTP binding says (RFC 7230 quotes removed, then one
// round of percent-decoding), which sdk-go's HTTP reader does not do by
// itself; a ce- header given twice is an error. Extension names must be
// lower-case letters and digits: sdk-go lower-cases the names it reads from
// JSON, and the API rejects "myExt" instead of publishing it as "myext".
// The answer, 202 {"accepted": n, "ids": [...]}, is sent after the
// NATS server has confirmed the publishes (a flush started after them,
// shared by the requests waiting at that moment), so an accepted event
// has reached the bus; as core NATS is at-most-once, whether a plugin gets
// it depends on it being subscribed at that moment. An event larger than the
// NATS server's max_payload is refused with 413, and a publish the bus cannot
// take (connection closed, no confirmation within 5s) answers 503.
//
// # Invoke and status codes
//
// The body of POST /v1/invoke/{type} is a CloudEvent (binary or structured
// mode, whose type must be {type}) or any other body, which becomes the data
// of a new event of {type} with the request's Content-Type (default
// application/json) as its datacontenttype. The request waits for
// [Config.InvokeTimeout] (default 10s) or ?timeout=<Go duration> (at most
// 5m). Answers:
//
//	200  the reply event in structured mode (application/cloudevents+json)
//	204  the handler returned no event
//	404  no plugin handles the type
//	504  no reply before the timeout
//	4xx  the plugin's error code when it is 400-499, passed through
//	502  the plugin failed with code 500, or with a code that is no HTTP
//	     error status: the failure is upstream, not in the coordinator
//	5xx  the plugin's other 5xx codes (501, 503, 504...), passed through
//
// A plugin's error answers {"error": description, "code": "<plugin's
// code>", "plugin_error": true}, so a client can tell it from the
// coordinator's own errors.
//
// # Metrics
//
//	plugbus_http_events_received_total{type}        valid events received over HTTP (ingest and invoke)
//	plugbus_events_published_total{type}            events the API published to the bus
//	plugbus_http_ingest_errors_total{reason}        requests rejected before reaching the bus: bad_request,
//	                                                too_large, unsupported_media_type (ingest and invoke),
//	                                                unauthorized (any /v1/ endpoint), publish_failed
//	plugbus_invoke_duration_seconds{type,outcome}   invoke round trips: ok, error, timeout, no_responders
//	plugbus_http_streams                            server-sent event streams open
//	plugbus_stream_dropped_total                    events a slow /v1/stream client did not get
//
// Types come from clients, so the type label takes at most 1000 distinct
// values per handler; later types are counted under "other".
package api
