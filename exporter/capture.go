package exporter

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// CaptureStats is what the live capture reports at scrape time.
type CaptureStats interface{ CaptureSnapshot() CaptureSnapshot }

// CaptureSnapshot is the capture's state and every loss it counted, read once per scrape.
type CaptureSnapshot struct {
	Method    string // metlo_appliance_capture_info{method}: xdp, afpacket, udp, pcap
	Mode      string // {mode}: native or generic for xdp, else empty
	Interface string // {interface}; for udp the bound address
	Up        bool   // metlo_appliance_capture_up
	// Dropped counts frames lost before the appliance read them, by reason
	// (metlo_appliance_capture_dropped_total{reason}): ring_buffer_full (XDP),
	// packet_ring_full (AF_PACKET), socket_overflow (UDP), bad_record.
	Dropped map[string]uint64
	// RingFreezes counts the times an AF_PACKET ring filled up
	// (metlo_appliance_capture_ring_freezes_total).
	RingFreezes uint64
	// Rejected counts tunnel packets refused by the accepted-source and VNI filters, by
	// reason (metlo_appliance_capture_rejected_total{reason}): source, vni.
	Rejected map[string]uint64
	// BackpressureWaits and BackpressureSeconds count the times (and the time) a capture
	// goroutine waited for the reassembly workers (metlo_appliance_datapath_backpressure_*).
	BackpressureWaits   uint64
	BackpressureSeconds float64
	// OneSidedFlows counts connections that ended having shown packets in one direction
	// only: the mirror (or a load balancer in front of several appliances) delivers half
	// of them (metlo_appliance_capture_one_sided_flows_total).
	OneSidedFlows uint64
	// FlowsEnded counts every connection that ended, the denominator of OneSidedFlows
	// (metlo_appliance_capture_flows_ended_total).
	FlowsEnded uint64
}

// RegisterCapture makes /metrics report c's snapshot, taken once per scrape.
func (m *Metrics) RegisterCapture(c CaptureStats) error {
	return m.reg.Register(newCaptureCollector(c))
}

type captureCollector struct {
	stats                                CaptureStats
	up, info, dropped, freezes, rejected *prometheus.Desc
	bpWaits, bpSeconds, oneSided, ended  *prometheus.Desc
}

func newCaptureCollector(c CaptureStats) *captureCollector {
	d := func(sub, name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, sub, name), help, labels, nil)
	}
	return &captureCollector{
		stats:     c,
		up:        d("capture", "up", "1 while the capture is open and delivering frames, 0 otherwise."),
		info:      d("capture", "info", "Always 1; labels say how the appliance captures.", "method", "mode", "interface"),
		dropped:   d("capture", "dropped_total", "Frames lost before the appliance read them, by reason (ring_buffer_full: XDP ring; packet_ring_full: AF_PACKET ring; socket_overflow: UDP receive queue).", "reason"),
		freezes:   d("capture", "ring_freezes_total", "Times an AF_PACKET ring filled up (the kernel dropped until the reader freed a block)."),
		rejected:  d("capture", "rejected_total", "Tunnel packets refused by the accepted-source and VNI filters, by reason (source, vni).", "reason"),
		bpWaits:   d("datapath", "backpressure_waits_total", "Times a capture goroutine waited for the reassembly workers to free a batch."),
		bpSeconds: d("datapath", "backpressure_seconds_total", "Time capture goroutines spent waiting for the reassembly workers; meanwhile the kernel ring fills."),
		oneSided:  d("capture", "one_sided_flows_total", "Connections that ended having shown packets in one direction only (asymmetric mirroring)."),
		ended:     d("capture", "flows_ended_total", "Connections that ended (closed, reset, idle or evicted): the denominator of one_sided_flows_total."),
	}
}

func (c *captureCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.info, c.dropped, c.freezes, c.rejected, c.bpWaits, c.bpSeconds, c.oneSided, c.ended} {
		ch <- d
	}
}

func (c *captureCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats.CaptureSnapshot()
	up := 0.0
	if s.Up {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, s.Method, s.Mode, s.Interface)
	collectSorted(ch, c.dropped, s.Dropped)
	ch <- prometheus.MustNewConstMetric(c.freezes, prometheus.CounterValue, float64(s.RingFreezes))
	collectSorted(ch, c.rejected, s.Rejected)
	ch <- prometheus.MustNewConstMetric(c.bpWaits, prometheus.CounterValue, float64(s.BackpressureWaits))
	ch <- prometheus.MustNewConstMetric(c.bpSeconds, prometheus.CounterValue, s.BackpressureSeconds)
	ch <- prometheus.MustNewConstMetric(c.oneSided, prometheus.CounterValue, float64(s.OneSidedFlows))
	ch <- prometheus.MustNewConstMetric(c.ended, prometheus.CounterValue, float64(s.FlowsEnded))
}

func collectSorted(ch chan<- prometheus.Metric, d *prometheus.Desc, m map[string]uint64) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(m[k]), k)
	}
}
