// Package supervise runs the plugins the coordinator is asked to run on its
// own host, and keeps them running.
//
// A [Supervisor] is built from a [Config] listing one [Spec] per plugin. Its
// [Supervisor.Run] starts Replicas instances of each plugin, named
// <plugin>-1, <plugin>-2 and so on, and supervises them until its context is
// cancelled or [Supervisor.Stop] is called.
//
// # Environment
//
// Each instance gets a minimal part of the coordinator's environment (PATH,
// HOME, USER, TMPDIR, the locale and the like; never a secret such as
// PLUGBUS_HTTP_TOKEN), then [Config.BaseEnv]
// (the connection settings every plugin needs, such as PLUGBUS_URL and
// PLUGBUS_PREFIX), then [Spec.Env], then PLUGBUS_INSTANCE=<instance>, and
// PLUGBUS_STDIO=1 for a stdio program; a later setting of a variable wins
// over an earlier one.
//
// # Logs
//
// Every line a plugin writes to stdout or stderr is logged at level Info on
// [Config.Logger], with the line as the message and the attributes plugin,
// instance and stream (stdout or stderr). A line that is itself a JSON log
// record is logged as it is, not parsed.
//
// # Stdio programs
//
// A [Spec] with Stdio set is a program that speaks the stdio protocol of
// docs/stdio.md: its standard input and output are pipes to
// [Config.Bridge], which serves it on the bus, and only its standard error
// is logged. When the bridge gives up on a program that still runs (it hung
// or broke the protocol) the program is killed and restarted as if it had
// exited. On stop the bridge drains first and closes the program's input;
// a program still running after that is stopped as any other.
//
// # Restarts
//
// An instance that exits while the supervisor runs, whatever its exit status,
// is started again after a delay that grows exponentially with each exit in a
// row that came sooner than [Backoff.ResetAfter] after its start, up to
// [Backoff.Max]. After [Backoff.CrashLoopAfter] such quick exits in a row the
// instance is reported as crash-looping and retried every [Backoff.Max]
// until a run lasts longer than ResetAfter.
//
// An instance that cannot be started at all (its executable is missing, not
// executable, or fails the [Spec.SHA256] check) is reported as failed and is
// not retried: the configuration or the file needs fixing.
//
// # Stopping
//
// When the supervisor stops, every instance's process group gets SIGTERM;
// whatever has not exited after [Config.StopTimeout] gets SIGKILL. Run
// returns once every child has been reaped. Each child runs in a process group
// of its own, so a Ctrl-C in the coordinator's terminal reaches the children
// only through the supervisor, once.
//
// On Linux the children also get SIGKILL from the kernel when the coordinator
// dies, even by SIGKILL, so a crashed coordinator leaves no orphans behind;
// processes a plugin starts itself are not covered. Other systems have no
// such mechanism.
//
// # Events
//
// [Config.OnEvent] receives an [Event] for every change in an instance's life
// (started, exited, crash-looping, stopped, failed), for the coordinator to
// publish, and [Supervisor.Status] returns a snapshot of every instance.
package supervise
