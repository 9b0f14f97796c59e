package exporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/metlo-labs/metlo-appliance/exporter/spool"
)

// MetloOptions configure metlo: sinks; zero values take the defaults in brackets.
type MetloOptions struct {
	// Key is the raw API key sent in the Authorization header.
	Key string
	// BatchTraces closes a batch at this many traces [500].
	BatchTraces int
	// BatchInterval closes a batch this long after it started filling [1s].
	BatchInterval time.Duration
	// MaxBodyBytes bounds one POST body; the backend rejects bodies over 2 MiB [2000000].
	// A 413 lowers it for the rest of the run.
	MaxBodyBytes int
	// SpoolDir is where the sink keeps its durable spool (a subdirectory per sink); "" keeps
	// traces in memory only, bounded by QueueTraces and QueueBytes.
	SpoolDir string
	// SpoolMaxBytes bounds the spool on disk [a quarter of the file system holding SpoolDir].
	SpoolMaxBytes int64
	// SpoolFull is the policy when the spool is full [spool.DropOldest].
	SpoolFull spool.FullPolicy
	// SpoolFallback keeps traces in memory, with a warning, when the spool cannot be opened
	// (for offline runs, whose input file is the durable copy); otherwise Start fails.
	SpoolFallback bool
	// QueueTraces and QueueBytes bound the in-memory backlog without a spool [100000, 256 MiB].
	QueueTraces int
	QueueBytes  int64
	// RateLimit paces the traces sent per second; 0 means unlimited. Metlo's backend drops
	// traces silently once its queue passes 1000 (docs/configuration.md has the sizing).
	RateLimit float64
	// RateBurst is how many traces may go at once above the pace [500].
	RateBurst int
	// MaxInFlight is how many POSTs may be outstanding at once [2].
	MaxInFlight int
	// MaxLag sheds repeats when the backlog would take longer than this to send at RateLimit:
	// traces of endpoints sent within RecentWindow give way to new endpoints. 0 never sheds.
	MaxLag time.Duration
	// RecentWindow is how long an endpoint counts as recently sent or queued [10m].
	RecentWindow time.Duration
	// ShedFill sheds repeats at intake once the backlog is this full [0.9].
	ShedFill float64
	// ReadyFill reports the sink not ready while the backlog is this full [0.8].
	ReadyFill float64
	// RequestTimeout bounds one HTTP request [10s].
	RequestTimeout time.Duration
	// MinBackoff and MaxBackoff bound the exponential retry delay [100ms, 5s].
	MinBackoff, MaxBackoff time.Duration
	// MaxRetryAfter bounds how long a Retry-After header may hold the sink back [60s].
	MaxRetryAfter time.Duration
	// PersistentFailures is how many 5xx in a row make a batch suspect: when the backend
	// answers its key check meanwhile, the batch is bisected to find the trace at fault [4].
	PersistentFailures int
	// Client sends the requests [a client with keep-alives and no overall timeout].
	Client *http.Client
}

func (o *MetloOptions) withDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defFrac := func(v *float64, d float64) {
		if *v <= 0 || *v > 1 {
			*v = d
		}
	}
	def(&o.BatchTraces, 500)
	def(&o.MaxBodyBytes, 2_000_000)
	def(&o.QueueTraces, 100_000)
	def(&o.RateBurst, 500)
	def(&o.MaxInFlight, 2)
	def(&o.PersistentFailures, 4)
	if o.QueueBytes <= 0 {
		o.QueueBytes = 256 << 20
	}
	defDur(&o.BatchInterval, time.Second)
	defDur(&o.RequestTimeout, 10*time.Second)
	defDur(&o.MinBackoff, 100*time.Millisecond)
	defDur(&o.MaxBackoff, 5*time.Second)
	defDur(&o.MaxRetryAfter, time.Minute)
	defDur(&o.RecentWindow, 10*time.Minute)
	defFrac(&o.ShedFill, 0.9)
	defFrac(&o.ReadyFill, 0.8)
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.Client == nil {
		o.Client = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 8,
			IdleConnTimeout:     90 * time.Second,
		}}
	}
}

