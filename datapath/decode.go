package datapath

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// Outcome is what decoding made of a frame (metric label "outcome").
type Outcome uint8

// Decode outcomes. The unknown_* outcomes count, by kind, encapsulations the decoder
// recognises but does not open, so an operator can tell what a mirror sends that is lost.
const (
	OutcomeTCP              Outcome = iota // a TCP segment handed to reassembly
	OutcomeTruncated                       // a TCP segment whose capture is shorter than its IP length; handed on with the gap marked
	OutcomeNonTCP                          // a well-formed packet that is not TCP (UDP, ICMP, ARP, …)
	OutcomeMalformed                       // lengths or headers that do not add up
	OutcomeBadTunnel                       // a tunnel header that fails its checks (VXLAN I flag, GENEVE or ERSPAN version)
	OutcomeLocal                           // raw capture of the appliance's own traffic, or its export traffic
	OutcomeNotMirrored                     // not a tunnel, and raw capture is off
	OutcomeFragment                        // an IP fragment held for reassembly (its datagram counts with the fragment that completes it)
	OutcomeFragmentDropped                 // an IP fragment refused: overlapping, inconsistent, or over the reassembly memory budget
	OutcomeUnknownLink                     // a capture interface whose link type the decoder cannot read
	OutcomeUnknownEtherType                // an EtherType that is not IP, a VLAN tag, MPLS or a known non-IP protocol (PPPoE, PBB, MACsec, …)
	OutcomeUnknownGRE                      // GRE of another version (PPTP), with source routing, or carrying a protocol not decoded (WCCP, …)
	OutcomeUnknownERSPAN                   // ERSPAN type III carrying a frame type other than Ethernet or IP
	OutcomeUnknownMPLS                     // an MPLS payload that is neither IP nor a pseudowire control word with Ethernet
	OutcomeUnknownGENEVE                   // GENEVE carrying a protocol type other than Ethernet or IP
	NumOutcomes
)

var outcomeNames = [NumOutcomes]string{"tcp", "truncated", "non_tcp", "malformed", "bad_tunnel", "local", "not_mirrored",
	"fragment", "fragment_dropped", "unknown_link", "unknown_ethertype", "unknown_gre", "unknown_erspan", "unknown_mpls", "unknown_geneve"}

// String returns the metric label of o.
func (o Outcome) String() string {
	if o < NumOutcomes {
		return outcomeNames[o]
	}
	return "unknown"
}

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
	// Defrag bounds IP fragment reassembly; zero values take the defaults.
	Defrag DefragConfig
}

