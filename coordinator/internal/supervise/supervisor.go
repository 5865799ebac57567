package supervise

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// pipeDrainTimeout bounds how long a child's output is still read after it
// exited, in case a process it started keeps stdout or stderr open.
const pipeDrainTimeout = 2 * time.Second

// A Supervisor runs the plugins of a [Config] and keeps them running. Build
// one with [New]; its methods are safe for concurrent use.
type Supervisor struct {
	cfg       Config      // with defaults applied
	instances []*instance // in Specs order, then by number
	modules   *modules    // of the WebAssembly plugins
	done      chan struct{}

	mu      sync.Mutex
	started bool               // Run was called
	stopped bool               // Stop was called
	cancel  context.CancelFunc // ends Run; set by Run
}

// An instance is one replica of a plugin.
type instance struct {
	spec   *Spec
	name   string // <plugin>-<n>
	log    *slog.Logger
	status InstanceStatus // guarded by Supervisor.mu

	malformed atomic.Uint64 // lines a stdio program's bridge skipped
	restart   chan struct{} // a restart order for the running process; buffered
}

// A process is one run of an instance: a child process, or an instance of
// a WebAssembly module.
type process struct {
	pid     int // 0 for a WebAssembly instance
	started time.Time
	exited  chan error // gets why it ended, once its output is logged

	kill      func()        // ends it at once
	terminate func()        // asks it to end
	exitCode  func() int    // once it has ended: its exit status, -1 if none
	ended     chan struct{} // closed when it has ended (a child process's only)

	killedFor atomic.Pointer[ExitStatus] // Reason and Limit, set before a kill over a limit

	// For a stdio program: the bridge, and the read end of its stdout.
	stopBridge context.CancelFunc
	bridgeDone chan struct{} // closed when Config.Bridge has returned
	stdout     io.ReadCloser

	module *module // the compiled module a WebAssembly instance runs
}

// New returns a Supervisor for cfg, or the errors of [Config.Validate].
func New(cfg Config) (*Supervisor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Supervisor{cfg: cfg.withDefaults(), done: make(chan struct{})}
	s.modules = &modules{host: s.cfg.Wasm, by: map[string]*module{}}
	for i := range s.cfg.Specs {
		sp := &s.cfg.Specs[i]
		first := max(1, s.cfg.FirstInstance)
		for n := first; n < first+sp.Replicas; n++ {
			name := fmt.Sprintf("%s-%d", sp.Name, n)
			s.instances = append(s.instances, &instance{
				spec:    sp,
				name:    name,
				log:     s.cfg.Logger.With("plugin", sp.Name, "instance", name),
				status:  InstanceStatus{Plugin: sp.Name, Instance: name, Mode: sp.Mode(), State: StateStopped},
				restart: make(chan struct{}, 1),
			})
		}
	}
	return s, nil
}

// Run starts every instance and supervises them until ctx is done or
// [Supervisor.Stop] is called; then it stops them all (SIGTERM, and SIGKILL
// after [Config.StopTimeout]) and returns nil once every child is reaped.
// An instance that fails to start does not end Run.
//
// Run may be called once; later calls return [ErrAlreadyStarted]. After
// Stop, Run returns nil at once.
func (s *Supervisor) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return ErrAlreadyStarted
	}
	s.started = true
	defer close(s.done)
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	ctx, s.cancel = context.WithCancel(ctx)
	defer s.cancel()
	s.mu.Unlock()

	st := newStarter()
	var wg sync.WaitGroup
	for _, in := range s.instances {
		if in.spec.InProcess() {
			wg.Go(func() { s.superviseInProcess(ctx, in) })
			continue
		}
		wg.Go(func() { s.supervise(ctx, st, in) })
	}
	wg.Wait()
	close(st)
	s.modules.close()
	return nil
}

// Stop stops the supervisor as cancelling Run's context does, and returns
// once Run has returned. It may be called more than once, and before Run,
// but not from [Config.OnEvent].
func (s *Supervisor) Stop() {
	s.mu.Lock()
	s.stopped = true
	started, cancel := s.started, s.cancel
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if started {
		<-s.done
	}
}