// ErrKeyRejected is returned by Start when the backend refuses the API key.
var ErrKeyRejected = errors.New("metlo backend rejected the API key")

// backlog is where traces wait for the backend: a disk spool or memory (package spool).
type backlog interface {
	Append(key uint64, data []byte) (dropped int64, err error)
	Next(maxN, maxBytes int) ([]spool.Record, error)
	Ack(recs []spool.Record)
	Stats() spool.Stats
	Fill() float64
	Notify() <-chan struct{}
	Close() error
}

// MetloSink delivers traces to a Metlo collector's /api/v1/log-request/batch from a durable
// spool (or a memory backlog): paced, several POSTs in flight, retried with backoff, a
// refused batch bisected so one bad trace costs one trace, traces Metlo would discard
// counted instead of sent, and repeats shed before new endpoints under any cap.
type MetloSink struct {
	base, display string // request URL without userinfo; the same for humans
	name          string
	opts          MetloOptions
	m             *Metrics
	counts        *sinkCounters
	results       map[string]prometheus.Counter // batches_total by result
	latency       prometheus.Observer
	limitGauge    prometheus.Gauge
	ready         ReadySetter
	log           *slog.Logger
	limiter       *rate.Limiter

	q         backlog
	spoolDir  string
	endpoints []netip.AddrPort
	verified  atomic.Bool
	bodyLimit atomic.Int64  // learned from 413s
	lastOK    atomic.Int64  // when a batch was last accepted (unix ns)
	fill      atomic.Uint64 // backlog fill ×1e6, refreshed by monitor
	clock     atomic.Int64  // unix seconds, refreshed by monitor: Put needs no finer time
	isReady   atomic.Bool
	admitted  *recentSet // endpoints put lately (intake shedding)
	sent      *recentSet // endpoints sent lately (lag shedding)

	ctx     context.Context // canceled when Close's deadline passes: stop retrying
	abort   context.CancelFunc
	closing chan struct{}
	done    chan struct{}
	wake    chan struct{} // a delivery finished
	once    sync.Once
	closed  atomic.Bool
	pending int64 // traces held at Close

	lastLog sync.Map // message → time, to log repeated problems at most once a minute
}

// NewMetloSink returns a sink for the Metlo collector at rawURL (http or https); Start
// opens its spool, checks the key and starts sending. Credentials in the URL are never
// shown and never sent (Metlo authenticates with the key).
func NewMetloSink(rawURL string, o MetloOptions, m *Metrics, ready ReadySetter, log *slog.Logger) (*MetloSink, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("metlo sink %q: want an http:// or https:// URL", maskSchemeless(MaskURL(rawURL)))
	}
	o.withDefaults()
	if m == nil {
		m = NewMetrics("dev")
	}
	if log == nil {
		log = slog.Default()
	}
	hadUser := u.User != nil
	u.User = nil
	base := strings.TrimSuffix(u.String(), "/")
	name := "metlo:" + base
	s := &MetloSink{
		base:       base,
		display:    base,
		name:       name,
		opts:       o,
		m:          m,
		counts:     m.forSink(name, metloOutcomes...),
		results:    map[string]prometheus.Counter{},
		latency:    m.batchDuration.WithLabelValues(name),
		limitGauge: m.batchLimit.WithLabelValues(name),
		ready:      ready,
		log:        log,
		admitted:   newRecentSet(1<<16, o.RecentWindow),
		sent:       newRecentSet(1<<16, o.RecentWindow),
		closing:    make(chan struct{}),
		done:       make(chan struct{}),
		wake:       make(chan struct{}, 1),
	}
	for _, r := range []string{"ok", "retry", "rejected", "split", "bisect"} {
		s.results[r] = m.batches.WithLabelValues(name, r)
	}
	if hadUser {
		log.Warn("metlo sink URL carries user credentials; they are ignored (Metlo authenticates with the API key)", "sink", name)
	}
	s.bodyLimit.Store(int64(o.MaxBodyBytes))
	s.limitGauge.Set(float64(o.MaxBodyBytes))
	if o.RateLimit > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(o.RateLimit), o.RateBurst)
	}
	return s, nil
}

