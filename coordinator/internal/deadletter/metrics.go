package deadletter

import (
	"context"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugbus/plugbus/bus"
)

// scrapeTimeout bounds the JetStream requests of one scrape.
const scrapeTimeout = 2 * time.Second

// collector exports the state of durable plugins, read from JetStream at
// scrape time.
type collector struct {
	js                   jetstream.JetStream
	prefix               string
	events, deadLetters  string
	pending, ackPending  *prometheus.Desc
	redelivered, letters *prometheus.Desc
}

// NewCollector returns a Prometheus collector that asks JetStream at every
// scrape for
//
//	plugbus_consumer_pending{plugin}      events not yet delivered to the plugin's durable consumer
//	plugbus_consumer_ack_pending{plugin}  events delivered and not yet acknowledged
//	plugbus_consumer_redelivered{plugin}  events delivered more than once and not yet acknowledged
//	plugbus_deadletters{plugin}           dead letters kept for the plugin
//
// for every durable consumer of the events stream (a consumer is named
// after its plugin) and every plugin with dead letters; a plugin with a
// consumer and no dead letters reports 0. Prefix and the stream names
// default like [bus.StreamConfig]. The requests of one scrape take at most
// 2s; what fails or times out (no JetStream, a stream that does not exist)
// is left out of the scrape rather than failing it.
func NewCollector(js jetstream.JetStream, prefix, eventsStream, deadLetterStream string) prometheus.Collector {
	if prefix == "" {
		prefix = bus.DefaultPrefix
	}
	if eventsStream == "" {
		eventsStream = bus.DefaultEventsStream
	}
	if deadLetterStream == "" {
		deadLetterStream = bus.DefaultDeadLetterStream
	}
	plugin := []string{"plugin"}
	return &collector{
		js: js, prefix: prefix, events: eventsStream, deadLetters: deadLetterStream,
		pending:     prometheus.NewDesc("plugbus_consumer_pending", "Events in the events stream not yet delivered to the plugin's durable consumer.", plugin, nil),
		ackPending:  prometheus.NewDesc("plugbus_consumer_ack_pending", "Events delivered to the plugin's durable consumer and not yet acknowledged.", plugin, nil),
		redelivered: prometheus.NewDesc("plugbus_consumer_redelivered", "Events delivered to the plugin's durable consumer more than once and not yet acknowledged.", plugin, nil),
		letters:     prometheus.NewDesc("plugbus_deadletters", "Dead letters kept for the plugin: events it gave up on.", plugin, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.ackPending
	ch <- c.redelivered
	ch <- c.letters
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	plugins := c.collectConsumers(ctx, ch)
	c.collectDeadLetters(ctx, ch, plugins)
}

// collectConsumers exports the durable consumers of the events stream and
// returns their names.
func (c *collector) collectConsumers(ctx context.Context, ch chan<- prometheus.Metric) []string {
	st, err := c.js.Stream(ctx, c.events)
	if err != nil {
		return nil
	}
	var infos []*jetstream.ConsumerInfo
	lister := st.ListConsumers(ctx)
	for info := range lister.Info() {
		if info.Config.Durable != "" {
			infos = append(infos, info)
		}
	}
	if lister.Err() != nil {
		return nil // a partial list would look like vanished plugins
	}
	names := make([]string, 0, len(infos))
	for _, info := range infos {
		names = append(names, info.Name)
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(info.NumPending), info.Name)
		ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(info.NumAckPending), info.Name)
		ch <- prometheus.MustNewConstMetric(c.redelivered, prometheus.GaugeValue, float64(info.NumRedelivered), info.Name)
	}
	return names
}

// collectDeadLetters exports the dead letters per plugin, and 0 for the
// plugins in zero that have none.
func (c *collector) collectDeadLetters(ctx context.Context, ch chan<- prometheus.Metric, zero []string) {
	st, err := c.js.Stream(ctx, c.deadLetters)
	if err != nil {
		return
	}
	head := c.prefix + ".deadletter."
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(head+">"))
	if err != nil {
		return
	}
	counts := make(map[string]uint64, len(info.State.Subjects)+len(zero))
	for _, name := range zero {
		counts[name] = 0
	}
	for subject, n := range info.State.Subjects {
		plugin, ok := strings.CutPrefix(subject, head)
		if !ok || plugin == "" {
			continue
		}
		counts[plugin] += n
	}
	for plugin, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.letters, prometheus.GaugeValue, float64(n), plugin)
	}
}
