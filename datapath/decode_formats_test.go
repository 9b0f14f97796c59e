package datapath

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// TestDecodeFormats covers the link types and encapsulations other than Ethernet, VXLAN and
// GENEVE: each case must reach the inner TCP segment (its 18-byte payload, seq 7), or give
// the outcome that names what stopped it.
func TestDecodeFormats(t *testing.T) {
	const payload = "GET / HTTP/1.1\r\n\r\n"
	eth := innerTCP(t, "10.1.0.5", "10.1.0.9", 40000, 80, 7, payload)
	ip4 := eth[14:]
	eth6 := innerTCP6(t, "fd00::5", "fd00::9", 40000, 80, 7, payload)
	ip6 := eth6[14:]
	udp := outerUDP(t, "10.1.0.5", "10.1.0.9", 53, []byte("dns"))[14:] // an IPv4/UDP packet

	gre := func(g layers.GRE, p []byte) []byte { return outerGRE(t, &g, p) }
	le, be := binary.LittleEndian, binary.BigEndian
	null := func(bo binary.AppendByteOrder, af uint32, p []byte) []byte {
		return append(bo.AppendUint32(nil, af), p...)
	}
	pppoe := etherWith(append([]byte{0x11, 0, 0, 1, 0, 0x16, 0, 0x21}, ip4...), 0x8864)
	vntag := etherWith(ip4, 0x8926)
	shortGRE := gre(layers.GRE{KeyPresent: true, SeqPresent: true, Protocol: layers.EthernetTypeIPv4}, nil)

	cases := []struct {
		name      string
		link      Link
		data      []byte
		wantEncap Encap
		wantOut   Outcome
	}{
		// Link types.
		{"sll ipv4", LinkSLL, append(sllHeader(1, 0x0800), ip4...), EncapRaw, OutcomeTCP},
		{"sll ipv6", LinkSLL, append(sllHeader(1, 0x86dd), ip6...), EncapRaw, OutcomeTCP},
		{"sll 802.1q on the wire", LinkSLL, append(sllHeader(1, 0x8100), append([]byte{0, 100, 0x08, 0x00}, ip4...)...), EncapRaw, OutcomeTCP},
		{"sll loopback device", LinkSLL, append(sllHeader(772, 0x0800), ip4...), EncapRaw, OutcomeTCP},
		{"sll gre device", LinkSLL, append(sllHeader(778, 0x0800), ip4...), EncapGRE, OutcomeTCP},
		{"sll gretap-like gre device", LinkSLL, append(sllHeader(778, 0x6558), eth...), EncapGRE, OutcomeTCP},
		{"sll gre device erspan II", LinkSLL, append(sllHeader(778, 0x88be), erspan2(t, 9, 1, eth)...), EncapERSPAN2, OutcomeTCP},
		{"sll arp", LinkSLL, append(sllHeader(1, 0x0806), make([]byte, 28)...), EncapRaw, OutcomeNonTCP},
		{"sll llc", LinkSLL, append(sllHeader(1, 0x0004), make([]byte, 28)...), EncapRaw, OutcomeNonTCP},
		{"sll runt", LinkSLL, sllHeader(1, 0x0800)[:15], EncapRaw, OutcomeMalformed},
		{"sll2 ipv4", LinkSLL2, append(sll2Header(1, 0x0800), ip4...), EncapRaw, OutcomeTCP},
		{"sll2 ipv6", LinkSLL2, append(sll2Header(1, 0x86dd), ip6...), EncapRaw, OutcomeTCP},
		{"sll2 runt", LinkSLL2, sll2Header(1, 0x0800)[:19], EncapRaw, OutcomeMalformed},
		{"raw ipv4", LinkRawIP, ip4, EncapRaw, OutcomeTCP},
		{"raw ipv6", LinkRawIP, ip6, EncapRaw, OutcomeTCP},
		{"raw not ip", LinkRawIP, append([]byte{0x20}, ip4[1:]...), EncapRaw, OutcomeMalformed},
		{"null little-endian inet", LinkNull, null(le, 2, ip4), EncapRaw, OutcomeTCP},
		{"null big-endian inet", LinkNull, null(be, 2, ip4), EncapRaw, OutcomeTCP},
		{"null darwin inet6", LinkNull, null(le, 30, ip6), EncapRaw, OutcomeTCP},
		{"null freebsd inet6", LinkNull, null(le, 28, ip6), EncapRaw, OutcomeTCP},
		{"null openbsd inet6 (loop, network order)", LinkNull, null(be, 24, ip6), EncapRaw, OutcomeTCP},
		{"null other family", LinkNull, null(le, 7, ip4), EncapRaw, OutcomeNonTCP},
		{"null runt", LinkNull, []byte{2, 0, 0}, EncapRaw, OutcomeMalformed},
		{"nflog little-endian tlvs", LinkNFLOG, nflogRecord(le, 2, ip4), EncapRaw, OutcomeTCP},
		{"nflog big-endian tlvs", LinkNFLOG, nflogRecord(be, 10, ip6), EncapRaw, OutcomeTCP},
		{"nflog without payload", LinkNFLOG, nflogRecord(le, 2, nil)[:4+8+20], EncapRaw, OutcomeNonTCP},
		{"nflog tlv past the end", LinkNFLOG, nflogRecord(le, 2, ip4)[:40], EncapRaw, OutcomeMalformed},
		{"nflog bad version", LinkNFLOG, append([]byte{2, 1}, nflogRecord(le, 2, ip4)[2:]...), EncapRaw, OutcomeMalformed},
		{"unknown link", LinkUnknown, eth, EncapRaw, OutcomeUnknownLink},

		// VLAN stacks and MPLS.
		{"three vlan tags", LinkEthernet, etherWith(ip4, 0x0800, 0x88a8, 0x8100, 0x8100), EncapRaw, OutcomeTCP},
		{"old 0x9100 s-tag", LinkEthernet, etherWith(ip4, 0x0800, 0x9100, 0x8100), EncapRaw, OutcomeTCP},
		{"sixteen tags", LinkEthernet, etherWith(ip4, 0x0800, 0x88a8, 0x88a8, 0x88a8, 0x88a8, 0x88a8, 0x88a8, 0x88a8, 0x88a8, 0x8100, 0x8100, 0x8100, 0x8100, 0x8100, 0x8100, 0x8100, 0x8100), EncapRaw, OutcomeTCP},
		{"seventeen tags", LinkEthernet, etherWith(ip4, 0x0800, 0x88a8, 0x88a8, 0x88a8, 0x88a8, 0x88a8, 0x88a8, 0x88a8, 0x88a8, 0x8100, 0x8100, 0x8100, 0x8100, 0x8100, 0x8100, 0x8100, 0x8100, 0x8100), EncapRaw, OutcomeMalformed},
		{"vlan tag cut short", LinkEthernet, etherWith(nil, 0x8100)[:15], EncapRaw, OutcomeMalformed},
		{"mpls one label", LinkEthernet, etherWith(mplsStack(t, ip4, 100), 0x8847), EncapRaw, OutcomeTCP},
		{"mpls three labels ipv6", LinkEthernet, etherWith(mplsStack(t, ip6, 100, 200, 2), 0x8847), EncapRaw, OutcomeTCP},
		{"mpls in vlan", LinkEthernet, etherWith(mplsStack(t, ip4, 16, 17), 0x8847, 0x8100), EncapRaw, OutcomeTCP},
		{"mpls pseudowire with control word", LinkEthernet, etherWith(mplsStack(t, append([]byte{0, 0, 0, 1}, eth...), 300, 301), 0x8847), EncapRaw, OutcomeTCP},
		{"mpls unknown payload", LinkEthernet, etherWith(mplsStack(t, append([]byte{0x10}, ip4...), 300), 0x8847), EncapRaw, OutcomeUnknownMPLS},
		{"mpls no bottom of stack", LinkEthernet, etherWith([]byte{0, 0x64, 0, 64, 0, 0x65, 0, 64}, 0x8847), EncapRaw, OutcomeMalformed},
		{"pppoe session", LinkEthernet, pppoe, EncapRaw, OutcomeUnknownEtherType},
		{"vn-tag", LinkEthernet, vntag, EncapRaw, OutcomeUnknownEtherType},
		{"ipv4 ethertype, ipv6 packet", LinkEthernet, etherWith(ip6, 0x0800), EncapRaw, OutcomeMalformed},
		{"ipv6 ethertype, ipv4 packet", LinkEthernet, etherWith(ip4, 0x86dd), EncapRaw, OutcomeMalformed},
		{"ipv6 in ipv4 claiming ipv4", LinkRawIP, serialize(t, &layers.IPv4{Version: 4, TTL: 9, Protocol: layers.IPProtocolIPv4, SrcIP: []byte{192, 0, 2, 1}, DstIP: []byte{192, 0, 2, 2}}, gopacket.Payload(ip6)), EncapIPIP, OutcomeMalformed},
		{"lldp", LinkEthernet, etherWith(make([]byte, 40), 0x88cc), EncapRaw, OutcomeNonTCP},
		{"802.3 length field", LinkEthernet, etherWith(make([]byte, 40), 40), EncapRaw, OutcomeNonTCP},

		// GRE.
		{"gre ethernet (gretap)", LinkEthernet, gre(layers.GRE{Protocol: layers.EthernetTypeTransparentEthernetBridging}, eth), EncapGRE, OutcomeTCP},
		{"gre ip", LinkEthernet, gre(layers.GRE{Protocol: layers.EthernetTypeIPv4}, ip4), EncapGRE, OutcomeTCP},
		{"gre ipv6", LinkEthernet, gre(layers.GRE{Protocol: layers.EthernetTypeIPv6}, ip6), EncapGRE, OutcomeTCP},
		{"gre key", LinkEthernet, gre(layers.GRE{KeyPresent: true, Key: 77, Protocol: layers.EthernetTypeTransparentEthernetBridging}, eth), EncapGRE, OutcomeTCP},
		{"gre checksum key sequence", LinkEthernet, gre(layers.GRE{ChecksumPresent: true, KeyPresent: true, SeqPresent: true, Key: 1, Seq: 9, Protocol: layers.EthernetTypeIPv4}, ip4), EncapGRE, OutcomeTCP},
		{"gre checksum only", LinkEthernet, gre(layers.GRE{ChecksumPresent: true, Protocol: layers.EthernetTypeIPv4}, ip4), EncapGRE, OutcomeTCP},
		{"gre mpls", LinkEthernet, gre(layers.GRE{Protocol: layers.EthernetTypeMPLSUnicast}, mplsStack(t, ip4, 1000)), EncapGRE, OutcomeTCP},
		{"gre in gre", LinkEthernet, gre(layers.GRE{Protocol: layers.EthernetTypeIPv4}, outerGRE(t, &layers.GRE{Protocol: layers.EthernetTypeIPv4}, ip4)[14:]), EncapGRE, OutcomeTCP},
		{"gre over ipv6 in vlan", LinkEthernet, etherWith(gre(layers.GRE{Protocol: layers.EthernetTypeIPv4}, ip4)[14:], 0x0800, 0x8100), EncapGRE, OutcomeTCP},
		{"gre pptp (version 1)", LinkEthernet, gre(layers.GRE{Version: 1, KeyPresent: true, Protocol: 0x880b}, make([]byte, 20)), EncapRaw, OutcomeUnknownGRE},
		{"gre wccp", LinkEthernet, gre(layers.GRE{Protocol: 0x883e}, ip4), EncapRaw, OutcomeUnknownGRE},
		{"gre header cut short", LinkEthernet, shortGRE[:14+20+6], EncapRaw, OutcomeMalformed},
		{"gre udp inside", LinkEthernet, gre(layers.GRE{Protocol: layers.EthernetTypeIPv4}, udp), EncapGRE, OutcomeNonTCP},

		// ERSPAN.
		{"erspan type I", LinkEthernet, gre(layers.GRE{Protocol: layers.EthernetTypeERSPAN}, eth), EncapERSPAN1, OutcomeTCP},
		{"erspan type II", LinkEthernet, gre(layers.GRE{SeqPresent: true, Seq: 5, Protocol: layers.EthernetTypeERSPAN}, erspan2(t, 300, 1, eth)), EncapERSPAN2, OutcomeTCP},
		{"erspan type II bad version", LinkEthernet, gre(layers.GRE{SeqPresent: true, Protocol: layers.EthernetTypeERSPAN}, erspan2(t, 300, 2, eth)), EncapRaw, OutcomeBadTunnel},
		{"erspan type II tagged frame", LinkEthernet, gre(layers.GRE{SeqPresent: true, Protocol: layers.EthernetTypeERSPAN}, erspan2(t, 1, 1, etherWith(ip4, 0x0800, 0x8100))), EncapERSPAN2, OutcomeTCP},
		{"erspan type III", LinkEthernet, gre(layers.GRE{SeqPresent: true, Protocol: 0x22eb}, erspan3(12, 0, false, eth)), EncapERSPAN3, OutcomeTCP},
		{"erspan type III platform subheader", LinkEthernet, gre(layers.GRE{SeqPresent: true, Protocol: 0x22eb}, erspan3(12, 0, true, eth)), EncapERSPAN3, OutcomeTCP},
		{"erspan type III ip frame", LinkEthernet, gre(layers.GRE{SeqPresent: true, Protocol: 0x22eb}, erspan3(12, 2, false, ip6)), EncapERSPAN3, OutcomeTCP},
		{"erspan type III frame type 7", LinkEthernet, gre(layers.GRE{SeqPresent: true, Protocol: 0x22eb}, erspan3(12, 7, false, eth)), EncapRaw, OutcomeUnknownERSPAN},
		{"erspan type III bad version", LinkEthernet, gre(layers.GRE{SeqPresent: true, Protocol: 0x22eb}, append([]byte{0x10}, erspan3(12, 0, false, eth)[1:]...)), EncapRaw, OutcomeBadTunnel},
		{"erspan type III subheader cut short", LinkEthernet, gre(layers.GRE{SeqPresent: true, Protocol: 0x22eb}, erspan3(12, 0, true, nil)[:15]), EncapRaw, OutcomeMalformed},
		{"erspan in vxlan", LinkEthernet, outerUDP(t, "172.31.0.10", "172.31.0.99", 4789, vxlanHdr(42, gre(layers.GRE{SeqPresent: true, Protocol: layers.EthernetTypeERSPAN}, erspan2(t, 3, 1, eth)))), EncapERSPAN2, OutcomeTCP},

		// IP in IP, unknown tunnel payloads.
		{"ipv4 in ipv4", LinkRawIP, serialize(t, &layers.IPv4{Version: 4, TTL: 9, Protocol: layers.IPProtocolIPv4, SrcIP: []byte{192, 0, 2, 1}, DstIP: []byte{192, 0, 2, 2}}, gopacket.Payload(ip4)), EncapIPIP, OutcomeTCP},
		{"ipv6 in ipv4", LinkRawIP, serialize(t, &layers.IPv4{Version: 4, TTL: 9, Protocol: layers.IPProtocolIPv6, SrcIP: []byte{192, 0, 2, 1}, DstIP: []byte{192, 0, 2, 2}}, gopacket.Payload(ip6)), EncapIPIP, OutcomeTCP},
		{"geneve unknown protocol", LinkEthernet, outerUDP(t, "172.31.0.10", "172.31.0.99", 6081, geneveHdr(77, 0x8847, 0, mplsStack(t, ip4, 5))), EncapRaw, OutcomeUnknownGENEVE},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDecoder(DecoderConfig{Raw: true})
			var seg tcp.Segment
			encap, out := d.Decode(&Frame{Data: tc.data, Link: tc.link, Timestamp: 1}, &seg)
			if out != tc.wantOut || encap != tc.wantEncap {
				t.Fatalf("got %v/%v, want %v/%v", encap, out, tc.wantEncap, tc.wantOut)
			}
			if out != OutcomeTCP {
				return
			}
			if string(seg.Payload) != payload || seg.Seq != 7 || seg.Missing != 0 || seg.Key.Tunnel != 0 {
				t.Fatalf("payload %q seq %d missing %d tunnel %d", seg.Payload, seg.Seq, seg.Missing, seg.Key.Tunnel)
			}
		})
	}
}