// MaskURL hides the userinfo of a URL (or of a "kind:URL" sink spec) as "****".
func MaskURL(s string) string {
	scheme := strings.Index(s, "://")
	if scheme < 0 {
		return s
	}
	rest := s[scheme+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		return s
	}
	return s[:scheme+3] + "****" + rest[at:]
}

// maskSchemeless hides the userinfo of a backend address written without a scheme
// ("user:pass@host:8081"), which MaskURL leaves alone so file names stay readable.
func maskSchemeless(s string) string {
	if strings.Contains(s, "://") {
		return s
	}
	end := strings.IndexAny(s, "/?#")
	if end < 0 {
		end = len(s)
	}
	if at := strings.LastIndex(s[:end], "@"); at >= 0 {
		return "****" + s[at:]
	}
	return s
}

// Name implements Sink.
func (s *MetloSink) Name() string { return s.name }

// MaxTraceBytes is the largest single trace that fits in one POST body.
func (s *MetloSink) MaxTraceBytes() int { return s.opts.MaxBodyBytes - 2 }

// Endpoints are the backend's resolved addresses (resolved by Start).
func (s *MetloSink) Endpoints() []netip.AddrPort { return s.endpoints }

// Start opens the backlog (replaying what an earlier run spooled), resolves the backend,
// and checks the key with GET /api/v1/verify. A rejected key is an error wrapping
// ErrKeyRejected; an unreachable backend is not — traces spool while the sink keeps trying.
func (s *MetloSink) Start(ctx context.Context) error {
	if err := s.openBacklog(); err != nil {
		return err
	}
	s.endpoints = s.resolve(ctx)
	s.warnPlainHTTP()
	err := s.verify(ctx)
	switch {
	case errors.Is(err, ErrKeyRejected):
		s.q.Close()
		return err
	case err != nil:
		held := "spooling traces"
		if s.spoolDir == "" {
			held = "holding traces in memory"
		}
		s.log.Warn("metlo backend unreachable; "+held+" and retrying", "sink", s.name, "err", err)
	default:
		s.verified.Store(true)
	}
	s.ctx, s.abort = context.WithCancel(context.Background())
	s.clock.Store(time.Now().Unix())
	s.isReady.Store(true)
	s.setReady(true)
	s.m.trackQueue(s.name, s.queueStats)
	go s.monitor()
	go s.run()
	return nil
}

// openBacklog opens the sink's spool directory, or the memory backlog.
func (s *MetloSink) openBacklog() error {
	if s.opts.SpoolDir == "" {
		s.q = spool.NewMemory(int64(s.opts.QueueTraces), s.opts.QueueBytes)
		return nil
	}
	dir := filepath.Join(s.opts.SpoolDir, spoolName(s.name))
	max := s.opts.SpoolMaxBytes
	if max <= 0 {
		max = defaultSpoolBytes(s.opts.SpoolDir)
	}
	sp, err := spool.Open(dir, spool.Options{MaxBytes: max, Full: s.opts.SpoolFull, Logger: s.log})
	if err != nil {
		if !s.opts.SpoolFallback {
			return fmt.Errorf("metlo sink %s: %w (set spool-dir to a writable directory, or to \"\" to keep traces in memory only)", s.name, err)
		}
		s.log.Warn("spool unavailable; keeping traces in memory for this run", "sink", s.name, "err", err)
		s.q = spool.NewMemory(int64(s.opts.QueueTraces), s.opts.QueueBytes)
		return nil
	}
	s.q, s.spoolDir = sp, dir
	st := sp.Stats()
	s.log.Info("spool open", "sink", s.name, "dir", dir, "max_bytes", max, "replaying", st.ReplayedRecords,
		"damaged_segments", st.CorruptSegments)
	return nil
}

