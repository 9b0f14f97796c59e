package xdp

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// fragStep is one frame of a fragment scenario and what the program must do with it.
type fragStep struct {
	frame  []byte
	action uint32
	copied bool // handed on whole (the record is the frame)
	deltas map[string]uint64
}

// Outcomes of one fragment.
func captured(frame []byte) fragStep {
	return fragStep{frame: frame, action: actDrop, copied: true, deltas: map[string]uint64{"received": 1, "fragment": 1}}
}

func shared(frame []byte) fragStep {
	return fragStep{frame: frame, action: actPass, copied: true, deltas: map[string]uint64{"received": 1, "fragment_shared": 1}}
}

func passed(frame []byte) fragStep {
	return fragStep{frame: frame, action: actPass, deltas: map[string]uint64{"received": 1, "passed": 1}}
}

func rejected(frame []byte, reason string) fragStep {
	return fragStep{frame: frame, action: actDrop, deltas: map[string]uint64{"received": 1, reason: 1}}
}

// TestFragments runs IP fragments through the program in order and out of order: fragments
// of mirrored traffic (VXLAN over IPv4 and IPv6, to the appliance or elsewhere; raw TCP to
// another host; ERSPAN; IP over GRE) reach the ring whole and are dropped; the host's own
// fragmented datagrams reach the kernel and nothing else; a later fragment whose first was
// not seen is copied and passed when it may be the host's own, and never copied when it
// comes from outside the accept list to the host. Where the scenario says so, the records
// are then fed to the Go decoder, which must reassemble the datagram and find the inner
// TCP segment: what the XDP source hands on is enough.
func TestFragments(t *testing.T) {
	needBPF(t)
	local := []netip.Addr{applianceV4, applianceV6}
	raw := Config{Raw: true, LocalAddrs: local}
	noRaw := Config{Raw: false, LocalAddrs: local}
	accept := Config{Raw: true, LocalAddrs: local, AcceptSources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("fd00::/64")},
		AcceptVNIs: []uint32{4242}}
	stranger4 := netip.MustParseAddr("192.0.2.66")

	body := "POST /api/upload HTTP/1.1\r\nHost: api\r\nContent-Length: 1300\r\n\r\n" + strings.Repeat("b", 1300)
	inner4 := tcpFrame(t, clientV4, serverV4, 51234, 80, body)
	inner6 := tcpFrame(t, clientV6, serverV6, 51234, 8080, body)
	// Each datagram in three fragments (600 + 600 + the rest): the first carries the UDP and
	// VXLAN headers, the later ones only data.
	three := func(frame []byte, id uint32) [3][]byte {
		fs := fragment(t, frame, 600, id)
		if len(fs) != 3 {
			t.Fatalf("%d fragments, want 3", len(fs))
		}
		return [3][]byte(fs)
	}
	vx4 := three(vxlanFrame(t, mirrorV4, applianceV4, 4242, inner4), 0x1001)
	vx4r := three(vxlanFrame(t, mirrorV4, applianceV4, 4242, inner4), 0x1002)
	vx6 := three(vxlanFrame(t, mirrorV6, applianceV6, 4242, inner6), 0x1003)
	vxElsewhere := three(vxlanFrame(t, mirrorV4, netip.MustParseAddr("10.9.9.9"), 4242, inner4), 0x1004)
	rawTCP := three(inner4, 0x1005)
	rawTCPr := three(inner4, 0x1006)
	rawTCP6 := three(inner6, 0x1007)
	ownTCP := three(tcpFrame(t, clientV4, applianceV4, 51234, 22, body), 0x1008)
	ownUDP := three(udpFrame(t, clientV4, applianceV4, 53, 40000, []byte(body)), 0x1009)
	ownUDP6 := three(udpFrame(t, clientV6, applianceV6, 53, 40000, []byte(body)), 0x100a)
	noRawTCP := three(inner4, 0x100b)
	strangerVX := three(vxlanFrame(t, stranger4, applianceV4, 4242, inner4), 0x100c)
	otherVNI := three(vxlanFrame(t, mirrorV4, applianceV4, 77, inner4), 0x100d)
	unseen := three(vxlanFrame(t, mirrorV4, applianceV4, 4242, inner4), 0x100e)
	unseenStranger := three(vxlanFrame(t, stranger4, applianceV4, 4242, inner4), 0x100f)
	unseenElsewhere := three(tcpFrame(t, stranger4, serverV4, 51234, 80, body), 0x1010)
	unseenNoRaw := three(vxlanFrame(t, mirrorV4, netip.MustParseAddr("10.9.9.9"), 4242, inner4), 0x1011)
	erspan := three(greFrame(t, mirrorV4, applianceV4, 0x88be, erspan2(inner4)), 0x1012)
	greIP := three(greFrame(t, mirrorV4, applianceV4, 0x0800, inner4[14:]), 0x1013)
	greOwn := three(greFrame(t, mirrorV4, applianceV4, 0x0800, tcpIP(t, clientV4, applianceV4, 51234, 22, body)), 0x1014)
	geneveIP := three(udpFrame(t, mirrorV4, applianceV4, 50000, 6081, genevePayload(4242, 0x0800, 32, inner4[14:])), 0x1016)
	geneveEth6 := three(udpFrame(t, mirrorV6, applianceV6, 50000, 6081, genevePayload(4242, 0x6558, 8, inner6)), 0x1017)
	geneveVX := three(udpFrame(t, mirrorV4, applianceV4, 50000, 6081,
		genevePayload(9, 0x0800, 8, udpFrame(t, mirrorV4, applianceV4, 49152, 4789, append(vxlanHeader(4242, 0x08), inner4...))[14:])), 0x1018)
	geneveOtherVNI := three(udpFrame(t, mirrorV4, applianceV4, 50000, 6081, genevePayload(77, 0x0800, 32, inner4[14:])), 0x1019)
	// An atomic fragment (RFC 6946): a fragment header with offset 0 and no M flag, the
	// whole datagram.
	atomic := fragment(t, vxlanFrame(t, mirrorV6, applianceV6, 4242, inner6), 2048, 0x1015)[0]

	cases := []struct {
		name  string
		cfg   Config
		steps []fragStep
		// innerPayload: the Go decoder, given the records, yields one TCP segment with
		// this payload (after reassembling the datagram).
		innerPayload string
	}{
		{"vxlan over ipv4 to the appliance", raw, []fragStep{captured(vx4[0]), captured(vx4[1]), captured(vx4[2])}, body},
		{"vxlan over ipv4, last fragment first: copied and shared until the first is seen", raw,
			[]fragStep{shared(vx4r[2]), captured(vx4r[0]), captured(vx4r[1])}, body},
		{"vxlan over ipv6 (fragment header)", raw, []fragStep{captured(vx6[0]), captured(vx6[1]), captured(vx6[2])}, body},
		{"ipv6 atomic fragment", raw, []fragStep{captured(atomic)}, body},
		{"vxlan to another address, raw mode off", noRaw, []fragStep{captured(vxElsewhere[0]), captured(vxElsewhere[1]), captured(vxElsewhere[2])}, body},
		{"raw tcp to another host", raw, []fragStep{captured(rawTCP[0]), captured(rawTCP[1]), captured(rawTCP[2])}, body},
		{"raw tcp to another host, out of order", raw, []fragStep{captured(rawTCPr[1]), captured(rawTCPr[2]), captured(rawTCPr[0])}, body},
		{"raw tcp over ipv6 to another host", raw, []fragStep{captured(rawTCP6[0]), captured(rawTCP6[1]), captured(rawTCP6[2])}, body},
		{"the host's own tcp", raw, []fragStep{passed(ownTCP[0]), passed(ownTCP[1]), passed(ownTCP[2])}, ""},
		{"the host's own udp", raw, []fragStep{passed(ownUDP[0]), passed(ownUDP[1]), passed(ownUDP[2])}, ""},
		{"the host's own udp over ipv6", raw, []fragStep{passed(ownUDP6[0]), passed(ownUDP6[1]), passed(ownUDP6[2])}, ""},
		{"tcp to another host, raw mode off", noRaw, []fragStep{passed(noRawTCP[0]), passed(noRawTCP[1]), passed(noRawTCP[2])}, ""},
		{"vxlan from a stranger", accept, []fragStep{rejected(strangerVX[0], "rejected_source"), rejected(strangerVX[1], "rejected_source"),
			rejected(strangerVX[2], "rejected_source")}, ""},
		{"vxlan with another vni", accept, []fragStep{rejected(otherVNI[0], "rejected_vni"), rejected(otherVNI[1], "rejected_vni"),
			rejected(otherVNI[2], "rejected_vni")}, ""},
		{"later fragment to the appliance, first unseen", accept, []fragStep{shared(unseen[1])}, ""},
		{"later fragment from a stranger to the appliance, first unseen", accept, []fragStep{passed(unseenStranger[1])}, ""},
		{"later fragment from a stranger to another host, first unseen (raw)", accept, []fragStep{captured(unseenElsewhere[2])}, ""},
		{"later fragment to another host, first unseen, raw mode off", noRaw, []fragStep{shared(unseenNoRaw[1])}, ""},
		{"geneve (ip payload, 32 bytes of options) over ipv4", raw, []fragStep{captured(geneveIP[0]), captured(geneveIP[1]), captured(geneveIP[2])}, body},
		{"geneve (ethernet) over ipv6, out of order", raw, []fragStep{captured(geneveEth6[0]), captured(geneveEth6[2]), captured(geneveEth6[1])}, body},
		{"vxlan in geneve over ipv4", accept, []fragStep{captured(geneveVX[0]), captured(geneveVX[1]), captured(geneveVX[2])}, body},
		// GENEVE's VNI is not checked on fragments in the kernel (the one that counts may be
		// a nested VXLAN's): they are captured and the dispatcher's accept filter rejects
		// the reassembled segment's VNI (TestFragmentedTunnelAcceptedInGo).
		{"geneve with another vni", accept, []fragStep{captured(geneveOtherVNI[0]), captured(geneveOtherVNI[1]), captured(geneveOtherVNI[2])}, body},
		{"erspan over fragmented gre", raw, []fragStep{captured(erspan[0]), captured(erspan[1]), captured(erspan[2])}, body},
		{"ip over fragmented gre to another host", raw, []fragStep{captured(greIP[0]), captured(greIP[1]), captured(greIP[2])}, body},
		{"ip over fragmented gre to the appliance", raw, []fragStep{passed(greOwn[0]), passed(greOwn[1]), passed(greOwn[2])}, ""},
	}
	harnesses := map[string]*harness{}
	for _, tc := range cases {
		key := cfgKey(tc.cfg)
		h := harnesses[key]
		if h == nil {
			h = newHarness(t, tc.cfg)
			harnesses[key] = h
		}
		t.Run(tc.name, func(t *testing.T) {
			var records [][]byte
			for i, st := range tc.steps {
				res := h.run(t, h.objs.Program, st.frame)
				if res.action != st.action {
					t.Errorf("step %d: action = %d, want %d", i, res.action, st.action)
				}
				checkDeltas(t, res.deltas, st.deltas)
				if !st.copied {
					checkRecords(t, res.records, nil)
					continue
				}
				checkRecords(t, res.records, &want{data: st.frame, encap: datapath.EncapRaw, whole: true})
				records = append(records, res.records...)
			}
			if tc.innerPayload != "" {
				checkReassembled(t, tc.cfg, records, tc.innerPayload)
			}
		})
	}
}

