package coordinator

import (
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugbus/plugbus/bus"
	"github.com/plugbus/plugbus/coordinator/internal/identity"
)

// Quarantine in secure mode: the embedded server reports every publish
// and subscription it refuses a client to its logger, which counts them
// per identity (identity.Guard); an identity past the settings' refusals
// within their window has its connections closed and is refused at
// connect until its cool-down ends. See docs/operating.md, Security.

// newGuard makes secure mode's guard, exempting the coordinator's own
// users and the admin's.
func (c *Coordinator) newGuard(sec *security) *identity.Guard {
	q := c.cfg.Quarantine
	p := identity.Policy{Window: time.Duration(q.Window), CoolDown: time.Duration(q.CoolDown), MaxCoolDown: time.Duration(q.MaxCoolDown)}
	if !q.Off {
		p.Refusals = q.Refusals
	}
	return identity.NewGuard(p, func(qu identity.Quarantine) { go c.quarantined(qu) }, sec.selfKey, sec.httpKey, sec.adminKey)
}

// quarantined closes a quarantined identity's connections, logs it once,
// announces it, and does the same when the quarantine ends.
func (c *Coordinator) quarantined(q identity.Quarantine) {
	sec := c.sec
	name := sec.keyName(q.Key)
	if srv := sec.srv.Load(); srv != nil {
		if err := sec.users.Close(srv, q.Key); err != nil {
			c.log.Warn("quarantine: could not close every connection", "identity", name, "err", err)
		}
	}
	c.log.Warn("identity quarantined: its connections are closed and it is refused until the cool-down ends",
		"identity", name, "public_key", q.Key, "refusals", q.Refusals, "window", time.Duration(c.cfg.Quarantine.Window).String(),
		"cool_down", q.CoolDown().String(), "until", q.Until.UTC().Format(time.RFC3339), "strike", q.Strike, "last_refused", q.Subject)
	c.publish(bus.TypePluginQuarantined, quarantineEvent{Identity: name, Quarantine: q, CoolDown: q.CoolDown().String()})
	time.AfterFunc(q.CoolDown(), func() {
		if _, still := sec.guard.Quarantined(q.Key); still {
			return // lengthened meanwhile; that one announces its end
		}
		if c.closing.Load() {
			return
		}
		c.log.Info("identity's quarantine is over: it may connect again", "identity", name, "public_key", q.Key)
		c.publish(bus.TypePluginReleased, quarantineEvent{Identity: name, Quarantine: q, CoolDown: q.CoolDown().String()})
	})
}

// quarantineEvent is the data of the quarantined and released events.
type quarantineEvent struct {
	Identity string `json:"identity"`
	identity.Quarantine
	CoolDown string `json:"cool_down"`
}

// keyName names the identity with key key: a plugin's or an agent's
// name, "cli", or the key itself.
func (s *security) keyName(key string) string {
	for _, id := range s.store.List() {
		if id.PublicKey == key {
			return id.Name
		}
	}
	for _, a := range s.store.Agents() {
		if a.PublicKey == key {
			return "agent:" + a.Name
		}
	}
	if key == s.cliKey {
		return "cli"
	}
	return key
}

// serverLogger is the embedded server's logger in secure mode: it counts
// refusals for the guard and drops everything else.
func (s *security) serverLogger() server.Logger {
	return s.guard.Logger(s.srv.Load)
}

// quarantineCollector exports the guard's counts, read at scrape time.
type quarantineCollector struct {
	sec                               *security
	refusals, quarantines, inForceNow *prometheus.Desc
}

func newQuarantineCollector(sec *security) *quarantineCollector {
	return &quarantineCollector{
		sec: sec,
		refusals: prometheus.NewDesc("plugbus_identity_refusals_total",
			"Publishes and subscriptions the embedded server refused an identity's connections (secure mode).", []string{"identity"}, nil),
		quarantines: prometheus.NewDesc("plugbus_identity_quarantines_total",
			"Times an identity was quarantined for too many refusals (secure mode).", []string{"identity"}, nil),
		inForceNow: prometheus.NewDesc("plugbus_identity_quarantined",
			"1 while an identity is quarantined: its connections closed and refused until its cool-down ends.", []string{"identity"}, nil),
	}
}

func (c *quarantineCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.refusals
	ch <- c.quarantines
	ch <- c.inForceNow
}

func (c *quarantineCollector) Collect(ch chan<- prometheus.Metric) {
	for key, s := range c.sec.guard.Stats() {
		name := c.sec.keyName(key)
		ch <- prometheus.MustNewConstMetric(c.refusals, prometheus.CounterValue, float64(s.Refusals), name)
		ch <- prometheus.MustNewConstMetric(c.quarantines, prometheus.CounterValue, float64(s.Quarantines), name)
		in := 0.0
		if s.Quarantine != nil {
			in = 1
		}
		ch <- prometheus.MustNewConstMetric(c.inForceNow, prometheus.GaugeValue, in, name)
	}
}