// A mirror that sends each direction with its own GRE key (as the vSphere capture in
// testdata/formats does) must still yield one flow per connection.
func TestGREKeyIsNotPartOfTheFlow(t *testing.T) {
	d := NewDecoder(DecoderConfig{})
	var a, b tcp.Segment
	req := innerTCP(t, "10.0.0.1", "10.0.0.2", 1234, 80, 1, "x")
	resp := innerTCP(t, "10.0.0.2", "10.0.0.1", 80, 1234, 1, "y")
	d.Decode(&Frame{Data: outerGRE(t, &layers.GRE{KeyPresent: true, Key: 0, Protocol: layers.EthernetTypeTransparentEthernetBridging}, req)}, &a)
	d.Decode(&Frame{Data: outerGRE(t, &layers.GRE{KeyPresent: true, Key: 0x02000000, Protocol: layers.EthernetTypeTransparentEthernetBridging}, resp)}, &b)
	if a.Key != b.Key || a.Hash != b.Hash {
		t.Fatalf("the directions have different flows: %+v / %+v", a.Key, b.Key)
	}
}

// The appliance's own connections are not traced when they travel in the host's own
// IP-in-IP or GRE tunnels either; a mirror tunnel's inner traffic is never the host's.
func TestLocalTrafficInHostTunnels(t *testing.T) {
	inner := innerTCP(t, "10.1.0.5", "10.1.0.9", 40000, 80, 7, "x")
	ipip := serialize(t, &layers.IPv4{Version: 4, TTL: 9, Protocol: layers.IPProtocolIPv4, SrcIP: []byte{192, 0, 2, 1}, DstIP: []byte{192, 0, 2, 2}}, gopacket.Payload(inner[14:]))
	cases := []struct {
		name string
		f    Frame
		want Outcome
	}{
		{"ipip", Frame{Data: ipip, Link: LinkRawIP}, OutcomeLocal},
		{"gre", Frame{Data: outerGRE(t, &layers.GRE{Protocol: layers.EthernetTypeIPv4}, inner[14:])}, OutcomeLocal},
		{"vxlan mirror", Frame{Data: outerUDP(t, "172.31.0.10", "172.31.0.99", 4789, vxlanHdr(42, inner))}, OutcomeTCP},
	}
	for _, tc := range cases {
		d := NewDecoder(DecoderConfig{Raw: true, LocalAddrs: []netip.Addr{netip.MustParseAddr("10.1.0.9")}})
		var seg tcp.Segment
		tc.f.Timestamp = 1
		if _, out := d.Decode(&tc.f, &seg); out != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, out, tc.want)
		}
	}
}