// checkReassembled decodes the records as the XDP source hands them on and demands exactly
// one TCP segment, carrying payload.
func checkReassembled(t *testing.T, cfg Config, records [][]byte, payload string) {
	t.Helper()
	dec := datapath.NewDecoder(datapath.DecoderConfig{Raw: cfg.Raw, LocalAddrs: cfg.LocalAddrs})
	var segs int
	for i, rec := range records {
		var f datapath.Frame
		if !decodeRecord(rec, 0, &f) {
			t.Fatalf("record %d does not decode", i)
		}
		var seg tcp.Segment
		_, out := dec.Decode(&f, &seg)
		switch out {
		case datapath.OutcomeFragment:
		case datapath.OutcomeTCP:
			segs++
			if string(seg.Payload) != payload {
				t.Errorf("reassembled segment carries %d bytes %q…, want %d", len(seg.Payload), head(seg.Payload), len(payload))
			}
		default:
			t.Errorf("record %d: decoder outcome %v", i, out)
		}
	}
	if segs != 1 {
		t.Errorf("%d TCP segments from %d records, want 1", segs, len(records))
	}
}

// TestFragmentVerdictExpires: a first fragment's verdict is trusted for a second only (an
// older entry may belong to an earlier datagram with the same identification): the host's
// own datagram's later fragment, a second after its first, is copied and shared instead of
// only passed.
func TestFragmentVerdictExpires(t *testing.T) {
	needBPF(t)
	h := newHarness(t, Config{Raw: true, LocalAddrs: []netip.Addr{applianceV4}})
	fs := fragment(t, udpFrame(t, clientV4, applianceV4, 53, 40000, bytes.Repeat([]byte("d"), 1500)), 600, 0x2001)
	for i, st := range []fragStep{passed(fs[0]), passed(fs[1])} {
		res := h.run(t, h.objs.Program, st.frame)
		if res.action != st.action {
			t.Errorf("step %d: action %d, want %d", i, res.action, st.action)
		}
		checkDeltas(t, res.deltas, st.deltas)
	}
	time.Sleep(1100 * time.Millisecond)
	res := h.run(t, h.objs.Program, fs[2])
	want := shared(fs[2])
	if res.action != want.action {
		t.Errorf("after a second: action %d, want %d", res.action, want.action)
	}
	checkDeltas(t, res.deltas, want.deltas)
}

