// Package exporter turns reassembled HTTP exchanges into Metlo traces and delivers them to
// sinks (the Metlo backend, JSONL files) without ever blocking capture; it also owns the
// appliance's Prometheus metrics and its /metrics, /healthz and /readyz endpoints.
package exporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/metlo-labs/metlo-appliance/exporter/redact"
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
)

// Options configure an Exporter; zero values take the documented defaults.
type Options struct {
	// Sinks are sink specs, "jsonl:PATH" or "metlo:URL"; at least one is required.
	Sinks []string
	// Environment is meta.environment of every trace (default "production").
	Environment string
	// QueueTraces and QueueBytes bound the intake queue between capture and encoding
	// (defaults 65536 traces, 256 MiB); exchanges beyond either are dropped and counted.
	QueueTraces int
	QueueBytes  int64
	// RedactHeaders and RedactFields name headers and fields masked in addition to the
	// defaults of package redact (credential headers; password, token, api_key… in query
	// strings, JSON, form and multipart bodies).
	RedactHeaders []string
	RedactFields  []string
	// NoRedact turns masking off altogether: credentials leave the appliance verbatim.
	NoRedact bool
	// Block makes Submit wait for room in the queue instead of dropping: for offline input
	// (a capture file), where slowing the reader down loses nothing. Live capture must not
	// block, so it leaves this off.
	Block bool
	// Encoders is the number of encoding goroutines (default GOMAXPROCS); 1 keeps the
	// traces in exactly the order they were submitted.
	Encoders int
	// Metlo configures metlo: sinks.
	Metlo MetloOptions
	// Metrics receives the exporter's metrics; nil keeps them in a private registry.
	Metrics *Metrics
	// Ready is told whether each sink currently accepts traces; nil ignores it.
	Ready ReadySetter
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// ReadySetter records whether one component of the appliance is ready; Health implements it.
type ReadySetter interface {
	SetReady(name string, ok bool)
}

func (o *Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.Default()
	}
	return o.Logger
}

func (o *Options) metrics() *Metrics {
	if o.Metrics == nil {
		o.Metrics = NewMetrics("dev")
	}
	return o.Metrics
}

const (
	defaultQueueTraces = 1 << 16
	defaultQueueBytes  = 256 << 20
	// exchangeOverhead approximates the bytes of an exchange beyond its bodies and headers.
	exchangeOverhead = 256
)

// Exporter encodes exchanges once and fans the traces out to every sink. Submit is safe
// for concurrent use by all capture workers and never blocks.
type Exporter struct {
	sinks     []Sink
	enc       TraceEncoder
	maxSize   int // smallest sink size limit; 0 = none
	log       *slog.Logger
	intake    *sinkCounters
	rewritten map[string]prometheus.Counter
	recent    *recentSet // endpoints admitted lately, for shedding repeats when the queue is nearly full

	mu     sync.RWMutex // guards closed against Submit racing Close
	closed bool
	queue  chan *exchange.Exchange

	maxBytes int64
	block    bool
	bytes    atomic.Int64
	abort    atomic.Bool // Close deadline passed: count the rest as dropped
	done     chan struct{}

	endpoints []netip.AddrPort
}

// New parses and starts every sink and the encoding goroutine. A sink that can never work
// (bad spec, unwritable file, backend rejecting the key) is an error; an unreachable
// backend is not — its sink retries in the background.
func New(ctx context.Context, opts Options) (*Exporter, error) {
	if len(opts.Sinks) == 0 {
		return nil, errors.New("start exporter: no sinks configured")
	}
	opts.metrics() // one registry for every sink, even when the caller gave none
	var sinks []Sink
	closeAll := func() {
		for _, s := range sinks {
			s.Close(ctx)
		}
	}
	for _, spec := range opts.Sinks {
		s, err := ParseSink(spec, opts)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("start exporter: %w", err)
		}
		if err := s.Start(ctx); err != nil {
			closeAll()
			return nil, fmt.Errorf("start exporter: sink %s: %w", s.Name(), err)
		}
		sinks = append(sinks, s)
	}
	return newWithSinks(opts, sinks...)
}

// newWithSinks builds an Exporter around sinks that are already started.
func newWithSinks(opts Options, sinks ...Sink) (*Exporter, error) {
	if opts.Environment == "" {
		opts.Environment = "production"
	}
	if opts.QueueTraces <= 0 {
		opts.QueueTraces = defaultQueueTraces
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = defaultQueueBytes
	}
	m := opts.metrics()
	x := &Exporter{
		sinks:     sinks,
		enc:       *NewExporterEncoder(opts),
		log:       opts.logger(),
		intake:    m.forSink(queueSink, intakeOutcomes...),
		rewritten: map[string]prometheus.Counter{},
		recent:    newRecentSet(1<<16, 10*time.Minute),
		queue:     make(chan *exchange.Exchange, opts.QueueTraces),
		maxBytes:  opts.QueueBytes,
		block:     opts.Block,
		done:      make(chan struct{}),
	}
	for _, r := range rewriteReasons {
		x.rewritten[r] = m.rewritten.WithLabelValues(r)
	}
	m.trackQueue(queueSink, func() QueueStats {
		b := x.bytes.Load()
		return QueueStats{Traces: int64(len(x.queue)), Bytes: b, LimitBytes: x.maxBytes, UsedBytes: b, LimitTraces: int64(cap(x.queue))}
	})
	for _, s := range sinks {
		if l, ok := s.(sizeLimited); ok && (x.maxSize == 0 || l.MaxTraceBytes() < x.maxSize) {
			x.maxSize = l.MaxTraceBytes()
		}
		if b, ok := s.(interface{ Endpoints() []netip.AddrPort }); ok {
			x.endpoints = append(x.endpoints, b.Endpoints()...)
		}
	}
	// Encoding is most of the export cost: one encoder per CPU keeps it off the critical
	// path. Exchanges of one connection may then reach the sinks slightly out of order.
	encoders := opts.Encoders
	if encoders <= 0 {
		encoders = runtime.GOMAXPROCS(0)
	}
	var wg sync.WaitGroup
	for range encoders {
		wg.Add(1)
		enc := x.enc // each goroutine owns its encoder's scratch buffers
		go func() {
			defer wg.Done()
			x.run(&enc)
		}()
	}
	go func() {
		wg.Wait()
		close(x.done)
	}()
	return x, nil
}

