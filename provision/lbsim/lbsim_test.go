package lbsim

import (
	"os"
	"strings"
	"testing"
	"time"
)

func labCapture(t testing.TB) *Capture {
	t.Helper()
	c, err := Load("../../testdata/lab/vxlan.pcap")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLoadLabCapture(t *testing.T) {
	c := labCapture(t)
	reqs := 0
	for _, p := range c.Packets {
		if p.ReqStart {
			reqs++
		}
	}
	// The lab's client makes ≈157 exchanges over 10 connections; pipelined requests share segments.
	if len(c.Packets) < 1000 || c.Conns < 10 || reqs < 100 {
		t.Fatalf("%d packets, %d connections, %d request starts", len(c.Packets), c.Conns, reqs)
	}
}

// scenarios are the fleet stories the report covers: 60 replicas of the lab run (≈9,000
// exchanges), each stretched ×100 (keep-alive connections of about a minute), spread over
// 10 minutes and 12 source ENIs.
func scenarios(t testing.TB) []Scenario {
	c := labCapture(t)
	base := ScaleOptions{Copies: 60, Sources: 12, Span: 10 * time.Minute, Stretch: 100, Seed: 7}
	both := base
	both.BothEnds = true
	busy := base
	busy.BusyENI, busy.Sources = 0.5, 8
	steady := c.Scale(base)
	churn := []Event{{At: 4 * time.Minute, Add: 1}, {At: 7 * time.Minute, Remove: 1}}
	drained := []Event{{At: 4 * time.Minute, Add: 1}, {At: 7 * time.Minute, Remove: 1, Drain: 120 * time.Second}}
	return []Scenario{
		{Name: "steady, 4 members", Members: 4, Capture: steady},
		{Name: "+1 at 4 min, -1 at 7 min, no drain", Members: 4, Events: churn, Capture: steady},
		{Name: "+1 at 4 min, -1 at 7 min, 120 s drain", Members: 4, Events: drained, Capture: steady},
		{Name: "both ends mirrored, 4 members", Members: 4, Capture: c.Scale(both)},
		{Name: "one ENI carries half, 4 members", Members: 4, Capture: c.Scale(busy)},
	}
}

// TestAffinity proves which load-balancing models keep exchanges whole, and prints the
// report docs/deployment.md quotes (go test -run TestAffinity -v ./provision/lbsim/).
func TestAffinity(t *testing.T) {
	var b strings.Builder
	res := Report(&b, scenarios(t), Models)
	t.Log("\n" + b.String())
	if path := os.Getenv("LBSIM_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	get := func(s, m string) Result { return res[s][m] }
	steady := "steady, 4 members"
	for _, m := range []string{"NLB 5-tuple, outer port symmetric", "NLB source-IP stickiness", "GWLB 2-tuple", "GWLB 3-tuple", "GCP ILB, symmetric hashing"} {
		if r := get(steady, m); r.WholeShare() != 1 || r.Duplicated != 0 {
			t.Errorf("%s keeps %.1f%% whole, %d duplicated, want all whole", m, 100*r.WholeShare(), r.Duplicated)
		}
	}
	for _, m := range []string{"NLB 5-tuple, outer port directional", "GWLB 5-tuple"} {
		if r := get(steady, m); r.WholeShare() > 0.5 {
			t.Errorf("%s keeps %.1f%% whole: a direction-dependent outer port should split most exchanges", m, 100*r.WholeShare())
		}
	}
	// A member leaving without drain breaks the exchanges in flight on it; a drain longer than
	// the exchanges keeps them whole. Joining never breaks anything (flows stay where they are).
	for _, m := range []string{"NLB source-IP stickiness", "NLB 5-tuple, outer port symmetric", "GCP ILB, symmetric hashing"} {
		cut, drained := get("+1 at 4 min, -1 at 7 min, no drain", m), get("+1 at 4 min, -1 at 7 min, 120 s drain", m)
		if cut.WholeShare() >= 1 || cut.Moved == 0 {
			t.Errorf("%s: a member left without drain and nothing broke (%d moved)", m, cut.Moved)
		}
		if drained.WholeShare() != 1 {
			t.Errorf("%s: with a 120 s drain %.2f%% stayed whole, want all", m, 100*drained.WholeShare())
		}
	}
	// Both ends mirrored: appliances that each get one end's copies both report the exchange,
	// unless the balancer hashes the original packet (GCP).
	if r := get("both ends mirrored, 4 members", "NLB source-IP stickiness"); r.Duplicated == 0 {
		t.Error("source-IP stickiness with both ends mirrored produced no duplicate")
	}
	if r := get("both ends mirrored, 4 members", "GCP ILB, symmetric hashing"); r.Duplicated != 0 {
		t.Errorf("GCP symmetric hashing duplicated %d exchanges", r.Duplicated)
	}
	// One busy ENI pins half the traffic on one appliance under source-IP stickiness.
	sticky, spread := get("one ENI carries half, 4 members", "NLB source-IP stickiness"), get("one ENI carries half, 4 members", "NLB 5-tuple, outer port symmetric")
	if sticky.MaxShare < 0.45 || spread.MaxShare > 0.4 {
		t.Errorf("busy ENI: source-IP max share %.2f (want ≥ 0.45), 5-tuple %.2f (want < 0.4)", sticky.MaxShare, spread.MaxShare)
	}
}

func BenchmarkRun(b *testing.B) {
	s := scenarios(b)[0]
	b.ReportAllocs()
	for b.Loop() {
		Run(s.Capture, Models[2], 4, nil)
	}
	b.ReportMetric(float64(len(s.Capture.Packets)), "packets/op")
}