// TestInnerFragments: a mirrored packet that was itself fragmented (the mirror copied the
// fragments a host sent) is decapsulated like any inner frame, in every fragment: the port
// filter keeps a later fragment, which carries no ports (only the datagram's first does),
// and TCPOnly judges an IPv6 fragment by the protocol its Fragment header names, not by
// the Fragment header itself. The Go decoder then reassembles the inner datagram from the
// records. On the program before this change the port filter counted the later fragments
// "filtered" and TCPOnly counted every inner IPv6 fragment "non_tcp": the request was lost.
func TestInnerFragments(t *testing.T) {
	needBPF(t)
	local := []netip.Addr{applianceV4, applianceV6}
	port80 := Config{Raw: true, LocalAddrs: local, Ports: []uint16{80}}
	tcpOnly := Config{Raw: true, LocalAddrs: local, TCPOnly: true}
	body := "POST /api/upload HTTP/1.1\r\nHost: api\r\nContent-Length: 1300\r\n\r\n" + strings.Repeat("i", 1300)
	frag4 := fragment(t, tcpFrame(t, clientV4, serverV4, 51234, 80, body), 600, 0x3001)
	frag6 := fragment(t, tcpFrame(t, clientV6, serverV6, 51234, 80, body), 600, 0x3002)
	udp6 := fragment(t, udpFrame(t, clientV6, serverV6, 5353, 80, []byte(body)), 600, 0x3003)
	vxlan := func(inner []byte) []byte { return vxlanFrame(t, mirrorV4, applianceV4, 4242, inner) }
	geneveIP := func(inner []byte) []byte {
		return udpFrame(t, mirrorV6, applianceV6, 1, 6081, genevePayload(4242, 0x86dd, 8, inner[14:]))
	}
	type step struct {
		frame  []byte
		record *want
		deltas map[string]uint64
	}
	inVXLAN := func(inner []byte) step {
		return step{vxlan(inner), &want{data: inner, encap: datapath.EncapVXLAN, vni: 4242}, map[string]uint64{"received": 1, "vxlan": 1}}
	}
	inGENEVE := func(inner []byte) step {
		return step{geneveIP(inner), &want{data: inner[14:], encap: datapath.EncapGENEVE, vni: 4242, innerIP: true}, map[string]uint64{"received": 1, "geneve": 1}}
	}
	cases := []struct {
		name         string
		cfg          Config
		steps        []step
		innerPayload string
	}{
		{"ipv4 fragments in vxlan, port filter", port80, []step{inVXLAN(frag4[0]), inVXLAN(frag4[1]), inVXLAN(frag4[2])}, body},
		{"ipv4 fragments in vxlan, port filter, out of order", port80, []step{inVXLAN(frag4[2]), inVXLAN(frag4[1]), inVXLAN(frag4[0])}, body},
		{"ipv6 fragments in vxlan, tcp only", tcpOnly, []step{inVXLAN(frag6[0]), inVXLAN(frag6[1]), inVXLAN(frag6[2])}, body},
		{"ipv6 fragments in geneve (ip payload), tcp only and port filter", Config{Raw: true, LocalAddrs: local, TCPOnly: true, Ports: []uint16{80}},
			[]step{inGENEVE(frag6[1]), inGENEVE(frag6[0]), inGENEVE(frag6[2])}, body},
		{"udp in ipv6 fragments, tcp only: not tcp", tcpOnly, []step{
			{vxlan(udp6[0]), nil, map[string]uint64{"received": 1, "non_tcp": 1}},
			{vxlan(udp6[1]), nil, map[string]uint64{"received": 1, "non_tcp": 1}},
		}, ""},
	}
	harnesses := map[string]*harness{}
	for _, tc := range cases {
		key := cfgKey(tc.cfg)
		h := harnesses[key]
		if h == nil {
			h = newHarness(t, tc.cfg)
			harnesses[key] = h
		}
		t.Run(tc.name, func(t *testing.T) {
			var records [][]byte
			for i, st := range tc.steps {
				res := h.run(t, h.objs.Program, st.frame)
				want := uint32(actDrop)
				if res.action != want {
					t.Errorf("step %d: action = %d, want %d", i, res.action, want)
				}
				checkDeltas(t, res.deltas, st.deltas)
				checkRecords(t, res.records, st.record)
				records = append(records, res.records...)
			}
			if tc.innerPayload != "" {
				checkReassembled(t, tc.cfg, records, tc.innerPayload)
			}
		})
	}
}