// spoolName turns a sink name into a directory name: metlo-https-metlo.internal-8081.
func spoolName(name string) string {
	var b strings.Builder
	for _, r := range strings.NewReplacer("://", "-", ":", "-", "/", "-").Replace(name) {
		switch {
		case r == '.' || r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9'):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return strings.Trim(b.String(), "-")
}

// defaultSpoolBytes is a quarter of the file system holding dir (or of its nearest
// existing parent), and 1 GiB when that cannot be told.
func defaultSpoolBytes(dir string) int64 {
	for d := dir; ; d = filepath.Dir(d) {
		var st unix.Statfs_t
		if err := unix.Statfs(d, &st); err == nil {
			return max(int64(st.Blocks)*int64(st.Bsize)/4, 64<<20)
		}
		if d == filepath.Dir(d) {
			return 1 << 30
		}
	}
}

func (s *MetloSink) queueStats() QueueStats {
	st := s.q.Stats()
	_, isSpool := s.q.(*spool.Spool)
	qs := QueueStats{Traces: st.Records, Bytes: st.Bytes, LimitBytes: st.MaxBytes, UsedBytes: st.DiskBytes,
		CorruptSegments: st.CorruptSegments, Corrupt: st.CorruptBytes, Replayed: st.ReplayedRecords, Spool: isSpool}
	if !isSpool {
		qs.LimitTraces = int64(s.opts.QueueTraces) // the memory backlog's count bound
	}
	return qs
}

func (s *MetloSink) setReady(ok bool) {
	if s.ready != nil {
		s.ready.SetReady(s.name, ok)
	}
}

// monitor refreshes the fill level, readiness and progress logs once a second.
func (s *MetloSink) monitor() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		s.clock.Store(time.Now().Unix())
		f := s.q.Fill()
		s.fill.Store(uint64(f * 1e6))
		switch {
		case s.isReady.Load() && f >= s.opts.ReadyFill:
			s.isReady.Store(false)
			s.setReady(false)
			s.log.Warn("metlo sink backlog filling up; reporting not ready", "sink", s.name, "fill", fmt.Sprintf("%.0f%%", f*100))
		case !s.isReady.Load() && f < s.opts.ReadyFill-0.05:
			s.isReady.Store(true)
			s.setReady(true)
			s.log.Info("metlo sink backlog draining; ready again", "sink", s.name, "fill", fmt.Sprintf("%.0f%%", f*100))
		}
		select {
		case <-s.done:
			return
		case <-t.C:
		}
	}
}

// resolve looks up the backend's addresses so capture can exclude them.
func (s *MetloSink) resolve(ctx context.Context) []netip.AddrPort {
	u, _ := url.Parse(s.base)
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil
	}
	if a, err := netip.ParseAddr(u.Hostname()); err == nil {
		return []netip.AddrPort{netip.AddrPortFrom(a.Unmap(), uint16(p))}
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(rctx, "ip", u.Hostname())
	if err != nil {
		s.log.Warn("cannot resolve metlo backend; its traffic is not excluded from capture", "host", u.Hostname(), "err", err)
		return nil
	}
	out := make([]netip.AddrPort, len(addrs))
	for i, a := range addrs {
		out[i] = netip.AddrPortFrom(a.Unmap(), uint16(p))
	}
	return out
}

// warnPlainHTTP warns when traces (API payloads) and the key would cross a network that is
// neither loopback nor private in clear text.
func (s *MetloSink) warnPlainHTTP() {
	if !strings.HasPrefix(s.base, "http://") {
		return
	}
	private := len(s.endpoints) > 0
	for _, ep := range s.endpoints {
		a := ep.Addr()
		private = private && (a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast())
	}
	if !private {
		s.log.Warn("metlo backend URL is plain http and not a loopback or private address: traces and the API key travel unencrypted; use https://",
			"sink", s.name)
	}
}

