package datapath

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

func TestDecode(t *testing.T) {
	const payload = "GET / HTTP/1.1\r\n\r\n"
	inner := innerTCP(t, "10.1.0.5", "10.1.0.9", 40000, 80, 7, payload)
	inner6 := innerTCP6(t, "fd00::5", "fd00::9", 40000, 80, 7, payload)
	innerIP := inner[14:]
	vx := outerUDP(t, "172.31.0.10", "172.31.0.99", 4789, vxlanHdr(42, inner))
	truncated := vx[:len(vx)-5]
	badLen := append([]byte(nil), vx...)
	badLen[14] = 0x44 // IHL 16 bytes
	noIFlag := outerUDP(t, "172.31.0.10", "172.31.0.99", 4789, append([]byte{0, 0, 0, 0, 0, 0, 42, 0}, inner...))
	udpInner := outerUDP(t, "10.1.0.5", "10.1.0.9", 53, []byte("dns"))

	cases := []struct {
		name       string
		frame      Frame
		cfg        DecoderConfig
		wantEncap  Encap
		wantOut    Outcome
		wantVNI    uint32
		wantLen    int
		wantMissed int
	}{
		{"vxlan", Frame{Data: vx}, DecoderConfig{}, EncapVXLAN, OutcomeTCP, 42, len(payload), 0},
		{"vxlan ipv6 outer", Frame{Data: outerUDP(t, "fd00:1::1", "fd00:1::2", 4789, vxlanHdr(7, inner))}, DecoderConfig{}, EncapVXLAN, OutcomeTCP, 7, len(payload), 0},
		{"vxlan ipv6 inner", Frame{Data: outerUDP(t, "172.31.0.10", "172.31.0.99", 4789, vxlanHdr(7, inner6))}, DecoderConfig{}, EncapVXLAN, OutcomeTCP, 7, len(payload), 0},
		{"vxlan qinq", Frame{Data: outerUDP(t, "172.31.0.10", "172.31.0.99", 4789, vxlanHdr(9, inner), 100, 200)}, DecoderConfig{}, EncapVXLAN, OutcomeTCP, 9, len(payload), 0},
		{"vxlan custom port", Frame{Data: outerUDP(t, "172.31.0.10", "172.31.0.99", 8472, vxlanHdr(3, inner))}, DecoderConfig{VXLANPorts: []uint16{8472}}, EncapVXLAN, OutcomeTCP, 3, len(payload), 0},
		{"geneve ethernet + options", Frame{Data: outerUDP(t, "172.31.0.10", "172.31.0.99", 6081, geneveHdr(77, 0x6558, 32, inner))}, DecoderConfig{}, EncapGENEVE, OutcomeTCP, 77, len(payload), 0},
		{"geneve ip", Frame{Data: outerUDP(t, "172.31.0.10", "172.31.0.99", 6081, geneveHdr(77, 0x0800, 12, innerIP))}, DecoderConfig{}, EncapGENEVE, OutcomeTCP, 77, len(payload), 0},
		{"vxlan in geneve", Frame{Data: outerUDP(t, "172.31.0.10", "172.31.0.99", 6081, geneveHdr(77, 0x6558, 32, outerUDP(t, "10.9.0.1", "10.9.0.2", 4789, vxlanHdr(5, inner))))}, DecoderConfig{}, EncapGENEVEVXLAN, OutcomeTCP, 5, len(payload), 0},
		{"geneve bad version", Frame{Data: outerUDP(t, "172.31.0.10", "172.31.0.99", 6081, append([]byte{0x40, 0, 0x65, 0x58, 0, 0, 1, 0}, inner...))}, DecoderConfig{}, EncapRaw, OutcomeBadTunnel, 0, 0, 0},
		{"vxlan without I flag", Frame{Data: noIFlag}, DecoderConfig{}, EncapRaw, OutcomeBadTunnel, 0, 0, 0},
		{"truncated by the cloud", Frame{Data: truncated, WireLen: len(vx)}, DecoderConfig{}, EncapVXLAN, OutcomeTruncated, 42, len(payload) - 5, 5},
		{"bad IHL", Frame{Data: badLen}, DecoderConfig{}, EncapRaw, OutcomeMalformed, 0, 0, 0},
		{"runt", Frame{Data: vx[:10]}, DecoderConfig{}, EncapRaw, OutcomeMalformed, 0, 0, 0},
		{"udp not a tunnel", Frame{Data: udpInner}, DecoderConfig{Raw: true}, EncapRaw, OutcomeNonTCP, 0, 0, 0},
		{"raw on", Frame{Data: inner}, DecoderConfig{Raw: true}, EncapRaw, OutcomeTCP, 0, len(payload), 0},
		{"raw off", Frame{Data: inner}, DecoderConfig{Raw: false}, EncapRaw, OutcomeNotMirrored, 0, 0, 0},
		{"raw to the appliance itself", Frame{Data: inner}, DecoderConfig{Raw: true, LocalAddrs: []netip.Addr{netip.MustParseAddr("10.1.0.9")}}, EncapRaw, OutcomeLocal, 0, 0, 0},
		{"tunnelled traffic of the backend", Frame{Data: vx}, DecoderConfig{Exclude: []netip.AddrPort{netip.MustParseAddrPort("10.1.0.9:80")}}, EncapVXLAN, OutcomeLocal, 0, 0, 0},
		{"xdp-decapsulated ethernet", Frame{Data: inner, Decapsulated: true, Encap: EncapVXLAN, Tunnel: 11}, DecoderConfig{}, EncapVXLAN, OutcomeTCP, 11, len(payload), 0},
		{"xdp-decapsulated ip", Frame{Data: innerIP, Decapsulated: true, InnerIsIP: true, Encap: EncapGENEVE, Tunnel: 12}, DecoderConfig{}, EncapGENEVE, OutcomeTCP, 12, len(payload), 0},
		{"udp socket vxlan payload", Frame{Data: vxlanHdr(13, inner), TunnelPayload: true, Encap: EncapVXLAN}, DecoderConfig{}, EncapVXLAN, OutcomeTCP, 13, len(payload), 0},
		{"udp socket geneve payload", Frame{Data: geneveHdr(14, 0x6558, 8, inner), TunnelPayload: true, Encap: EncapGENEVE}, DecoderConfig{}, EncapGENEVE, OutcomeTCP, 14, len(payload), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDecoder(tc.cfg)
			var seg tcp.Segment
			encap, out := d.Decode(&tc.frame, &seg)
			if out != tc.wantOut || (out <= OutcomeTruncated && encap != tc.wantEncap) {
				t.Fatalf("got %v/%v, want %v/%v", encap, out, tc.wantEncap, tc.wantOut)
			}
			if out > OutcomeTruncated {
				return
			}
			if seg.Key.Tunnel != tc.wantVNI || len(seg.Payload) != tc.wantLen || seg.Missing != tc.wantMissed {
				t.Fatalf("vni %d len %d missing %d", seg.Key.Tunnel, len(seg.Payload), seg.Missing)
			}
			if seg.Seq != 7 || seg.Timestamp == 0 || seg.Hash == 0 {
				t.Fatalf("seq %d ts %d hash %d", seg.Seq, seg.Timestamp, seg.Hash)
			}
		})
	}
}

