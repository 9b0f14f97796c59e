package exporter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

const testKey = "metlo.0123456789abcdef0123456789abcdef01234567"

// fakeMetlo is an in-process Metlo collector: it checks the key, the body limit and the
// trace schema, and records accepted traces in order.
type fakeMetlo struct {
	t       *testing.T
	maxBody int
	// status, when set, picks the reply to the n-th batch POST (0-based); 0 means accept.
	status func(n int) int
	// delay, when set, is how long the n-th POST takes before it is answered.
	delay func(n int) time.Duration

	mu      sync.Mutex
	posts   int
	batches []int
	traces  []Trace
	bad     []string
}

func newFakeMetlo(t *testing.T) *fakeMetlo { return &fakeMetlo{t: t, maxBody: 2 << 20} }

func (f *fakeMetlo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != testKey {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	switch r.URL.Path {
	case "/api/v1/verify":
		w.WriteHeader(200)
		return
	case "/api/v1/log-request/batch":
	default:
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	n := f.posts
	f.posts++
	f.mu.Unlock()
	if f.delay != nil {
		select {
		case <-time.After(f.delay(n)):
		case <-r.Context().Done():
			return // the client gave up: record nothing, as a real backend would fail mid-request
		}
	}
	if f.status != nil {
		if code := f.status(n); code != 0 {
			http.Error(w, "injected", code)
			return
		}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(f.maxBody)+1))
	if err != nil {
		return
	}
	if len(body) > f.maxBody {
		http.Error(w, "request entity too large", http.StatusRequestEntityTooLarge)
		return
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var batch []Trace
	if err := dec.Decode(&batch); err != nil {
		f.fail("bad JSON: " + err.Error())
		http.Error(w, err.Error(), 400)
		return
	}
	for _, tr := range batch {
		if tr.Request.Method == "" || tr.Request.URL.Host == "" || tr.Request.URL.Path == "" ||
			tr.Meta.MetloSource != MetloSource || tr.Meta.SourcePort == 0 || tr.Meta.Source == "" ||
			tr.Request.Headers == nil || tr.Request.URL.Parameters == nil {
			f.fail("trace missing required fields")
			http.Error(w, "schema", 400)
			return
		}
	}
	f.mu.Lock()
	f.batches = append(f.batches, len(batch))
	f.traces = append(f.traces, batch...)
	f.mu.Unlock()
	w.WriteHeader(200)
}

func (f *fakeMetlo) fail(msg string) {
	f.mu.Lock()
	f.bad = append(f.bad, msg)
	f.mu.Unlock()
}

func (f *fakeMetlo) received() []Trace {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bad) > 0 {
		f.t.Errorf("collector saw invalid batches: %v", f.bad)
	}
	return append([]Trace(nil), f.traces...)
}

// encoded returns n distinct encoded traces, numbered by client port 1..n.
func encoded(n int) [][]byte {
	enc := TraceEncoder{Environment: "production"}
	out := make([][]byte, n)
	for i := range out {
		out[i] = enc.AppendTrace(nil, numbered(i+1))
	}
	return out
}

func fastOpts() MetloOptions {
	return MetloOptions{Key: testKey, BatchInterval: 50 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
}

func startSink(t *testing.T, url string, o MetloOptions, m *Metrics) *MetloSink {
	t.Helper()
	s, err := NewMetloSink(url, o, m, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func closeWithin(t *testing.T, s *MetloSink, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return s.Close(ctx)
}

// assertInOrder checks that got holds exactly the traces numbered 1..n in order.
func assertInOrder(t *testing.T, got []Trace, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("backend received %d traces, want %d", len(got), n)
	}
	for i, tr := range got {
		if tr.Meta.SourcePort != i+1 {
			t.Fatalf("trace %d has number %d: order lost", i, tr.Meta.SourcePort)
		}
	}
}

func TestMetloBatchesInOrder(t *testing.T) {
	f := newFakeMetlo(t)
	srv := httptest.NewServer(f)
	defer srv.Close()
	m := NewMetrics("t")
	o := fastOpts()
	o.BatchTraces = 100
	s := startSink(t, srv.URL, o, m)
	for _, tr := range encoded(1050) {
		s.Put(tr)
	}
	if err := closeWithin(t, s, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	assertInOrder(t, f.received(), 1050)
	for _, n := range f.batches {
		if n > 100 {
			t.Fatalf("batch of %d traces, limit 100", n)
		}
	}
	if len(f.batches) < 11 {
		t.Fatalf("%d batches for 1050 traces at 100 per batch", len(f.batches))
	}
	if got := testutil.ToFloat64(m.traces.WithLabelValues(s.Name(), OutcomeSent)); got != 1050 {
		t.Fatalf("sent counter = %v", got)
	}
}

func TestMetloBatchClosesAfterInterval(t *testing.T) {
	f := newFakeMetlo(t)
	srv := httptest.NewServer(f)
	defer srv.Close()
	o := fastOpts()
	o.BatchInterval = 300 * time.Millisecond
	s := startSink(t, srv.URL, o, nil)
	defer closeWithin(t, s, time.Second)
	for _, tr := range encoded(5) {
		s.Put(tr)
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && len(f.received()) < 5 {
		time.Sleep(20 * time.Millisecond)
	}
	assertInOrder(t, f.received(), 5)
	if len(f.batches) != 1 {
		t.Fatalf("5 traces within the interval went out in %d batches, want 1", len(f.batches))
	}
}

func TestMetloRejectedKeyIsFatal(t *testing.T) {
	srv := httptest.NewServer(newFakeMetlo(t))
	defer srv.Close()
	o := fastOpts()
	o.Key = "metlo.wrong"
	s, err := NewMetloSink(srv.URL, o, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); !errors.Is(err, ErrKeyRejected) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("Start = %v, want ErrKeyRejected naming HTTP 401", err)
	}
	_, err = New(context.Background(), Options{Encoders: 1, Sinks: []string{"metlo:" + srv.URL}, Metlo: o})
	if !errors.Is(err, ErrKeyRejected) {
		t.Fatalf("exporter.New = %v, want ErrKeyRejected", err)
	}
}

func TestMetloSplitsOn413(t *testing.T) {
	f := newFakeMetlo(t)
	f.maxBody = 20_000 // far below what the client assumes: the backend's 413 drives the split
	srv := httptest.NewServer(f)
	defer srv.Close()
	m := NewMetrics("t")
	o := fastOpts()
	o.BatchTraces = 200
	s := startSink(t, srv.URL, o, m)
	for _, tr := range encoded(200) {
		s.Put(tr)
	}
	if err := closeWithin(t, s, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	assertInOrder(t, f.received(), 200)
	if testutil.ToFloat64(m.batches.WithLabelValues(s.Name(), "split")) == 0 {
		t.Fatal("no split counted")
	}
}

func TestMetloRetries5xx(t *testing.T) {
	f := newFakeMetlo(t)
	f.status = func(n int) int {
		if n < 3 {
			return []int{500, 502, 503}[n]
		}
		return 0
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	m := NewMetrics("t")
	s := startSink(t, srv.URL, fastOpts(), m)
	for _, tr := range encoded(300) {
		s.Put(tr)
	}
	if err := closeWithin(t, s, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	assertInOrder(t, f.received(), 300)
	if got := testutil.ToFloat64(m.batches.WithLabelValues(s.Name(), "retry")); got != 3 {
		t.Fatalf("retries = %v, want 3", got)
	}
}

func TestMetloDropsRejectedBatch(t *testing.T) {
	f := newFakeMetlo(t)
	f.status = func(n int) int {
		if n == 0 {
			return 422
		}
		return 0
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	m := NewMetrics("t")
	s := startSink(t, srv.URL, fastOpts(), m)
	for _, tr := range encoded(10) {
		s.Put(tr)
	}
	closeWithin(t, s, 5*time.Second)
	if got := testutil.ToFloat64(m.traces.WithLabelValues(s.Name(), OutcomeDroppedRejected)); got != 10 {
		t.Fatalf("dropped_rejected = %v, want 10", got)
	}
}

func TestMetloSlowResponseTimesOutAndRetries(t *testing.T) {
	f := newFakeMetlo(t)
	f.delay = func(n int) time.Duration {
		if n == 0 {
			return 5 * time.Second
		}
		return 50 * time.Millisecond
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	o := fastOpts()
	o.RequestTimeout = 300 * time.Millisecond
	s := startSink(t, srv.URL, o, nil)
	for _, tr := range encoded(50) {
		s.Put(tr)
	}
	if err := closeWithin(t, s, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	assertInOrder(t, f.received(), 50)
}

// reservePort finds a free loopback address for a backend that starts later.
func reservePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestMetloBackendDownThenUpLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 5s for the backend")
	}
	addr := reservePort(t)
	m := NewMetrics("t")
	h := NewHealth()
	o := fastOpts()
	o.MaxBackoff = time.Second
	s, err := NewMetloSink("http://"+addr, o, m, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("an unreachable backend must not be fatal: %v", err)
	}
	if ok, _ := h.Ready(); ok {
		t.Fatal("ready while the backend is unreachable")
	}
	for _, tr := range encoded(2000) {
		s.Put(tr)
	}
	f := newFakeMetlo(t)
	go func() {
		time.Sleep(5 * time.Second)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("re-listen on %s: %v", addr, err)
			return
		}
		srv := &http.Server{Handler: f}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}()
	if err := closeWithin(t, s, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	assertInOrder(t, f.received(), 2000)
	if ok, _ := h.Ready(); !ok {
		t.Fatal("not ready after delivering")
	}
}

func TestMetloBackendNeverUpIsBoundedAndCloseKeepsItsDeadline(t *testing.T) {
	addr := reservePort(t)
	m := NewMetrics("t")
	o := fastOpts()
	o.QueueTraces = 1000
	s := startSink(t, "http://"+addr, o, m)
	traces := encoded(5000)
	for _, tr := range traces {
		s.Put(tr)
	}
	if n, b := s.q.size(); n != 1000 || b > int64(1000*len(traces[len(traces)-1])) {
		t.Fatalf("queue holds %d traces / %d bytes, want it capped at 1000", n, b)
	}
	start := time.Now()
	err := closeWithin(t, s, time.Second)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Close took %v with a 1s deadline", d)
	}
	if err == nil || !strings.Contains(err.Error(), "1000 traces undelivered") {
		t.Fatalf("Close = %v, want an error counting 1000 undelivered traces", err)
	}
	if got := testutil.ToFloat64(m.traces.WithLabelValues(s.Name(), OutcomeDroppedQueueFull)); got != 4000 {
		t.Fatalf("dropped_queue_full = %v, want 4000", got)
	}
	if got := testutil.ToFloat64(m.traces.WithLabelValues(s.Name(), OutcomeDroppedShutdown)); got != 1000 {
		t.Fatalf("dropped_shutdown = %v, want 1000", got)
	}

	// The byte bound holds too.
	o.QueueTraces, o.QueueBytes = 1_000_000, int64(10*len(traces[0]))
	s2 := startSink(t, "http://"+addr, o, m)
	for _, tr := range traces[:100] {
		s2.Put(tr)
	}
	if _, b := s2.q.size(); b > o.QueueBytes {
		t.Fatalf("queue holds %d bytes over its %d limit", b, o.QueueBytes)
	}
	if got := testutil.ToFloat64(m.traces.WithLabelValues(s2.Name(), OutcomeDroppedQueueBytes)); got < 89 {
		t.Fatalf("dropped_queue_bytes = %v", got)
	}
	closeWithin(t, s2, 100*time.Millisecond)
}

func TestMetloOversizedTraceIsTrimmedNotDropped(t *testing.T) {
	f := newFakeMetlo(t)
	srv := httptest.NewServer(f)
	defer srv.Close()
	m := NewMetrics("t")
	x, err := New(context.Background(), Options{Encoders: 1, Sinks: []string{"metlo:" + srv.URL}, Metlo: fastOpts(), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	big := sampleExchange()
	big.Response.Body = bytes.Repeat([]byte("\x00"), 3<<20) // 18 MB once escaped
	x.Submit(big)
	x.Submit(numbered(2))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := x.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got := f.received()
	if len(got) != 2 || !got[0].Meta.Trimmed || !got[0].Meta.ResponseBodyTruncated || got[1].Meta.Trimmed {
		t.Fatalf("got %d traces (first trimmed=%v), want the big one trimmed and flagged, then the small one", len(got), len(got) > 0 && got[0].Meta.Trimmed)
	}
	if testutil.ToFloat64(m.trimmed.WithLabelValues(queueSink)) != 1 {
		t.Fatal("trim not counted")
	}
	if eps := x.BackendEndpoints(); len(eps) != 1 || eps[0].String() != strings.TrimPrefix(srv.URL, "http://") {
		t.Fatalf("BackendEndpoints = %v, want %s", eps, srv.URL)
	}
}

func TestMetloRateLimit(t *testing.T) {
	f := newFakeMetlo(t)
	srv := httptest.NewServer(f)
	defer srv.Close()
	o := fastOpts()
	o.RateLimit, o.BatchTraces = 100, 50
	s := startSink(t, srv.URL, o, nil)
	start := time.Now()
	for _, tr := range encoded(250) {
		s.Put(tr)
	}
	if err := closeWithin(t, s, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// Burst 100, then 150 more at 100/s: at least ~1.5s.
	if d := time.Since(start); d < 1200*time.Millisecond {
		t.Fatalf("250 traces at 100/s took only %v", d)
	}
	assertInOrder(t, f.received(), 250)
}

func TestMetloURLValidation(t *testing.T) {
	for _, u := range []string{"backend:8081", "ftp://x", "http://", "::"} {
		if _, err := NewMetloSink(u, MetloOptions{}, nil, nil, nil); err == nil {
			t.Errorf("NewMetloSink(%q) succeeded", u)
		}
	}
	s, err := NewMetloSink("http://user:pw@metlo.internal:8081/", MetloOptions{}, nil, nil, nil)
	if err != nil || s.Name() != "metlo:http://metlo.internal:8081" {
		t.Fatalf("name = %q, %v; want credentials stripped", s.Name(), err)
	}
}
