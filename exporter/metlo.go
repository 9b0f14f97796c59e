package exporter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// MetloOptions configure metlo: sinks; zero values take the defaults in brackets.
type MetloOptions struct {
	// Key is the raw API key sent in the Authorization header.
	Key string
	// BatchTraces closes a batch at this many traces [500].
	BatchTraces int
	// BatchInterval closes a batch this long after it started filling [1s].
	BatchInterval time.Duration
	// MaxBodyBytes bounds one POST body; the backend rejects bodies over 2 MB [2000000].
	MaxBodyBytes int
	// QueueTraces and QueueBytes bound the traces waiting for the backend [100000, 256 MiB].
	QueueTraces int
	QueueBytes  int64
	// RateLimit caps traces per second sent to the backend; 0 means unlimited.
	RateLimit float64
	// RequestTimeout bounds one HTTP request [10s].
	RequestTimeout time.Duration
	// MinBackoff and MaxBackoff bound the exponential retry delay [100ms, 5s].
	MinBackoff, MaxBackoff time.Duration
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
	def(&o.BatchTraces, 500)
	def(&o.MaxBodyBytes, 2_000_000)
	def(&o.QueueTraces, 100_000)
	if o.QueueBytes <= 0 {
		o.QueueBytes = 256 << 20
	}
	defDur(&o.BatchInterval, time.Second)
	defDur(&o.RequestTimeout, 10*time.Second)
	defDur(&o.MinBackoff, 100*time.Millisecond)
	defDur(&o.MaxBackoff, 5*time.Second)
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.Client == nil {
		o.Client = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
		}}
	}
}

// ErrKeyRejected is returned by Start when the backend refuses the API key.
var ErrKeyRejected = errors.New("metlo backend rejected the API key")

// MetloSink posts batches of traces to a Metlo collector's /api/v1/log-request/batch,
// retrying with backoff, splitting batches the backend finds too large, and dropping (and
// counting) only when its bounded queue is full or the close deadline passes.
type MetloSink struct {
	base                                           string // URL without trailing slash
	name                                           string
	opts                                           MetloOptions
	m                                              *Metrics
	counts                                         *sinkCounters
	batchOK, batchRetry, batchRejected, batchSplit prometheus.Counter
	latency                                        prometheus.Observer
	ready                                          ReadySetter
	log                                            *slog.Logger
	limiter                                        *rate.Limiter

	q         *traceQueue
	endpoints []netip.AddrPort
	verified  atomic.Bool

	ctx     context.Context // canceled when Close's deadline passes: stop retrying
	abort   context.CancelFunc
	closing chan struct{}
	done    chan struct{}
	once    sync.Once

	lostAtShutdown atomic.Int64 // traces given up because the close deadline passed

	lastLog sync.Map // message → time, to log repeated failures at most once a minute
}

// NewMetloSink returns a sink for the Metlo collector at rawURL (http or https); Start
// checks the key and starts sending.
func NewMetloSink(rawURL string, o MetloOptions, m *Metrics, ready ReadySetter, log *slog.Logger) (*MetloSink, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("metlo sink %q: want an http:// or https:// URL", rawURL)
	}
	o.withDefaults()
	if m == nil {
		m = NewMetrics("dev")
	}
	if log == nil {
		log = slog.Default()
	}
	display := *u
	display.User = nil
	name := "metlo:" + strings.TrimSuffix(display.String(), "/")
	s := &MetloSink{
		base:          strings.TrimSuffix(u.String(), "/"),
		name:          name,
		opts:          o,
		m:             m,
		counts:        m.forSink(name),
		batchOK:       m.batches.WithLabelValues(name, "ok"),
		batchRetry:    m.batches.WithLabelValues(name, "retry"),
		batchRejected: m.batches.WithLabelValues(name, "rejected"),
		batchSplit:    m.batches.WithLabelValues(name, "split"),
		latency:       m.batchDuration.WithLabelValues(name),
		ready:         ready,
		log:           log,
		q:             newTraceQueue(o.QueueTraces, o.QueueBytes),
		closing:       make(chan struct{}),
		done:          make(chan struct{}),
	}
	if o.RateLimit > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(o.RateLimit), max(o.BatchTraces, int(o.RateLimit)))
	}
	m.trackQueue(name, s.q.size)
	return s, nil
}

