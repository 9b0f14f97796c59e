package datapath

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// Outcome is what decoding made of a frame (metric label "outcome").
type Outcome uint8

// Decode outcomes.
const (
	OutcomeTCP         Outcome = iota // a TCP segment handed to reassembly
	OutcomeTruncated                  // a TCP segment whose capture is shorter than its IP length; handed on with the gap marked
	OutcomeNonTCP                     // a well-formed packet that is not TCP (UDP, ICMP, ARP, …)
	OutcomeMalformed                  // lengths or headers that do not add up
	OutcomeBadTunnel                  // a tunnel header that fails its checks (VXLAN I flag, GENEVE version)
	OutcomeLocal                      // raw capture of the appliance's own traffic, or its export traffic
	OutcomeNotMirrored                // not a tunnel, and raw capture is off
	OutcomeFragment                   // an IP fragment (TCP is not reassembled from fragments)
	NumOutcomes
)

var outcomeNames = [NumOutcomes]string{"tcp", "truncated", "non_tcp", "malformed", "bad_tunnel", "local", "not_mirrored", "fragment"}

// String returns the metric label of o.
func (o Outcome) String() string {
	if o < NumOutcomes {
		return outcomeNames[o]
	}
	return "unknown"
}

// NumEncaps is the number of Encap values.
const NumEncaps = int(EncapGENEVEVXLAN) + 1

// DecoderConfig says which UDP ports carry tunnels and what raw capture accepts.
type DecoderConfig struct {
	VXLANPorts  []uint16
	GENEVEPorts []uint16
	// Raw accepts unencapsulated TCP (GCP Packet Mirroring delivers original packets).
	Raw bool
	// LocalAddrs are the appliance's own addresses: raw TCP to or from them is its own
	// traffic (SSH, scrapes, exports) and is never traced.
	LocalAddrs []netip.Addr
	// Local, when set, is a live set of the host's addresses (kept current by whoever
	// follows address changes), consulted in addition to LocalAddrs.
	Local *LocalSet
	// Exclude lists endpoints never traced in any encapsulation (the Metlo backend).
	Exclude []netip.AddrPort
}

// Decoder turns frames into TCP segments. It holds no per-packet state and allocates
// nothing; one decoder per source goroutine.
type Decoder struct {
	vxlan, geneve portSet
	raw           bool
	local         [][16]byte
	liveLocal     *LocalSet
	exclude       []tcp.Endpoint
}

// portSet is a bitmap of UDP ports: membership in one load.
type portSet [65536 / 64]uint64

func (p *portSet) add(port uint16)      { p[port>>6] |= 1 << (port & 63) }
func (p *portSet) has(port uint16) bool { return p[port>>6]&(1<<(port&63)) != 0 }
func (p *portSet) addAll(ports []uint16) {
	for _, v := range ports {
		p.add(v)
	}
}

// NewDecoder builds a decoder; empty port lists take the standard 4789 and 6081.
func NewDecoder(cfg DecoderConfig) *Decoder {
	d := &Decoder{raw: cfg.Raw, liveLocal: cfg.Local}
	if len(cfg.VXLANPorts) == 0 {
		cfg.VXLANPorts = []uint16{4789}
	}
	if len(cfg.GENEVEPorts) == 0 {
		cfg.GENEVEPorts = []uint16{6081}
	}
	d.vxlan.addAll(cfg.VXLANPorts)
	d.geneve.addAll(cfg.GENEVEPorts)
	for _, a := range cfg.LocalAddrs {
		d.local = append(d.local, a.As16())
	}
	for _, e := range cfg.Exclude {
		d.exclude = append(d.exclude, tcp.Endpoint{Addr: e.Addr().As16(), Port: e.Port()})
	}
	return d
}

const (
	etherTypeIPv4  = 0x0800
	etherTypeIPv6  = 0x86DD
	etherTypeVLAN  = 0x8100
	etherTypeQinQ  = 0x88A8
	etherTypeTEB   = 0x6558 // transparent Ethernet bridging: GENEVE carrying Ethernet
	ipProtoTCP     = 6
	ipProtoUDP     = 17
	maxTunnelDepth = 3
)

