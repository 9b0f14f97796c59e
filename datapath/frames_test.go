package datapath

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
)

// innerTCP builds an Ethernet/IPv4/TCP frame carrying payload.
func innerTCP(t testing.TB, src, dst string, sport, dport uint16, seq uint32, payload string) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, ACK: true, PSH: true, Window: 500}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	return serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}, ip, tcp, gopacket.Payload(payload))
}

// innerTCP6 is innerTCP over IPv6.
func innerTCP6(t testing.TB, src, dst string, sport, dport uint16, seq uint32, payload string) []byte {
	t.Helper()
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, ACK: true, Window: 500}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	return serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv6}, ip, tcp, gopacket.Payload(payload))
}

// outerUDP wraps a tunnel payload in Ethernet/IP/UDP (IPv6 when src has a colon), with
// optional VLAN tags.
func outerUDP(t testing.TB, src, dst string, dport uint16, tunnel []byte, vlans ...uint16) []byte {
	t.Helper()
	var ls []gopacket.SerializableLayer
	et := layers.EthernetTypeIPv4
	var ipl gopacket.NetworkLayer
	if net.ParseIP(src).To4() == nil {
		et = layers.EthernetTypeIPv6
		ipl = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	} else {
		ipl = &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	}
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: et}
	ls = append(ls, eth)
	if len(vlans) > 0 {
		eth.EthernetType = layers.EthernetTypeDot1Q
		for i, id := range vlans {
			next := layers.EthernetTypeDot1Q
			if i == len(vlans)-1 {
				next = et
			}
			ls = append(ls, &layers.Dot1Q{VLANIdentifier: id, Type: next})
		}
	}
	udp := &layers.UDP{SrcPort: 49152, DstPort: layers.UDPPort(dport)}
	_ = udp.SetNetworkLayerForChecksum(ipl)
	ls = append(ls, ipl.(gopacket.SerializableLayer), udp, gopacket.Payload(tunnel))
	return serialize(t, ls...)
}

func vxlanHdr(vni uint32, inner []byte) []byte {
	h := []byte{0x08, 0, 0, 0, byte(vni >> 16), byte(vni >> 8), byte(vni), 0}
	return append(h, inner...)
}

// geneveHdr builds a GENEVE header with optLen bytes of (zero-filled TLV) options.
func geneveHdr(vni uint32, proto uint16, optLen int, inner []byte) []byte {
	h := make([]byte, 8+optLen)
	h[0] = byte(optLen / 4)
	binary.BigEndian.PutUint16(h[2:4], proto)
	h[4], h[5], h[6] = byte(vni>>16), byte(vni>>8), byte(vni)
	for i := 0; i+4 <= optLen; i += 4 { // option class/type/len words
		binary.BigEndian.PutUint16(h[8+i:], 0x0108)
	}
	return append(h, inner...)
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}
