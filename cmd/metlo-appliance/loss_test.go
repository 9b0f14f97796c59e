package main

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/metlo-labs/metlo-appliance/reassembly"
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
	"github.com/metlo-labs/metlo-appliance/test/lab/groundtruth"
)

// labFrames reads a lab capture's frames with their timestamps.
func labFrames(t *testing.T, name string) []datapath.Frame {
	t.Helper()
	f, err := os.Open(filepath.Join(labData, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var frames []datapath.Frame
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		frames = append(frames, datapath.Frame{Data: data, Timestamp: ci.Timestamp.UnixNano()})
	}
	return frames
}

var seqOfProblem = regexp.MustCompile(`^seq (\d+) `)

// damagedExchanges runs frames through the pipeline and returns how many ground-truth
// exchanges were not reported exactly (missing, or any field wrong).
func damagedExchanges(t *testing.T, frames []datapath.Frame, truth []groundtruth.Exchange) (int, reassembly.Stats) {
	t.Helper()
	var mu sync.Mutex
	var observed []groundtruth.Observed
	d := datapath.NewDispatcher(datapath.DispatcherConfig{Workers: 2},
		exchange.HandlerFunc(func(e *exchange.Exchange) {
			mu.Lock()
			observed = append(observed, groundtruth.FromExchange(e))
			mu.Unlock()
		}))
	h := d.NewHandler()
	for i := range frames {
		h.HandleFrame(&frames[i])
	}
	h.Flush()
	d.Close()
	damaged := map[string]bool{}
	for _, p := range groundtruth.Compare(truth, observed, groundtruth.Options{BodyCap: reassembly.DefaultConfig().BodyCap}) {
		if m := seqOfProblem.FindStringSubmatch(p); m != nil {
			damaged[m[1]] = true
		} else {
			t.Errorf("%s", p) // an exchange the server never served: loss must not invent traffic
		}
	}
	return len(damaged), d.Snapshot().Reassembly
}

// TestLossAmplificationOnLabCapture deletes N payload-carrying packets of one direction
// from a real lab capture (nginx-like lab server, keep-alive and pipelining clients) and
// checks that the damage stays within the loss: at most N exchanges not reported exactly.
func TestLossAmplificationOnLabCapture(t *testing.T) {
	truth, err := groundtruth.Load(filepath.Join(labData, "groundtruth.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	frames := labFrames(t, "vxlan.pcap")
	dec := datapath.NewDecoder(datapath.DecoderConfig{})
	var payload [2][]int // frame indexes carrying TCP payload, by direction (0: to the server)
	for i := range frames {
		var seg tcp.Segment
		f := frames[i]
		if _, out := dec.Decode(&f, &seg); out == datapath.OutcomeTCP && len(seg.Payload) > 0 {
			toServer := 0
			if seg.Key.Lo.Port == 8080 && seg.Dir == tcp.LoToHi || seg.Key.Hi.Port == 8080 && seg.Dir == tcp.HiToLo {
				toServer = 1 // sent by the server (port 8080)
			}
			payload[toServer] = append(payload[toServer], i)
		}
	}
	if len(payload[0]) < 50 || len(payload[1]) < 50 {
		t.Fatalf("capture has %d/%d payload frames", len(payload[0]), len(payload[1]))
	}
	for dir, name := range []string{"requests", "responses"} {
		lostTotal, damagedTotal := 0, 0
		for _, n := range []int{1, 5, 20, 50} {
			for seed := range uint64(5) {
				r := rand.New(rand.NewPCG(seed, uint64(n)))
				drop := map[int]bool{}
				for len(drop) < n {
					drop[payload[dir][r.IntN(len(payload[dir]))]] = true
				}
				var kept []datapath.Frame
				for i, f := range frames {
					if !drop[i] {
						kept = append(kept, f)
					}
				}
				damaged, s := damagedExchanges(t, kept, truth)
				lostTotal, damagedTotal = lostTotal+n, damagedTotal+damaged
				if damaged > n {
					t.Errorf("%s: %d packets lost (seed %d) damaged %d exchanges; gaps %d, outcomes %v",
						name, n, seed, damaged, s.Gaps, s.Exchanges)
				}
			}
		}
		t.Logf("%s: %d packets lost over 20 trials damaged %d exchanges (amplification %.2f)",
			name, lostTotal, damagedTotal, float64(damagedTotal)/float64(lostTotal))
	}
}
