// Package deadletter reads and manages the dead letters of durable plugins:
// the events a plugin gave up on, kept in the dead letter stream (default
// PLUGBUS_DEADLETTER) on <prefix>.deadletter.<plugin>.
//
// A dead letter is the original NATS message as the plugin received it (its
// headers and body, usually a binary-mode CloudEvent) plus the headers
// Plugbus-Dl-Error, Plugbus-Dl-Attempts, Plugbus-Dl-Subject,
// Plugbus-Dl-Plugin and Plugbus-Dl-Time. A [Store] lists them, shows one,
// replays them to their plugin (on <prefix>.replay.<plugin>.<producer>.<type>
// in the events stream, which only that plugin's consumer reads) and
// purges them. A replay publishes first and waits for the events stream's
// acknowledgement, then deletes the dead letter, so an event is never lost
// between the two; at worst (a crash in between) it is replayed and still
// listed.
package deadletter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/bus"
)

// Limits of [Filter.Limit] in [Store.List].
const (
	DefaultLimit = 100
	MaxLimit     = 10000
)

// Errors of a [Store], to be tested with errors.Is. The errors returned
// wrap them with a message that says what to do.
var (
	// ErrNotFound: no dead letter has the sequence asked for.
	ErrNotFound = errors.New("dead letter not found")
	// ErrNoStream: the dead letter stream does not exist, so durable mode
	// is off (or the stream has another name).
	ErrNoStream = errors.New("no dead letter stream")
	// ErrInvalid: a filter or sequence that can never match.
	ErrInvalid = errors.New("invalid dead letter request")
)

// Store manages the dead letters in one stream. It holds no state of its
// own: every call reads the stream, so several stores (a coordinator and
// CLIs) can work on the same stream at once.
type Store struct {
	js     jetstream.JetStream
	prefix string
	stream string
}

// New returns a store of the dead letters under prefix (default
// bus.DefaultPrefix) in stream (default bus.DefaultDeadLetterStream).
func New(js jetstream.JetStream, prefix, stream string) *Store {
	if prefix == "" {
		prefix = bus.DefaultPrefix
	}
	if stream == "" {
		stream = bus.DefaultDeadLetterStream
	}
	return &Store{js: js, prefix: prefix, stream: stream}
}

// Letter is one dead letter. Header and Data are filled by [Store.Get]
// only. Plugin comes from the dead letter's subject; Producer and Type from
// the subject the event came on; ID and Source from the event itself (empty
// when it does not decode); Time is when the plugin gave up (the time the
// stream stored it when the header is missing).
type Letter struct {
	Seq      uint64    `json:"seq"`
	Plugin   string    `json:"plugin"`
	Subject  string    `json:"subject"`
	Producer string    `json:"producer"`
	Type     string    `json:"type"`
	ID       string    `json:"id"`
	Source   string    `json:"source"`
	Error    string    `json:"error"`
	Attempts int       `json:"attempts"`
	Time     time.Time `json:"time"`
	// Header holds every header of the stored message: the original's and
	// the Plugbus-Dl-* ones.
	Header map[string][]string `json:"header,omitempty"`
	// Data is the original message's body (base64 in JSON).
	Data []byte `json:"data,omitempty"`
}

// Filter selects dead letters.
type Filter struct {
	// Plugin selects one plugin's dead letters; empty selects all.
	Plugin string `json:"plugin,omitempty"`
	// Type is an event type or a pattern with the NATS wildcards: '*' for
	// one dot-separated part, '>' as the last part for one or more.
	// Empty selects every type.
	Type string `json:"type,omitempty"`
	// Limit bounds how many letters [Store.List] returns (the newest
	// ones; default 100, at most 10000) and how many [Store.ReplayAll]
	// replays (the oldest ones; 0 for all). [Store.Purge] ignores it.
	Limit int `json:"limit,omitempty"`
}

// kindError is an error of one of the kinds above, with a message of its
// own: errors.Is finds the kind and what the message wraps.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, err: fmt.Errorf(format, args...)}
}

// validate checks f; its messages start with the field at fault.
func (f Filter) validate() error {
	if f.Plugin != "" {
		if err := bus.ValidateProducer(f.Plugin); err != nil {
			return errorf(ErrInvalid, "plugin %q: a plugin name uses only A-Z, a-z, 0-9, '_' and '-' (one part: no dots, spaces or wildcards)", f.Plugin)
		}
	}
	if f.Type != "" {
		var te *bus.TypeError
		if err := bus.ValidateTypePattern(f.Type); errors.As(err, &te) {
			return errorf(ErrInvalid, "type: %s", te.Detail)
		} else if err != nil {
			return errorf(ErrInvalid, "type: %v", err)
		}
	}
	if f.Limit < 0 {
		return errorf(ErrInvalid, "limit %d is negative", f.Limit)
	}
	return nil
}

