package exporter

import (
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const namespace = "metlo_appliance"

// Trace outcomes, the outcome label of metlo_appliance_exporter_traces_total. Every trace
// a sink is given ends in exactly one of them, or is still held (spooled) at exit.
const (
	OutcomeSent              = "sent"                 // accepted by the sink (written / acknowledged)
	OutcomeSkippedNoResponse = "skipped_no_response"  // not sent to Metlo: no response (status 0), which it discards
	OutcomeSkippedMethod     = "skipped_method"       // not sent to Metlo: a method outside the nine its analyzer knows
	OutcomeShedRepeat        = "shed_repeat"          // shed under a cap: an endpoint already sent or queued recently
	OutcomeDroppedQueueFull  = "dropped_queue_full"   // queue at its trace limit
	OutcomeDroppedQueueBytes = "dropped_queue_bytes"  // queue at its byte limit
	OutcomeDroppedSpoolFull  = "dropped_spool_full"   // spool at its size limit (by its full policy)
	OutcomeDroppedSpoolError = "dropped_spool_error"  // the spool's disk refused the write
	OutcomeDroppedShutdown   = "dropped_shutdown"     // still queued in memory when the flush deadline passed
	OutcomeDroppedRejected   = "dropped_rejected"     // this one trace refused by the backend (400/422)
	OutcomeDroppedServerErr  = "dropped_server_error" // this one trace failed on the backend (5xx) again and again while others passed
	OutcomeDroppedTooLarge   = "dropped_too_large"    // over the size limit even with empty bodies
	OutcomeDroppedWriteError = "dropped_write_error"  // the sink's output failed
)

// metloOutcomes are the outcomes a Metlo sink can produce; jsonlOutcomes a JSONL sink's.
var (
	metloOutcomes = []string{OutcomeSent, OutcomeSkippedNoResponse, OutcomeSkippedMethod, OutcomeShedRepeat,
		OutcomeDroppedQueueFull, OutcomeDroppedQueueBytes, OutcomeDroppedSpoolFull, OutcomeDroppedSpoolError,
		OutcomeDroppedShutdown, OutcomeDroppedRejected, OutcomeDroppedServerErr, OutcomeDroppedTooLarge}
	jsonlOutcomes = []string{OutcomeSent, OutcomeDroppedWriteError}
)

// IsLoss tells outcomes that lose a trace (dropped or shed) from delivery and deliberate skips.
func IsLoss(outcome string) bool {
	return strings.HasPrefix(outcome, "dropped_") || strings.HasPrefix(outcome, "shed_")
}

// queueSink labels the exporter's shared intake queue, which sits in front of every sink.
const queueSink = "queue"

// Metrics owns the appliance's Prometheus registry and the exporter's own metrics.
type Metrics struct {
	reg *prometheus.Registry

	traces        *prometheus.CounterVec
	trimmed       *prometheus.CounterVec
	rewritten     *prometheus.CounterVec
	batches       *prometheus.CounterVec
	batchDuration *prometheus.HistogramVec
	batchLimit    *prometheus.GaugeVec
	queues        *queueCollector
}

// Build identifies the running binary on metlo_appliance_build_info.
type Build struct {
	Version  string // release version (ldflags), or the module version, or "dev"
	Revision string // VCS revision the binary was built from ("" when unknown)
}

// NewMetrics returns Metrics with a fresh registry holding the exporter metrics and the
// build info of version (no revision).
func NewMetrics(version string) *Metrics { return NewBuildMetrics(Build{Version: version}) }

// NewBuildMetrics returns Metrics with a fresh registry holding the exporter metrics and
// b's build info; RegisterRuntime adds the Go runtime and process collectors.
func NewBuildMetrics(b Build) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		traces: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prometheus.BuildFQName(namespace, "exporter", "traces_total"),
			Help: "Traces handled per sink by outcome (sent, or dropped_<reason>).",
		}, []string{"sink", "outcome"}),
		trimmed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prometheus.BuildFQName(namespace, "exporter", "trimmed_traces_total"),
			Help: "Traces whose bodies were cut to fit the backend's size limit (flagged meta.trimmed).",
		}, []string{"sink"}),
		rewritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prometheus.BuildFQName(namespace, "exporter", "paths_rewritten_total"),
			Help: "Request paths Metlo would refuse, rewritten to one it accepts (meta.originalPath keeps the original), by reason.",
		}, []string{"reason"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prometheus.BuildFQName(namespace, "exporter", "batches_total"),
			Help: "Batch POSTs to the backend by result (ok, retry, rejected, split, bisect).",
		}, []string{"sink", "result"}),
		batchLimit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: prometheus.BuildFQName(namespace, "exporter", "batch_limit_bytes"),
			Help: "Largest POST body the sink sends; lowered when the backend answers 413.",
		}, []string{"sink"}),
		batchDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    prometheus.BuildFQName(namespace, "exporter", "batch_duration_seconds"),
			Help:    "Time one batch POST to the backend took, successful or not.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"sink"}),
		queues: &queueCollector{
			traces: prometheus.NewDesc(prometheus.BuildFQName(namespace, "exporter", "queue_traces"),
				"Traces waiting in a queue or spool (sink=\"queue\" is the shared intake queue).", []string{"sink"}, nil),
			bytes: prometheus.NewDesc(prometheus.BuildFQName(namespace, "exporter", "queue_bytes"),
				"Bytes waiting in a queue or spool (sink=\"queue\" is the shared intake queue).", []string{"sink"}, nil),
			limit: prometheus.NewDesc(prometheus.BuildFQName(namespace, "exporter", "queue_limit_bytes"),
				"Bytes a queue or spool may hold (a spool counts its files on disk against it).", []string{"sink"}, nil),
			limitTraces: prometheus.NewDesc(prometheus.BuildFQName(namespace, "exporter", "queue_limit_traces"),
				"Traces a queue may hold (absent for a disk spool, which is bounded in bytes only).", []string{"sink"}, nil),
			used: prometheus.NewDesc(prometheus.BuildFQName(namespace, "exporter", "queue_used_bytes"),
				"Bytes counted against queue_limit_bytes (a spool's files on disk).", []string{"sink"}, nil),
			corruptSegs: prometheus.NewDesc(prometheus.BuildFQName(namespace, "exporter", "spool_corrupt_segments_total"),
				"Spool segments found damaged or truncated and skipped.", []string{"sink"}, nil),
			corruptBytes: prometheus.NewDesc(prometheus.BuildFQName(namespace, "exporter", "spool_corrupt_bytes_total"),
				"Bytes of damaged spool data skipped.", []string{"sink"}, nil),
			replayed: prometheus.NewDesc(prometheus.BuildFQName(namespace, "exporter", "spool_replayed_traces_total"),
				"Traces found in the spool at start, left by an earlier run, to be sent again.", []string{"sink"}, nil),
			funcs: map[string]func() QueueStats{},
		},
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: prometheus.BuildFQName(namespace, "", "build_info"),
		Help: "Always 1; labels carry the appliance version, the VCS revision and the Go version it was built with.",
	}, []string{"version", "revision", "goversion"})
	build.WithLabelValues(b.Version, b.Revision, runtime.Version()).Set(1)
	m.reg.MustRegister(m.traces, m.trimmed, m.rewritten, m.batches, m.batchDuration, m.batchLimit, m.queues, build)
	for _, r := range rewriteReasons {
		m.rewritten.WithLabelValues(r)
	}
	return m
}

