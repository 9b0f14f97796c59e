package exporter

import (
	"bufio"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
)

func readJSONL(t *testing.T, path string) []Trace {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Trace
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var tr Trace
		if err := json.Unmarshal(sc.Bytes(), &tr); err != nil {
			t.Fatalf("line %d: %v", len(out)+1, err)
		}
		out = append(out, tr)
	}
	return out
}

// numbered returns the sample exchange with the client port set to i, to tell traces apart.
func numbered(i int) *exchange.Exchange {
	e := sampleExchange()
	e.Client = netip.AddrPortFrom(e.Client.Addr(), uint16(i))
	return e
}

func TestExporterFansOutToJSONLSinks(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl")
	m := NewMetrics("test")
	x, err := New(context.Background(), Options{Encoders: 1, Sinks: []string{"jsonl:" + a, "jsonl:" + b}, Metrics: m, Environment: "staging"})
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 4, 250
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				x.Submit(numbered(w*each + i + 1))
			}
		}()
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := x.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{a, b} {
		traces := readJSONL(t, path)
		if len(traces) != workers*each {
			t.Fatalf("%s: %d traces, want %d", path, len(traces), workers*each)
		}
		seen := map[int]bool{}
		for _, tr := range traces {
			if tr.Meta.Environment != "staging" || tr.Request.URL.Host != "api.example.com" {
				t.Fatalf("bad trace %+v", tr.Meta)
			}
			seen[tr.Meta.SourcePort] = true
		}
		if len(seen) != workers*each {
			t.Fatalf("%s: %d distinct traces, want %d", path, len(seen), workers*each)
		}
		if got := testutil.ToFloat64(m.traces.WithLabelValues("jsonl:"+path, OutcomeSent)); got != workers*each {
			t.Fatalf("sent counter for %s = %v", path, got)
		}
	}
	x.Submit(sampleExchange())
	if got := testutil.ToFloat64(m.traces.WithLabelValues(queueSink, OutcomeDroppedShutdown)); got != 1 {
		t.Fatalf("submit after close: dropped_shutdown = %v, want 1", got)
	}
}

// blockingSink holds the encoding goroutine until released, so the intake queue fills.
type blockingSink struct {
	release chan struct{}
	mu      sync.Mutex
	got     int
}

func (s *blockingSink) Name() string                { return "blocking" }
func (s *blockingSink) Start(context.Context) error { return nil }
func (s *blockingSink) Close(context.Context) error { return nil }
func (s *blockingSink) Put([]byte, TraceInfo)       { <-s.release; s.mu.Lock(); s.got++; s.mu.Unlock() }
func (s *blockingSink) count() int                  { s.mu.Lock(); defer s.mu.Unlock(); return s.got }

func TestSubmitNeverBlocksAndCountsDrops(t *testing.T) {
	m := NewMetrics("test")
	sink := &blockingSink{release: make(chan struct{})}
	x, err := newWithSinks(Options{Encoders: 1, QueueTraces: 10, QueueBytes: 1 << 30, Metrics: m}, sink)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 100 {
		x.Submit(numbered(i))
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Submit blocked for %v", d)
	}
	// One exchange is held by the blocked sink, ten wait in the queue; past 3/4 of it, the
	// same endpoint again is shed, so the rest go as repeats or, once full, as overflow.
	full := testutil.ToFloat64(m.traces.WithLabelValues(queueSink, OutcomeDroppedQueueFull)) +
		testutil.ToFloat64(m.traces.WithLabelValues(queueSink, OutcomeShedRepeat))
	if full < 89 || full > 92 {
		t.Fatalf("dropped_queue_full + shed_repeat = %v, want 89..92", full)
	}
	close(sink.release)
	if err := x.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := sink.count() + int(full); got != 100 {
		t.Fatalf("delivered %d + dropped %v != 100 submitted", sink.count(), full)
	}

	// The byte bound: one exchange fits, the next does not.
	m2 := NewMetrics("test")
	sink2 := &blockingSink{release: make(chan struct{})}
	small := exchangeSize(sampleExchange())
	x2, err := newWithSinks(Options{Encoders: 1, QueueTraces: 1000, QueueBytes: small*2 + 1, Metrics: m2}, sink2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		x2.Submit(numbered(i))
	}
	if got := testutil.ToFloat64(m2.traces.WithLabelValues(queueSink, OutcomeDroppedQueueBytes)) +
		testutil.ToFloat64(m2.traces.WithLabelValues(queueSink, OutcomeShedRepeat)); got < 7 {
		t.Fatalf("dropped_queue_bytes + shed_repeat = %v, want ≥ 7", got)
	}
	close(sink2.release)
	x2.Close(context.Background())
}

func TestCloseDeadlineCountsTheRest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := NewMetrics("test")
		sink := &blockingSink{release: make(chan struct{})}
		x, err := newWithSinks(Options{Encoders: 1, QueueTraces: 100, Metrics: m}, sink)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 50 {
			x.Submit(numbered(i))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		go func() {
			<-ctx.Done()
			time.Sleep(time.Millisecond) // Close has seen its deadline by now
			close(sink.release)
		}()
		start := time.Now()
		x.Close(ctx)
		if d := time.Since(start); d > 200*time.Millisecond {
			t.Fatalf("Close took %v past its deadline", d)
		}
		dropped := testutil.ToFloat64(m.traces.WithLabelValues(queueSink, OutcomeDroppedShutdown))
		if int(dropped)+sink.count() != 50 || dropped != 49 {
			t.Fatalf("delivered %d, dropped_shutdown %v; want 1 + 49", sink.count(), dropped)
		}
	})
}