// subject is the stream subject f reads.
func (s *Store) subject(f Filter) string {
	if f.Plugin == "" {
		return s.prefix + ".deadletter.>"
	}
	return s.prefix + ".deadletter." + f.Plugin
}

// open looks the stream up, turning "not found" into ErrNoStream.
func (s *Store) open(ctx context.Context) (jetstream.Stream, error) {
	st, err := s.js.Stream(ctx, s.stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, errorf(ErrNoStream, "the dead letter stream %s does not exist: durable mode is off (no durable plugin has run, and the coordinator did not create the streams), or the dead letter stream has another name", s.stream)
	}
	if err != nil {
		return nil, fmt.Errorf("dead letter stream %s: %w", s.stream, err)
	}
	return st, nil
}

// List returns the newest f.Limit dead letters that match f, oldest first.
func (s *Store) List(ctx context.Context, f Filter) ([]Letter, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	limit := f.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	st, err := s.open(ctx)
	if err != nil {
		return nil, err
	}
	// A ring of the newest matches seen so far.
	ring := make([]Letter, 0, min(limit, 64))
	next := 0
	err = s.scan(ctx, st, f, func(l Letter) bool {
		if len(ring) < limit {
			ring = append(ring, l)
		} else {
			ring[next] = l
			next = (next + 1) % limit
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	return append(ring[next:], ring[:next]...), nil
}

// scanBatch is how many dead letters one fetch of a scan asks for.
const scanBatch = 256

// scan calls fn with every dead letter that matches f (Header and Data
// unset), oldest first, until fn returns false. It reads through an
// ephemeral consumer that acknowledges nothing, which the server removes
// after a minute should the store not delete it.
func (s *Store) scan(ctx context.Context, st jetstream.Stream, f Filter, fn func(Letter) bool) error {
	cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Description:       "plugbus: reading dead letters",
		FilterSubject:     s.subject(f),
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
		Replicas:          1,
	})
	if err != nil {
		return fmt.Errorf("read dead letter stream %s: %w", s.stream, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = st.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	if cons.CachedInfo().NumPending == 0 {
		return nil
	}
	for {
		batch, err := cons.FetchNoWait(scanBatch)
		if err != nil {
			return fmt.Errorf("read dead letter stream %s: %w", s.stream, err)
		}
		n, done := 0, false
		for msg := range batch.Messages() {
			n++
			if done {
				continue // drain the batch
			}
			md, err := msg.Metadata()
			if err != nil {
				continue
			}
			l := s.letter(msg.Subject(), md.Sequence.Stream, md.Timestamp, msg.Headers(), nil, false)
			if matchType(f.Type, l.Type) && !fn(l) {
				done = true
			}
			if md.NumPending == 0 {
				done = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("read dead letter stream %s: %w", s.stream, err)
		}
		if done || n == 0 {
			return ctx.Err()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// Get returns the dead letter with sequence seq, with its headers and data.
func (s *Store) Get(ctx context.Context, seq uint64) (Letter, error) {
	st, err := s.open(ctx)
	if err != nil {
		return Letter{}, err
	}
	raw, err := s.get(ctx, st, seq)
	if err != nil {
		return Letter{}, err
	}
	return s.letter(raw.Subject, raw.Sequence, raw.Time, raw.Header, raw.Data, true), nil
}

func (s *Store) get(ctx context.Context, st jetstream.Stream, seq uint64) (*jetstream.RawStreamMsg, error) {
	if seq == 0 {
		return nil, errorf(ErrInvalid, "sequence 0: dead letter sequences start at 1; run `coordinator deadletter ls` to see them")
	}
	raw, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) || (err == nil && !strings.HasPrefix(raw.Subject, s.prefix+".deadletter.")) {
		return nil, errorf(ErrNotFound, "no dead letter with sequence %d in stream %s (replayed or purged already?); run `coordinator deadletter ls` to see the sequences", seq, s.stream)
	}
	if err != nil {
		return nil, fmt.Errorf("dead letter %d: %w", seq, err)
	}
	return raw, nil
}

// Replay publishes dead letter seq again to its plugin, on the replay
// subject in the events stream, waits for the stream's acknowledgement, and
// deletes the dead letter.
func (s *Store) Replay(ctx context.Context, seq uint64) error {
	st, err := s.open(ctx)
	if err != nil {
		return err
	}
	return s.replay(ctx, st, seq)
}

func (s *Store) replay(ctx context.Context, st jetstream.Stream, seq uint64) error {
	raw, err := s.get(ctx, st, seq)
	if err != nil {
		return err
	}
	l := s.letter(raw.Subject, raw.Sequence, raw.Time, raw.Header, raw.Data, false)
	if l.Producer == "" || l.Type == "" {
		return errorf(ErrInvalid, "dead letter %d: its header %s is %q, not an event or replay subject under %q, so its producer and type are unknown and it cannot be replayed; purge it once handled",
			seq, bus.HeaderDLSubject, l.Subject, s.prefix)
	}
	subject, err := bus.ReplaySubject(s.prefix, l.Plugin, l.Producer, l.Type)
	if err != nil {
		return errorf(ErrInvalid, "dead letter %d cannot be replayed: %w", seq, err)
	}
	msg := &nats.Msg{Subject: subject, Header: replayHeader(raw.Header), Data: raw.Data}
	// A Nats-Msg-Id of its own, so the events stream's duplicate window
	// does not drop the replay as the original event, while a replay
	// retried after a failed delete is stored once.
	msg.Header.Set(jetstream.MsgIDHeader, bus.MsgID(l.Producer, l.Source, l.ID)+"-replay-"+strconv.FormatUint(seq, 10))
	if err := bus.PublishMsgDurable(ctx, s.js, msg); err != nil {
		return fmt.Errorf("replay dead letter %d (kept): %w", seq, err)
	}
	if err := st.DeleteMsg(ctx, seq); err != nil && !isGone(err) {
		return fmt.Errorf("dead letter %d was replayed to %s but could not be deleted: %w; it stays listed until deleted (coordinator deadletter purge %d, or DELETE /v1/deadletters/%d)", seq, subject, err, seq, seq)
	}
	return nil
}

// ReplayAll replays every dead letter that matches f (up to f.Limit when
// set), oldest first, and returns how many it replayed. It stops at the
// first failure.
func (s *Store) ReplayAll(ctx context.Context, f Filter) (int, error) {
	if err := f.validate(); err != nil {
		return 0, err
	}
	st, err := s.open(ctx)
	if err != nil {
		return 0, err
	}
	seqs, err := s.matching(ctx, st, f, f.Limit)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, seq := range seqs {
		err := s.replay(ctx, st, seq)
		if errors.Is(err, ErrNotFound) {
			continue // replayed or purged meanwhile
		}
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// Purge deletes every dead letter that matches f and returns how many it
// deleted. Without a type it purges the plugin's subject (or every
// plugin's) in one request; with one it deletes the matching letters one
// by one. Letters that arrive while it runs are kept.
func (s *Store) Purge(ctx context.Context, f Filter) (int, error) {
	if err := f.validate(); err != nil {
		return 0, err
	}
	st, err := s.open(ctx)
	if err != nil {
		return 0, err
	}
	if f.Type == "" {
		subject := s.subject(f)
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
		if err != nil {
			return 0, fmt.Errorf("dead letter stream %s: %w", s.stream, err)
		}
		var n uint64
		for _, c := range info.State.Subjects {
			n += c
		}
		if n == 0 {
			return 0, nil
		}
		// Up to the last sequence counted: what arrived since is kept.
		if err := st.Purge(ctx, jetstream.WithPurgeSubject(subject), jetstream.WithPurgeSequence(info.State.LastSeq+1)); err != nil {
			return 0, fmt.Errorf("purge %s from stream %s: %w", subject, s.stream, err)
		}
		return int(n), nil
	}
	seqs, err := s.matching(ctx, st, f, 0)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, seq := range seqs {
		err := st.DeleteMsg(ctx, seq)
		if isGone(err) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("delete dead letter %d: %w", seq, err)
		}
		n++
	}
	return n, nil
}

// Delete deletes dead letter seq without replaying it.
func (s *Store) Delete(ctx context.Context, seq uint64) error {
	st, err := s.open(ctx)
	if err != nil {
		return err
	}
	if _, err := s.get(ctx, st, seq); err != nil {
		return err
	}
	if err := st.DeleteMsg(ctx, seq); err != nil && !isGone(err) {
		return fmt.Errorf("delete dead letter %d: %w", seq, err)
	}
	return nil
}

// matching returns the sequences of the dead letters that match f, oldest
// first, at most limit of them when limit > 0.
func (s *Store) matching(ctx context.Context, st jetstream.Stream, f Filter, limit int) ([]uint64, error) {
	var seqs []uint64
	err := s.scan(ctx, st, f, func(l Letter) bool {
		seqs = append(seqs, l.Seq)
		return limit <= 0 || len(seqs) < limit
	})
	return seqs, err
}

// isGone reports whether a delete failed because the message is not there.
func isGone(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeMessageNotFound {
		return true
	}
	// DeleteMsg wraps the server's answer as text: "sequence N not found"
	// (err_code 10043), or "no message found" from older servers.
	msg := strings.ToLower(err.Error())
	return errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) && (strings.Contains(msg, "not found") || strings.Contains(msg, "no message found"))
}

// letter reads a stored dead letter; full keeps its headers and data.
func (s *Store) letter(subject string, seq uint64, stored time.Time, h nats.Header, data []byte, full bool) Letter {
	l := Letter{
		Seq:     seq,
		Plugin:  strings.TrimPrefix(subject, s.prefix+".deadletter."),
		Subject: header(h, bus.HeaderDLSubject),
		Error:   header(h, bus.HeaderDLError),
		Time:    stored.UTC(),
	}
	if l.Plugin == subject || l.Plugin == "" {
		l.Plugin = header(h, bus.HeaderDLPlugin)
	}
	if n, err := strconv.Atoi(header(h, bus.HeaderDLAttempts)); err == nil {
		l.Attempts = n
	}
	if t, err := time.Parse(time.RFC3339Nano, header(h, bus.HeaderDLTime)); err == nil {
		l.Time = t.UTC()
	}
	if producer, typ, err := bus.ParseDurableSubject(s.prefix, l.Subject); err == nil {
		l.Producer, l.Type = producer, typ
	}
	if e, err := bus.Decode(&nats.Msg{Header: h, Data: data}); err == nil {
		l.ID, l.Source = e.ID(), e.Source()
		if l.Type == "" {
			l.Type = e.Type()
		}
	} else {
		// An event that does not decode may still name itself.
		l.ID, l.Source = header(h, "ce-id"), header(h, "ce-source")
		if l.Type == "" {
			l.Type = header(h, "ce-type")
		}
	}
	if full {
		l.Header = make(map[string][]string, len(h))
		for k, v := range h {
			if !serverHeader(k) {
				l.Header[k] = append([]string(nil), v...)
			}
		}
		l.Data = data
	}
	return l
}

// header returns the first value of header name in any case: nats.go's
// Header.Get is case-sensitive.
func header(h nats.Header, name string) string {
	if v, ok := h[name]; ok && len(v) > 0 {
		return v[0]
	}
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, name) {
			return v[0]
		}
	}
	return ""
}

// serverHeader reports headers the server adds to a direct get's answer,
// which are not part of the stored message.
func serverHeader(k string) bool {
	for _, name := range []string{jetstream.StreamHeader, jetstream.SequenceHeader, jetstream.TimeStampHeaer, jetstream.SubjectHeader, "Nats-Last-Sequence", "Nats-Num-Pending"} {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// replayHeader is the original message's header: without the Plugbus-Dl-*
// headers, the server's direct get headers, and the headers that would make
// the events stream refuse or alter the publish (expectations, rollups,
// TTLs, the old Nats-Msg-Id).
func replayHeader(h nats.Header) nats.Header {
	out := make(nats.Header, len(h)+1)
	for k, v := range h {
		lk := strings.ToLower(k)
		switch {
		case strings.HasPrefix(lk, "plugbus-dl-"),
			strings.HasPrefix(lk, "nats-expected-"),
			lk == "nats-msg-id", lk == "nats-rollup", lk == "nats-ttl",
			serverHeader(k):
			continue
		}
		out[k] = append([]string(nil), v...)
	}
	return out
}

// matchType reports whether typ matches pattern: equal, or equal with '*'
// standing for any one dot-separated part and a last part '>' for one or
// more. An empty pattern matches every type.
func matchType(pattern, typ string) bool {
	if pattern == "" {
		return true
	}
	if typ == "" {
		return false
	}
	for {
		pTok, pRest, pMore := strings.Cut(pattern, ".")
		if pTok == ">" && !pMore {
			return true
		}
		tTok, tRest, tMore := strings.Cut(typ, ".")
		if pTok != "*" && pTok != tTok {
			return false
		}
		if !pMore || !tMore {
			return pMore == tMore
		}
		pattern, typ = pRest, tRest
	}
}
