package main

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// vxFrame is one VXLAN frame of the source capture, taken apart.
type vxFrame struct {
	ts       time.Time
	eth      layers.Ethernet // outer Ethernet
	ip4      layers.IPv4     // outer IPv4 (header fields only)
	srcPort  uint16          // outer UDP source port (the kernel's flow hash)
	outerIP  []byte          // outer IPv4 packet: IP + UDP + VXLAN + inner frame
	vxlan    []byte          // UDP payload: VXLAN header + inner Ethernet frame
	vni      uint32
	inner    []byte // inner Ethernet frame
	flowHash uint32 // symmetric hash of the inner TCP 5-tuple (0 for non-TCP)
	toServer bool   // inner packet goes to the server port
}

const (
	vxlanPort  = 4789
	genevePort = 6081
	serverPort = 8080
)

// Outer addresses of the derived tunnels: a GWLB node, an IPv6 mirror path, the second ENI.
var (
	gwlbIP      = net.IPv4(10, 200, 9, 9).To4()
	applianceIP = net.IPv4(10, 200, 2, 2).To4()
	secondENIIP = net.IPv4(10, 200, 1, 1).To4()
	v6Src       = net.ParseIP("fd00:200:2::1")
	v6Dst       = net.ParseIP("fd00:200:2::2")
)

func parseVXLAN(frames []frame) ([]vxFrame, error) {
	out := make([]vxFrame, 0, len(frames))
	for i, fr := range frames {
		var (
			eth     layers.Ethernet
			ip4     layers.IPv4
			udp     layers.UDP
			decoded []gopacket.LayerType
		)
		p := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip4, &udp)
		p.IgnoreUnsupported = true
		if err := p.DecodeLayers(fr.data, &decoded); err != nil || len(decoded) < 3 {
			return nil, fmt.Errorf("frame %d: not Ethernet/IPv4/UDP: %v", i+1, err)
		}
		if udp.DstPort != vxlanPort || len(udp.Payload) < 8+14 || udp.Payload[0]&0x08 == 0 {
			return nil, fmt.Errorf("frame %d: not VXLAN", i+1)
		}
		v := vxFrame{
			ts: fr.ts, eth: eth, ip4: ip4, srcPort: uint16(udp.SrcPort),
			outerIP: fr.data[14:], vxlan: udp.Payload,
			vni: binary.BigEndian.Uint32(udp.Payload[4:8]) >> 8, inner: udp.Payload[8:],
		}
		v.eth.Payload, v.ip4.Payload = nil, nil
		v.flowHash, v.toServer = innerFlow(v.inner)
		out = append(out, v)
	}
	return out, nil
}

// innerFlow hashes the inner IPv4/TCP 5-tuple the same in both directions.
func innerFlow(inner []byte) (uint32, bool) {
	var (
		eth     layers.Ethernet
		ip4     layers.IPv4
		tcp     layers.TCP
		decoded []gopacket.LayerType
	)
	p := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip4, &tcp)
	p.IgnoreUnsupported = true
	if p.DecodeLayers(inner, &decoded); len(decoded) < 3 {
		return 0, false
	}
	a := fmt.Sprintf("%s:%d", ip4.SrcIP, tcp.SrcPort)
	b := fmt.Sprintf("%s:%d", ip4.DstIP, tcp.DstPort)
	if a > b {
		a, b = b, a
	}
	h := fnv.New32a()
	h.Write([]byte(a + "|" + b))
	return h.Sum32(), tcp.DstPort == serverPort
}

// geneveHeader builds a GENEVE header (RFC 8926) with AWS-GWLB-like options: class 0x0108
// TLVs carrying an endpoint id (8 B), an attachment id (8 B) and a flow cookie (4 B) = 32 B.
func geneveHeader(proto layers.EthernetType, vni, cookie uint32) []byte {
	opts := make([]byte, 0, 32)
	opt := func(typ uint8, data []byte) {
		opts = binary.BigEndian.AppendUint16(opts, 0x0108)
		opts = append(opts, typ, uint8(len(data)/4))
		opts = append(opts, data...)
	}
	opt(1, []byte{0x0e, 0x5a, 0xf1, 0x00, 0x00, 0x00, 0x42, 0x01}) // GWLB endpoint id
	opt(2, []byte{0x00, 0x00, 0x00, 0x00, 0x07, 0xa1, 0x7e, 0x5b}) // attachment id
	opt(3, binary.BigEndian.AppendUint32(nil, cookie))             // flow cookie
	h := make([]byte, 8, 8+len(opts))
	h[0] = uint8(len(opts) / 4) // version 0, option length in 4-byte words
	binary.BigEndian.PutUint16(h[2:], uint16(proto))
	binary.BigEndian.PutUint32(h[4:], vni<<8)
	return append(h, opts...)
}

