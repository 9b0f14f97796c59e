package main

import (
	"bytes"
	"crypto/sha256"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// innerTCP returns a hash of every TCP segment (header + payload) found in a frame at any depth.
func innerTCP(t *testing.T, data []byte) (sum [32]byte, ok bool) {
	p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("decode: %v", el.Error())
	}
	var last *layers.TCP
	for _, l := range p.Layers() {
		if tcp, ok := l.(*layers.TCP); ok {
			last = tcp
		}
	}
	if last == nil {
		return sum, false
	}
	return sha256.Sum256(append(append([]byte(nil), last.Contents...), last.Payload...)), true
}

func TestVariantsKeepEveryInnerSegment(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	frames, err := readPcap(filepath.Join(filepath.Dir(file), "..", "..", "..", "testdata", "lab", "vxlan.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	vx, err := parseVXLAN(frames)
	if err != nil {
		t.Fatal(err)
	}
	want := map[[32]byte]int{}
	for _, f := range frames {
		if s, ok := innerTCP(t, f.data); ok {
			want[s]++
		}
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			out, err := v.make(vx, 1)
			if err != nil {
				t.Fatal(err)
			}
			got := map[[32]byte]int{}
			for i, f := range out {
				if i > 0 && f.ts.Before(out[i-1].ts) {
					t.Fatalf("frame %d goes back in time", i+1)
				}
				if s, ok := innerTCP(t, f.data); ok {
					got[s]++
				}
				if v.name == "geneve" || v.name == "geneve_ip" || v.name == "vxlan_in_geneve" {
					p := gopacket.NewPacket(f.data, layers.LayerTypeEthernet, gopacket.Default)
					g, ok := p.Layer(layers.LayerTypeGeneve).(*layers.Geneve)
					if !ok || g.OptionsLength != 32 || len(g.Options) != 3 || g.Options[0].Class != 0x0108 {
						t.Fatalf("frame %d: GENEVE header wrong: %+v", i+1, g)
					}
				}
			}
			for s, n := range want {
				switch {
				case got[s] < n:
					t.Fatalf("an inner segment appears %d times, want ≥ %d", got[s], n)
				case got[s] > n && v.name != "reordered" && v.name != "dual_eni":
					t.Fatalf("an inner segment appears %d times, want %d", got[s], n)
				}
			}
			if v.name == "reordered" && (len(out) < len(frames)*105/100 || len(out) > len(frames)*115/100) {
				t.Errorf("reordered: %d frames from %d, want ≈10%% duplicates", len(out), len(frames))
			}
			if v.name == "reordered" {
				moved := 0
				for i := range min(len(out), len(frames)) {
					if !bytes.Equal(out[i].data, frames[i].data) {
						moved++
					}
				}
				if moved < len(frames)/4 {
					t.Errorf("reordered: only %d of %d frames moved", moved, len(frames))
				}
			}
		})
	}
}