// Status returns a snapshot of every instance, in the order of
// [Config.Specs], then by instance number.
func (s *Supervisor) Status() []InstanceStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]InstanceStatus, len(s.instances))
	for i, in := range s.instances {
		st := in.status
		if st.LastExit != nil {
			e := *st.LastExit
			st.LastExit = &e
		}
		if st.State == StateRunning && time.Since(st.Started) > s.cfg.Backoff.ResetAfter {
			st.CrashLooping = false // this run has lasted long enough to end the loop
		}
		st.MalformedLines = in.malformed.Load()
		out[i] = st
	}
	return out
}

// supervise runs one instance until ctx is done or it fails to start.
func (s *Supervisor) supervise(ctx context.Context, st starter, in *instance) {
	b := s.cfg.Backoff
	quick := 0 // exits in a row that came sooner than b.ResetAfter after the start
	for restarts := 0; ; restarts++ {
		if ctx.Err() != nil {
			s.reportStopped(in, nil, nil)
			return
		}
		var p *process
		var err error
		if in.spec.Wasm != "" {
			p, err = s.startWasm(in)
		} else {
			p, err = s.start(st, in)
		}
		if err != nil {
			s.update(in, func(st *InstanceStatus) {
				st.State, st.PID, st.Error = StateFailed, 0, err.Error()
			})
			in.log.Error("plugin failed to start; not retrying", "err", err)
			s.emit(in, Event{Kind: EventFailed, Err: err})
			return
		}
		pid := p.pid
		s.update(in, func(st *InstanceStatus) {
			st.State, st.PID, st.Started, st.Restarts = StateRunning, pid, p.started, restarts
		})
		if in.spec.Limits.IsZero() {
			in.log.Info("plugin started", "pid", pid, "restarts", restarts)
		} else {
			in.log.Info("plugin started", "pid", pid, "restarts", restarts, "limits", in.spec.Limits.String())
		}
		s.emit(in, Event{Kind: EventStarted, PID: pid})

		select {
		case <-in.restart: // ordered before this start: done
		default:
		}
		next, werr := s.wait(ctx, in, p)
		switch next {
		case stopped:
			return // and reported so
		case replaced:
			continue // at once: the file changed, not a crash
		}
		p.endBridge(pipeDrainTimeout)

		if time.Since(p.started) > b.ResetAfter {
			quick = 0
		} else {
			quick++
		}
		delay := b.delay(quick)
		exit := exitStatus(p, werr)
		s.update(in, func(st *InstanceStatus) {
			st.State, st.PID, st.LastExit = StateBackoff, 0, exit
			st.CrashLooping = quick >= b.CrashLoopAfter
		})
		if exit.Reason != "" {
			in.log.Error("plugin killed: "+exit.Reason+"; restarting", "pid", pid, "limit", exit.Limit, "code", exit.Code, "err", werr, "restart_in", delay)
		} else {
			in.log.Warn("plugin exited; restarting", "pid", pid, "code", exit.Code, "err", werr, "restart_in", delay)
		}
		s.emit(in, Event{Kind: EventExited, PID: pid, ExitCode: exit.Code, Err: werr, NextRestartIn: delay, Reason: exit.Reason, Limit: exit.Limit})
		if quick == b.CrashLoopAfter {
			in.log.Error("plugin is crash-looping", "quick_exits", quick, "retry_every", b.Max)
			s.emit(in, Event{Kind: EventCrashLooping, PID: pid, ExitCode: exit.Code, Err: werr, NextRestartIn: delay})
		}

		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			s.reportStopped(in, nil, nil)
			return
		}
	}
}

// What ended a process, for [Supervisor.wait].
type outcome int

const (
	exited   outcome = iota // by itself
	stopped                 // the supervisor is stopping
	replaced                // its module's file changed, or a restart was ordered
)