// Decoder turns frames into TCP segments. It allocates nothing per packet; one decoder per
// source goroutine. IP fragments go to a Defragmenter that decoders may share.
type Decoder struct {
	vxlan, geneve portSet
	raw           bool
	local         [][16]byte
	liveLocal     *LocalSet
	exclude       []tcp.Endpoint
	defrag        *Defragmenter
	scratch       []byte // a reassembled datagram, valid until the next Decode
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

// NewDecoder builds a decoder with its own Defragmenter; empty port lists take the
// standard 4789 and 6081.
func NewDecoder(cfg DecoderConfig) *Decoder {
	return newDecoder(cfg, NewDefragmenter(cfg.Defrag))
}

// newDecoder builds a decoder that reassembles fragments in df, which other decoders of
// the same pipeline share: a datagram's fragments may arrive on different goroutines.
func newDecoder(cfg DecoderConfig, df *Defragmenter) *Decoder {
	d := &Decoder{raw: cfg.Raw, liveLocal: cfg.Local, defrag: df}
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
	etherTypeIPv4     = 0x0800
	etherTypeIPv6     = 0x86DD
	etherTypeVLAN     = 0x8100
	etherTypeQinQ     = 0x88A8
	etherTypeQinQOld1 = 0x9100 // pre-802.1ad vendor S-tags
	etherTypeQinQOld2 = 0x9200
	etherTypeMPLS     = 0x8847
	etherTypeMPLSMC   = 0x8848
	etherTypeTEB      = 0x6558 // transparent Ethernet bridging: a tunnel carrying Ethernet
	ipProtoIPIP       = 4
	ipProtoTCP        = 6
	ipProtoUDP        = 17
	ipProtoIPv6       = 41
	ipProtoGRE        = 47
	maxTunnelDepth    = 4  // tunnels inside tunnels (VXLAN in GENEVE, GRE in GRE, …)
	maxTags           = 16 // VLAN tags and MPLS labels together
)

// walk is the state of decoding one frame, layer by layer; it lives on Decode's stack.
type walk struct {
	d     *Decoder
	seg   *tcp.Segment
	ts    int64
	encap Encap
	vni   uint32
	depth int // tunnels entered
	tags  int // VLAN tags and MPLS labels stripped
}

// Decode fills seg from f and reports the encapsulation found and the outcome. seg.Payload
// aliases f.Data, or the decoder's buffer for a reassembled IP datagram; either way it is
// valid until the next Decode.
func (d *Decoder) Decode(f *Frame, seg *tcp.Segment) (Encap, Outcome) {
	ts := f.Timestamp
	if ts == 0 {
		ts = time.Now().UnixNano()
	}
	seg.Timestamp = ts
	w := walk{d: d, seg: seg, ts: ts, encap: f.Encap, vni: f.Tunnel}
	var out Outcome
	switch {
	case f.TunnelPayload: // the tunnel header is still there: parsing it enters the tunnel
		if f.Encap == EncapGENEVE {
			out = w.geneve(f.Data)
		} else {
			out = w.vxlan(f.Data)
		}
	case f.Decapsulated && f.InnerIsIP:
		w.depth = 1
		out = w.ip(f.Data)
	case f.Decapsulated:
		w.depth = 1
		out = w.ether(f.Data)
	case f.Link == LinkEthernet:
		w.encap, w.vni = EncapRaw, 0
		out = w.ether(f.Data)
	default:
		w.encap, w.vni = EncapRaw, 0
		out = w.link(f.Link, f.Data)
	}
	if out != OutcomeTCP && out != OutcomeTruncated {
		return w.encap, out
	}
	if w.encap == EncapRaw && !f.Decapsulated && !d.raw {
		return w.encap, OutcomeNotMirrored
	}
	// The host's own traffic is never traced: raw, or inside IP-in-IP and GRE, which is how a
	// host's own tunnels look (a mirror's inner addresses are never the appliance's).
	hostTunnel := w.encap == EncapRaw || w.encap == EncapIPIP || w.encap == EncapGRE
	if d.excluded(seg) || (hostTunnel && d.isLocal(seg.Key.Lo.Addr, seg.Key.Hi.Addr)) {
		return w.encap, OutcomeLocal
	}
	seg.Key.Tunnel = w.vni
	seg.Hash = tcp.SymmetricHash(&seg.Key)
	return w.encap, out
}

// ether parses an Ethernet II header (802.3 frames with a length field carry LLC, not IP).
func (w *walk) ether(b []byte) Outcome {
	if len(b) < 14 {
		return OutcomeMalformed
	}
	return w.etherType(binary.BigEndian.Uint16(b[12:14]), b[14:])
}

// etherType continues after an EtherType: IP, any number of VLAN tags (802.1Q, 802.1ad and
// the older 0x9100/0x9200 S-tags, bounded by maxTags), or an MPLS label stack.
func (w *walk) etherType(et uint16, b []byte) Outcome {
	if et == etherTypeIPv4 { // the common case, ahead of the switch
		return w.ip4(b)
	}
	for {
		switch et {
		case etherTypeIPv4:
			return w.ip4(b)
		case etherTypeIPv6:
			return w.ip6(b)
		case etherTypeVLAN, etherTypeQinQ, etherTypeQinQOld1, etherTypeQinQOld2:
			w.tags++
			if len(b) < 4 || w.tags > maxTags {
				return OutcomeMalformed
			}
			et, b = binary.BigEndian.Uint16(b[2:4]), b[4:]
			continue
		case etherTypeMPLS, etherTypeMPLSMC:
			return w.mpls(b)
		}
		return nonIPEtherType(et)
	}
}

// nonIPEtherType tells a protocol that is simply not IP from an encapsulation that may
// carry IP but is not decoded.
func nonIPEtherType(et uint16) Outcome {
	if et < 0x0600 { // an 802.3 length: LLC/SNAP (STP, CDP, …)
		return OutcomeNonTCP
	}
	switch et {
	case 0x0806, 0x8035, // ARP, RARP
		0x88CC, 0x888E, 0x8809, 0x8808, 0x88F7, 0x8902, // LLDP, 802.1X, slow protocols (LACP), pause, PTP, CFM
		0x9000, 0x0842, 0x8906, 0x8914, 0x8137, 0x809B, 0x80F3, 0x22F0, 0x88E3: // loopback, WoL, FCoE, FIP, IPX, AppleTalk, AARP, AVTP, MRP
		return OutcomeNonTCP
	}
	return OutcomeUnknownEtherType
}

// ip parses an IPv4 or IPv6 header, telling them apart by the version nibble (for
// carriers that do not say which: raw IP captures, NFLOG, MPLS). Where an EtherType or
// protocol number says which, ip4 and ip6 are called directly and check the nibble.
func (w *walk) ip(b []byte) Outcome {
	if len(b) < 1 {
		return OutcomeMalformed
	}
	switch b[0] >> 4 {
	case 4:
		return w.ip4(b)
	case 6:
		return w.ip6(b)
	}
	return OutcomeMalformed
}

func (w *walk) ip4(b []byte) Outcome {
	if len(b) < 20 || b[0]>>4 != 4 {
		return OutcomeMalformed
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if ihl < 20 || total < ihl || len(b) < ihl {
		return OutcomeMalformed
	}
	var src, dst [16]byte
	src[10], src[11], dst[10], dst[11] = 0xff, 0xff, 0xff, 0xff
	copy(src[12:], b[12:16])
	copy(dst[12:], b[16:20])
	proto := b[9]
	var l4 []byte
	short := 0 // bytes the IP length promises beyond what was captured
	if total <= len(b) {
		l4 = b[ihl:total] // drop Ethernet padding
	} else {
		l4, short = b[ihl:], total-len(b)
	}
	if ff := binary.BigEndian.Uint16(b[6:8]); ff&0x3fff != 0 { // MF or an offset
		fr := fragment{off: int(ff&0x1fff) * 8, more: ff&0x2000 != 0, proto: proto, data: l4, length: len(l4) + short,
			key: fragKey{tunnel: w.vni, src: src, dst: dst, id: uint32(binary.BigEndian.Uint16(b[4:6])), proto: proto}}
		return w.fragment(&fr, &src, &dst)
	}
	if proto == ipProtoTCP { // the common case, without the dispatch
		return w.d.tcp(l4, &src, &dst, w.seg, short)
	}
	return w.l4(proto, l4, &src, &dst, short)
}

func (w *walk) ip6(b []byte) Outcome {
	if len(b) < 40 || b[0]>>4 != 6 {
		return OutcomeMalformed
	}
	plen := int(binary.BigEndian.Uint16(b[4:6]))
	var src, dst [16]byte
	copy(src[:], b[8:24])
	copy(dst[:], b[24:40])
	rest := b[40:]
	short := 0
	if plen <= len(rest) {
		rest = rest[:plen]
	} else {
		short = plen - len(rest)
	}
	return w.ip6ext(b[6], rest, &src, &dst, short, false)
}

// ip6ext walks IPv6 extension headers to the transport. A reassembled datagram comes back
// here to walk the headers of its fragmentable part; it may not hold another fragment header.
func (w *walk) ip6ext(proto uint8, rest []byte, src, dst *[16]byte, short int, reassembled bool) Outcome {
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
			if len(rest) < 8 || reassembled {
				return OutcomeMalformed
			}
			fo := binary.BigEndian.Uint16(rest[2:4])
			off, more := int(fo&0xfff8), fo&1 != 0
			if off == 0 && !more { // an atomic fragment (RFC 6946): the whole packet
				proto, rest = rest[0], rest[8:]
				continue
			}
			fr := fragment{off: off, more: more, proto: rest[0], data: rest[8:], length: len(rest) - 8 + short, v6: true,
				key: fragKey{tunnel: w.vni, src: *src, dst: *dst, id: binary.BigEndian.Uint32(rest[4:8]), v6: true}}
			return w.fragment(&fr, src, dst)
		}
		break
	}
	return w.l4(proto, rest, src, dst, short)
}

