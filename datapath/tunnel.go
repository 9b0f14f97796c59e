package datapath

import "encoding/binary"

// Tunnel headers: VXLAN (RFC 7348) and GENEVE (RFC 8926) over UDP, GRE (RFC 2784/2890)
// with what mirrors carry in it (Ethernet, IP, MPLS, ERSPAN types I-III), and MPLS label
// stacks (RFC 3032). Each one validates its header, enters the tunnel and decodes what it
// carries.
//
// Only VXLAN and GENEVE name the flow's tunnel (their VNI, which cloud mirror sessions set
// alike for both directions). A GRE key or an ERSPAN session id does not: real mirrors put
// per-direction values there (testdata/formats/zeek-erspan-gre-frag.pcap, a vSphere mirror,
// keys the two directions 0 and 0x02000000), which would split every connection in two.

// vxlan decodes a VXLAN header and the Ethernet frame after it.
func (w *walk) vxlan(b []byte) Outcome {
	if len(b) < 8 {
		return OutcomeMalformed
	}
	if b[0]&0x08 == 0 { // the I flag: the VNI is valid
		return OutcomeBadTunnel
	}
	w.enter(EncapVXLAN, uint32(b[4])<<16|uint32(b[5])<<8|uint32(b[6]))
	return w.ether(b[8:])
}

// geneve decodes a GENEVE header (options skipped by their length) and the Ethernet frame
// or IP packet after it.
func (w *walk) geneve(b []byte) Outcome {
	if len(b) < 8 {
		return OutcomeMalformed
	}
	if b[0]>>6 != 0 { // version 0 is the only one defined
		return OutcomeBadTunnel
	}
	if b[1]&0x80 != 0 { // O bit: a control message, not a data packet
		return OutcomeNonTCP
	}
	hl := 8 + int(b[0]&0x3f)*4
	if len(b) < hl {
		return OutcomeMalformed
	}
	vni := uint32(b[4])<<16 | uint32(b[5])<<8 | uint32(b[6])
	switch binary.BigEndian.Uint16(b[2:4]) {
	case etherTypeTEB:
		w.enter(EncapGENEVE, vni)
		return w.ether(b[hl:])
	case etherTypeIPv4:
		w.enter(EncapGENEVE, vni)
		return w.ip4(b[hl:])
	case etherTypeIPv6:
		w.enter(EncapGENEVE, vni)
		return w.ip6(b[hl:])
	}
	return OutcomeUnknownGENEVE
}

const (
	greFlagChecksum = 0x80
	greFlagRouting  = 0x40
	greFlagKey      = 0x20
	greFlagSeq      = 0x10
	greProtoERSPAN  = 0x88BE // types I and II
	greProtoERSPAN3 = 0x22EB
)

// gre decodes a GRE header with its optional checksum, key and sequence number.
func (w *walk) gre(b []byte) Outcome {
	if len(b) < 4 {
		return OutcomeMalformed
	}
	flags := b[0]
	if b[1]&0x07 != 0 || flags&greFlagRouting != 0 { // version 1 is PPTP's; RFC 1701 source routing is obsolete
		return OutcomeUnknownGRE
	}
	hl := 4
	if flags&greFlagChecksum != 0 {
		hl += 4
	}
	if flags&greFlagKey != 0 {
		hl += 4
	}
	seq := flags&greFlagSeq != 0
	if seq {
		hl += 4
	}
	if len(b) < hl {
		return OutcomeMalformed
	}
	return w.greProto(binary.BigEndian.Uint16(b[2:4]), seq, b[hl:])
}

// greProto decodes what a GRE header of protocol type proto carries; seq says whether
// the header had a sequence number (ERSPAN type II has one, type I not).
func (w *walk) greProto(proto uint16, seq bool, p []byte) Outcome {
	switch proto {
	case etherTypeTEB:
		w.enter(EncapGRE, 0)
		return w.ether(p)
	case etherTypeIPv4:
		w.enter(EncapGRE, 0)
		return w.ip4(p)
	case etherTypeIPv6:
		w.enter(EncapGRE, 0)
		return w.ip6(p)
	case etherTypeMPLS, etherTypeMPLSMC:
		w.enter(EncapGRE, 0)
		return w.mpls(p)
	case greProtoERSPAN:
		if !seq { // type I: the mirrored frame follows GRE directly
			w.enter(EncapERSPAN1, 0)
			return w.ether(p)
		}
		return w.erspan2(p)
	case greProtoERSPAN3:
		return w.erspan3(p)
	}
	return OutcomeUnknownGRE
}

// erspan2 decodes the 8-byte ERSPAN type II header (version 1) and the mirrored frame.
func (w *walk) erspan2(b []byte) Outcome {
	if len(b) < 8 {
		return OutcomeMalformed
	}
	if b[0]>>4 != 1 {
		return OutcomeBadTunnel
	}
	w.enter(EncapERSPAN2, 0)
	return w.ether(b[8:])
}

// erspan3 decodes the 12-byte ERSPAN type III header (version 2), the 8-byte platform
// subheader its O bit announces, and the mirrored Ethernet frame or IP packet (frame type
// 0 or 2).
func (w *walk) erspan3(b []byte) Outcome {
	if len(b) < 12 {
		return OutcomeMalformed
	}
	if b[0]>>4 != 2 {
		return OutcomeBadTunnel
	}
	hl := 12
	if b[11]&0x01 != 0 {
		hl += 8
	}
	if len(b) < hl {
		return OutcomeMalformed
	}
	switch (b[10] >> 2) & 0x1f {
	case 0:
		w.enter(EncapERSPAN3, 0)
		return w.ether(b[hl:])
	case 2:
		w.enter(EncapERSPAN3, 0)
		return w.ip(b[hl:])
	}
	return OutcomeUnknownERSPAN
}

// mpls pops a label stack to its bottom and decodes the payload: IP (by its version
// nibble), or an Ethernet pseudowire behind an RFC 4385 control word (first nibble 0).
func (w *walk) mpls(b []byte) Outcome {
	for {
		w.tags++
		if len(b) < 4 || w.tags > maxTags {
			return OutcomeMalformed
		}
		bottom := b[2]&0x01 != 0
		b = b[4:]
		if bottom {
			break
		}
	}
	if len(b) == 0 {
		return OutcomeMalformed
	}
	switch b[0] >> 4 {
	case 4, 6:
		return w.ip(b)
	case 0:
		if len(b) < 4 {
			return OutcomeMalformed
		}
		return w.ether(b[4:])
	}
	return OutcomeUnknownMPLS
}
