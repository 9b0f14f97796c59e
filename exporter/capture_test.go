package exporter

import (
	"os"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeCapture reports fixed capture counters, the way collect's adapter would.
type fakeCapture struct{}

func (fakeCapture) CaptureSnapshot() CaptureSnapshot {
	return CaptureSnapshot{
		Method: "afpacket", Interface: "eth0", Up: true,
		Dropped:             map[string]uint64{"packet_ring_full": 12, "ring_buffer_full": 0},
		RingFreezes:         2,
		Rejected:            map[string]uint64{"source": 5, "vni": 1},
		BackpressureWaits:   7,
		BackpressureSeconds: 0.25,
		OneSidedFlows:       3,
		FlowsEnded:          40,
	}
}

// TestCaptureMetricsGolden compares the capture collector's output with
// testdata/capture.golden and lints it (the promlint rules promtool applies).
func TestCaptureMetricsGolden(t *testing.T) {
	c := newCaptureCollector(fakeCapture{})
	const golden = "testdata/capture.golden"
	f, err := os.Open(golden)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := testutil.CollectAndCompare(c, f); err != nil {
		t.Error(err)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	m := NewMetrics("1.2.3")
	if err := m.RegisterCapture(fakeCapture{}); err != nil {
		t.Fatalf("register next to the exporter's metrics: %v", err)
	}
}
