package xdp

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Addresses used by the crafted frames: the appliance, a mirror source, and the inner flow.
var (
	applianceV4 = netip.MustParseAddr("10.0.0.2")
	mirrorV4    = netip.MustParseAddr("10.0.0.1")
	applianceV6 = netip.MustParseAddr("fd00::2")
	mirrorV6    = netip.MustParseAddr("fd00::1")
	clientV4    = netip.MustParseAddr("172.16.1.10")
	serverV4    = netip.MustParseAddr("172.16.2.20")
	clientV6    = netip.MustParseAddr("fd10::10")
	serverV6    = netip.MustParseAddr("fd20::20")
	macA        = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB        = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
)

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// ipLayers returns an IPv4 or IPv6 header from src to dst carrying proto.
func ipLayer(src, dst netip.Addr, proto layers.IPProtocol) (gopacket.SerializableLayer, layers.EthernetType) {
	if src.Is4() {
		return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}, layers.EthernetTypeIPv4
	}
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}, layers.EthernetTypeIPv6
}

// tcpIP builds an IP packet (no Ethernet) with a TCP segment carrying payload.
func tcpIP(t testing.TB, src, dst netip.Addr, sport, dport uint16, payload string) []byte {
	ip, _ := ipLayer(src, dst, layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: 1000, Ack: 1, PSH: true, ACK: true, Window: 512}
	setNet(tcp, ip)
	return serialize(t, ip, tcp, gopacket.Payload(payload))
}

// tcpFrame builds an Ethernet frame with a TCP segment.
func tcpFrame(t testing.TB, src, dst netip.Addr, sport, dport uint16, payload string) []byte {
	ip, et := ipLayer(src, dst, layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: 1000, Ack: 1, PSH: true, ACK: true, Window: 512}
	setNet(tcp, ip)
	return serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: et}, ip, tcp, gopacket.Payload(payload))
}

// udpFrame builds an Ethernet frame with a UDP datagram (vlans: outer-first 802.1Q tags).
func udpFrame(t testing.TB, src, dst netip.Addr, sport, dport uint16, payload []byte, vlans ...uint16) []byte {
	ip, et := ipLayer(src, dst, layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	setNet(udp, ip)
	ls := []gopacket.SerializableLayer{}
	if len(vlans) == 0 {
		ls = append(ls, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: et})
	} else {
		ls = append(ls, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeQinQ})
		for i, id := range vlans {
			next := layers.EthernetTypeDot1Q
			if i == len(vlans)-1 {
				next = et
			}
			ls = append(ls, &layers.Dot1Q{VLANIdentifier: id, Type: next})
		}
		if len(vlans) == 1 {
			ls[0].(*layers.Ethernet).EthernetType = layers.EthernetTypeDot1Q
		}
	}
	ls = append(ls, ip, udp, gopacket.Payload(payload))
	return serialize(t, ls...)
}

func setNet(l interface {
	SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
}, ip gopacket.SerializableLayer) {
	_ = l.SetNetworkLayerForChecksum(ip.(gopacket.NetworkLayer))
}

// vxlanHeader is RFC 7348's 8 bytes with the I flag and vni.
func vxlanHeader(vni uint32, flags byte) []byte {
	h := make([]byte, 8)
	h[0] = flags
	binary.BigEndian.PutUint32(h[4:], vni<<8)
	return h
}

// genevePayload is a GENEVE header (version 0) with optLen bytes of options in front of inner.
func genevePayload(vni uint32, proto uint16, optLen int, inner []byte) []byte {
	h := make([]byte, 8+optLen)
	h[0] = byte(optLen / 4)
	binary.BigEndian.PutUint16(h[2:], proto)
	binary.BigEndian.PutUint32(h[4:], vni<<8)
	for i := 8; i+4 <= len(h); i += 4 { // TLVs: class 0x0108 (AWS), type, length in words
		binary.BigEndian.PutUint16(h[i:], 0x0108)
		h[i+2] = byte(i)
		h[i+3] = 0
	}
	return append(h, inner...)
}

// vxlanFrame wraps inner in outer Ethernet/IP/UDP(4789)/VXLAN from mirror to appliance.
func vxlanFrame(t testing.TB, outerSrc, outerDst netip.Addr, vni uint32, inner []byte, vlans ...uint16) []byte {
	return udpFrame(t, outerSrc, outerDst, 49152, 4789, append(vxlanHeader(vni, 0x08), inner...), vlans...)
}

// greFrame wraps payload in outer Ethernet/IPv4/GRE (with a sequence number) of protocol
// type proto, from src to dst.
func greFrame(t testing.TB, src, dst netip.Addr, proto uint16, payload []byte) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolGRE, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	gre := []byte{0x10, 0x00, byte(proto >> 8), byte(proto), 0, 0, 0, 1}
	return serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}, ip, gopacket.Payload(append(gre, payload...)))
}

// erspan2 is an ERSPAN type II header (version 1, session 5) in front of inner.
func erspan2(inner []byte) []byte {
	return append([]byte{0x10, 0x00, 0x00, 0x05, 0, 0, 0, 0}, inner...)
}

// mplsFrame puts one MPLS label (bottom of stack) between Ethernet and the IPv4 packet ip.
func mplsFrame(ip []byte) []byte {
	f := append([]byte{}, macB...)
	f = append(f, macA...)
	f = append(f, 0x88, 0x47, 0x00, 0x01, 0x01, 0x40) // label 16, S, TTL 64
	return append(f, ip...)
}