func TestSymmetricHash(t *testing.T) {
	d := NewDecoder(DecoderConfig{Raw: true})
	var a, b tcp.Segment
	d.Decode(&Frame{Data: innerTCP(t, "10.0.0.1", "10.0.0.2", 1234, 80, 1, "x")}, &a)
	d.Decode(&Frame{Data: innerTCP(t, "10.0.0.2", "10.0.0.1", 80, 1234, 1, "y")}, &b)
	if a.Hash != b.Hash || a.Key != b.Key || a.Dir == b.Dir {
		t.Fatalf("directions differ: %x/%x %v/%v", a.Hash, b.Hash, a.Dir, b.Dir)
	}
}

func TestDecodeAllocs(t *testing.T) {
	d := NewDecoder(DecoderConfig{})
	f := Frame{Data: outerUDP(t, "172.31.0.10", "172.31.0.99", 6081, geneveHdr(77, 0x6558, 32, outerUDP(t, "10.9.0.1", "10.9.0.2", 4789, vxlanHdr(5, innerTCP(t, "10.1.0.5", "10.1.0.9", 40000, 80, 7, "GET / HTTP/1.1\r\n\r\n"))))), Timestamp: 1}
	var seg tcp.Segment
	if n := testing.AllocsPerRun(1000, func() { d.Decode(&f, &seg) }); n != 0 {
		t.Fatalf("%v allocations per packet", n)
	}
}

