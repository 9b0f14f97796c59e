package datapath

import "github.com/prometheus/client_golang/prometheus"

// DefragCollector exports a Defragmenter's counters, read at scrape time.
type DefragCollector struct {
	f                        *Defragmenter
	datagrams, duplicates    *prometheus.Desc
	heldBytes, heldDatagrams *prometheus.Desc
}

// NewDefragCollector returns a collector of f's counters as
// metlo_appliance_datapath_ip_datagrams_total{result}, ..._ip_fragment_duplicates_total,
// ..._ip_reassembly_bytes and ..._ip_reassembly_datagrams.
func NewDefragCollector(f *Defragmenter) *DefragCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("metlo_appliance", "datapath", name), help, labels, nil)
	}
	return &DefragCollector{
		f:             f,
		datagrams:     d("ip_datagrams_total", "Fragmented IP datagrams by what became of them: reassembled, expired, overlapping, invalid, evicted (memory budget), ignored (nothing to decode), unfinished (at shutdown).", "result"),
		duplicates:    d("ip_fragment_duplicates_total", "IP fragments ignored because every byte of them was held already (mirrored twice)."),
		heldBytes:     d("ip_reassembly_bytes", "Memory held for IP datagrams being reassembled."),
		heldDatagrams: d("ip_reassembly_datagrams", "IP datagrams being reassembled."),
	}
}

// Describe implements prometheus.Collector.
func (c *DefragCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.datagrams
	ch <- c.duplicates
	ch <- c.heldBytes
	ch <- c.heldDatagrams
}

// Collect implements prometheus.Collector.
func (c *DefragCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.f.Stats()
	for _, r := range []struct {
		label string
		n     uint64
	}{{"reassembled", s.Reassembled}, {"expired", s.Expired}, {"overlapping", s.Overlapping}, {"invalid", s.Invalid},
		{"evicted", s.Evicted}, {"ignored", s.Ignored}, {"unfinished", s.Unfinished}} {
		ch <- prometheus.MustNewConstMetric(c.datagrams, prometheus.CounterValue, float64(r.n), r.label)
	}
	ch <- prometheus.MustNewConstMetric(c.duplicates, prometheus.CounterValue, float64(s.Duplicates))
	ch <- prometheus.MustNewConstMetric(c.heldBytes, prometheus.GaugeValue, float64(s.HeldBytes))
	ch <- prometheus.MustNewConstMetric(c.heldDatagrams, prometheus.GaugeValue, float64(s.Datagrams))
}
