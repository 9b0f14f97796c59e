package h2lab

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/metlo-labs/metlo-appliance/reassembly"
	"github.com/metlo-labs/metlo-appliance/test/lab/groundtruth"
)

const labData = "../../testdata/lab"

// TestGoldenHTTP2Capture replays the committed HTTP/2 lab capture (regen.sh: a small run
// of TestHTTP2Lab, real kernel VXLAN mirroring) without root: every stream of every
// server must come out exactly as the server logged it.
func TestGoldenHTTP2Capture(t *testing.T) {
	goTruth, err := groundtruth.Load(filepath.Join(labData, "h2c_groundtruth.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(labData, "h2c_nghttpd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ngTruth, err := ParseNghttpdLog(f, makeDocroot(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	byPort, stats, err := Observe(filepath.Join(labData, "h2c.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	var goObserved []groundtruth.Observed
	for _, p := range []uint16{portPrior, portUpgrade, portGRPC} {
		goObserved = append(goObserved, byPort[p]...)
	}
	opt := groundtruth.Options{BodyCap: reassembly.DefaultConfig().BodyCap, Unordered: true}
	for _, p := range append(groundtruth.Compare(goTruth, goObserved, opt), groundtruth.Compare(ngTruth, byPort[portNghttpd], opt)...) {
		t.Error(p)
	}
	if stats.HTTP2Events["h2c_upgrade"] != 13 || stats.Protocols["other"] != 0 || stats.Exchanges["parse_error"] != 0 {
		t.Errorf("stats %+v", stats)
	}
	t.Logf("%d + %d streams match; flows %v; frames %v", len(goTruth), len(ngTruth), stats.Protocols, stats.HTTP2Frames)
	checkJoin(t, goTruth, filepath.Join(labData, "h2c_join.pcap"), 0, 20)
}
