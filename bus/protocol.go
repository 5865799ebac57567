package bus

// ProtocolVersion is the version of the Plugbus wire protocol this package
// speaks, "major.minor". Peers with another major version are incompatible.
// 2.0 moved requests from the events subjects to P.invoke.<caller>.<type>.
const ProtocolVersion = "2.0"

// Lifecycle event types. Plugins publish started and stopped about
// themselves; the coordinator publishes the rest.
const (
	TypePluginStarted      = "io.plugbus.plugin.started"
	TypePluginStopped      = "io.plugbus.plugin.stopped"
	TypePluginUnhealthy    = "io.plugbus.plugin.unhealthy"
	TypePluginRecovered    = "io.plugbus.plugin.recovered"
	TypePluginCrashlooping = "io.plugbus.plugin.crashlooping"
	// TypePluginKilled: the coordinator killed a supervised plugin over
	// one of its resource limits (data: plugin, instance, pid, limit,
	// reason).
	TypePluginKilled       = "io.plugbus.plugin.killed"
	TypeCoordinatorStarted = "io.plugbus.coordinator.started"
	// TypePluginQuarantined: in secure mode the coordinator cut off an
	// identity whose connections the server kept refusing, for a
	// cool-down; TypePluginReleased: the cool-down ended. Producer
	// coordinator; the data names the identity.
	TypePluginQuarantined = "io.plugbus.plugin.quarantined"
	TypePluginReleased    = "io.plugbus.plugin.released"
)

// Metadata keys of a plugin instance's NATS micro service: its manifest.
const (
	MetaProtocol = "plugbus.protocol" // wire protocol version, e.g. "2.0"
	MetaEmits    = "plugbus.emits"    // comma-separated types the plugin emits
	MetaHost     = "plugbus.host"     // host name the instance runs on
	MetaPID      = "plugbus.pid"      // process id of the instance (the host's, for a plugin run in-process)
	MetaMode     = "plugbus.mode"     // how the instance runs: one of the Mode constants
	MetaType     = "plugbus.type"     // endpoint metadata: the type pattern handled
	MetaSchema   = "plugbus.schema"   // endpoint metadata: JSON Schema (or its URL) of the data
	MetaRole     = "plugbus.role"     // endpoint metadata: RoleAnswer or RoleObserve
)

// Values of the [MetaRole] endpoint metadata: what an endpoint of a plugin
// instance does with the types that match its [MetaType].
const (
	// RoleAnswer: the endpoint subscribes to P.invoke.*.<type> and answers
	// requests for the type.
	RoleAnswer = "answer"
	// RoleObserve: the endpoint subscribes to P.events.*.<type> and
	// observes events of the type; it never answers.
	RoleObserve = "observe"
)

// MetaSchemaOf is the service metadata key holding the JSON Schema of the
// data of an emitted type: "plugbus.schema.<type>".
func MetaSchemaOf(typ string) string { return MetaSchema + "." + typ }

// How a plugin instance runs, as its manifest reports it in [MetaMode]. An
// instance whose manifest names no mode is a process.
const (
	ModeProcess = "process" // a program of its own, connected to NATS (the default)
	ModeStatic  = "static"  // linked into the coordinator's program, over its in-process connection
	ModeSO      = "so"      // loaded by the coordinator from a -buildmode=plugin file, in-process
	ModeStdio   = "stdio"   // a program speaking JSON lines on stdin/stdout, bridged by the coordinator
	ModeWasm    = "wasm"    // a WebAssembly module the coordinator runs in-process
)

// Instance describes one running plugin instance; it is the data of the
// lifecycle events a plugin publishes about itself.
type Instance struct {
	Plugin   string   `json:"plugin"`
	Version  string   `json:"version"`
	ID       string   `json:"instance"`
	Host     string   `json:"host"`
	PID      int      `json:"pid"`
	Mode     string   `json:"mode,omitempty"`
	Protocol string   `json:"protocol"`
	Handles  []string `json:"handles"`
	Emits    []string `json:"emits,omitempty"`
	Reason   string   `json:"reason,omitempty"`
}
