package exporter

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
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

// BenchmarkExporterMetlo measures Submit → encode → Metlo sink → POST, until every trace is
// accepted by a backend that costs nothing.
func BenchmarkExporterMetlo(b *testing.B) {
	o := MetloOptions{Key: "metlo.bench", Client: &http.Client{Transport: acceptAll{}}}
	x, err := New(context.Background(), Options{Sinks: []string{"metlo:http://127.0.0.1:8081"}, Block: true, Metlo: o, Metrics: NewMetrics("bench"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	e := sampleExchange()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		x.Submit(e)
	}
	// Close is timed: it waits until the backend accepted every trace.
	if err := x.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "traces/s")
}
