package datapath

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// TunnelAccept limits whose tunnel packets become traces: anyone who can reach the
// appliance's tunnel ports could otherwise inject traffic that turns into forged traces.
// The zero value accepts everything.
type TunnelAccept struct {
	// Sources are the outer source addresses (the mirror sources' networks) tunnel packets
	// are taken from; empty accepts any source.
	Sources []netip.Prefix
	// VNIs are the VXLAN/GENEVE network identifiers taken (for VXLAN inside GENEVE, the
	// VXLAN one: the mirror session's); empty accepts any.
	VNIs []uint32
}

// acceptFilter applies a TunnelAccept to frames that still carry their outer headers; the
// sources that strip them (XDP in the kernel, UDP sockets by the sender's address) apply
// the source check themselves.
type acceptFilter struct {
	sources       []netip.Prefix // IPv4 as v4-mapped IPv6 prefixes
	vnis          []uint32
	vxlan, geneve portSet
}

func newAcceptFilter(a TunnelAccept, dc DecoderConfig) *acceptFilter {
	if len(a.Sources) == 0 && len(a.VNIs) == 0 {
		return nil
	}
	f := &acceptFilter{vnis: slices.Clone(a.VNIs)}
	for _, p := range a.Sources {
		bits := p.Bits()
		if p.Addr().Is4() {
			bits += 96
		}
		f.sources = append(f.sources, netip.PrefixFrom(netip.AddrFrom16(p.Addr().As16()), bits).Masked())
	}
	vx, gn := dc.VXLANPorts, dc.GENEVEPorts
	if len(vx) == 0 {
		vx = []uint16{4789}
	}
	if len(gn) == 0 {
		gn = []uint16{6081}
	}
	f.vxlan.addAll(vx)
	f.geneve.addAll(gn)
	return f
}

// sourceRejected reports whether f is a tunnel packet (outer UDP to a VXLAN or GENEVE
// port, behind Ethernet and up to two VLAN tags) whose outer source is not accepted.
func (a *acceptFilter) sourceRejected(f *Frame) bool {
	if len(a.sources) == 0 || f.Decapsulated || f.TunnelPayload {
		return false
	}
	b := f.Data
	if len(b) < 14 {
		return false
	}
	et, off := binary.BigEndian.Uint16(b[12:]), 14
	for i := 0; i < 2 && (et == etherTypeVLAN || et == etherTypeQinQ) && len(b) >= off+4; i++ {
		et, off = binary.BigEndian.Uint16(b[off+2:]), off+4
	}
	var src [16]byte
	var l4 []byte
	switch {
	case et == etherTypeIPv4 && len(b) >= off+20:
		ip := b[off:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != ipProtoUDP || ihl < 20 || len(ip) < ihl+4 || binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 {
			return false
		}
		src[10], src[11] = 0xff, 0xff
		copy(src[12:], ip[12:16])
		l4 = ip[ihl:]
	case et == etherTypeIPv6 && len(b) >= off+40:
		ip := b[off:]
		copy(src[:], ip[8:24])
		next, rest := ip[6], ip[40:]
		// Extension headers before the transport, as the decoder walks them; a fragment
		// header's first fragment carries the UDP header after it.
		for i := 0; i < 8 && next != ipProtoUDP; i++ {
			switch next {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if len(rest) < 8 || len(rest) < (int(rest[1])+1)*8 {
					return false
				}
				next, rest = rest[0], rest[(int(rest[1])+1)*8:]
			case 44: // fragment
				if len(rest) < 8 || binary.BigEndian.Uint16(rest[2:])&0xfff8 != 0 {
					return false
				}
				next, rest = rest[0], rest[8:]
			default:
				return false
			}
		}
		if next != ipProtoUDP || len(rest) < 4 {
			return false
		}
		l4 = rest
	default:
		return false
	}
	port := binary.BigEndian.Uint16(l4[2:])
	if !a.vxlan.has(port) && !a.geneve.has(port) {
		return false
	}
	return !a.sourceOK(src)
}

// SourceAccepted reports whether a tunnel packet from a may be taken under a (any, when
// a has no sources).
func (a TunnelAccept) SourceAccepted(addr netip.Addr) bool {
	if len(a.Sources) == 0 {
		return true
	}
	addr = addr.Unmap()
	for _, p := range a.Sources {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

func (a *acceptFilter) sourceOK(src [16]byte) bool {
	addr := netip.AddrFrom16(src)
	for _, p := range a.sources {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// vniRejected reports whether a decoded tunnel segment's VNI is not accepted.
func (a *acceptFilter) vniRejected(encap Encap, vni uint32) bool {
	return len(a.vnis) > 0 && encap != EncapRaw && !slices.Contains(a.vnis, vni)
}
