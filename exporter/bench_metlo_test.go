package exporter

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// acceptAll answers every request 200 after reading its body: a backend that costs nothing,
// so the benchmark measures the appliance's side of delivery.
type acceptAll struct{}

func (acceptAll) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("")), Header: http.Header{}, Request: r}, nil
}

// BenchmarkExporterMetlo measures Submit → encode (and redact) → Metlo sink (spool on disk,
// or memory) → POST, until every trace is accepted by a backend that costs nothing.
func BenchmarkExporterMetlo(b *testing.B) {
	for _, c := range []struct {
		name     string
		spool    bool
		noRedact bool
	}{{"spool", true, false}, {"spool-noredact", true, true}, {"memory", false, false}, {"memory-noredact", false, true}} {
		b.Run(c.name, func(b *testing.B) {
			o := MetloOptions{Key: "metlo.bench", Client: &http.Client{Transport: acceptAll{}}}
			if c.spool {
				o.SpoolDir = b.TempDir()
			}
			benchExporterMetlo(b, Options{NoRedact: c.noRedact, Metlo: o})
		})
	}
}

func benchExporterMetlo(b *testing.B, opts Options) {
	opts.Sinks, opts.Block, opts.Metrics, opts.Logger = []string{"metlo:http://127.0.0.1:8081"}, true, NewMetrics("bench"), slog.New(slog.DiscardHandler)
	x, err := New(context.Background(), opts)
	if err != nil {
		b.Fatal(err)
	}
	e := sampleExchange()
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		x.Submit(e)
	}
	// Close is timed: it waits until the backend accepted every trace.
	if err := x.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	// CPU time per trace (user+system, all threads): on a shared machine it says more about
	// capacity than wall time does.
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/trace")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "traces/s")
	if m, ok := x.sinks[0].(*MetloSink); ok {
		// What the sender read back from the spool's files rather than its memory tail.
		b.ReportMetric(float64(m.q.Stats().DiskReadBytes)/float64(b.N), "disk-read-B/trace")
	}
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkExporterMetloIntake is what capture sees when the backend is paced (60 traces/s,
// the default): Submit → encode → the sink's backlog. Close is given no time, so what it
// measures is intake, not delivery.
func BenchmarkExporterMetloIntake(b *testing.B) {
	run := func(b *testing.B, o MetloOptions, opts Options) {
		o.Key, o.Client, o.RateLimit = "metlo.bench", &http.Client{Transport: acceptAll{}}, 60
		opts.Sinks, opts.Block, opts.Metrics, opts.Logger, opts.Metlo = []string{"metlo:http://127.0.0.1:8081"}, true, NewMetrics("bench"), slog.New(slog.DiscardHandler), o
		x, err := New(context.Background(), opts)
		if err != nil {
			b.Fatal(err)
		}
		e := sampleExchange()
		b.ReportAllocs()
		cpu0 := cpuTime()
		b.ResetTimer()
		for range b.N {
			x.Submit(e)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		x.Close(ctx)
		b.StopTimer()
		b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/trace")
	}
	b.Run("spool", func(b *testing.B) { run(b, MetloOptions{SpoolDir: b.TempDir()}, Options{}) })
	b.Run("spool-noredact", func(b *testing.B) { run(b, MetloOptions{SpoolDir: b.TempDir()}, Options{NoRedact: true}) })
	b.Run("memory-noredact", func(b *testing.B) {
		run(b, MetloOptions{QueueTraces: 1 << 30, QueueBytes: 1 << 40}, Options{NoRedact: true})
	})
}

// BenchmarkEncodeRedaction is what redaction adds to encoding the benchmark's exchange
// (credential-free headers, three query parameters, a JSON request body holding a
// password, a JSON response body): the same encode with and without the default redactor.
func BenchmarkEncodeRedaction(b *testing.B) {
	for _, c := range []struct {
		name     string
		noRedact bool
	}{{"redact", false}, {"noredact", true}} {
		b.Run(c.name, func(b *testing.B) {
			enc := NewExporterEncoder(Options{NoRedact: c.noRedact})
			x := sampleExchange()
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				buf, _, _ = enc.AppendTraceMax(buf[:0], x, 2_000_000)
			}
		})
	}
}
