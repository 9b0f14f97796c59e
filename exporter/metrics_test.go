package exporter

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

// fakePipeline reports fixed counters, the way the capture pipeline's snapshot would.
type fakePipeline struct{}

func (fakePipeline) Snapshot() PipelineSnapshot {
	return PipelineSnapshot{
		Packets: map[PacketKey]uint64{
			{"vxlan", "accepted"}: 1000, {"geneve", "accepted"}: 20, {"raw", "not_tcp"}: 7, {"vxlan", "truncated"}: 3,
		},
		Bytes:              map[string]uint64{"vxlan": 1_500_000, "geneve": 30_000, "raw": 700},
		Flows:              12,
		OutOfOrderSegments: 40,
		Gaps:               2,
		BufferedBytes:      4096,
		Drops:              map[string]uint64{"flow_table_full": 5, "flow_buffer_full": 1},
		Exchanges:          map[string]uint64{"complete": 480, "no_response": 4, "truncated": 9, "orphan_response": 1},
		Protocols:          map[string]uint64{"http1": 10, "http2": 3, "other": 1},
		HTTP2Frames:        map[string]uint64{"data": 40, "headers": 30, "settings": 6},
		HTTP2Events:        map[string]uint64{"hpack_unknown_field": 2, "h2c_upgrade": 1},
	}
}

// fixedMetrics is a registry filled with known values for the golden file.
func fixedMetrics() *Metrics {
	m := NewBuildMetrics(Build{Version: "1.2.3", Revision: "0123456789ab"})
	m.RegisterPipeline(fakePipeline{})
	metlo := m.forSink("metlo:http://backend:8081", metloOutcomes...)
	metlo.add(OutcomeSent, 470)
	metlo.add(OutcomeSkippedNoResponse, 4)
	metlo.add(OutcomeDroppedSpoolFull, 10)
	metlo.trimmed.Add(1)
	m.forSink(queueSink, intakeOutcomes...).add(OutcomeDroppedQueueBytes, 2)
	m.batches.WithLabelValues("metlo:http://backend:8081", "ok").Add(5)
	m.batches.WithLabelValues("metlo:http://backend:8081", "retry").Add(1)
	for _, d := range []float64{0.004, 0.02, 0.3} {
		m.batchDuration.WithLabelValues("metlo:http://backend:8081").Observe(d)
	}
	m.rewritten.WithLabelValues(RewriteReserved).Add(2)
	m.batchLimit.WithLabelValues("metlo:http://backend:8081").Set(2_000_000)
	m.trackQueue(queueSink, func() QueueStats {
		return QueueStats{Traces: 3, Bytes: 3000, LimitBytes: 1 << 28, UsedBytes: 3000, LimitTraces: 65536}
	})
	m.trackQueue("metlo:http://backend:8081", func() QueueStats {
		return QueueStats{Traces: 100, Bytes: 150000, LimitBytes: 1 << 30, UsedBytes: 160000, CorruptSegments: 1, Corrupt: 512, Replayed: 40, Spool: true}
	})
	return m
}

func scrape(t *testing.T, h http.Handler) []byte {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	return rec.Body.Bytes()
}

func TestMetricsGolden(t *testing.T) {
	got := scrape(t, Handler(fixedMetrics(), NewHealth()))
	got = bytes.ReplaceAll(got, []byte(`goversion="`+runtime.Version()+`"`), []byte(`goversion="GOVERSION"`))
	const golden = "testdata/metrics.golden"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("/metrics differs from %s (run go test -update to accept):\n%s", golden, got)
	}
}

func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus)")
	}
	m := fixedMetrics()
	if err := m.RegisterRuntime(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(scrape(t, Handler(m, NewHealth())))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestHealthEndpoints(t *testing.T) {
	h := NewHealth()
	srv := httptest.NewServer(Handler(NewMetrics("t"), h))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	if code, body := get("/readyz"); code != 503 || body != "starting" {
		t.Fatalf("/readyz before any component = %d %q", code, body)
	}
	h.SetReady("capture", false)
	h.SetReady("metlo:http://b:8081", false)
	if code, body := get("/readyz"); code != 503 || body != "not ready: capture, metlo:http://b:8081" {
		t.Fatalf("/readyz = %d %q", code, body)
	}
	h.SetReady("capture", true)
	h.SetReady("metlo:http://b:8081", true)
	if code, body := get("/readyz"); code != 200 || body != "ready" {
		t.Fatalf("/readyz when all ready = %d %q", code, body)
	}
	if code, _ := get("/nope"); code != 404 {
		t.Fatalf("unknown path = %d", code)
	}
}

func TestServeStopsWithContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, ln, NewMetrics("t"), NewHealth(), nil) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server did not stop")
	}
	if err := Serve(context.Background(), ln.Addr().String()+"x", NewMetrics("t"), NewHealth(), nil); err == nil {
		t.Fatal("Serve on a bad address succeeded")
	}
}
