package pluginkit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/internal/stdioproto"
)

// ServeStdio runs the plugin over the stdio protocol of docs/stdio.md
// instead of NATS: it writes the plugin's manifest to out, then handles
// every event line read from in and writes its answer to out, until in ends
// or ctx is done; then it waits for the handlers still running and returns.
// A coordinator's bridge puts the plugin on the bus. Handlers registered
// for an exact type answer it; those for a pattern observe. [Emit] and
// [Plugin.Publish] write events to out; [Invoke] is not available (it
// returns an error), as the protocol has no requests from the plugin.
//
// Like [Plugin.Run], it calls the functions given to [Plugin.Setup] first
// and the ones given to [Plugin.Cleanup] last.
//
// [Main] calls ServeStdio when the program is built for GOOS=wasip1, or
// when PLUGBUS_STDIO=1 is set (the coordinator sets it for stdio plugins).
func (p *Plugin) ServeStdio(ctx context.Context, in io.Reader, out io.Writer) (err error) {
	defer p.cleanUp(&err)
	if err := p.setUp(); err != nil {
		return fmt.Errorf("pluginkit: plugin %q: %w", p.name, err)
	}
	if !p.started.CompareAndSwap(false, true) {
		return fmt.Errorf("pluginkit: plugin %q is already running; create another with New to run a second instance", p.name)
	}
	if len(p.routes) == 0 {
		return fmt.Errorf("pluginkit: plugin %q has no handlers; register one with Handle or HandleFunc before running it", p.name)
	}
	if p.logger == nil {
		p.logger = slog.Default()
	}
	p.log = p.logger.With("plugin", p.name)
	p.id = NewID()
	p.source = bus.Source(p.name)
	if u, err := url.Parse(p.source); err == nil {
		p.sourceRef = types.URIRef{URL: *u}
	}
	w := &stdioWriter{w: bufio.NewWriter(out)}
	p.stdio = w
	m := stdioproto.Manifest{
		Protocol: stdioproto.Version, Name: p.name, Version: p.version, Description: p.description,
		Emits: p.emits, Concurrency: max(p.concurrency, 1),
	}
	if stdioOnly {
		m.Concurrency = 1 // see the loop below
	}
	for _, r := range p.routes {
		h := r.handler
		for i := len(p.middleware) - 1; i >= 0; i-- {
			h = p.middleware[i](h)
		}
		r.handler = h
		if doc := strings.TrimSpace(r.schema); strings.HasPrefix(doc, "{") {
			if m.Schemas == nil {
				m.Schemas = map[string]json.RawMessage{}
			}
			m.Schemas[r.pattern] = json.RawMessage(doc)
		}
		if r.answers {
			m.Answers = append(m.Answers, r.pattern)
		} else {
			m.Handles = append(m.Handles, r.pattern)
		}
		if r.data != nil && len(p.middleware) == 0 && p.tracer == nil {
			p.stdioShort = true
		}
	}
	if err := w.write(stdioproto.Out{Manifest: &m}); err != nil {
		return fmt.Errorf("pluginkit: plugin %q: writing the manifest: %w", p.name, err)
	}

	p.handlers, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	defer p.cancel()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), stdioproto.MaxLine)
	if m.Concurrency == 1 {
		// One line at a time, read and handled on this goroutine: on
		// wasip1 a read of stdin blocks the whole module, so a reader
		// goroutine would starve the handler waiting for the CPU.
		for ctx.Err() == nil && sc.Scan() {
			p.handleLine(sc.Bytes(), w)
		}
		return p.readError(sc.Err())
	}
	lines := make(chan []byte)
	readErr := make(chan error, 1)
	go func() {
		for sc.Scan() {
			lines <- append([]byte(nil), sc.Bytes()...)
		}
		readErr <- sc.Err()
		close(lines)
	}()
	slots := make(chan struct{}, m.Concurrency)
	var running sync.WaitGroup
	defer running.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case line, ok := <-lines:
			if !ok {
				return p.readError(<-readErr)
			}
			slots <- struct{}{}
			running.Go(func() {
				defer func() { <-slots }()
				p.handleLine(line, w)
			})
		}
	}
}

func (p *Plugin) readError(err error) error {
	if err != nil {
		return fmt.Errorf("pluginkit: plugin %q: reading standard input: %w", p.name, err)
	}
	return nil
}