// Near a full intake queue a new endpoint still gets in; the same one again does not.
func TestIntakeShedsRepeatsFirst(t *testing.T) {
	m := NewMetrics("test")
	sink := &blockingSink{release: make(chan struct{})}
	x, _ := newWithSinks(Options{Encoders: 1, QueueTraces: 10, QueueBytes: 1 << 30, Metrics: m}, sink)
	for i := range 8 { // one held by the sink, seven queued: past 3/4; all different endpoints
		e := numbered(i)
		e.Request.Path = "/fill/" + string(rune('a'+i))
		x.Submit(e)
	}
	for range 2 {
		x.Submit(numbered(99))
	}
	novel := numbered(100)
	novel.Request.Path = "/api/orders/list"
	x.Submit(novel)
	if shed := testutil.ToFloat64(m.traces.WithLabelValues(queueSink, OutcomeShedRepeat)); shed != 1 {
		t.Fatalf("shed_repeat = %v, want 1 (the repeat; the new endpoint admitted)", shed)
	}
	close(sink.release)
	x.Close(context.Background())
	if sink.count() != 10 {
		t.Fatalf("sink got %d, want 10", sink.count())
	}
}

func TestParseSinkErrors(t *testing.T) {
	for _, spec := range []string{"", "jsonl", "jsonl:", "kafka:host", "stdout"} {
		if _, err := ParseSink(spec, Options{}); err == nil {
			t.Errorf("ParseSink(%q) succeeded", spec)
		}
	}
	if _, err := New(context.Background(), Options{}); err == nil {
		t.Error("New without sinks succeeded")
	}
	if _, err := New(context.Background(), Options{Sinks: []string{"jsonl:/nonexistent-dir/x.jsonl"}}); err == nil {
		t.Error("New with an unwritable jsonl path succeeded")
	}
}

func TestJSONLFlushesWithinASecond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "t.jsonl")
		x, err := New(context.Background(), Options{Encoders: 1, Sinks: []string{"jsonl:" + path}})
		if err != nil {
			t.Fatal(err)
		}
		defer x.Close(context.Background())
		x.Submit(sampleExchange())
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		if b, _ := os.ReadFile(path); len(b) != 0 {
			t.Fatal("flushed before the interval: the buffer does nothing")
		}
		time.Sleep(jsonlFlushInterval)
		synctest.Wait()
		if len(readJSONL(t, path)) != 1 {
			t.Fatal("trace not flushed to the file within a second")
		}
	})
}

// discardSink counts traces and keeps nothing.
type discardSink struct{ n atomic.Int64 }

func (s *discardSink) Name() string                { return "discard" }
func (s *discardSink) Start(context.Context) error { return nil }
func (s *discardSink) Close(context.Context) error { return nil }
func (s *discardSink) Put([]byte, TraceInfo)       { s.n.Add(1) }

// BenchmarkExporterPipeline measures Submit → queue → encode → sink on the encoding goroutine.
func BenchmarkExporterPipeline(b *testing.B) {
	sink := &discardSink{}
	x, err := newWithSinks(Options{QueueTraces: 1 << 16, Metrics: NewMetrics("bench")}, sink)
	if err != nil {
		b.Fatal(err)
	}
	e := sampleExchange()
	b.ReportAllocs()
	for b.Loop() {
		// Exchanges are owned by the exporter after Submit; reusing one is safe here
		// because the benchmark never mutates it.
		for len(x.queue) == cap(x.queue) {
			time.Sleep(time.Microsecond)
		}
		x.Submit(e)
	}
	x.Close(context.Background())
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "traces/s")
	if sink.n.Load() != int64(b.N) {
		b.Fatalf("sink got %d of %d", sink.n.Load(), b.N)
	}
}

func TestBlockingSubmitLosesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := NewMetrics("test")
		sink := &blockingSink{release: make(chan struct{})}
		x, err := newWithSinks(Options{Block: true, QueueTraces: 2, Metrics: m}, sink)
		if err != nil {
			t.Fatal(err)
		}
		submitted := make(chan struct{})
		go func() {
			for i := range 100 {
				x.Submit(numbered(i))
			}
			close(submitted)
		}()
		synctest.Wait() // everyone is blocked: the sink on release, Submit on the full queue
		select {
		case <-submitted:
			t.Fatal("Submit did not wait for the full queue")
		default:
		}
		close(sink.release)
		<-submitted
		if err := x.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if sink.count() != 100 {
			t.Fatalf("delivered %d of 100", sink.count())
		}
		if d := testutil.ToFloat64(m.traces.WithLabelValues(queueSink, OutcomeDroppedQueueFull)); d != 0 {
			t.Fatalf("dropped %v", d)
		}
	})
}
