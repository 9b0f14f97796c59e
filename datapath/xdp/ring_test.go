package xdp

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/metlo-labs/metlo-appliance/datapath"
)

// TestRingReaderInPlace runs the program on frames of varied sizes through a 16 KiB ring many
// times over, so records wrap around the ring's end at every offset, and reads them in place
// with ringReader: each record must decode to the exact inner frame, in order, and the
// space must be given back (the ring never fills).
func TestRingReaderInPlace(t *testing.T) {
	needBPF(t)
	h := newHarness(t, Config{Raw: true, LocalAddrs: []netip.Addr{applianceV4}, RingBytes: 16 << 10})
	readers := make([]*ringReader, len(h.objs.Rings))
	for i, m := range h.objs.Rings {
		r, err := newRingReader(m)
		if err != nil {
			t.Fatal(err)
		}
		defer r.close()
		readers[i] = r
	}
	var f datapath.Frame
	for i := range 600 {
		payload := strings.Repeat(string(rune('a'+i%26)), (i*37)%1400)
		inner := tcpFrame(t, clientV4, serverV4, uint16(1000+i), 80, payload)
		if act, err := h.objs.Program.Run(&ebpf.RunOptions{Data: vxlanFrame(t, mirrorV4, applianceV4, uint32(i), inner)}); err != nil || act != actDrop {
			t.Fatalf("run %d: %d %v", i, act, err)
		}
		got := 0
		for _, r := range readers {
			cons, prod := r.consumer(), r.producer()
			for {
				sample, after, ok := r.next(cons, prod)
				if !ok {
					break
				}
				cons = after
				if !decodeRecord(sample, 0, &f) {
					t.Fatalf("frame %d: record does not decode", i)
				}
				if !bytes.Equal(f.Data, inner[:ipv4End(inner)]) || f.Tunnel != uint32(i) {
					t.Fatalf("frame %d: got %d bytes vni %d, want %d bytes vni %d", i, len(f.Data), f.Tunnel, ipv4End(inner), i)
				}
				got++
			}
			r.release(cons)
			if r.available() != 0 {
				t.Fatalf("frame %d: %d bytes left after reading", i, r.available())
			}
		}
		if got != 1 {
			t.Fatalf("frame %d: %d records", i, got)
		}
	}
	if c := h.counters(t); c["ringbuf_full"] != 0 || c["vxlan"] != 600 {
		t.Errorf("counters %v", c)
	}
}

// BenchmarkRingDrain measures what draining one record costs the reader: in place with
// ringReader against cilium/ebpf's ringbuf.Reader (which copies each record out and takes
// a lock), on 64-byte and 1514-byte inner frames. The ring is filled by BPF_PROG_RUN with
// the timer stopped.
func BenchmarkRingDrain(b *testing.B) {
	needBPF(b)
	const ring = 8 << 20
	h := newHarness(b, Config{Raw: true, LocalAddrs: []netip.Addr{applianceV4}, RingBytes: ring})
	for _, size := range []int{64, 1514} {
		hdr := len(tcpFrame(b, clientV4, serverV4, 1, 80, ""))
		frame := vxlanFrame(b, mirrorV4, applianceV4, 1, tcpFrame(b, clientV4, serverV4, 1, 80, strings.Repeat("p", size-hdr)))
		fill := func(b *testing.B, n int) {
			b.StopTimer()
			if _, _, err := h.objs.Program.Benchmark(frame, n, nil); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		per := ring / (nextPow2(size) + 128)
		b.Run(fmt.Sprintf("inplace/%dB", size), func(b *testing.B) {
			readers := make([]*ringReader, len(h.objs.Rings))
			for i, m := range h.objs.Rings {
				r, err := newRingReader(m)
				if err != nil {
					b.Fatal(err)
				}
				defer r.close()
				readers[i] = r
			}
			var f datapath.Frame
			var sink int
			for done := 0; done < b.N; {
				n := min(per, b.N-done)
				fill(b, n)
				for _, r := range readers {
					cons, prod := r.consumer(), r.producer()
					for {
						sample, after, ok := r.next(cons, prod)
						if !ok {
							break
						}
						cons = after
						decodeRecord(sample, 0, &f)
						sink += len(f.Data)
					}
					r.release(cons)
				}
				done += n
			}
			_ = sink
		})
		b.Run(fmt.Sprintf("cilium/%dB", size), func(b *testing.B) {
			readers := make([]*ringbuf.Reader, len(h.objs.Rings))
			for i, m := range h.objs.Rings {
				r, err := ringbuf.NewReader(m)
				if err != nil {
					b.Fatal(err)
				}
				defer r.Close()
				readers[i] = r
			}
			var rec ringbuf.Record
			var f datapath.Frame
			var sink int
			for done := 0; done < b.N; {
				n := min(per, b.N-done)
				fill(b, n)
				for _, r := range readers {
					for r.AvailableBytes() > 0 {
						if err := r.ReadInto(&rec); err != nil {
							b.Fatal(err)
						}
						decodeRecord(rec.RawSample, 0, &f)
						sink += len(f.Data)
					}
				}
				done += n
			}
			_ = sink
		})
	}
}