// Decode fills seg from f and reports the encapsulation found and the outcome. seg.Payload
// aliases f.Data.
func (d *Decoder) Decode(f *Frame, seg *tcp.Segment) (Encap, Outcome) {
	data := f.Data
	ts := f.Timestamp
	if ts == 0 {
		ts = time.Now().UnixNano()
	}
	seg.Timestamp = ts
	encap, vni := f.Encap, f.Tunnel
	var out Outcome
	switch {
	case f.TunnelPayload:
		var inner []byte
		var isIP bool
		inner, isIP, vni, out = d.tunnelHeader(data, encap == EncapGENEVE)
		if out != OutcomeTCP {
			return encap, out
		}
		if isIP {
			out = d.ip(inner, seg, &encap, &vni, 1)
		} else {
			out = d.ether(inner, seg, &encap, &vni, 1)
		}
	case f.Decapsulated && f.InnerIsIP:
		out = d.ip(data, seg, &encap, &vni, 1)
	case f.Decapsulated:
		out = d.ether(data, seg, &encap, &vni, 1)
	default:
		encap, vni = EncapRaw, 0
		out = d.ether(data, seg, &encap, &vni, 0)
	}
	if encap == EncapRaw && !f.Decapsulated && !d.raw && (out == OutcomeTCP || out == OutcomeTruncated) {
		return encap, OutcomeNotMirrored
	}
	if out == OutcomeTCP || out == OutcomeTruncated {
		if d.excluded(seg) || (encap == EncapRaw && d.isLocal(seg)) {
			return encap, OutcomeLocal
		}
		seg.Key.Tunnel = vni
		seg.Hash = tcp.SymmetricHash(&seg.Key)
	}
	return encap, out
}

// ether parses an Ethernet header with up to two VLAN tags.
func (d *Decoder) ether(b []byte, seg *tcp.Segment, encap *Encap, vni *uint32, depth int) Outcome {
	if len(b) < 14 {
		return OutcomeMalformed
	}
	et := binary.BigEndian.Uint16(b[12:14])
	off := 14
	for i := 0; i < 2 && (et == etherTypeVLAN || et == etherTypeQinQ); i++ {
		if len(b) < off+4 {
			return OutcomeMalformed
		}
		et = binary.BigEndian.Uint16(b[off+2 : off+4])
		off += 4
	}
	if et != etherTypeIPv4 && et != etherTypeIPv6 {
		return OutcomeNonTCP
	}
	return d.ip(b[off:], seg, encap, vni, depth)
}

// ip parses IPv4/IPv6 and dispatches to TCP, or into a tunnel carried over UDP.
func (d *Decoder) ip(b []byte, seg *tcp.Segment, encap *Encap, vni *uint32, depth int) Outcome {
	if len(b) < 1 {
		return OutcomeMalformed
	}
	var src, dst [16]byte
	var proto uint8
	var l4 []byte
	var short int // bytes the IP length promises beyond what was captured
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return OutcomeMalformed
		}
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:4]))
		if ihl < 20 || total < ihl || len(b) < ihl {
			return OutcomeMalformed
		}
		if flags := binary.BigEndian.Uint16(b[6:8]); flags&0x3fff != 0 { // MF or an offset
			return OutcomeFragment
		}
		proto = b[9]
		src[10], src[11], dst[10], dst[11] = 0xff, 0xff, 0xff, 0xff
		copy(src[12:], b[12:16])
		copy(dst[12:], b[16:20])
		if total <= len(b) {
			l4 = b[ihl:total] // drop Ethernet padding
		} else {
			l4, short = b[ihl:], total-len(b)
		}
	case 6:
		if len(b) < 40 {
			return OutcomeMalformed
		}
		plen := int(binary.BigEndian.Uint16(b[4:6]))
		proto = b[6]
		copy(src[:], b[8:24])
		copy(dst[:], b[24:40])
		rest := b[40:]
		if plen <= len(rest) {
			rest = rest[:plen]
		} else {
			short = plen - len(rest)
		}
		// Walk extension headers to the transport.
		for range 8 {
			switch proto {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if len(rest) < 8 {
					return OutcomeMalformed
				}
				n := (int(rest[1]) + 1) * 8
				if len(rest) < n {
					return OutcomeMalformed
				}
				proto, rest = rest[0], rest[n:]
				continue
			case 44:
				return OutcomeFragment
			}
			break
		}
		l4 = rest
	default:
		return OutcomeMalformed
	}
	switch proto {
	case ipProtoTCP:
		return d.tcp(l4, src, dst, seg, short)
	case ipProtoUDP:
		if depth >= maxTunnelDepth || len(l4) < 8 {
			if len(l4) < 8 {
				return OutcomeMalformed
			}
			return OutcomeNonTCP
		}
		dport := binary.BigEndian.Uint16(l4[2:4])
		isVXLAN, isGENEVE := d.vxlan.has(dport), d.geneve.has(dport)
		if !isVXLAN && !isGENEVE {
			return OutcomeNonTCP
		}
		inner, isIP, id, out := d.tunnelHeader(l4[8:], isGENEVE)
		if out != OutcomeTCP {
			return out
		}
		*vni = id
		switch {
		case isGENEVE:
			*encap = EncapGENEVE
		case *encap == EncapGENEVE:
			*encap = EncapGENEVEVXLAN
		default:
			*encap = EncapVXLAN
		}
		if isIP {
			return d.ip(inner, seg, encap, vni, depth+1)
		}
		return d.ether(inner, seg, encap, vni, depth+1)
	}
	return OutcomeNonTCP
}