// wait waits for p to exit and returns why. When ctx ends first it stops
// p and reports the instance stopped. When p runs a WebAssembly module
// whose file has changed it ends p (draining it first), so that the caller
// starts the new code.
func (s *Supervisor) wait(ctx context.Context, in *instance, p *process) (outcome, error) {
	var reload <-chan time.Time
	if p.module != nil {
		t := time.NewTicker(s.cfg.ReloadCheck)
		defer t.Stop()
		reload = t.C
	}
	for {
		select {
		case err := <-p.exited:
			return exited, err
		case <-ctx.Done():
			s.stop(in, p)
			return stopped, nil
		case <-in.restart:
			in.log.Info("restart ordered; replacing the instance", "pid", p.pid)
			s.end(in, p)
			return replaced, nil
		case <-reload:
			if !s.modules.changed(in.spec, p.module) {
				continue
			}
			in.log.Info("module file changed; replacing the instance with the new code", "wasm", in.spec.wasmPath())
			s.end(in, p)
			return replaced, nil
		}
	}
}

// Restart ends every instance of the plugin name, each drained as when
// stopping, and starts it again at once; a WebAssembly plugin's module is
// read and compiled again from its file, so the new instances run the
// file's code as it is now. It returns how many instances were told, or
// [ErrUnknownPlugin] for a plugin this supervisor does not run, and
// [ErrInProcess] for a static or .so plugin, whose code is part of the
// coordinator. An instance waiting to be restarted after an exit is not
// hurried.
func (s *Supervisor) Restart(name string) (int, error) {
	var ins []*instance
	for _, in := range s.instances {
		if in.spec.Name == name {
			ins = append(ins, in)
		}
	}
	switch {
	case len(ins) == 0:
		return 0, fmt.Errorf("%w: %q", ErrUnknownPlugin, name)
	case ins[0].spec.InProcess():
		return 0, fmt.Errorf("%w: %q runs in %s mode", ErrInProcess, name, ins[0].spec.Mode())
	}
	if ins[0].spec.Wasm != "" {
		s.modules.forget(name)
	}
	for _, in := range ins {
		select {
		case in.restart <- struct{}{}:
		default: // one is already pending
		}
	}
	return len(ins), nil
}

// delay returns how long to wait before a restart after the given number of
// quick exits in a row.
func (b Backoff) delay(quick int) time.Duration {
	if quick >= b.CrashLoopAfter {
		return b.Max
	}
	d := float64(b.Initial)
	for i := 1; i < quick && d < float64(b.Max); i++ {
		d *= b.Factor
	}
	return min(time.Duration(d), b.Max)
}

// start checks and starts the executable of in.
func (s *Supervisor) start(st starter, in *instance) (*process, error) {
	sp := in.spec
	path, err := sp.path()
	if err != nil {
		return nil, err
	}
	if sp.SHA256 != "" {
		if err := checkSHA256(path, sp.SHA256); err != nil {
			return nil, err
		}
	}
	stdout := &lineWriter{log: in.log, stream: "stdout"}
	stderr := &lineWriter{log: in.log, stream: "stderr"}
	cmd := &exec.Cmd{
		Path:        path,
		Args:        append([]string{sp.Exec}, sp.Args...),
		Env:         slices.Concat(inheritedEnv(), s.cfg.BaseEnv, goMemLimit(sp, s.cfg.BaseEnv), sp.Env, []string{"PLUGBUS_INSTANCE=" + in.name}, stdioEnv(sp)),
		Dir:         sp.Dir,
		Stdout:      stdout,
		Stderr:      stderr,
		SysProcAttr: sysProcAttr(),
		WaitDelay:   pipeDrainTimeout,
	}
	p := &process{
		exited:    make(chan error, 1),
		ended:     make(chan struct{}),
		kill:      func() { kill(cmd.Process) },
		terminate: func() { terminate(cmd.Process) },
		exitCode: func() int {
			if cmd.ProcessState == nil {
				return -1
			}
			return cmd.ProcessState.ExitCode()
		},
	}
	var childIn, childOut, stdin, stdoutR *os.File
	if sp.Stdio {
		// Pipes of our own rather than cmd's StdinPipe and StdoutPipe:
		// cmd.Wait would close those while the bridge still reads.
		var err error
		if childIn, stdin, err = os.Pipe(); err != nil {
			return nil, fmt.Errorf("supervise: %w", err)
		}
		if stdoutR, childOut, err = os.Pipe(); err != nil {
			childIn.Close()
			stdin.Close()
			return nil, fmt.Errorf("supervise: %w", err)
		}
		cmd.Stdin, cmd.Stdout, p.stdout = childIn, childOut, stdoutR
	}
	err = st.start(cmd)
	if sp.Stdio {
		childIn.Close() // the child has its own copies now
		childOut.Close()
		if err != nil {
			stdin.Close()
			stdoutR.Close()
		}
	}
	if err != nil {
		return nil, err
	}
	p.pid, p.started = cmd.Process.Pid, time.Now()
	go func() {
		err := cmd.Wait()
		close(p.ended)
		stdout.flush()
		stderr.flush()
		p.exited <- err
	}()
	if !sp.Limits.IsZero() {
		if err := applyLimits(cmd.Process.Pid, sp.Limits); err != nil {
			kill(cmd.Process)
			<-p.exited
			return nil, err
		}
		if sp.Limits.Memory > 0 || sp.Limits.CPUSeconds > 0 {
			go p.watch(sp.Limits, in.log)
		}
	}
	if sp.Stdio {
		s.startBridge(in, p, stdin)
	}
	return p, nil
}

