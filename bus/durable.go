package bus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Durable mode: names and settings shared by plugin-kit and the coordinator.
// The stream of events captures P.events.> and P.replay.>; each durable
// plugin has one pull consumer named after it; dead letters have a stream of
// their own; effectively-once records live in a key-value bucket.
const (
	DefaultEventsStream     = "PLUGBUS_EVENTS"
	DefaultDeadLetterStream = "PLUGBUS_DEADLETTER"
	DefaultDedupBucket      = "PLUGBUS_DEDUP"
)

// Defaults of a durable plugin's consumer: how long an instance may hold an
// event without an in-progress signal before it goes to another, and how
// many events may be handed out and not yet acknowledged.
const (
	DefaultAckWait       = 30 * time.Second
	DefaultMaxAckPending = 1000
)

// ConsumerConfig is the consumer of durable plugin, reading the events of
// the type patterns it handles and its replays, with the default settings:
// plugin-kit creates it so, and in secure mode the coordinator does.
func ConsumerConfig(prefix, plugin string, patterns []string) (jetstream.ConsumerConfig, error) {
	filters := make([]string, 0, len(patterns)+1)
	for _, t := range patterns {
		s, err := TypeSubject(prefix, t)
		if err != nil {
			return jetstream.ConsumerConfig{}, err
		}
		filters = append(filters, s)
	}
	filters = append(filters, prefix+".replay."+plugin+".>")
	return jetstream.ConsumerConfig{
		Durable:        plugin,
		Description:    "Plugbus plugin " + plugin,
		FilterSubjects: filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        DefaultAckWait,
		MaxDeliver:     -1, // plugin-kit counts attempts and dead-letters
		MaxAckPending:  DefaultMaxAckPending,
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	}, nil
}

// Headers a dead letter carries on top of the original message's own.
const (
	HeaderDLError    = "Plugbus-Dl-Error"    // why the plugin gave up
	HeaderDLAttempts = "Plugbus-Dl-Attempts" // how many deliveries were tried
	HeaderDLSubject  = "Plugbus-Dl-Subject"  // the subject the event came on
	HeaderDLPlugin   = "Plugbus-Dl-Plugin"   // the plugin that gave up
	HeaderDLTime     = "Plugbus-Dl-Time"     // when, RFC 3339
)

// StreamConfig sets up the durable streams. The zero value, after
// [StreamConfig.SetDefaults], keeps events for 24 hours on file storage with
// one replica.
type StreamConfig struct {
	Prefix string `json:"-"`
	// Name of the events stream; default PLUGBUS_EVENTS.
	Name string `json:"name,omitempty"`
	// DeadLetterName is the dead letter stream; default PLUGBUS_DEADLETTER.
	DeadLetterName string `json:"dead_letter_name,omitempty"`
	// MaxAge is how long events are kept; default 24h. Effectively-once
	// records live as long.
	MaxAge time.Duration `json:"max_age,omitempty"`
	// MaxBytes limits the stream's size; 0 means no limit.
	MaxBytes int64 `json:"max_bytes,omitempty"`
	// Replicas is the number of copies in a cluster; default 1.
	Replicas int `json:"replicas,omitempty"`
	// Memory stores events in memory instead of on disk.
	Memory bool `json:"memory,omitempty"`
	// DuplicateWindow is how long a Nats-Msg-Id is remembered, so a retried
	// publish is stored once; default 2m.
	DuplicateWindow time.Duration `json:"duplicate_window,omitempty"`
}

// SetDefaults fills unset fields.
func (c *StreamConfig) SetDefaults() {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Name == "" {
		c.Name = DefaultEventsStream
	}
	if c.DeadLetterName == "" {
		c.DeadLetterName = DefaultDeadLetterStream
	}
	if c.MaxAge == 0 {
		c.MaxAge = 24 * time.Hour
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = 2 * time.Minute
	}
}

// EnsureStreams creates the events and dead letter streams, or updates them
// to cfg when they exist.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) error {
	cfg.SetDefaults()
	storage := jetstream.FileStorage
	if cfg.Memory {
		storage = jetstream.MemoryStorage
	}
	streams := []jetstream.StreamConfig{{
		Name:        cfg.Name,
		Description: "Plugbus events",
		Subjects:    []string{AllEventsSubject(cfg.Prefix), cfg.Prefix + ".replay.>"},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    maxOrUnlimited(cfg.MaxBytes),
		Storage:     storage,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.DuplicateWindow,
	}, {
		Name:        cfg.DeadLetterName,
		Description: "Plugbus dead letters: events plugins gave up on",
		Subjects:    []string{cfg.Prefix + ".deadletter.>"},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      7 * cfg.MaxAge,
		Storage:     storage,
		Replicas:    cfg.Replicas,
	}}
	for _, sc := range streams {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("bus: stream %s: %w", sc.Name, err)
		}
	}
	return nil
}

