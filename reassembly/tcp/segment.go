package tcp

import (
	"encoding/binary"
	"net/netip"
)

// TCP flag bits as they appear in the TCP header's flags byte.
const (
	FlagFIN uint8 = 0x01
	FlagSYN uint8 = 0x02
	FlagRST uint8 = 0x04
	FlagPSH uint8 = 0x08
	FlagACK uint8 = 0x10
)

// Endpoint is one side of a connection: a 16-byte address (IPv4 as v4-in-v6) and a port.
type Endpoint struct {
	Addr [16]byte
	Port uint16
}

// AddrPort converts the endpoint to a netip.AddrPort, unmapping IPv4.
func (e Endpoint) AddrPort() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(e.Addr).Unmap(), e.Port)
}

// Less orders endpoints so that both directions of a flow share one canonical key.
func (e Endpoint) Less(o Endpoint) bool {
	for i := range e.Addr {
		if e.Addr[i] != o.Addr[i] {
			return e.Addr[i] < o.Addr[i]
		}
	}
	return e.Port < o.Port
}

// FlowKey identifies a TCP connection independent of direction: tunnel id plus the two
// endpoints in canonical order (Lo.Less(Hi)). Outer addresses are deliberately not part
// of it, so a connection mirrored from both of its ENIs collapses into one flow.
type FlowKey struct {
	Tunnel uint32 // VNI (VXLAN/GENEVE), 0 for raw capture
	Lo, Hi Endpoint
}

// Dir says which way a segment travels within its flow.
type Dir uint8

const (
	// LoToHi is a segment sent from FlowKey.Lo to FlowKey.Hi.
	LoToHi Dir = 0
	// HiToLo is a segment sent from FlowKey.Hi to FlowKey.Lo.
	HiToLo Dir = 1
)

// Segment is one decoded TCP segment handed from the datapath to reassembly.
// Payload aliases the capture buffer and is valid only for the duration of the call.
type Segment struct {
	Key       FlowKey
	Dir       Dir
	Seq, Ack  uint32
	Flags     uint8
	Payload   []byte
	Missing   int   // payload bytes the IP/TCP lengths promise but the capture lacks (cloud truncation)
	Timestamp int64 // capture time, Unix nanoseconds; never zero (the datapath fills wall clock)
	Hash      uint32
}

// NewKey builds the canonical key and direction for a segment from src to dst.
func NewKey(tunnel uint32, src, dst Endpoint) (FlowKey, Dir) {
	if dst.Less(src) {
		return FlowKey{Tunnel: tunnel, Lo: dst, Hi: src}, HiToLo
	}
	return FlowKey{Tunnel: tunnel, Lo: src, Hi: dst}, LoToHi
}

// SymmetricHash hashes a flow key; both directions of a connection hash alike because the
// key is canonical. It folds the key as 64-bit words with multiply-xorshift mixing: cheap,
// allocation-free and well spread in the low bits used to pick a worker.
func SymmetricHash(k *FlowKey) uint32 {
	le := binary.LittleEndian
	h := uint64(k.Tunnel)<<32 | uint64(k.Lo.Port)<<16 | uint64(k.Hi.Port)
	for _, w := range [4]uint64{le.Uint64(k.Lo.Addr[:8]), le.Uint64(k.Lo.Addr[8:]), le.Uint64(k.Hi.Addr[:8]), le.Uint64(k.Hi.Addr[8:])} {
		h = (h ^ w) * 0x9E3779B97F4A7C15
		h ^= h >> 29
	}
	h *= 0xBF58476D1CE4E5B9
	h ^= h >> 32
	return uint32(h)
}