// Data carried in a SYN (TCP Fast Open) is handed on with the SYN.
func TestDecodeKeepsSYNPayload(t *testing.T) {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: []byte{10, 0, 0, 1}, DstIP: []byte{10, 0, 0, 2}}
	th := &layers.TCP{SrcPort: 5000, DstPort: 80, Seq: 1000, SYN: true, Window: 500,
		Options: []layers.TCPOption{{OptionType: layers.TCPOptionKind(34), OptionLength: 10, OptionData: []byte{1, 2, 3, 4, 5, 6, 7, 8}}}}
	_ = th.SetNetworkLayerForChecksum(ip)
	frame := serialize(t, ip, th, gopacket.Payload("GET /tfo HTTP/1.1\r\n\r\n"))
	var seg tcp.Segment
	if _, out := NewDecoder(DecoderConfig{Raw: true}).Decode(&Frame{Data: frame, Link: LinkRawIP, Timestamp: 1}, &seg); out != OutcomeTCP {
		t.Fatal(out)
	}
	if seg.Flags&tcp.FlagSYN == 0 || string(seg.Payload) != "GET /tfo HTTP/1.1\r\n\r\n" || seg.Seq != 1000 {
		t.Fatalf("flags %x seq %d payload %q", seg.Flags, seg.Seq, seg.Payload)
	}
}

