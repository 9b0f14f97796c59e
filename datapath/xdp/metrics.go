package xdp

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// CounterValues returns each counter summed over the CPUs, keyed by its metric label.
func (o *Objects) CounterValues() (map[string]uint64, error) {
	out := make(map[string]uint64, len(o.labels))
	var perCPU []uint64
	for i, label := range o.labels {
		if err := o.Counters.Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("read counter %s: %w", label, err)
		}
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		out[label] = sum
	}
	return out, nil
}

// Collector exports the program's per-CPU counters, summed at scrape time, as
// metlo_appliance_xdp_packets_total{reason}.
type Collector struct {
	objs *Objects
	desc *prometheus.Desc
}

// NewCollector returns a Collector over objs' counters.
func NewCollector(objs *Objects) *Collector {
	return &Collector{
		objs: objs,
		desc: prometheus.NewDesc(
			prometheus.BuildFQName("metlo_appliance", "xdp", "packets_total"),
			"Packets seen by the XDP capture program, by outcome (received counts every packet; truncated marks captured frames shorter than on the wire).",
			[]string{"reason"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	values, err := c.objs.CounterValues()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, label := range c.objs.labels {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(values[label]), label)
	}
}