// l4 dispatches on the transport protocol: TCP, or a tunnel (UDP to a tunnel port, GRE,
// IP in IP).
func (w *walk) l4(proto uint8, b []byte, src, dst *[16]byte, short int) Outcome {
	switch proto {
	case ipProtoTCP:
		return w.d.tcp(b, src, dst, w.seg, short)
	case ipProtoUDP:
		if len(b) < 8 {
			return OutcomeMalformed
		}
		if w.depth >= maxTunnelDepth {
			return OutcomeNonTCP
		}
		dport := binary.BigEndian.Uint16(b[2:4])
		switch {
		case w.d.geneve.has(dport):
			return w.geneve(b[8:])
		case w.d.vxlan.has(dport):
			return w.vxlan(b[8:])
		}
		return OutcomeNonTCP
	case ipProtoGRE:
		if w.depth >= maxTunnelDepth {
			return OutcomeNonTCP
		}
		return w.gre(b)
	case ipProtoIPIP, ipProtoIPv6:
		if w.depth >= maxTunnelDepth {
			return OutcomeNonTCP
		}
		w.enter(EncapIPIP, 0)
		if proto == ipProtoIPIP {
			return w.ip4(b)
		}
		return w.ip6(b)
	}
	return OutcomeNonTCP
}

// enter records a tunnel the frame came through: its id replaces the outer one (the
// innermost tunnel names the flow), and VXLAN inside GENEVE keeps its own label.
func (w *walk) enter(e Encap, id uint32) {
	w.depth++
	w.vni = id
	if e == EncapVXLAN && (w.encap == EncapGENEVE || w.encap == EncapGENEVEVXLAN) {
		e = EncapGENEVEVXLAN
	}
	w.encap = e
}

