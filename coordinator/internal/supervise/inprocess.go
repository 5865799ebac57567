package supervise

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"
)

// superviseInProcess runs one instance of a static or .so plugin through
// Config.InProcess until ctx is done, restarting it with backoff when the
// call returns (or panics) on its own, as supervise does for a process.
// There is no process to signal or kill: stopping cancels the call's
// context, and a plugin that does not return within StopTimeout is left
// running in the coordinator's process, which is reported.
func (s *Supervisor) superviseInProcess(ctx context.Context, in *instance) {
	b := s.cfg.Backoff
	quick := 0
	for restarts := 0; ; restarts++ {
		if ctx.Err() != nil {
			s.reportStopped(in, nil, nil)
			return
		}
		runCtx, cancel := context.WithCancel(ctx)
		started := time.Now()
		exited := make(chan error, 1)
		go func() { exited <- s.runInProcess(runCtx, in) }()
		s.update(in, func(st *InstanceStatus) {
			st.State, st.PID, st.Started, st.Restarts, st.Error = StateRunning, 0, started, restarts, ""
		})
		in.log.Info("plugin started in-process", "mode", in.spec.Mode(), "restarts", restarts)
		s.emit(in, Event{Kind: EventStarted})

		var err error
		select {
		case err = <-exited:
			cancel()
		case <-ctx.Done():
			cancel()
			t := time.NewTimer(s.cfg.StopTimeout)
			select {
			case err = <-exited:
				t.Stop()
			case <-t.C:
				err = fmt.Errorf("did not stop within %s; it keeps running in the coordinator's process", s.cfg.StopTimeout)
				in.log.Error("plugin did not stop in time", "stop_timeout", s.cfg.StopTimeout)
			}
			s.update(in, func(st *InstanceStatus) {
				st.State = StateStopped
				st.LastExit = inProcessExit(err)
			})
			in.log.Info("plugin stopped", "err", err)
			s.emit(in, Event{Kind: EventStopped, ExitCode: inProcessExit(err).Code, Err: err})
			return
		}

		if time.Since(started) > b.ResetAfter {
			quick = 0
		} else {
			quick++
		}
		delay := b.delay(quick)
		exit := inProcessExit(err)
		s.update(in, func(st *InstanceStatus) {
			st.State, st.LastExit = StateBackoff, exit
			st.CrashLooping = quick >= b.CrashLoopAfter
		})
		in.log.Warn("plugin returned; restarting", "err", err, "restart_in", delay)
		s.emit(in, Event{Kind: EventExited, ExitCode: exit.Code, Err: err, NextRestartIn: delay})
		if quick == b.CrashLoopAfter {
			in.log.Error("plugin is crash-looping", "quick_exits", quick, "retry_every", b.Max)
			s.emit(in, Event{Kind: EventCrashLooping, ExitCode: exit.Code, Err: err, NextRestartIn: delay})
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

// runInProcess calls Config.InProcess, turning a panic into an error.
func (s *Supervisor) runInProcess(ctx context.Context, in *instance) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v\n%s", v, debug.Stack())
		}
	}()
	return s.cfg.InProcess(ctx, in.spec, in.name)
}

// inProcessExit describes how an in-process run ended: code 0 when it
// returned nil, 1 with its error otherwise.
func inProcessExit(err error) *ExitStatus {
	e := &ExitStatus{Time: time.Now()}
	if err != nil {
		e.Code, e.Error = 1, err.Error()
	}
	return e
}
