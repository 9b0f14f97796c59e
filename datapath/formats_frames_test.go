package datapath

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Builders for the link types and encapsulations beyond Ethernet/VXLAN/GENEVE. Where
// gopacket can serialize a layer (GRE, ERSPAN II, MPLS, 802.1Q, BSD loopback) the test
// frames come from it, so the decoder is checked against an independent encoder.

// outerGRE wraps payload (what g.Protocol names) in Ethernet/IPv4/GRE.
func outerGRE(t testing.TB, g *layers.GRE, payload []byte) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolGRE, SrcIP: net.ParseIP("192.0.2.1"), DstIP: net.ParseIP("192.0.2.2")}
	return serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}, ip, g, gopacket.Payload(payload))
}

// erspan2 builds an ERSPAN type II header (session id, version 1) in front of an Ethernet frame.
func erspan2(t testing.TB, session uint16, version uint8, frame []byte) []byte {
	t.Helper()
	return serialize(t, &layers.ERSPANII{Version: version, SessionID: session, Index: 3}, gopacket.Payload(frame))
}

// erspan3 builds an ERSPAN type III header (12 bytes), with the 8-byte platform subheader
// when platform is set, frame type ft (0 Ethernet, 2 IP).
func erspan3(session uint16, ft uint8, platform bool, frame []byte) []byte {
	h := make([]byte, 12)
	binary.BigEndian.PutUint16(h[0:2], 2<<12|100) // version 2, VLAN 100
	binary.BigEndian.PutUint16(h[2:4], session&0x3ff)
	binary.BigEndian.PutUint32(h[4:8], 0xdeadbeef) // timestamp
	h[10] = ft << 2
	h[11] = 0x06 // granularity bits set: must not be mistaken for the O bit
	if platform {
		h[11] |= 0x01
		h = append(h, 0x0c, 0, 0, 0x01, 0xca, 0xfe, 0xba, 0xbe)
	}
	return append(h, frame...)
}

// mplsStack builds an MPLS label stack (one layer per label, the last at the bottom) in
// front of payload.
func mplsStack(t testing.TB, payload []byte, labels ...uint32) []byte {
	t.Helper()
	var ls []gopacket.SerializableLayer
	for i, l := range labels {
		ls = append(ls, &layers.MPLS{Label: l, StackBottom: i == len(labels)-1, TTL: 64})
	}
	return serialize(t, append(ls, gopacket.Payload(payload))...)
}

// etherWith builds an Ethernet header with the EtherType chain tags (VLAN TPIDs, each
// followed by a 2-byte TCI) ending in et, then payload.
func etherWith(payload []byte, et uint16, tpids ...uint16) []byte {
	b := append([]byte(nil), macB...)
	b = append(b, macA...)
	for i, tp := range tpids {
		b = binary.BigEndian.AppendUint16(b, tp)
		b = binary.BigEndian.AppendUint16(b, uint16(100+i))
	}
	b = binary.BigEndian.AppendUint16(b, et)
	return append(b, payload...)
}

// sllHeader is a Linux cooked v1 header for a packet of EtherType proto from a device of
// ARPHRD type hatype.
func sllHeader(hatype, proto uint16) []byte {
	h := make([]byte, 16)
	binary.BigEndian.PutUint16(h[0:2], 4) // sent by us
	binary.BigEndian.PutUint16(h[2:4], hatype)
	binary.BigEndian.PutUint16(h[4:6], 6)
	copy(h[6:12], macA)
	binary.BigEndian.PutUint16(h[14:16], proto)
	return h
}

// sll2Header is a Linux cooked v2 header.
func sll2Header(hatype, proto uint16) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:2], proto)
	binary.BigEndian.PutUint32(h[4:8], 3) // interface index
	binary.BigEndian.PutUint16(h[8:10], hatype)
	h[10], h[11] = 0, 6
	copy(h[12:18], macA)
	return h
}

// nflogRecord builds an NFLOG record (family, TLVs in byte order bo) logging packet.
func nflogRecord(bo binary.AppendByteOrder, family uint8, packet []byte) []byte {
	b := []byte{family, 0, 0, 5} // version 0, resource (group) 5
	tlv := func(typ uint16, v []byte) {
		n := 4 + len(v)
		b = bo.AppendUint16(b, uint16(n))
		b = bo.AppendUint16(b, typ)
		b = append(b, v...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	tlv(1, []byte{0x08, 0x00, 1, 0})    // NFULA_PACKET_HDR: hw protocol, hook
	tlv(10, []byte("nflog-prefix\x00")) // NFULA_PREFIX, odd length: padding follows
	tlv(9, packet)                      // NFULA_PAYLOAD
	return b
}
