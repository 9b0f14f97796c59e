package exporter

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// PipelineStats is what the capture pipeline reports at scrape time.
type PipelineStats interface{ Snapshot() PipelineSnapshot }

// PipelineSnapshot is the capture pipeline's counters summed over its workers.
type PipelineSnapshot struct {
	Packets            map[PacketKey]uint64 // metlo_appliance_datapath_packets_total{encap,outcome}
	Bytes              map[string]uint64    // metlo_appliance_datapath_bytes_total{encap}
	Flows              int64                // metlo_appliance_reassembly_flows (gauge)
	OutOfOrderSegments uint64               // metlo_appliance_reassembly_out_of_order_segments_total
	Gaps               uint64               // metlo_appliance_reassembly_gaps_total
	BufferedBytes      int64                // metlo_appliance_reassembly_buffered_bytes (gauge)
	Drops              map[string]uint64    // metlo_appliance_reassembly_dropped_total{reason}
	Exchanges          map[string]uint64    // metlo_appliance_http_exchanges_total{outcome}
	Protocols          map[string]uint64    // metlo_appliance_reassembly_protocol_flows_total{protocol}
	HTTP2Frames        map[string]uint64    // metlo_appliance_http2_frames_total{type}
	HTTP2Events        map[string]uint64    // metlo_appliance_http2_events_total{event}
}

// PacketKey labels one packet counter.
type PacketKey struct{ Encap, Outcome string }

// RegisterPipeline makes /metrics report p's snapshot, taken once per scrape.
func (m *Metrics) RegisterPipeline(p PipelineStats) error {
	return m.reg.Register(newPipelineCollector(p))
}

type pipelineCollector struct {
	stats                                  PipelineStats
	packets, bytes, flows, ooo, gaps, bufd *prometheus.Desc
	drops, exchanges                       *prometheus.Desc
	protocols, h2frames, h2events          *prometheus.Desc
}

func newPipelineCollector(p PipelineStats) *pipelineCollector {
	d := func(sub, name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, sub, name), help, labels, nil)
	}
	return &pipelineCollector{
		stats:     p,
		packets:   d("datapath", "packets_total", "Captured packets by encapsulation and what became of them.", "encap", "outcome"),
		bytes:     d("datapath", "bytes_total", "Captured bytes by encapsulation.", "encap"),
		flows:     d("reassembly", "flows", "TCP connections currently tracked."),
		ooo:       d("reassembly", "out_of_order_segments_total", "TCP segments that arrived ahead of a hole and were buffered."),
		gaps:      d("reassembly", "gaps_total", "Holes in TCP streams skipped because the missing bytes never came."),
		bufd:      d("reassembly", "buffered_bytes", "Bytes held against the reassembly memory budget: out-of-order data, held responses, bodies of unemitted exchanges."),
		drops:     d("reassembly", "dropped_total", "Segments or flows given up by reason (flow table full, buffer caps, …).", "reason"),
		exchanges: d("http", "exchanges_total", "HTTP exchanges by outcome (complete, no_response, truncated, …).", "outcome"),
		protocols: d("reassembly", "protocol_flows_total", "TCP connections by the protocol they were recognised as (http1, http2, other); an h2c upgrade counts under http1 and http2.", "protocol"),
		h2frames:  d("http2", "frames_total", "HTTP/2 frames by type.", "type"),
		h2events:  d("http2", "events_total", "HTTP/2 events: header fields lost to unseen HPACK entries, undecodable header blocks, framing lost, h2c upgrades, gRPC messages rendered.", "event"),
	}
}

func (c *pipelineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.packets, c.bytes, c.flows, c.ooo, c.gaps, c.bufd, c.drops, c.exchanges, c.protocols, c.h2frames, c.h2events} {
		ch <- d
	}
}

func (c *pipelineCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats.Snapshot()
	keys := make([]PacketKey, 0, len(s.Packets))
	for k := range s.Packets {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Encap != keys[j].Encap {
			return keys[i].Encap < keys[j].Encap
		}
		return keys[i].Outcome < keys[j].Outcome
	})
	for _, k := range keys {
		ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(s.Packets[k]), k.Encap, k.Outcome)
	}
	collectMap(ch, c.bytes, s.Bytes)
	ch <- prometheus.MustNewConstMetric(c.flows, prometheus.GaugeValue, float64(s.Flows))
	ch <- prometheus.MustNewConstMetric(c.ooo, prometheus.CounterValue, float64(s.OutOfOrderSegments))
	ch <- prometheus.MustNewConstMetric(c.gaps, prometheus.CounterValue, float64(s.Gaps))
	ch <- prometheus.MustNewConstMetric(c.bufd, prometheus.GaugeValue, float64(s.BufferedBytes))
	collectMap(ch, c.drops, s.Drops)
	collectMap(ch, c.exchanges, s.Exchanges)
	collectMap(ch, c.protocols, s.Protocols)
	collectMap(ch, c.h2frames, s.HTTP2Frames)
	collectMap(ch, c.h2events, s.HTTP2Events)
}

func collectMap(ch chan<- prometheus.Metric, d *prometheus.Desc, m map[string]uint64) {
	for k, v := range m {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), k)
	}
}