// Registry is the registry every appliance metric lives in; /metrics serves it.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Register adds an extra collector, such as the XDP per-CPU counters.
func (m *Metrics) Register(c prometheus.Collector) error { return m.reg.Register(c) }

// RegisterRuntime adds the Go runtime and process collectors (left out of golden tests).
func (m *Metrics) RegisterRuntime() error {
	if err := m.reg.Register(collectors.NewGoCollector()); err != nil {
		return err
	}
	return m.reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// sinkCounters are one sink's pre-resolved counters, so the per-trace path does no label
// lookup; each keeps a plain copy for the end-of-run summary.
type sinkCounters struct {
	outcome map[string]*counted
	trimmed prometheus.Counter
}

type counted struct {
	c prometheus.Counter
	n atomic.Uint64
}

// forSink resolves sink's counters, pre-creating the listed outcomes so rates start from
// zero instead of appearing with the first event.
func (m *Metrics) forSink(sink string, outcomes ...string) *sinkCounters {
	c := &sinkCounters{outcome: map[string]*counted{}, trimmed: m.trimmed.WithLabelValues(sink)}
	for _, o := range outcomes {
		c.outcome[o] = &counted{c: m.traces.WithLabelValues(sink, o)}
	}
	return c
}

func (c *sinkCounters) add(outcome string, n int) {
	if n > 0 {
		o := c.outcome[outcome]
		o.c.Add(float64(n))
		o.n.Add(uint64(n))
	}
}

// snapshot returns the non-zero outcome counts.
func (c *sinkCounters) snapshot() map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range c.outcome {
		if n := v.n.Load(); n > 0 {
			out[k] = n
		}
	}
	return out
}