// handleLine handles one line from the bridge and writes its answer.
func (p *Plugin) handleLine(line []byte, w *stdioWriter) {
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	if p.stdioShort {
		if l, ok := stdioproto.ScanIn(line); ok {
			if r := p.stdioRoute(l.Type); r != nil && r.data != nil {
				p.handleData(r, l, w)
				return
			}
		}
	}
	in, e, err := stdioproto.DecodeIn(line)
	if in.ID == "" {
		p.log.Warn("skipped a line from the bridge that is not an event line", "err", err)
		return
	}
	var res *Event
	if err != nil {
		err = Permanent(fmt.Errorf("the event does not decode: %w", err))
	} else if r := p.stdioRoute(e.Type()); r == nil {
		err = Permanent(fmt.Errorf("plugin %q has no handler for type %q", p.name, e.Type()))
	} else {
		ctx := &delivery{Context: p.handlers, plugin: p, trigger: e, producer: in.Producer, checked: in.Checked}
		ctx.deadline, _ = bus.Deadline(e)
		defer ctx.release()
		if res, err = p.call(ctx, r, e); err != nil {
			p.log.Warn("handler failed", "type", e.Type(), "id", e.ID(), "producer", in.Producer, "err", err)
		} else if res != nil {
			// The bridge links the result to its trigger, as it does for
			// every result; the rest is checked here, so that a bad
			// result fails with the same error in every mode.
			p.stamp(res, nil)
			if verr := bus.Validate(res); verr != nil {
				err = fmt.Errorf("result not sent: %w", verr)
			}
		}
	}
	if err == nil {
		err = w.writeAnswer(in.ID, res)
	} else {
		err = w.write(stdioproto.Out{ID: in.ID, Error: &stdioproto.Error{Message: err.Error(), Permanent: IsPermanent(err)}})
	}
	if err != nil {
		p.log.Error("could not write the answer", "id", in.ID, "err", err)
	}
}

// handleData handles a line for a typed handler ([Answer], [On]) the short
// way: the handler gets the data straight from the line, and its reply is
// written as the answer's data, with no CloudEvent built on either side
// unless the handler asks for the event being handled (to emit, say). In a
// WebAssembly module that is most of what a line costs. What the handler
// sees and the line written are those of handleLine's full path.
func (p *Plugin) handleData(r *route, l stdioproto.Line, w *stdioWriter) {
	// The event's bytes are copied: the next line reuses the buffer, and a
	// handler may emit after it returns.
	d := &delivery{Context: p.handlers, plugin: p, producer: l.Producer, checked: l.Checked, raw: bytes.Clone(l.Event)}
	if l.Deadline != "" {
		d.deadline, _ = types.ToTime(l.Deadline) // as bus.Deadline reads it
	}
	defer d.release()
	data, err := p.callData(d, r, l)
	switch {
	case err != nil:
		p.log.Warn("handler failed", "type", l.Type, "id", l.EventID, "producer", l.Producer, "err", err)
		err = w.write(stdioproto.Out{ID: l.ID, Error: &stdioproto.Error{Message: err.Error(), Permanent: IsPermanent(err)}})
	case r.replyType == "":
		err = w.writeAnswer(l.ID, nil)
	default:
		err = w.writeDataAnswer(l.ID, stdioproto.DataEvent{
			ID: NewID(), Source: p.source, Type: r.replyType, DataSchema: r.replySchema, Time: time.Now(), Data: data,
		})
	}
	if err != nil {
		p.log.Error("could not write the answer", "id", l.ID, "err", err)
	}
}

// callData runs r's typed handler on l's data, after checking it against
// the handler's schema unless the bridge has, as [Plugin.call] runs a
// handler.
func (p *Plugin) callData(ctx *delivery, r *route, l stdioproto.Line) (data []byte, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("pluginkit: handler for %q panicked: %v", r.pattern, v)
			p.log.Error("handler panicked", "type", l.Type, "id", l.EventID, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	}()
	if r.validator != nil && ctx.checked != r.pattern {
		if err := r.validator.Validate(l.Data); err != nil {
			return nil, Permanent(err)
		}
	}
	return r.data(ctx, l.Data)
}

// stdioRoute returns the route for typ: the exact one, else the first
// pattern that matches.
func (p *Plugin) stdioRoute(typ string) *route {
	var match *route
	for _, r := range p.routes {
		if r.pattern == typ {
			return r
		}
		if match == nil && matchType(r.pattern, typ) {
			match = r
		}
	}
	return match
}

// stdioEvent stamps e as a result of trigger (or an event of its own when
// trigger is nil) and encodes it for a line.
func (p *Plugin) stdioEvent(e, trigger *Event) (json.RawMessage, error) {
	p.stamp(e, trigger)
	if err := bus.Validate(e); err != nil {
		return nil, err
	}
	return e.MarshalJSON()
}

// A stdioWriter writes lines to the bridge, one at a time.
type stdioWriter struct {
	mu   sync.Mutex
	w    *bufio.Writer
	line []byte // writeAnswer's, reused
}

// writeAnswer writes the answer to the line id, with its result event when
// there is one: the line most written, built without encoding/json.
func (w *stdioWriter) writeAnswer(id string, e *Event) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	line, err := stdioproto.AppendAnswer(w.line[:0], id, e)
	if err != nil {
		return err
	}
	w.line = append(line, '\n')
	w.w.Write(w.line)
	return w.w.Flush()
}

// writeDataAnswer writes the answer to the line id with the result e, as
// writeAnswer writes the same event.
func (w *stdioWriter) writeDataAnswer(id string, e stdioproto.DataEvent) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.line = append(stdioproto.AppendDataAnswer(w.line[:0], id, e), '\n')
	w.w.Write(w.line)
	return w.w.Flush()
}

func (w *stdioWriter) write(o stdioproto.Out) error {
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.w.Write(b)
	w.w.WriteByte('\n')
	return w.w.Flush()
}

// errStdioInvoke: requests from a plugin need the bus.
var errStdioInvoke = errors.New("pluginkit: Invoke is not available to a plugin served over the stdio protocol; run it as a process or static plugin")
