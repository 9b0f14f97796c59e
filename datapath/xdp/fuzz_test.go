package xdp

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/metlo-labs/metlo-appliance/datapath"
)

var captureOutcomes = map[string]datapath.Encap{
	"vxlan": datapath.EncapVXLAN, "geneve": datapath.EncapGENEVE,
	"geneve_vxlan": datapath.EncapGENEVEVXLAN, "raw": datapath.EncapRaw, "whole": datapath.EncapRaw,
	"fragment": datapath.EncapRaw, "fragment_shared": datapath.EncapRaw,
}

// FuzzProgram feeds random frames to the program: it must only ever drop or pass, count each
// frame under exactly one outcome, pass exactly what it counts as passed or shared with the
// kernel, and write a record exactly when it captured.
// Seeds: the crafted frames below plus testdata/fuzz/FuzzProgram.
func FuzzProgram(f *testing.F) {
	get := "GET / HTTP/1.1\r\n\r\n"
	inner := tcpFrame(f, clientV4, serverV4, 40000, 80, get)
	ip4 := tcpIP(f, clientV4, serverV4, 40000, 80, get)
	f.Add(vxlanFrame(f, mirrorV4, applianceV4, 1, inner))
	f.Add(vxlanFrame(f, mirrorV6, applianceV6, 1, inner, 10, 20))
	f.Add(udpFrame(f, mirrorV4, applianceV4, 1, 6081, genevePayload(2, 0x6558, 32, inner)))
	f.Add(udpFrame(f, mirrorV4, applianceV4, 1, 6081, genevePayload(2, 0x0800, 8, ip4)))
	f.Add(inner)
	f.Add(tcpFrame(f, clientV4, applianceV4, 40000, 22, "ssh"))
	for _, fr := range fragment(f, vxlanFrame(f, mirrorV4, applianceV4, 1, inner), 32, 7) {
		f.Add(fr)
	}
	for _, fr := range fragment(f, vxlanFrame(f, mirrorV6, applianceV6, 1, inner), 32, 7) {
		f.Add(fr)
	}
	f.Add(greFrame(f, mirrorV4, applianceV4, 0x0800, ip4))
	f.Add(ipipFrame(f, mirrorV4, applianceV4, ip4))

	h := newHarness(f, Config{Raw: true, LocalAddrs: []netip.Addr{applianceV4, applianceV6}})
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 || len(frame) > 3*4096 {
			return // BPF_PROG_RUN wants an Ethernet header; keep inputs small
		}
		res := h.run(t, h.objs.Program, frame)
		if res.action != actDrop && res.action != actPass {
			t.Fatalf("action %d", res.action)
		}
		if res.deltas["received"] != 1 {
			t.Fatalf("received delta %d", res.deltas["received"])
		}
		var outcomes uint64
		captured := ""
		for k, v := range res.deltas {
			switch k {
			case "received", "truncated":
			default:
				outcomes += v
				if _, ok := captureOutcomes[k]; ok {
					captured = k
				}
			}
		}
		if outcomes != 1 {
			t.Fatalf("frame counted under %d outcomes: %v", outcomes, res.deltas)
		}
		if (res.action == actPass) != (res.deltas["passed"] == 1 || res.deltas["fragment_shared"] == 1) {
			t.Fatalf("action %d with deltas %v", res.action, res.deltas)
		}
		if res.deltas["truncated"] > 0 && captured == "" {
			t.Fatalf("truncated without capture: %v", res.deltas)
		}
		if captured == "" {
			if len(res.records) != 0 {
				t.Fatalf("%d records without a capture outcome", len(res.records))
			}
			return
		}
		if len(res.records) != 1 {
			t.Fatalf("%s: %d records", captured, len(res.records))
		}
		var fr datapath.Frame
		if !decodeRecord(res.records[0], 0, &fr) {
			t.Fatal("record does not decode")
		}
		if fr.Encap != captureOutcomes[captured] || len(fr.Data) == 0 || fr.WireLen < len(fr.Data) {
			t.Fatalf("%s: frame encap %v len %d wire %d", captured, fr.Encap, len(fr.Data), fr.WireLen)
		}
		if !bytes.Contains(frame, fr.Data) {
			t.Fatalf("%s: record data is not a slice of the frame", captured)
		}
		if (res.deltas["truncated"] == 1) != (fr.WireLen > len(fr.Data)) {
			t.Fatalf("truncated delta %d, wire %d, captured %d", res.deltas["truncated"], fr.WireLen, len(fr.Data))
		}
	})
}