// intakeOutcomes are the outcomes the shared intake queue can produce.
var intakeOutcomes = []string{OutcomeShedRepeat, OutcomeDroppedQueueFull, OutcomeDroppedQueueBytes, OutcomeDroppedShutdown, OutcomeDroppedTooLarge}

// QueueStats is what the queue gauges report for one queue or spool.
type QueueStats struct {
	Traces, Bytes            int64 // waiting
	LimitBytes, UsedBytes    int64 // capacity, and what counts against it
	LimitTraces              int64 // capacity in traces; 0 = not bounded in traces (a disk spool)
	CorruptSegments, Corrupt int64 // spool damage skipped (segments, bytes)
	Replayed                 int64 // traces found at start
	Spool                    bool  // a disk spool (reports the spool metrics)
}

// trackQueue makes the queue gauges of sink report fn's stats at scrape time.
func (m *Metrics) trackQueue(sink string, fn func() QueueStats) {
	m.queues.mu.Lock()
	m.queues.funcs[sink] = fn
	m.queues.mu.Unlock()
}

// queueCollector reads queue depths when scraped, so queues never touch Prometheus per trace.
type queueCollector struct {
	traces, bytes, limit, used          *prometheus.Desc
	limitTraces                         *prometheus.Desc
	corruptSegs, corruptBytes, replayed *prometheus.Desc
	mu                                  sync.Mutex
	funcs                               map[string]func() QueueStats
}

func (q *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{q.traces, q.bytes, q.limit, q.limitTraces, q.used, q.corruptSegs, q.corruptBytes, q.replayed} {
		ch <- d
	}
}

func (q *queueCollector) Collect(ch chan<- prometheus.Metric) {
	q.mu.Lock()
	names := make([]string, 0, len(q.funcs))
	for n := range q.funcs {
		names = append(names, n)
	}
	sort.Strings(names)
	fns := make([]func() QueueStats, len(names))
	for i, n := range names {
		fns[i] = q.funcs[n]
	}
	q.mu.Unlock()
	for i, n := range names {
		st := fns[i]()
		ch <- prometheus.MustNewConstMetric(q.traces, prometheus.GaugeValue, float64(st.Traces), n)
		ch <- prometheus.MustNewConstMetric(q.bytes, prometheus.GaugeValue, float64(st.Bytes), n)
		ch <- prometheus.MustNewConstMetric(q.limit, prometheus.GaugeValue, float64(st.LimitBytes), n)
		ch <- prometheus.MustNewConstMetric(q.used, prometheus.GaugeValue, float64(st.UsedBytes), n)
		if st.LimitTraces > 0 {
			ch <- prometheus.MustNewConstMetric(q.limitTraces, prometheus.GaugeValue, float64(st.LimitTraces), n)
		}
		if st.Spool {
			ch <- prometheus.MustNewConstMetric(q.corruptSegs, prometheus.CounterValue, float64(st.CorruptSegments), n)
			ch <- prometheus.MustNewConstMetric(q.corruptBytes, prometheus.CounterValue, float64(st.Corrupt), n)
			ch <- prometheus.MustNewConstMetric(q.replayed, prometheus.CounterValue, float64(st.Replayed), n)
		}
	}
}