func maxOrUnlimited(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// MsgID is the Nats-Msg-Id of an event: a hash of its producer, source and
// id, so a publish retried after a lost acknowledgement is stored once.
func MsgID(producer, source, id string) string {
	h := sha256.New()
	for _, s := range []string{producer, source, id} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// ReplaySubject is where a dead letter is replayed to one plugin:
// <prefix>.replay.<plugin>.<producer>.<type>. Only the plugin's consumer
// reads it.
func ReplaySubject(prefix, plugin, producer, typ string) (string, error) {
	if err := ValidateProducer(plugin); err != nil {
		return "", err
	}
	if err := ValidateProducer(producer); err != nil {
		return "", err
	}
	if err := ValidateType(typ); err != nil {
		return "", err
	}
	return prefix + ".replay." + plugin + "." + producer + "." + typ, nil
}

// ParseDurableSubject returns the producer and type of an event read from
// the events stream, on its event subject or on a replay subject.
func ParseDurableSubject(prefix, subject string) (producer, typ string, err error) {
	rest, ok := cutPrefix(subject, prefix, ".replay.")
	if !ok {
		return ParseEventSubject(prefix, subject)
	}
	parts := strings.SplitN(rest, ".", 3)
	if len(parts) != 3 {
		return "", "", fmt.Errorf("%w: replay subject %q: want %s.replay.<plugin>.<producer>.<type>", ErrInvalidSubject, subject, prefix)
	}
	if err := ValidateProducer(parts[1]); err != nil {
		return "", "", err
	}
	if err := ValidateType(parts[2]); err != nil {
		return "", "", err
	}
	return parts[1], parts[2], nil
}

// PublishDurable publishes e like [Publish], and waits for the events stream
// to acknowledge it, retrying until ctx ends: when it returns nil the event
// is stored. Retries carry the same [MsgID], so the event is stored once.
func PublishDurable(ctx context.Context, js jetstream.JetStream, prefix, producer string, e *event.Event) error {
	msg, err := durableMsg(prefix, producer, e)
	if err != nil {
		return err
	}
	return PublishMsgDurable(ctx, js, msg)
}

// PublishDurableAsync publishes e like [PublishDurable] without waiting for
// the acknowledgement: the future says whether the stream stored it. It is
// for many events at once, where waiting for each in turn would bound the
// rate by the round trip; wait for them with js.PublishAsyncComplete() or
// each future's Ok(). It does not retry: when a future fails, publish the
// event again (its [MsgID] is the same, so it is stored once). opts are
// nats.go's, such as jetstream.WithStallWait for how long to wait while
// too many publishes are unacknowledged (jetstream.WithPublishAsyncMaxPending).
func PublishDurableAsync(js jetstream.JetStream, prefix, producer string, e *event.Event, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	msg, err := durableMsg(prefix, producer, e)
	if err != nil {
		return nil, err
	}
	return js.PublishMsgAsync(msg, opts...)
}

// durableMsg encodes e for the events stream, with its [MsgID].
func durableMsg(prefix, producer string, e *event.Event) (*nats.Msg, error) {
	subject, err := EventSubject(prefix, producer, e.Type())
	if err != nil {
		return nil, err
	}
	if e.Source() == "" {
		e.SetSource(Source(producer))
	}
	msg := &nats.Msg{Subject: subject}
	if err := Encode(e, msg); err != nil {
		return nil, err
	}
	msg.Header.Set(jetstream.MsgIDHeader, MsgID(producer, e.Source(), e.ID()))
	return msg, nil
}

// PublishMsgDurable publishes msg to a stream and waits for its
// acknowledgement, retrying with backoff until ctx ends.
func PublishMsgDurable(ctx context.Context, js jetstream.JetStream, msg *nats.Msg) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	wait := 50 * time.Millisecond
	for {
		attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.PublishMsg(attempt, msg)
		cancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrConnectionReconnecting) {
			select {
			case <-ctx.Done():
				return fmt.Errorf("bus: publish %s: not acknowledged by a stream: %w (last error: %v)", msg.Subject, ctx.Err(), err)
			case <-time.After(wait):
			}
			wait = min(2*wait, time.Second)
			continue
		}
		return fmt.Errorf("bus: publish %s: %w", msg.Subject, err)
	}
}

// DedupBucket opens the key-value bucket of effectively-once records
// (PLUGBUS_DEDUP), creating it when missing with records kept for ttl and
// the given number of replicas. A bucket that exists is used as it is, so
// that a plugin does not undo the replicas the coordinator chose.
func DedupBucket(ctx context.Context, js jetstream.JetStream, ttl time.Duration, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, DefaultDedupBucket)
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return kv, err
	}
	kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: DefaultDedupBucket, Description: "Plugbus: events handled, for effectively-once delivery", TTL: ttl, Replicas: replicas,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		return js.KeyValue(ctx, DefaultDedupBucket)
	}
	return kv, err
}
