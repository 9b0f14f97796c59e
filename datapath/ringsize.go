package datapath

import (
	"runtime"

	"github.com/metlo-labs/metlo-appliance/datapath/sysmem"
)

// Capture ring sizing: the kernel-side buffer each live source drains (one XDP ring buffer
// per CPU, one TPACKET_V3 ring per AF_PACKET socket). It absorbs bursts and the moments the
// collector's threads do not get a CPU; whatever does not fit is dropped by the kernel.
const (
	// MaxAutoRingBytes is the automatic size of one ring: at ~700 bytes of ring per mirrored
	// frame, ~95 000 frames — a second of a busy 1 Gbit/s mirror even if the reader got no
	// CPU at all meanwhile.
	MaxAutoRingBytes = 64 << 20
	// MinAutoRingBytes is the smallest automatic size, for hosts with little memory.
	MinAutoRingBytes = 8 << 20
	// ringMemoryShare: all rings together take at most 1/16 of the memory available to
	// the process (its cgroup limit, else the host's RAM).
	ringMemoryShare = 16
)

// AutoRingBytes is the default size of each of rings capture rings: MaxAutoRingBytes,
// lowered so that all of them take at most 1/16 of the memory available (cgroup limit or
// RAM; 0 = unknown), never below MinAutoRingBytes; a power of two.
func AutoRingBytes(rings int, memory int64) int {
	size := int64(MaxAutoRingBytes)
	if memory > 0 && rings > 0 {
		size = min(size, memory/ringMemoryShare/int64(rings))
	}
	size = max(size, MinAutoRingBytes)
	p := int64(1)
	for p*2 <= size {
		p *= 2
	}
	return int(p)
}

// DefaultRingBytes is AutoRingBytes for one ring per CPU on this host.
func DefaultRingBytes() int { return AutoRingBytes(runtime.NumCPU(), sysmem.Available()) }
