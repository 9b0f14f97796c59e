package datapath

import (
	"encoding/binary"
	"fmt"
)

// Link is the link-layer header a frame starts with (capture files other than Ethernet:
// `tcpdump -i any`, tunnel interfaces, BSD loopback, NFLOG). Live sources deliver Ethernet.
type Link uint8

// Link-layer headers the decoder reads.
const (
	LinkEthernet Link = iota // Ethernet II / 802.3 (pcap LINKTYPE_ETHERNET, 1)
	LinkSLL                  // Linux "cooked" capture v1, 16-byte header (113)
	LinkSLL2                 // Linux "cooked" capture v2, 20-byte header (276; `tcpdump -i any`)
	LinkRawIP                // a bare IPv4 or IPv6 packet (101, 228, 229)
	LinkNull                 // BSD loopback: a 4-byte address family, in either byte order (0, 108)
	LinkNFLOG                // Linux netfilter log: a 4-byte header, then TLVs, the packet in NFULA_PAYLOAD (239)
	LinkUnknown              // a link type the decoder cannot read; its frames count as unknown_link
)

var linkNames = [...]string{"ethernet", "linux_sll", "linux_sll2", "raw_ip", "null", "nflog", "unknown"}

// String names the link type.
func (l Link) String() string {
	if int(l) < len(linkNames) {
		return linkNames[l]
	}
	return "unknown"
}

// LinkFromPcap maps a pcap/pcapng LINKTYPE_ value to the Link the decoder reads; ok is false
// for link types it cannot read.
func LinkFromPcap(linkType uint32) (l Link, ok bool) {
	switch linkType {
	case 1:
		return LinkEthernet, true
	case 113:
		return LinkSLL, true
	case 276:
		return LinkSLL2, true
	case 101, 228, 229, 12, 14: // LINKTYPE_RAW, _IPV4, _IPV6; 12 and 14 are DLT_RAW as some BSDs wrote it
		return LinkRawIP, true
	case 0, 108: // LINKTYPE_NULL (host byte order), LINKTYPE_LOOP (network byte order)
		return LinkNull, true
	case 239:
		return LinkNFLOG, true
	}
	return LinkUnknown, false
}

// SupportedLinkTypes describes the link types LinkFromPcap accepts, for error messages.
const SupportedLinkTypes = "Ethernet (1), Linux SLL (113), Linux SLL2 (276), raw IP (101, 228, 229), BSD loopback (0, 108), NFLOG (239)"

// LinkTypeError says a capture's link type cannot be decoded.
type LinkTypeError struct {
	Name string // the link type's name as the capture library knows it
	Type uint32
}

func (e *LinkTypeError) Error() string {
	return fmt.Sprintf("unsupported link type %s (%d): readable link types are %s", e.Name, e.Type, SupportedLinkTypes)
}

const (
	arphrdIPGRE      = 778 // a Linux GRE tunnel interface: the cooked header is followed by GRE
	sllLen           = 16
	sll2Len          = 20
	nflogHdrLen      = 4
	nflogTypePayload = 9 // NFULA_PAYLOAD: the logged packet, starting at its IP header
)

// link strips the link-layer header named by l and decodes what follows.
func (w *walk) link(l Link, b []byte) Outcome {
	switch l {
	case LinkEthernet:
		return w.ether(b)
	case LinkSLL:
		if len(b) < sllLen {
			return OutcomeMalformed
		}
		return w.cooked(binary.BigEndian.Uint16(b[2:4]), binary.BigEndian.Uint16(b[14:16]), b[sllLen:])
	case LinkSLL2:
		if len(b) < sll2Len {
			return OutcomeMalformed
		}
		return w.cooked(binary.BigEndian.Uint16(b[8:10]), binary.BigEndian.Uint16(b[0:2]), b[sll2Len:])
	case LinkRawIP:
		return w.ip(b)
	case LinkNull:
		return w.null(b)
	case LinkNFLOG:
		return w.nflog(b)
	}
	return OutcomeUnknownLink
}