// udp4Frame serializes Ethernet/IPv4/UDP/payload with correct lengths and checksums.
func udp4Frame(eth layers.Ethernet, src, dst net.IP, id uint16, sport, dport uint16, payload []byte) ([]byte, error) {
	eth.EthernetType = layers.EthernetTypeIPv4
	ip := &layers.IPv4{Version: 4, TTL: 64, Id: id, Protocol: layers.IPProtocolUDP, SrcIP: src, DstIP: dst}
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		return nil, err
	}
	return serialize(&eth, ip, udp, gopacket.Payload(payload))
}

func serialize(ls ...gopacket.SerializableLayer) ([]byte, error) {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		return nil, fmt.Errorf("serialize: %w", err)
	}
	return append([]byte(nil), buf.Bytes()...), nil
}

func mapFrames(vx []vxFrame, f func(v *vxFrame) ([]byte, error)) ([]frame, error) {
	out := make([]frame, 0, len(vx))
	for i := range vx {
		data, err := f(&vx[i])
		if err != nil {
			return nil, fmt.Errorf("frame %d: %w", i+1, err)
		}
		out = append(out, frame{ts: vx[i].ts, data: data})
	}
	return out, nil
}

// toGENEVEEthernet re-wraps each inner Ethernet frame in GENEVE (protocol 0x6558).
func toGENEVEEthernet(vx []vxFrame, _ uint64) ([]frame, error) {
	return mapFrames(vx, func(v *vxFrame) ([]byte, error) {
		payload := append(geneveHeader(0x6558, v.vni, v.flowHash), v.inner...)
		return udp4Frame(v.eth, v.ip4.SrcIP, v.ip4.DstIP, v.ip4.Id, v.srcPort, genevePort, payload)
	})
}

// toGENEVEIP carries the inner IP packet without its Ethernet header (protocol = its EtherType).
func toGENEVEIP(vx []vxFrame, _ uint64) ([]frame, error) {
	return mapFrames(vx, func(v *vxFrame) ([]byte, error) {
		proto := layers.EthernetType(binary.BigEndian.Uint16(v.inner[12:14]))
		payload := append(geneveHeader(proto, v.vni, v.flowHash), v.inner[14:]...)
		return udp4Frame(v.eth, v.ip4.SrcIP, v.ip4.DstIP, v.ip4.Id, v.srcPort, genevePort, payload)
	})
}

// toVXLANInGENEVE is a mirror session whose target is a GWLB endpoint: the whole VXLAN/IPv4
// packet rides as an IP payload (protocol 0x0800) of GENEVE from the GWLB node.
func toVXLANInGENEVE(vx []vxFrame, _ uint64) ([]frame, error) {
	return mapFrames(vx, func(v *vxFrame) ([]byte, error) {
		payload := append(geneveHeader(layers.EthernetTypeIPv4, 0x51ab, v.flowHash), v.outerIP...)
		return udp4Frame(v.eth, gwlbIP, applianceIP, v.ip4.Id, 40000+uint16(v.flowHash%20000), genevePort, payload)
	})
}

// toVXLANIPv6 sends the same VXLAN payload over IPv6/UDP (checksum mandatory, computed).
func toVXLANIPv6(vx []vxFrame, _ uint64) ([]frame, error) {
	return mapFrames(vx, func(v *vxFrame) ([]byte, error) {
		eth := v.eth
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: v6Src, DstIP: v6Dst,
			FlowLabel: v.flowHash & 0xfffff}
		udp := &layers.UDP{SrcPort: layers.UDPPort(v.srcPort), DstPort: vxlanPort}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			return nil, err
		}
		return serialize(&eth, ip, udp, gopacket.Payload(v.vxlan))
	})
}

// toVLAN inserts an 802.1Q tag (VLAN 100) in front of the unchanged outer IPv4 packet.
func toVLAN(vx []vxFrame, _ uint64) ([]frame, error) {
	return mapFrames(vx, func(v *vxFrame) ([]byte, error) {
		eth := v.eth
		eth.EthernetType = layers.EthernetTypeDot1Q
		tag := &layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4}
		return serialize(&eth, tag, gopacket.Payload(v.outerIP))
	})
}

// toStripped keeps only the inner frames, as a raw (GCP-style) mirror would deliver them.
func toStripped(vx []vxFrame, _ uint64) ([]frame, error) {
	return mapFrames(vx, func(v *vxFrame) ([]byte, error) { return append([]byte(nil), v.inner...), nil })
}
