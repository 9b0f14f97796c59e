package exporter

import (
	"runtime"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const namespace = "metlo_appliance"

// Trace outcomes, the outcome label of metlo_appliance_exporter_traces_total.
const (
	OutcomeSent              = "sent"                // accepted by the sink (written / acknowledged)
	OutcomeDroppedQueueFull  = "dropped_queue_full"  // queue at its trace limit
	OutcomeDroppedQueueBytes = "dropped_queue_bytes" // queue at its byte limit
	OutcomeDroppedShutdown   = "dropped_shutdown"    // still queued when the flush deadline passed
	OutcomeDroppedRejected   = "dropped_rejected"    // refused by the backend with a non-retryable status
	OutcomeDroppedTooLarge   = "dropped_too_large"   // over the size limit even with empty bodies
	OutcomeDroppedWriteError = "dropped_write_error" // the sink's output failed
)

var outcomes = []string{OutcomeSent, OutcomeDroppedQueueFull, OutcomeDroppedQueueBytes, OutcomeDroppedShutdown,
	OutcomeDroppedRejected, OutcomeDroppedTooLarge, OutcomeDroppedWriteError}

// queueSink labels the exporter's shared intake queue, which sits in front of every sink.
const queueSink = "queue"

// Metrics owns the appliance's Prometheus registry and the exporter's own metrics.
type Metrics struct {
	reg *prometheus.Registry

	traces        *prometheus.CounterVec
	trimmed       *prometheus.CounterVec
	batches       *prometheus.CounterVec
	batchDuration *prometheus.HistogramVec
	queues        *queueCollector
}

// NewMetrics returns Metrics with a fresh registry holding the exporter metrics, build info
// and the Go runtime and process collectors.
func NewMetrics(version string) *Metrics {
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
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prometheus.BuildFQName(namespace, "exporter", "batches_total"),
			Help: "Batch POSTs to the backend by result (ok, retry, rejected, split).",
		}, []string{"sink", "result"}),
		batchDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    prometheus.BuildFQName(namespace, "exporter", "batch_duration_seconds"),
			Help:    "Time one batch POST to the backend took, successful or not.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"sink"}),
		queues: &queueCollector{
			traces: prometheus.NewDesc(prometheus.BuildFQName(namespace, "exporter", "queue_traces"),
				"Traces waiting in a queue (sink=\"queue\" is the shared intake queue).", []string{"sink"}, nil),
			bytes: prometheus.NewDesc(prometheus.BuildFQName(namespace, "exporter", "queue_bytes"),
				"Bytes waiting in a queue (sink=\"queue\" is the shared intake queue).", []string{"sink"}, nil),
			funcs: map[string]func() (int64, int64){},
		},
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: prometheus.BuildFQName(namespace, "", "build_info"),
		Help: "Always 1; labels carry the appliance version and the Go version it was built with.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(version, runtime.Version()).Set(1)
	m.reg.MustRegister(m.traces, m.trimmed, m.batches, m.batchDuration, m.queues, build)
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

// sinkCounters are one sink's pre-resolved counters, so the per-trace path does no label lookup.
type sinkCounters struct {
	outcome map[string]prometheus.Counter
	trimmed prometheus.Counter
}

// forSink resolves sink's counters, pre-creating the listed outcomes (all when none are
// listed) so rates start from zero instead of appearing with the first event.
func (m *Metrics) forSink(sink string, only ...string) *sinkCounters {
	c := &sinkCounters{outcome: map[string]prometheus.Counter{}, trimmed: m.trimmed.WithLabelValues(sink)}
	if len(only) == 0 {
		only = outcomes
	}
	for _, o := range only {
		c.outcome[o] = m.traces.WithLabelValues(sink, o)
	}
	return c
}

func (c *sinkCounters) add(outcome string, n int) {
	if n > 0 {
		c.outcome[outcome].Add(float64(n))
	}
}

// intakeOutcomes are the outcomes the shared intake queue can produce.
var intakeOutcomes = []string{OutcomeDroppedQueueFull, OutcomeDroppedQueueBytes, OutcomeDroppedShutdown, OutcomeDroppedTooLarge}

// trackQueue makes the queue gauges of sink report fn's (traces, bytes) at scrape time.
func (m *Metrics) trackQueue(sink string, fn func() (traces, bytes int64)) {
	m.queues.mu.Lock()
	m.queues.funcs[sink] = fn
	m.queues.mu.Unlock()
}

// queueCollector reads queue depths when scraped, so queues never touch Prometheus per trace.
type queueCollector struct {
	traces, bytes *prometheus.Desc
	mu            sync.Mutex
	funcs         map[string]func() (int64, int64)
}

func (q *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- q.traces
	ch <- q.bytes
}

func (q *queueCollector) Collect(ch chan<- prometheus.Metric) {
	q.mu.Lock()
	names := make([]string, 0, len(q.funcs))
	for n := range q.funcs {
		names = append(names, n)
	}
	sort.Strings(names)
	fns := make([]func() (int64, int64), len(names))
	for i, n := range names {
		fns[i] = q.funcs[n]
	}
	q.mu.Unlock()
	for i, n := range names {
		t, b := fns[i]()
		ch <- prometheus.MustNewConstMetric(q.traces, prometheus.GaugeValue, float64(t), n)
		ch <- prometheus.MustNewConstMetric(q.bytes, prometheus.GaugeValue, float64(b), n)
	}
}
