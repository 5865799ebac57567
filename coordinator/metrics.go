package coordinator

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugbus/plugbus/coordinator/internal/lease"
	"github.com/plugbus/plugbus/coordinator/internal/registry"
)

// newLeaseCollector exports whether this coordinator holds the lease.
func newLeaseCollector(l *lease.Lease) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "plugbus_coordinator_lease_held",
		Help: "1 while this coordinator holds the lease and announces lifecycle changes, 0 otherwise.",
	}, func() float64 {
		if l.Held() {
			return 1
		}
		return 0
	})
}

// registryCollector exports the registry's counts as gauges, read at scrape
// time so they are never stale.
type registryCollector struct {
	reg       *registry.Registry
	plugins   *prometheus.Desc
	instances *prometheus.Desc
	invalid   *prometheus.Desc
}

func newRegistryCollector(reg *registry.Registry) *registryCollector {
	return &registryCollector{
		reg:       reg,
		plugins:   prometheus.NewDesc("plugbus_plugins", "Plugins known to the coordinator, by state.", []string{"state"}, nil),
		instances: prometheus.NewDesc("plugbus_instances", "Plugin instances known to the coordinator, by plugin and state.", []string{"plugin", "state"}, nil),
		invalid: prometheus.NewDesc("plugbus_plugin_invalid_messages",
			"Messages a plugin's known instances rejected as no valid event since they started (from their micro STATS).", []string{"plugin"}, nil),
	}
}

func (c *registryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.plugins
	ch <- c.instances
	ch <- c.invalid
}

func (c *registryCollector) Collect(ch chan<- prometheus.Metric) {
	plugins := map[registry.State]int{registry.Running: 0, registry.Gone: 0, registry.Stopped: 0, registry.Incompatible: 0}
	for _, p := range c.reg.Plugins() {
		plugins[p.State]++
		instances := map[registry.State]int{}
		var invalid uint64
		for _, in := range p.Instances {
			instances[in.State]++
			invalid += in.Stats.Invalid
		}
		ch <- prometheus.MustNewConstMetric(c.invalid, prometheus.GaugeValue, float64(invalid), p.Name)
		for state, n := range instances {
			ch <- prometheus.MustNewConstMetric(c.instances, prometheus.GaugeValue, float64(n), p.Name, string(state))
		}
	}
	for state, n := range plugins {
		ch <- prometheus.MustNewConstMetric(c.plugins, prometheus.GaugeValue, float64(n), string(state))
	}
}