// stdioEnv tells a plugin-kit program to speak the stdio protocol (see
// pluginkit.Main) when its spec says it does.
func stdioEnv(sp *Spec) []string {
	if sp.Stdio {
		return []string{"PLUGBUS_STDIO=1"}
	}
	return nil
}

// startBridge runs Config.Bridge between a stdio program and the bus. When
// the bridge gives up on a program that still runs (it hung, or broke the
// protocol), the program is killed, and restarted like any that exits.
func (s *Supervisor) startBridge(in *instance, p *process, stdin io.WriteCloser) {
	ctx, cancel := context.WithCancel(context.Background())
	p.stopBridge, p.bridgeDone = cancel, make(chan struct{})
	go func() {
		defer close(p.bridgeDone)
		err := s.cfg.Bridge(ctx, BridgeIO{Spec: in.spec, Instance: in.name, Stdin: stdin, Stdout: p.stdout, Log: in.log, Malformed: &in.malformed})
		if err != nil && ctx.Err() == nil {
			in.log.Error("stdio plugin failed; killing it to restart it", "pid", p.pid, "err", err)
			p.kill()
		}
	}()
}

// endBridge waits up to grace for the bridge of a program that exited to
// see the end of its output, then stops it; a process the program started
// may still hold the output open.
func (p *process) endBridge(grace time.Duration) {
	if p.bridgeDone == nil {
		return
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.bridgeDone:
	case <-t.C:
	}
	p.stopBridge()
	p.stdout.Close() // ends a read the bridge may have left behind
	<-p.bridgeDone
}

// stop ends p, politely first, and reports the instance stopped. A stdio
// program's bridge drains first and closes the program's input, which asks
// it to exit; a program still running after that gets SIGTERM.
func (s *Supervisor) stop(in *instance, p *process) {
	s.reportStopped(in, p, s.end(in, p))
}

// end ends p as stop does, and returns what ending it returned.
func (s *Supervisor) end(in *instance, p *process) error {
	t := time.NewTimer(s.cfg.StopTimeout)
	defer t.Stop()
	var err error
	exited := false
	if p.bridgeDone != nil {
		p.stopBridge()
		select {
		case <-p.bridgeDone:
		case <-t.C:
			t.Reset(0)
		}
		select {
		case err = <-p.exited:
			exited = true
		case <-time.After(pipeDrainTimeout):
		}
	}
	if !exited {
		err = s.waitOrKill(in, p, t)
	}
	p.endBridge(0)
	return err
}

// waitOrKill sends p SIGTERM and waits for it to exit until t fires, then
// kills it.
func (s *Supervisor) waitOrKill(in *instance, p *process, t *time.Timer) error {
	p.terminate()
	var err error
	select {
	case err = <-p.exited:
	case <-t.C:
		in.log.Warn("plugin did not stop in time; killing it", "pid", p.pid, "stop_timeout", s.cfg.StopTimeout)
		p.kill()
		err = <-p.exited
	}
	return err
}

