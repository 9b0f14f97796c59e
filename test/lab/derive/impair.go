package main

import (
	"math/rand/v2"
	"slices"
	"time"
)

const (
	reorderWindow = 8    // frames move at most this far from their place
	duplicateRate = 0.10 // share of frames sent twice
)

// toReordered shuffles frames within a sliding window and duplicates about a tenth of them
// (the copy lands a few frames later). Timestamps are reassigned in arrival order, so the
// capture stays time-ordered the way a real receiver would record it.
func toReordered(vx []vxFrame, seed uint64) ([]frame, error) {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	in := make([]frame, len(vx))
	stamps := make([]time.Time, 0, len(vx)+len(vx)/8)
	for i := range vx {
		in[i] = frame{ts: vx[i].ts, data: rebuildVXLAN(&vx[i])}
		stamps = append(stamps, vx[i].ts)
	}
	// Each frame gets a random delay of up to the window; sorting by it reorders locally.
	type keyed struct {
		key float64
		f   frame
	}
	ks := make([]keyed, 0, len(in)+len(in)/8)
	for i, f := range in {
		ks = append(ks, keyed{float64(i) + r.Float64()*reorderWindow, f})
		if r.Float64() < duplicateRate {
			ks = append(ks, keyed{float64(i) + 1 + r.Float64()*reorderWindow, f})
			stamps = append(stamps, vx[i].ts.Add(time.Microsecond))
		}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int {
		switch {
		case a.key < b.key:
			return -1
		case a.key > b.key:
			return 1
		}
		return 0
	})
	slices.SortFunc(stamps, func(a, b time.Time) int { return a.Compare(b) })
	out := make([]frame, len(ks))
	for i := range ks {
		out[i] = frame{ts: stamps[i], data: ks[i].f.data}
	}
	return out, nil
}

// dualMaxFlowBytes keeps the doubled connections small so the capture stays small.
const dualMaxFlowBytes = 32 << 10

// toDualENI models both ends of some connections being mirrored: for about a third of the
// TCP flows (those under dualMaxFlowBytes) every frame arrives a second time, from the
// client ENI's address (same VNI), a little earlier for client→server frames and a little
// later for replies.
func toDualENI(vx []vxFrame, _ uint64) ([]frame, error) {
	flowBytes := map[uint32]int{}
	for i := range vx {
		flowBytes[vx[i].flowHash] += len(vx[i].inner)
	}
	out := make([]frame, 0, len(vx)*4/3)
	for i := range vx {
		v := &vx[i]
		out = append(out, frame{ts: v.ts, data: rebuildVXLAN(v)})
		if v.flowHash == 0 || v.flowHash%3 != 0 || flowBytes[v.flowHash] > dualMaxFlowBytes {
			continue
		}
		data, err := udp4Frame(v.eth, secondENIIP, v.ip4.DstIP, v.ip4.Id^0x8000, v.srcPort^0x1234, vxlanPort, v.vxlan)
		if err != nil {
			return nil, err
		}
		ts := v.ts.Add(40 * time.Microsecond)
		if v.toServer {
			ts = v.ts.Add(-40 * time.Microsecond)
		}
		out = append(out, frame{ts: ts, data: data})
	}
	slices.SortStableFunc(out, func(a, b frame) int { return a.ts.Compare(b.ts) })
	return out, nil
}

// rebuildVXLAN returns the original frame bytes (outer Ethernet header + outer IPv4 packet).
func rebuildVXLAN(v *vxFrame) []byte {
	b := make([]byte, 0, 14+len(v.outerIP))
	b = append(b, v.eth.DstMAC...)
	b = append(b, v.eth.SrcMAC...)
	b = append(b, 0x08, 0x00)
	return append(b, v.outerIP...)
}
