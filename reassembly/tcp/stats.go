package tcp

import "sync/atomic"

// Drop says why bytes or state were given up.
type Drop uint8

// The drop reasons of the stream layer.
const (
	DropFlowTableFull  Drop = iota // least recently seen flow evicted to admit a new one
	DropFlowBufferFull             // out-of-order data over the per-direction cap: hole declared a gap
	DropBufferFull                 // out-of-order data over the memory budget: hole declared a gap
	DropDuplicate                  // retransmitted or duplicated segment, already seen
	DropClosedFlow                 // data on a connection already closed (late duplicate copies)
	DropMemoryFull                 // least recently seen connection evicted to keep within the memory budget
	NumDrops
)

var dropNames = [NumDrops]string{"flow_table_full", "flow_buffer_full", "buffer_full", "duplicate", "closed_flow", "memory_full"}

// String is the drop's metric label.
func (d Drop) String() string { return dropNames[d] }

// counters are written by the assembler goroutine and read at scrape time from others.
type counters struct {
	segments, flowsCreated, flowsEvicted, outOfOrder, gaps, gapsAcked atomic.Uint64
	ended, oneSided                                                   atomic.Uint64
	flows                                                             atomic.Int64
	drops                                                             [NumDrops]atomic.Uint64
}

// Stats is a snapshot of an assembler's counters.
type Stats struct {
	Segments           uint64
	Flows              int64 // currently tracked
	FlowsCreated       uint64
	FlowsEvicted       uint64
	OutOfOrderSegments uint64
	Gaps               uint64 // holes declared lost
	GapsAcked          uint64 // of those, declared at once because the receiver had acknowledged the bytes
	Ended              uint64 // connections that ended (closed, reset, evicted or flushed)
	OneSided           uint64 // of those, the ones that had shown one direction only
	Drops              [NumDrops]uint64
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Segments:           c.segments.Load(),
		Flows:              c.flows.Load(),
		FlowsCreated:       c.flowsCreated.Load(),
		FlowsEvicted:       c.flowsEvicted.Load(),
		OutOfOrderSegments: c.outOfOrder.Load(),
		Gaps:               c.gaps.Load(),
		GapsAcked:          c.gapsAcked.Load(),
		Ended:              c.ended.Load(),
		OneSided:           c.oneSided.Load(),
	}
	for i := range c.drops {
		s.Drops[i] = c.drops[i].Load()
	}
	return s
}
