package xdp

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// BenchmarkProgram measures ns/packet of the capture program under BPF_PROG_RUN next to the
// baseline program that only copies the frame into a ring. Runs are chunked to fit the ring and
// the rings are drained between chunks (timer stopped), so every packet really is copied: a
// full ring would take the cheaper ringbuf_full path and flatter the numbers. The kernel's own
// per-run time is reported as ns/pkt.
// benchRing is the per-CPU ring size for the benchmarks (the size used for the recorded
// figures). Large, because every BPF_PROG_RUN
// call of an XDP program pays a fixed ~20 ms here (the kernel swaps the XDP dispatcher around
// each call) and a bigger ring means fewer, longer calls; ns/pkt is the kernel's own per-run
// time and excludes that, ns/op includes it.
const benchRing = 8 << 20

func BenchmarkProgram(b *testing.B) {
	needBPF(b)
	h := newHarness(b, Config{Raw: true, LocalAddrs: []netip.Addr{applianceV4}, RingBytes: benchRing})
	for _, size := range []int{64, 1514} {
		// body: a segment inside a message (payload "ppp…"), which takes the coarse clock;
		// start: one that begins a request ("GET /…"), which reads the precise clock.
		pad := func(prefix string) []byte {
			inner := tcpFrame(b, clientV4, serverV4, 40000, 80, prefix)
			return tcpFrame(b, clientV4, serverV4, 40000, 80, prefix+strings.Repeat("p", size-len(inner)))
		}
		inner, start := pad(""), pad("GET /")
		ip := inner[14:]
		frames := []struct {
			name    string
			prog    *ebpf.Program
			frame   []byte
			counter string
		}{
			// baseline copies the whole VXLAN frame (what arrives); baseline_inner copies a frame
			// the size of the inner one, so it lands in the same ring slot size as vxlan. Both
			// read the precise clock.
			{"baseline", h.objs.Baseline, vxlanFrame(b, mirrorV4, applianceV4, 1, inner), "raw"},
			{"baseline_inner", h.objs.Baseline, inner, "raw"},
			{"vxlan", h.objs.Program, vxlanFrame(b, mirrorV4, applianceV4, 1, inner), "vxlan"},
			{"vxlan_start", h.objs.Program, vxlanFrame(b, mirrorV4, applianceV4, 1, start), "vxlan"},
			{"geneve", h.objs.Program, udpFrame(b, mirrorV4, applianceV4, 1, 6081, genevePayload(1, 0x0800, 32, ip)), "geneve"},
			{"raw", h.objs.Program, inner, "raw"},
			{"raw_start", h.objs.Program, start, "raw"},
		}
		for _, fr := range frames {
			b.Run(fmt.Sprintf("%s/%dB", fr.name, size), func(b *testing.B) {
				benchRun(b, h, fr.prog, fr.frame, fr.counter)
			})
		}
	}
	// A 1514-byte inner frame in VXLAN over a 1280-byte path: the outer IPv4 packet in two
	// fragments. The first decides the datagram and stores the verdict (an LRU map update
	// per run); the later one looks it up. Both are copied to the ring whole.
	inner := tcpFrame(b, clientV4, serverV4, 40000, 80, strings.Repeat("p", 1514-54))
	frags := fragment(b, vxlanFrame(b, mirrorV4, applianceV4, 1, inner), 1256, 99)
	b.Run(fmt.Sprintf("fragment_first/%dB", len(frags[0])), func(b *testing.B) {
		benchRun(b, h, h.objs.Program, frags[0], "fragment")
	})
	// The first fragment runs again (untimed) before every chunk: its verdict is trusted
	// for a second only, and the benchmark runs longer than that.
	b.Run(fmt.Sprintf("fragment_later/%dB", len(frags[1])), func(b *testing.B) {
		benchRunAfter(b, h, h.objs.Program, frags[0], frags[1], "fragment")
	})
}

func benchRun(b *testing.B, h *harness, prog *ebpf.Program, frame []byte, counter string) {
	benchRunAfter(b, h, prog, nil, frame, counter)
}

// benchRunAfter is benchRun with prime (unless nil) run once, untimed, before every chunk.
func benchRunAfter(b *testing.B, h *harness, prog *ebpf.Program, prime, frame []byte, counter string) {
	slot := nextPow2(len(frame)) + 128 // upper bound of one record's ring footprint
	chunk := max(1, benchRing/slot/2)
	before := h.counters(b)
	var kernel time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(chunk, b.N-done)
		if prime != nil {
			b.StopTimer()
			if ret, err := prog.Run(&ebpf.RunOptions{Data: prime}); err != nil || ret != actDrop {
				b.Fatalf("prime: action %d, %v", ret, err)
			}
			b.StartTimer()
		}
		ret, perRun, err := prog.Benchmark(frame, n, nil)
		if err != nil || ret != actDrop {
			b.Fatalf("run: action %d, %v", ret, err)
		}
		kernel += perRun * time.Duration(n)
		done += n
		b.StopTimer()
		h.drain(b)
		b.StartTimer()
	}
	b.StopTimer()
	after := h.counters(b)
	if full := after["ringbuf_full"] - before["ringbuf_full"]; full != 0 {
		b.Fatalf("%d packets hit a full ring", full)
	}
	if got := after[counter] - before[counter]; got < uint64(b.N) {
		b.Fatalf("%s counted %d of %d packets", counter, got, b.N)
	}
	b.ReportMetric(float64(kernel.Nanoseconds())/float64(b.N), "ns/pkt")
}