// tcp fills the segment from a TCP header; short is how many bytes the IP length promised
// beyond the capture.
func (d *Decoder) tcp(b []byte, src, dst *[16]byte, seg *tcp.Segment, short int) Outcome {
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
	s := tcp.Endpoint{Addr: *src, Port: binary.BigEndian.Uint16(b[0:2])}
	t := tcp.Endpoint{Addr: *dst, Port: binary.BigEndian.Uint16(b[2:4])}
	seg.Key, seg.Dir = tcp.NewKey(0, s, t)
	seg.Seq = binary.BigEndian.Uint32(b[4:8])
	seg.Ack = binary.BigEndian.Uint32(b[8:12])
	seg.Flags = b[13]
	seg.Payload = b[hl:] // data carried in a SYN (TCP Fast Open) included
	seg.Missing = short
	if short > 0 {
		return OutcomeTruncated
	}
	return OutcomeTCP
}

func (d *Decoder) isLocal(a, b [16]byte) bool {
	for i := range d.local {
		if a == d.local[i] || b == d.local[i] {
			return true
		}
	}
	return d.liveLocal != nil && (d.liveLocal.Contains(a) || d.liveLocal.Contains(b))
}

func (d *Decoder) excluded(seg *tcp.Segment) bool {
	for _, e := range d.exclude {
		if seg.Key.Lo == e || seg.Key.Hi == e {
			return true
		}
	}
	return false
}