// fuzzModes are the ways a source can hand a frame over (FuzzDecode's mode argument).
var fuzzModes = []Frame{
	{},                                       // a captured frame of the link type given
	{TunnelPayload: true, Encap: EncapVXLAN}, // a UDP socket's VXLAN payload
	{TunnelPayload: true, Encap: EncapGENEVE},
	{Decapsulated: true, Encap: EncapVXLAN, Tunnel: 9}, // XDP: the inner Ethernet frame
	{Decapsulated: true, InnerIsIP: true, Encap: EncapGENEVE, Tunnel: 9},
}

// FuzzDecode feeds one decoder (its defragmenter keeps state across inputs) arbitrary
// frames of every link type and source mode. Seeds: the builders below and
// testdata/fuzz/FuzzDecode, frames of the real captures in testdata/formats.
func FuzzDecode(f *testing.F) {
	f.Add(outerUDP(f, "172.31.0.10", "172.31.0.99", 4789, vxlanHdr(42, innerTCP(f, "10.1.0.5", "10.1.0.9", 40000, 80, 7, "GET / HTTP/1.1\r\n\r\n"))), uint8(LinkEthernet), uint8(0))
	f.Add(outerUDP(f, "172.31.0.10", "172.31.0.99", 6081, geneveHdr(77, 0x6558, 32, innerTCP(f, "10.1.0.5", "10.1.0.9", 40000, 80, 7, "x"))), uint8(LinkEthernet), uint8(0))
	f.Add(innerTCP6(f, "fd00::5", "fd00::9", 40000, 80, 7, "GET"), uint8(LinkEthernet), uint8(2))
	f.Add(vxlanHdr(1, innerTCP(f, "10.1.0.5", "10.1.0.9", 1, 80, 7, "x")), uint8(LinkEthernet), uint8(1))
	f.Add(etherWith(mplsStack(f, innerTCP(f, "10.1.0.5", "10.1.0.9", 1, 80, 7, "x")[14:], 16, 17), 0x8847, 0x88a8, 0x8100), uint8(LinkEthernet), uint8(0))
	f.Add(outerGRE(f, &layers.GRE{SeqPresent: true, Protocol: 0x22eb}, erspan3(12, 0, true, innerTCP(f, "10.1.0.5", "10.1.0.9", 1, 80, 7, "x"))), uint8(LinkEthernet), uint8(0))
	f.Add(nflogRecord(binary.LittleEndian, 2, innerTCP(f, "10.1.0.5", "10.1.0.9", 1, 80, 7, "x")[14:]), uint8(LinkNFLOG), uint8(0))
	f.Add(append(sll2Header(1, 0x86dd), innerTCP6(f, "fd00::5", "fd00::9", 1, 80, 7, "x")[14:]...), uint8(LinkSLL2), uint8(0))
	big := tcp4(f, 3, 3000)
	f.Add(frag4(big, 0, 1480), uint8(LinkRawIP), uint8(0))
	f.Add(frag4(big, 1480, 1<<20), uint8(LinkRawIP), uint8(0))
	d := NewDecoder(DecoderConfig{Raw: true, Defrag: DefragConfig{MaxBytes: 256 << 10}})
	f.Fuzz(func(t *testing.T, data []byte, link, mode uint8) {
		var seg tcp.Segment
		fr := fuzzModes[int(mode)%len(fuzzModes)]
		fr.Data, fr.Link, fr.Timestamp = data, Link(link%uint8(LinkUnknown+1)), 1
		encap, out := d.Decode(&fr, &seg)
		if out >= NumOutcomes || encap >= numEncaps {
			t.Fatalf("encap %d outcome %d", encap, out)
		}
		if out == OutcomeTCP || out == OutcomeTruncated {
			if len(seg.Payload) > max(len(data), maxDatagram) || seg.Missing < 0 {
				t.Fatalf("payload %d bytes of a %d-byte frame, missing %d", len(seg.Payload), len(data), seg.Missing)
			}
		}
		if s := d.defrag.Stats(); s.HeldBytes < 0 || s.HeldBytes > 256<<10+defragShards*maxDatagram {
			t.Fatalf("defragmenter holds %d bytes", s.HeldBytes)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	inner := innerTCP(b, "10.1.0.5", "10.1.0.9", 40000, 80, 7, string(make([]byte, 1448)))
	ip := inner[14:]
	type bf struct {
		name string
		link Link
		data []byte
	}
	frames := []bf{
		{"vxlan", LinkEthernet, outerUDP(b, "172.31.0.10", "172.31.0.99", 4789, vxlanHdr(42, inner))},
		{"geneve", LinkEthernet, outerUDP(b, "172.31.0.10", "172.31.0.99", 6081, geneveHdr(77, 0x6558, 32, inner))},
		{"vxlan_in_geneve", LinkEthernet, outerUDP(b, "172.31.0.10", "172.31.0.99", 6081, geneveHdr(77, 0x6558, 32, outerUDP(b, "10.9.0.1", "10.9.0.2", 4789, vxlanHdr(5, inner))))},
		{"raw", LinkEthernet, inner},
		{"gre_teb", LinkEthernet, outerGRE(b, &layers.GRE{KeyPresent: true, SeqPresent: true, Protocol: layers.EthernetTypeTransparentEthernetBridging}, inner)},
		{"erspan3", LinkEthernet, outerGRE(b, &layers.GRE{SeqPresent: true, Protocol: 0x22eb}, erspan3(7, 0, true, inner))},
		{"mpls2", LinkEthernet, etherWith(mplsStack(b, ip, 100, 200), 0x8847)},
		{"vlan3", LinkEthernet, etherWith(ip, 0x0800, 0x88a8, 0x8100, 0x8100)},
		{"sll2", LinkSLL2, append(sll2Header(1, 0x0800), ip...)},
		{"nflog", LinkNFLOG, nflogRecord(binary.LittleEndian, 2, ip)},
	}
	for _, f := range frames {
		b.Run(f.name, func(b *testing.B) {
			d := NewDecoder(DecoderConfig{Raw: true})
			fr := Frame{Data: f.data, Link: f.link, Timestamp: 1}
			var seg tcp.Segment
			b.SetBytes(int64(len(fr.Data)))
			b.ReportAllocs()
			for range b.N {
				if _, out := d.Decode(&fr, &seg); out != OutcomeTCP {
					b.Fatal(out)
				}
			}
		})
	}
	// A 4 KB TCP segment in three IPv4 fragments: ns per fragment (the defragmenter's
	// lock, copy in, copy out of the completed datagram).
	b.Run("ipv4_fragments", func(b *testing.B) {
		p := tcp4(b, 1, 4000)
		frags := [][]byte{frag4(p, 0, 1480), frag4(p, 1480, 2960), frag4(p, 2960, 1<<20)}
		d := NewDecoder(DecoderConfig{Raw: true})
		var seg tcp.Segment
		b.SetBytes(int64(len(p)))
		b.ReportAllocs()
		for i := range b.N {
			fr := Frame{Data: frags[i%3], Link: LinkRawIP, Timestamp: 1}
			if _, out := d.Decode(&fr, &seg); out != OutcomeFragment && out != OutcomeTCP {
				b.Fatal(out)
			}
		}
	})
}