// NewExporterEncoder returns the trace encoder an exporter with these options uses.
func NewExporterEncoder(opts Options) *TraceEncoder {
	var red *redact.Redactor
	if !opts.NoRedact {
		red = redact.New(opts.RedactHeaders, opts.RedactFields)
	}
	env := opts.Environment
	if env == "" {
		env = "production"
	}
	return &TraceEncoder{Environment: env, Redact: red}
}

// BackendEndpoints are the resolved addresses of every backend the sinks talk to; capture
// must exclude traffic to and from them so the appliance never traces its own exports.
func (x *Exporter) BackendEndpoints() []netip.AddrPort {
	return append([]netip.AddrPort(nil), x.endpoints...)
}

// HandleExchange implements exchange.Handler by calling Submit.
func (x *Exporter) HandleExchange(e *exchange.Exchange) { x.Submit(e) }

// Submit queues e for export and returns at once; the exporter owns e afterwards. When the
// intake queue is full (in traces or bytes) or the exporter is closed, e is dropped and
// counted under the reason.
func (x *Exporter) Submit(e *exchange.Exchange) {
	size := exchangeSize(e)
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.closed {
		x.intake.add(OutcomeDroppedShutdown, 1)
		return
	}
	if x.block { // offline input: wait for room rather than lose a trace
		x.bytes.Add(size)
		x.queue <- e
		return
	}
	// Nearly full: keep room for endpoints not seen lately, so the inventory stays complete
	// when volume must be shed.
	if n := len(x.queue); n >= cap(x.queue)*3/4 || x.bytes.Load() >= x.maxBytes*3/4 {
		if x.recent.seen(endpointKey(e), time.Now()) {
			x.intake.add(OutcomeShedRepeat, 1)
			return
		}
	}
	if x.bytes.Add(size) > x.maxBytes {
		x.bytes.Add(-size)
		x.intake.add(OutcomeDroppedQueueBytes, 1)
		return
	}
	select {
	case x.queue <- e:
	default:
		x.bytes.Add(-size)
		x.intake.add(OutcomeDroppedQueueFull, 1)
	}
}

func exchangeSize(e *exchange.Exchange) int64 {
	n := int64(exchangeOverhead + len(e.Request.Body) + len(e.Response.Body) + len(e.Request.Target))
	for _, h := range e.Request.Headers {
		n += int64(len(h.Name) + len(h.Value))
	}
	for _, h := range e.Response.Headers {
		n += int64(len(h.Name) + len(h.Value))
	}
	return n
}

// run is one encoding goroutine: one encoding per exchange, shared by all sinks.
func (x *Exporter) run(enc *TraceEncoder) {
	var buf []byte
	for e := range x.queue {
		x.bytes.Add(-exchangeSize(e))
		if x.abort.Load() {
			x.intake.add(OutcomeDroppedShutdown, 1)
			continue
		}
		if x.maxSize > 0 {
			var trimmed, ok bool
			buf, trimmed, ok = enc.AppendTraceMax(buf[:0], e, x.maxSize)
			if !ok {
				x.intake.add(OutcomeDroppedTooLarge, 1)
				x.log.Warn("trace dropped: over the backend size limit even without bodies", "host", e.Request.Host, "path", e.Request.Path)
				continue
			}
			if trimmed {
				x.intake.trimmed.Inc()
			}
		} else {
			buf = enc.AppendTrace(buf[:0], e)
		}
		info := traceInfo(e)
		if _, why := metloPath(e.Request.Path); why != "" {
			x.rewritten[why].Inc()
		}
		for _, s := range x.sinks {
			s.Put(buf, info)
		}
	}
}

// Close stops intake, encodes what is queued and flushes every sink until ctx ends; what is
// still undelivered then is counted as dropped_shutdown. It returns the sinks' errors.
func (x *Exporter) Close(ctx context.Context) error {
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return nil
	}
	x.closed = true
	close(x.queue)
	x.mu.Unlock()
	select {
	case <-x.done:
	case <-ctx.Done():
		x.abort.Store(true)
		<-x.done
	}
	return x.closeSinks(ctx)
}

func (x *Exporter) closeSinks(ctx context.Context) error {
	errs := make([]error, len(x.sinks))
	var wg sync.WaitGroup
	for i, s := range x.sinks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Close(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Summary reports, per sink (and for the shared intake queue, named "queue"), how many
// traces ended in each outcome and how many the sink still holds.
func (x *Exporter) Summary() []SinkSummary {
	out := []SinkSummary{{Name: queueSink, Outcomes: x.intake.snapshot()}}
	for _, s := range x.sinks {
		sum := SinkSummary{Name: s.Name()}
		if r, ok := s.(summarizer); ok {
			sum = r.summary()
		}
		out = append(out, sum)
	}
	return out
}
