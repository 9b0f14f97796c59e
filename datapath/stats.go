package datapath

// Capture loss reasons, the reason label of metlo_appliance_capture_dropped_total.
const (
	DropRingBufferFull = "ring_buffer_full" // XDP: the CPU's ring buffer had no room
	DropPacketRingFull = "packet_ring_full" // AF_PACKET: the socket's TPACKET ring had no room
	DropSocketOverflow = "socket_overflow"  // UDP: the socket's receive queue was full
	DropBadRecord      = "bad_record"       // a ring record that does not decode
)

// Tunnel reject reasons, the reason label of metlo_appliance_capture_rejected_total.
const (
	RejectSource = "source" // the outer source address is not an accepted mirror source
	RejectVNI    = "vni"    // the VNI is not an accepted one
)

// SourceStats is what a live source counted itself: frames lost before it could read them
// and tunnel packets it refused.
type SourceStats struct {
	Dropped     map[string]uint64 // by Drop* reason
	RingFreezes uint64            // AF_PACKET: times a ring filled up
	Rejected    map[string]uint64 // by Reject* reason
}

// StatsSource is a Source that counts its own losses.
type StatsSource interface {
	Source
	SourceStats() SourceStats
}