// Name implements Sink.
func (s *MetloSink) Name() string { return s.name }

// MaxTraceBytes is the largest single trace that fits in one POST body.
func (s *MetloSink) MaxTraceBytes() int { return s.opts.MaxBodyBytes - 2 }

// Endpoints are the backend's resolved addresses (resolved by Start).
func (s *MetloSink) Endpoints() []netip.AddrPort { return s.endpoints }

// Start resolves the backend and checks the key with GET /api/v1/verify. A rejected key is
// an error wrapping ErrKeyRejected; an unreachable backend is not — the sink keeps
// verifying in the background, queueing traces, and reports itself not ready meanwhile.
func (s *MetloSink) Start(ctx context.Context) error {
	s.endpoints = s.resolve(ctx)
	s.setReady(false)
	err := s.verify(ctx)
	switch {
	case errors.Is(err, ErrKeyRejected):
		return err
	case err != nil:
		s.log.Warn("metlo backend unreachable; queueing traces and retrying", "sink", s.name, "err", err)
	default:
		s.verified.Store(true)
		s.setReady(true)
	}
	s.ctx, s.abort = context.WithCancel(context.Background())
	go s.run()
	return nil
}

func (s *MetloSink) setReady(ok bool) {
	if s.ready != nil {
		s.ready.SetReady(s.name, ok)
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

// verify checks the key once.
func (s *MetloSink) verify(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/api/v1/verify", nil)
	if err != nil {
		return fmt.Errorf("verify metlo key: %w", err)
	}
	req.Header.Set("Authorization", s.opts.Key)
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return fmt.Errorf("verify metlo key: %w", err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w (HTTP %d from %s/api/v1/verify): check METLO_KEY", ErrKeyRejected, resp.StatusCode, s.base)
	case resp.StatusCode/100 != 2:
		return fmt.Errorf("verify metlo key: HTTP %d", resp.StatusCode)
	}
	return nil
}

// Put implements Sink; it never blocks.
func (s *MetloSink) Put(trace []byte) {
	if reason := s.q.push(trace); reason != "" {
		s.counts.add(reason, 1)
		s.logEvery(reason, "metlo sink queue full; dropping traces", "reason", reason)
	}
}

// Close sends everything queued until ctx ends, then counts what is left as
// dropped_shutdown and returns an error saying how many traces were lost.
func (s *MetloSink) Close(ctx context.Context) error {
	if s.abort == nil {
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
	if n := s.q.drain(); n > 0 {
		s.counts.add(OutcomeDroppedShutdown, n)
		return fmt.Errorf("metlo sink %s: %d traces undelivered at shutdown", s.name, n)
	}
	if s.ctx.Err() != nil && s.lostAtShutdown.Load() > 0 {
		return fmt.Errorf("metlo sink %s: %d traces undelivered at shutdown", s.name, s.lostAtShutdown.Load())
	}
	return nil
}

// run is the sender: verify, then batch and deliver in queue order until closed and empty.
func (s *MetloSink) run() {
	defer close(s.done)
	for attempt := 0; !s.verified.Load(); attempt++ {
		if !s.sleep(s.backoff(attempt, 0)) {
			return
		}
		switch err := s.verify(s.ctx); {
		case err == nil:
			s.verified.Store(true)
			s.setReady(true)
			s.log.Info("metlo backend reachable; sending traces", "sink", s.name)
		case errors.Is(err, ErrKeyRejected):
			s.logEvery("verify", "metlo backend rejects the API key; retrying", "err", err)
		}
	}
	for {
		n, _ := s.q.size()
		if n == 0 {
			select {
			case <-s.closing:
				// Traces put just before Close wake notify and closing together, and select
				// picks either: leave only when the queue really is empty.
				if n, _ := s.q.size(); n == 0 {
					return
				}
			case <-s.ctx.Done():
				return
			case <-s.q.notify:
			}
			continue
		}
		s.waitForBatch()
		batch := s.q.take(s.opts.BatchTraces, s.opts.MaxBodyBytes)
		if !s.deliver(batch) {
			return
		}
	}
}

// waitForBatch returns once a full batch is queued, the batch interval has passed, or the
// sink is closing.
func (s *MetloSink) waitForBatch() {
	timer := time.NewTimer(s.opts.BatchInterval)
	defer timer.Stop()
	for {
		n, b := s.q.size()
		if n >= int64(s.opts.BatchTraces) || b >= int64(s.opts.MaxBodyBytes) {
			return
		}
		select {
		case <-timer.C:
			return
		case <-s.closing:
			return
		case <-s.ctx.Done():
			return
		case <-s.q.notify:
		}
	}
}

// deliver sends batch, retrying until it is accepted or refused for good; it returns false
// when the close deadline passed first (the batch is then counted as dropped_shutdown).
func (s *MetloSink) deliver(batch [][]byte) bool {
	if s.limiter != nil {
		if err := s.limiter.WaitN(s.ctx, len(batch)); err != nil && s.ctx.Err() != nil {
			s.lost(len(batch))
			return false
		}
	}
	for attempt := 0; ; attempt++ {
		status, retryAfter, err := s.post(batch)
		switch {
		case err == nil && status/100 == 2:
			s.counts.add(OutcomeSent, len(batch))
			s.batchOK.Inc()
			s.setReady(true)
			return true
		case status == http.StatusRequestEntityTooLarge:
			if len(batch) == 1 {
				s.counts.add(OutcomeDroppedTooLarge, 1)
				s.batchRejected.Inc()
				s.logEvery("413", "metlo backend refused a single trace as too large; dropped", "bytes", len(batch[0]))
				return true
			}
			s.batchSplit.Inc()
			half := len(batch) / 2
			return s.deliver(batch[:half]) && s.deliver(batch[half:])
		case err == nil && retryable(status):
			if status == http.StatusUnauthorized || status == http.StatusForbidden {
				s.logEvery("post-auth", "metlo backend rejects the API key; retrying", "status", status)
			} else {
				s.logEvery("post-status", "metlo backend error; retrying", "status", status)
			}
		case err == nil:
			s.counts.add(OutcomeDroppedRejected, len(batch))
			s.batchRejected.Inc()
			s.logEvery("rejected", "metlo backend refused a batch; dropped", "status", status, "traces", len(batch))
			return true
		default:
			if s.ctx.Err() != nil {
				s.lost(len(batch))
				return false
			}
			s.logEvery("post-err", "sending to metlo backend failed; retrying", "err", err)
		}
		s.batchRetry.Inc()
		s.setReady(false)
		if !s.sleep(s.backoff(attempt, retryAfter)) {
			s.lost(len(batch))
			return false
		}
	}
}

func (s *MetloSink) lost(n int) {
	s.counts.add(OutcomeDroppedShutdown, n)
	s.lostAtShutdown.Add(int64(n))
}

// retryable statuses are worth sending again unchanged: the backend is overloaded, down,
// timing out, or (401/403) its key store may be fixed while traces wait.
func retryable(status int) bool {
	return status >= 500 || status == http.StatusRequestTimeout || status == http.StatusTooManyRequests ||
		status == http.StatusUnauthorized || status == http.StatusForbidden
}

// post sends one batch as a JSON array.
func (s *MetloSink) post(batch [][]byte) (status int, retryAfter time.Duration, err error) {
	size := 1 + len(batch)
	for _, t := range batch {
		size += len(t)
	}
	body := make([]byte, 0, size)
	body = append(body, '[')
	for i, t := range batch {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, t...)
	}
	body = append(body, ']')

	ctx, cancel := context.WithTimeout(s.ctx, s.opts.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/api/v1/log-request/batch", bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", s.opts.Key)
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := s.opts.Client.Do(req)
	s.latency.Observe(time.Since(start).Seconds())
	if err != nil {
		return 0, 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		retryAfter = time.Duration(secs) * time.Second
	}
	return resp.StatusCode, retryAfter, nil
}

// backoff is the delay before retry attempt+1: exponential from MinBackoff, capped at
// MaxBackoff, with full jitter on the upper half so many appliances do not retry in step.
func (s *MetloSink) backoff(attempt int, floor time.Duration) time.Duration {
	d := s.opts.MinBackoff << min(attempt, 30)
	if d <= 0 || d > s.opts.MaxBackoff {
		d = s.opts.MaxBackoff
	}
	d = d/2 + rand.N(d/2+1)
	return min(max(d, floor), s.opts.MaxBackoff)
}

// sleep waits d, returning false if the close deadline passed meanwhile.
func (s *MetloSink) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return false
	}
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