// TestWholeFramesDecode: every encapsulation the program hands on whole (it does not strip
// it) decodes in Go, from the record as the XDP source delivers it, to the mirrored TCP
// segment: nothing the program keeps is kept in vain.
func TestWholeFramesDecode(t *testing.T) {
	needBPF(t)
	cfg := Config{Raw: true, LocalAddrs: []netip.Addr{applianceV4, applianceV6}}
	h := newHarness(t, cfg)
	get := "GET /api/users/7 HTTP/1.1\r\nHost: api\r\n\r\n"
	ip4 := tcpIP(t, clientV4, serverV4, 51234, 80, get)
	ip6 := tcpIP(t, clientV6, serverV6, 51234, 8080, get)
	inner4 := tcpFrame(t, clientV4, serverV4, 51234, 80, get)
	mplsMC := mplsFrame(ip4)
	mplsMC[13] = 0x48
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"erspan ii", greFrame(t, mirrorV4, applianceV4, 0x88be, erspan2(inner4))},
		{"ethernet over gre", greFrame(t, mirrorV4, applianceV4, 0x6558, inner4)},
		{"ipv4 over gre", greFrame(t, mirrorV4, applianceV4, 0x0800, ip4)},
		{"ipv6 over gre with checksum, key and sequence", greFrameFlags(t, mirrorV6, applianceV6, 0xb000, 0x86dd, ip6)},
		{"ipv4 in ipv4", ipipFrame(t, mirrorV4, applianceV4, ip4)},
		{"ipv6 in ipv6", ipipFrame(t, mirrorV6, applianceV6, ip6)},
		{"mpls", mplsFrame(ip4)},
		{"mpls multicast", mplsMC},
		{"mpls over gre", greFrame(t, mirrorV4, applianceV4, 0x8847, append([]byte{0x00, 0x01, 0x01, 0x40}, ip4...))},
		{"three vlan tags", tagged(ip4, 0x88a8, 0x8100, 0x8100)},
		{"old-style s-tag", tagged(ip4, 0x9100)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := h.run(t, h.objs.Program, tc.frame)
			if res.action != actDrop {
				t.Errorf("action = %d, want drop", res.action)
			}
			checkDeltas(t, res.deltas, map[string]uint64{"received": 1, "whole": 1})
			checkRecords(t, res.records, &want{data: tc.frame, encap: datapath.EncapRaw, whole: true})
			checkReassembled(t, cfg, res.records, get)
		})
	}
}