// cooked continues after a Linux cooked header: proto is an EtherType, except on GRE
// tunnel devices, where it is the GRE protocol type of what follows (the kernel already
// removed the GRE header; ERSPAN II tells itself from type I by its version nibble).
func (w *walk) cooked(arphrd, proto uint16, b []byte) Outcome {
	if arphrd == arphrdIPGRE {
		return w.greProto(proto, len(b) > 0 && b[0]>>4 == 1, b)
	}
	return w.etherType(proto, b)
}

// null reads a BSD loopback header: the address family as a 32-bit word in the capturing
// host's byte order (LINKTYPE_NULL) or in network order (LINKTYPE_LOOP). Either way the
// value is small, so whichever half is zero gives the order away.
func (w *walk) null(b []byte) Outcome {
	if len(b) < 4 {
		return OutcomeMalformed
	}
	af := uint32(binary.LittleEndian.Uint32(b))
	if af > 0xffff {
		af = binary.BigEndian.Uint32(b)
	}
	switch af {
	case 2: // AF_INET everywhere
		return w.ip4(b[4:])
	case 10, 24, 28, 30: // AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, Darwin
		return w.ip6(b[4:])
	}
	return OutcomeNonTCP
}

// nflog decodes the packet a netfilter log record carries.
func (w *walk) nflog(b []byte) Outcome {
	p, out := nflogPayload(b)
	if out != OutcomeTCP {
		return out
	}
	return w.ip(p)
}

// nflogPayload finds the NFULA_PAYLOAD TLV of a netfilter log record (OutcomeTCP when
// found). TLV lengths and types are in the logging host's byte order; the first TLV's
// type (small, never 0) tells which.
func nflogPayload(b []byte) ([]byte, Outcome) {
	if len(b) < nflogHdrLen+4 || b[1] != 0 { // version 0 is the only one
		return nil, OutcomeMalformed
	}
	var bo binary.ByteOrder = binary.LittleEndian
	switch t := b[nflogHdrLen+2 : nflogHdrLen+4]; {
	case t[1] == 0 && t[0] != 0:
	case t[0] == 0 && t[1] != 0:
		bo = binary.BigEndian
	default:
		return nil, OutcomeMalformed
	}
	for off := nflogHdrLen; off+4 <= len(b); {
		n := int(bo.Uint16(b[off:]))
		typ := bo.Uint16(b[off+2:]) & 0x7fff // the top bit marks a nested TLV
		if n < 4 || off+n > len(b) {
			return nil, OutcomeMalformed
		}
		if typ == nflogTypePayload {
			return b[off+4 : off+n], OutcomeTCP
		}
		off += (n + 3) &^ 3
	}
	return nil, OutcomeNonTCP // logged without its packet (nflog size 0)
}

// linkNetwork finds the network-layer packet behind a link header other than Ethernet and
// its EtherType (from the header, or from the IP version where the header does not say),
// for checks made before decoding (the outer-source accept filter).
func linkNetwork(l Link, b []byte) (et uint16, packet []byte, ok bool) {
	switch l {
	case LinkSLL:
		if len(b) < sllLen || binary.BigEndian.Uint16(b[2:4]) == arphrdIPGRE {
			return 0, nil, false
		}
		return binary.BigEndian.Uint16(b[14:16]), b[sllLen:], true
	case LinkSLL2:
		if len(b) < sll2Len || binary.BigEndian.Uint16(b[8:10]) == arphrdIPGRE {
			return 0, nil, false
		}
		return binary.BigEndian.Uint16(b[0:2]), b[sll2Len:], true
	case LinkNull:
		if len(b) < 4 {
			return 0, nil, false
		}
		b = b[4:]
	case LinkNFLOG:
		p, out := nflogPayload(b)
		if out != OutcomeTCP {
			return 0, nil, false
		}
		b = p
	case LinkRawIP:
	default:
		return 0, nil, false
	}
	switch {
	case len(b) > 0 && b[0]>>4 == 4:
		return etherTypeIPv4, b, true
	case len(b) > 0 && b[0]>>4 == 6:
		return etherTypeIPv6, b, true
	}
	return 0, nil, false
}
