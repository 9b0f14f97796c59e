package xdp

import (
	"encoding/binary"
	"net/netip"

	"github.com/metlo-labs/metlo-appliance/datapath"
)

// metaSize is sizeof(struct frame_meta): the header in front of each ring record.
const metaSize = 32

const (
	flagInnerIP    = 0x01 // FRAME_FLAG_INNER_IP
	flagCoarseTime = 0x02 // FRAME_FLAG_COARSE_TIME: timestamp within a tick, not exact
)

// decodeRecord fills f from one ring record (frame_meta, alignment gap, inner frame); f.Data
// aliases raw. It reports false for a record too short for what its header claims.
func decodeRecord(raw []byte, clockOffset int64, f *datapath.Frame) bool {
	if len(raw) < metaSize {
		return false
	}
	capLen := int(binary.LittleEndian.Uint16(raw[20:]))
	off := int(binary.LittleEndian.Uint16(raw[24:]))
	if off < metaSize || off+capLen > len(raw) {
		return false
	}
	*f = datapath.Frame{
		Data:         raw[off : off+capLen : off+capLen],
		WireLen:      int(binary.LittleEndian.Uint32(raw[8:])),
		Timestamp:    int64(binary.LittleEndian.Uint64(raw[0:])) + clockOffset,
		Decapsulated: true,
		InnerIsIP:    raw[23]&flagInnerIP != 0,
		Encap:        datapath.Encap(raw[22]),
		Tunnel:       binary.LittleEndian.Uint32(raw[16:]),
		Hash:         binary.LittleEndian.Uint32(raw[12:]),
	}
	return true
}

// FlowHash is the Go twin of the BPF program's symmetric flow hash over an inner flow:
// swapping source and destination gives the same value. Ports are 0 for non-TCP/UDP
// protocols and IP fragments. Other sources may use it to shard like XDP does.
func FlowHash(src, dst netip.Addr, sport, dport uint16, proto uint8) uint32 {
	a, b := foldAddr(src), foldAddr(dst)
	// The program compares ports as loaded from the packet (network order read as little
	// endian); byte-swap so the min/max choice matches.
	sp, dp := uint32(sport>>8|sport<<8), uint32(dport>>8|dport<<8)
	lo, hi := min(a, b), max(a, b)
	plo, phi := min(sp, dp), max(sp, dp)
	h := mix32(lo ^ 0x9e3779b9)
	h = mix32(h ^ hi)
	h = mix32(h ^ (plo<<16 | phi) ^ uint32(proto)<<8)
	if h == 0 {
		return 1
	}
	return h
}

// foldAddr mirrors the program: an IPv4 address is its 4 bytes read little endian, an IPv6
// address the XOR of its four 32-bit words.
func foldAddr(a netip.Addr) uint32 {
	if a.Is4() {
		b := a.As4()
		return binary.LittleEndian.Uint32(b[:])
	}
	b := a.As16()
	return binary.LittleEndian.Uint32(b[0:]) ^ binary.LittleEndian.Uint32(b[4:]) ^
		binary.LittleEndian.Uint32(b[8:]) ^ binary.LittleEndian.Uint32(b[12:])
}

func mix32(h uint32) uint32 {
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}