// Put implements Sink; it never blocks on the network.
func (s *MetloSink) Put(trace []byte, info TraceInfo) {
	switch {
	case info.Status == 0:
		s.counts.add(OutcomeSkippedNoResponse, 1)
		return
	case !metloMethod(info.Method):
		s.counts.add(OutcomeSkippedMethod, 1)
		s.logEvery("method", "traces with methods Metlo cannot store are not sent (counted as skipped_method)", "method", info.Method)
		return
	}
	repeat := s.admitted.seen(info.Key, time.Unix(s.clock.Load(), 0))
	if repeat && float64(s.fill.Load())/1e6 >= s.opts.ShedFill {
		s.counts.add(OutcomeShedRepeat, 1)
		s.logEvery("shed-fill", "metlo sink backlog nearly full; shedding traces of endpoints queued recently", "fill_threshold", s.opts.ShedFill)
		return
	}
	dropped, err := s.q.Append(info.Key, trace)
	_, isSpool := s.q.(*spool.Spool)
	s.counts.add(OutcomeDroppedSpoolFull, int(dropped))
	switch {
	case err == nil:
		if dropped > 0 {
			s.logEvery("spool-full", "metlo sink spool full; dropping the oldest traces", "dir", s.spoolDir)
		}
	case errors.Is(err, spool.ErrFull) && isSpool:
		s.counts.add(OutcomeDroppedSpoolFull, 1)
		s.logEvery("spool-full", "metlo sink spool full; dropping new traces", "dir", s.spoolDir)
	case errors.Is(err, spool.ErrFull):
		s.counts.add(OutcomeDroppedQueueFull, 1)
		s.logEvery("queue-full", "metlo sink queue full; dropping traces", "reason", OutcomeDroppedQueueFull)
	case errors.Is(err, spool.ErrFullBytes):
		s.counts.add(OutcomeDroppedQueueBytes, 1)
		s.logEvery("queue-full", "metlo sink queue full; dropping traces", "reason", OutcomeDroppedQueueBytes)
	case errors.Is(err, spool.ErrWrite):
		s.counts.add(OutcomeDroppedSpoolError, 1)
	default:
		s.counts.add(OutcomeDroppedShutdown, 1)
	}
}

// metloMethod reports whether Metlo's analyzer stores traces of this method.
func metloMethod(m string) bool {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// Close sends what is queued until ctx ends. With a spool, what is left stays on disk for
// the next run; in memory it is counted as dropped_shutdown and reported in the error.
func (s *MetloSink) Close(ctx context.Context) error {
	if s.abort == nil || s.closed.Swap(true) {
		return nil
	}
	s.once.Do(func() { close(s.closing) })
	select {
	case <-s.done:
	case <-ctx.Done():
		s.abort()
		<-s.done
	}
	s.abort()
	st := s.q.Stats()
	s.pending = st.Records
	_, isSpool := s.q.(*spool.Spool)
	err := s.q.Close()
	switch {
	case err != nil:
		return fmt.Errorf("metlo sink %s: %w", s.name, err)
	case st.Records > 0 && !isSpool:
		s.counts.add(OutcomeDroppedShutdown, int(st.Records))
		s.pending = 0
		return fmt.Errorf("metlo sink %s: %d traces undelivered at shutdown", s.name, st.Records)
	case st.Records > 0:
		s.log.Warn("traces left in the spool for the next run", "sink", s.name, "traces", st.Records, "dir", s.spoolDir)
	}
	return nil
}

// summary implements summarizer.
func (s *MetloSink) summary() SinkSummary {
	sum := SinkSummary{Name: s.name, Outcomes: s.counts.snapshot(), Pending: s.pending, Spool: s.spoolDir}
	if s.q != nil {
		st := s.q.Stats()
		sum.Replayed = st.ReplayedRecords
		if !s.closed.Load() {
			sum.Pending = st.Records
		}
	}
	return sum
}

// logEvery logs msg at most once a minute per key.
func (s *MetloSink) logEvery(key, msg string, args ...any) {
	now := time.Now()
	if last, ok := s.lastLog.Load(key); ok && now.Sub(last.(time.Time)) < time.Minute {
		return
	}
	s.lastLog.Store(key, now)
	s.log.Warn(msg, append([]any{"sink", s.name}, args...)...)
}