// tunnelHeader strips a VXLAN or GENEVE header and returns what it carries.
func (d *Decoder) tunnelHeader(b []byte, geneve bool) (inner []byte, isIP bool, vni uint32, out Outcome) {
	if len(b) < 8 {
		return nil, false, 0, OutcomeMalformed
	}
	vni = uint32(b[4])<<16 | uint32(b[5])<<8 | uint32(b[6])
	if !geneve {
		if b[0]&0x08 == 0 { // the I flag: the VNI is valid
			return nil, false, 0, OutcomeBadTunnel
		}
		return b[8:], false, vni, OutcomeTCP
	}
	if b[0]>>6 != 0 { // version 0 is the only one defined
		return nil, false, 0, OutcomeBadTunnel
	}
	if b[1]&0x80 != 0 { // O bit: a control message, not a data packet
		return nil, false, 0, OutcomeNonTCP
	}
	hl := 8 + int(b[0]&0x3f)*4
	if len(b) < hl {
		return nil, false, 0, OutcomeMalformed
	}
	switch binary.BigEndian.Uint16(b[2:4]) {
	case etherTypeTEB:
		return b[hl:], false, vni, OutcomeTCP
	case etherTypeIPv4, etherTypeIPv6:
		return b[hl:], true, vni, OutcomeTCP
	}
	return nil, false, 0, OutcomeNonTCP
}

// tcp fills the segment from a TCP header; short is how many bytes the IP length promised
// beyond the capture.
func (d *Decoder) tcp(b []byte, src, dst [16]byte, seg *tcp.Segment, short int) Outcome {
	if len(b) < 20 {
		if short > 0 {
			return OutcomeTruncated // not even the header survived; nothing to hand on
		}
		return OutcomeMalformed
	}
	hl := int(b[12]>>4) * 4
	if hl < 20 || hl > len(b) {
		if short > 0 && hl >= 20 {
			return OutcomeTruncated
		}
		return OutcomeMalformed
	}
	s := tcp.Endpoint{Addr: src, Port: binary.BigEndian.Uint16(b[0:2])}
	t := tcp.Endpoint{Addr: dst, Port: binary.BigEndian.Uint16(b[2:4])}
	seg.Key, seg.Dir = tcp.NewKey(0, s, t)
	seg.Seq = binary.BigEndian.Uint32(b[4:8])
	seg.Ack = binary.BigEndian.Uint32(b[8:12])
	seg.Flags = b[13]
	seg.Payload = b[hl:]
	seg.Missing = short
	if short > 0 {
		return OutcomeTruncated
	}
	return OutcomeTCP
}

func (d *Decoder) isLocal(seg *tcp.Segment) bool {
	for i := range d.local {
		if seg.Key.Lo.Addr == d.local[i] || seg.Key.Hi.Addr == d.local[i] {
			return true
		}
	}
	return d.liveLocal != nil && (d.liveLocal.Contains(seg.Key.Lo.Addr) || d.liveLocal.Contains(seg.Key.Hi.Addr))
}

func (d *Decoder) excluded(seg *tcp.Segment) bool {
	for _, e := range d.exclude {
		if seg.Key.Lo == e || seg.Key.Hi == e {
			return true
		}
	}
	return false
}