// reportStopped reports in stopped; p is its last process and err what ending it
// returned, or p is nil if none was running.
func (s *Supervisor) reportStopped(in *instance, p *process, err error) {
	ev := Event{Kind: EventStopped}
	var exit *ExitStatus
	if p != nil {
		exit = exitStatus(p, err)
		ev.PID, ev.ExitCode, ev.Err = p.pid, exit.Code, err
	}
	s.update(in, func(st *InstanceStatus) {
		st.State, st.PID = StateStopped, 0
		if exit != nil {
			st.LastExit = exit
		}
	})
	in.log.Info("plugin stopped", "pid", ev.PID, "code", ev.ExitCode, "err", err)
	s.emit(in, ev)
}

// update changes the status of in under the lock.
func (s *Supervisor) update(in *instance, f func(*InstanceStatus)) {
	s.mu.Lock()
	f(&in.status)
	s.mu.Unlock()
}

// emit completes ev for in and passes it to OnEvent.
func (s *Supervisor) emit(in *instance, ev Event) {
	if s.cfg.OnEvent == nil {
		return
	}
	s.mu.Lock()
	ev.Restarts = in.status.Restarts
	s.mu.Unlock()
	ev.Time, ev.Plugin, ev.Instance = time.Now(), in.spec.Name, in.name
	s.cfg.OnEvent(ev)
}

func exitStatus(p *process, err error) *ExitStatus {
	e := &ExitStatus{Time: time.Now(), Code: -1}
	if p.exitCode != nil {
		e.Code = p.exitCode()
	}
	if err != nil {
		e.Error = err.Error()
	}
	if k := p.killedFor.Load(); k != nil {
		e.Reason, e.Limit = k.Reason, k.Limit
	}
	return e
}

// path resolves the executable as the child will: a bare name through PATH,
// a relative path against Dir.
func (sp *Spec) path() (string, error) {
	p := sp.Exec
	if !strings.ContainsRune(p, '/') && !strings.ContainsRune(p, filepath.Separator) {
		return exec.LookPath(p)
	}
	if !filepath.IsAbs(p) {
		// Absolute, because the child would resolve a relative Path from Dir.
		return filepath.Abs(filepath.Join(sp.Dir, p))
	}
	return p, nil
}

// checkSHA256 reports an error wrapping [ErrChecksum] unless the file at
// path has the hex SHA-256 digest want.
func checkSHA256(path, want string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("supervise: reading %s: %w", path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, want) {
		return fmt.Errorf("%w: %s: expected sha256 %s, got %s", ErrChecksum, path, strings.ToLower(want), got)
	}
	return nil
}

// inherited are the variables of the coordinator's environment a plugin
// gets: what any program may need to run, and nothing that could be a
// secret of the coordinator's (PLUGBUS_HTTP_TOKEN, cloud credentials...).
// A plugin needing more names it in its spec's env.
var inherited = map[string]bool{
	"PATH": true, "HOME": true, "USER": true, "LOGNAME": true, "SHELL": true, "TMPDIR": true,
	"TZ": true, "LANG": true, "LANGUAGE": true, "TERM": true,
	"SYSTEMROOT": true, "SystemRoot": true, "TEMP": true, "TMP": true, "USERPROFILE": true, "ComSpec": true, "PATHEXT": true,
	"GORACE": true, "GOTRACEBACK": true, "GOCOVERDIR": true, "GOMAXPROCS": true, "GOMEMLIMIT": true, "GODEBUG": true,
}

// inheritedEnv is the part of the coordinator's environment in inherited,
// with the locale's LC_ variables and the OpenTelemetry settings (OTEL_),
// so that plugins trace to where the coordinator does.
func inheritedEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if inherited[name] || strings.HasPrefix(name, "LC_") || strings.HasPrefix(name, "OTEL_") {
			env = append(env, kv)
		}
	}
	return env
}
