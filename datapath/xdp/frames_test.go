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

// greFrame wraps payload in outer Ethernet/IP/GRE (with a sequence number) of protocol
// type proto, from src to dst.
func greFrame(t testing.TB, src, dst netip.Addr, proto uint16, payload []byte) []byte {
	return greFrameFlags(t, src, dst, 0x1000, proto, payload)
}

// greFrameFlags wraps payload in outer Ethernet/IP/GRE from src to dst with the given GRE
// flags and version word (C 0x8000, K 0x2000, S 0x1000; the optional fields are zero).
func greFrameFlags(t testing.TB, src, dst netip.Addr, flags, proto uint16, payload []byte) []byte {
	gre := []byte{byte(flags >> 8), byte(flags), byte(proto >> 8), byte(proto)}
	for _, f := range []uint16{0x8000, 0x2000, 0x1000} {
		if flags&f != 0 {
			gre = append(gre, 0, 0, 0, 1)
		}
	}
	ip, et := ipLayer(src, dst, layers.IPProtocolGRE)
	return serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: et}, ip, gopacket.Payload(append(gre, payload...)))
}

// ipipFrame wraps the IP packet inner in an outer IP header (protocol 4 or 41 by inner's
// version) from src to dst.
func ipipFrame(t testing.TB, src, dst netip.Addr, inner []byte) []byte {
	proto := layers.IPProtocolIPv4
	if inner[0]>>4 == 6 {
		proto = layers.IPProtocolIPv6
	}
	ip, et := ipLayer(src, dst, proto)
	return serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: et}, ip, gopacket.Payload(inner))
}

// fragment splits the IP packet of the untagged Ethernet frame into fragments of at most size
// payload bytes (a multiple of 8) with identification id, in order, as a router would:
// IPv4 by its header fields, IPv6 with a fragment header after the fixed one.
func fragment(t testing.TB, frame []byte, size int, id uint32) [][]byte {
	t.Helper()
	if size%8 != 0 {
		t.Fatalf("fragment size %d is not a multiple of 8", size)
	}
	var hdr, payload []byte
	v6 := frame[14]>>4 == 6
	if v6 {
		hdr = frame[14:54]
		payload = frame[54 : 54+int(binary.BigEndian.Uint16(hdr[4:6]))]
	} else {
		ihl := int(frame[14]&0x0f) * 4
		hdr = frame[14 : 14+ihl]
		payload = frame[14+ihl : 14+int(binary.BigEndian.Uint16(hdr[2:4]))]
	}
	var out [][]byte
	for off := 0; off < len(payload); off += size {
		n := min(size, len(payload)-off)
		more := off+n < len(payload)
		f := append(append([]byte{}, frame[:14]...), hdr...)
		h := f[14:]
		if v6 {
			binary.BigEndian.PutUint16(h[4:6], uint16(8+n))
			next := h[6]
			h[6] = 44
			fo := uint16(off)
			if more {
				fo |= 1
			}
			f = append(f, next, 0, byte(fo>>8), byte(fo), 0, 0, 0, 0)
			binary.BigEndian.PutUint32(f[len(f)-4:], id)
		} else {
			binary.BigEndian.PutUint16(h[2:4], uint16(len(hdr)+n))
			binary.BigEndian.PutUint16(h[4:6], uint16(id))
			fo := uint16(off / 8)
			if more {
				fo |= 0x2000
			}
			binary.BigEndian.PutUint16(h[6:8], fo)
			h[10], h[11] = 0, 0
			binary.BigEndian.PutUint16(h[10:12], ipChecksum(h[:len(hdr)]))
		}
		out = append(out, append(f, payload[off:off+n]...))
	}
	return out
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
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

// tagged wraps the IPv4 packet ip in Ethernet with a VLAN tag (VID 10, 11, …) of each given
// TPID, outermost first.
func tagged(ip []byte, tpids ...uint16) []byte {
	f := append(append([]byte{}, macB...), macA...)
	for i, tp := range tpids {
		f = append(f, byte(tp>>8), byte(tp), 0, byte(10+i))
	}
	return append(append(f, 0x08, 0x00), ip...)
}