// TestFragmentedTunnelAcceptedInGo: the kernel cannot check GENEVE's VNI on fragments (the
// VNI that counts may be a nested VXLAN's, further into the datagram), so it captures them
// from accepted sources and the dispatcher applies accept-vnis to the reassembled datagram:
// GENEVE with a VNI outside the list is rejected there, VXLAN in GENEVE with an accepted
// VXLAN VNI (the GENEVE one is not in the list) is taken.
func TestFragmentedTunnelAcceptedInGo(t *testing.T) {
	needBPF(t)
	local := []netip.Addr{applianceV4}
	sources := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}
	cfg := Config{Raw: true, LocalAddrs: local, AcceptSources: sources, AcceptVNIs: []uint32{4242}}
	h := newHarness(t, cfg)
	body := "POST /api/upload HTTP/1.1\r\nHost: api\r\nContent-Length: 1300\r\n\r\n" + strings.Repeat("g", 1300)
	inner := tcpFrame(t, clientV4, serverV4, 51234, 80, body)
	id := uint32(0x4000)
	for _, tc := range []struct {
		name             string
		frame            []byte
		tcp, rejectedVNI uint64
	}{
		{"geneve vni 77", udpFrame(t, mirrorV4, applianceV4, 50000, 6081, genevePayload(77, 0x0800, 32, inner[14:])), 0, 1},
		{"geneve vni 9 carrying vxlan vni 4242", udpFrame(t, mirrorV4, applianceV4, 50000, 6081,
			genevePayload(9, 0x0800, 8, udpFrame(t, mirrorV4, applianceV4, 49152, 4789, append(vxlanHeader(4242, 0x08), inner...))[14:])), 1, 0},
	} {
		id++
		t.Run(tc.name, func(t *testing.T) {
			d := datapath.NewDispatcher(datapath.DispatcherConfig{Workers: 1,
				Decoder: datapath.DecoderConfig{Raw: true, LocalAddrs: local},
				Accept:  datapath.TunnelAccept{Sources: sources, VNIs: cfg.AcceptVNIs}},
				exchange.HandlerFunc(func(*exchange.Exchange) {}))
			fh := d.NewHandler()
			for _, fr := range fragment(t, tc.frame, 600, id) {
				res := h.run(t, h.objs.Program, fr)
				checkDeltas(t, res.deltas, map[string]uint64{"received": 1, "fragment": 1})
				for _, rec := range res.records {
					var f datapath.Frame
					if !decodeRecord(rec, 0, &f) {
						t.Fatal("record does not decode")
					}
					fh.HandleFrame(&f)
				}
			}
			fh.Flush()
			snap := d.Snapshot()
			d.Close()
			var tcpSegs uint64
			for e := range snap.Packets {
				tcpSegs += snap.Packets[e][datapath.OutcomeTCP]
			}
			if tcpSegs != tc.tcp || snap.Rejected[datapath.RejectVNI] != tc.rejectedVNI {
				t.Errorf("%d TCP segments, %d rejected by VNI; want %d and %d", tcpSegs, snap.Rejected[datapath.RejectVNI], tc.tcp, tc.rejectedVNI)
			}
		})
	}
}