func TestLinkFromPcap(t *testing.T) {
	want := map[uint32]Link{1: LinkEthernet, 113: LinkSLL, 276: LinkSLL2, 101: LinkRawIP, 228: LinkRawIP, 229: LinkRawIP,
		12: LinkRawIP, 14: LinkRawIP, 0: LinkNull, 108: LinkNull, 239: LinkNFLOG}
	for lt, l := range want {
		if got, ok := LinkFromPcap(lt); !ok || got != l {
			t.Errorf("LinkFromPcap(%d) = %v, %v; want %v", lt, got, ok, l)
		}
	}
	for _, lt := range []uint32{105, 127, 9, 50} { // 802.11, radiotap, PPP, PPP-HDLC
		if _, ok := LinkFromPcap(lt); ok {
			t.Errorf("LinkFromPcap(%d) accepted", lt)
		}
	}
}

func TestLabels(t *testing.T) {
	seen := map[string]bool{}
	for e := range numEncaps {
		if s := e.String(); s == "" || s == "unknown" || seen[s] {
			t.Errorf("encap %d label %q", e, s)
		} else {
			seen[s] = true
		}
	}
	for o := range NumOutcomes {
		if s := o.String(); s == "" || s == "unknown" || seen[s] {
			t.Errorf("outcome %d label %q", o, s)
		} else {
			seen[s] = true
		}
	}
	if Encap(200).String() != "unknown" || Outcome(200).String() != "unknown" {
		t.Error("out-of-range values must say unknown")
	}
}
