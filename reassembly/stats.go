package reassembly

import "sync/atomic"

// outcome indexes the HTTP outcome counters.
type outcome uint8

const (
	outComplete       outcome = iota // request and response both seen in full
	outNoResponse                    // request emitted after the response timeout or at close
	outTruncated                     // emitted with a body cut at the cap or by a gap
	outOrphanResponse                // response whose request was never seen; counted, not emitted
	outParseError                    // malformed HTTP; the stream resyncs on the next message
	outNonHTTP                       // a connection that does not speak HTTP/1.x; ignored
	nOutcomes
)

var outcomeNames = [nOutcomes]string{"complete", "no_response", "truncated", "orphan_response", "parse_error", "non_http"}

// drop indexes the drop counters.
type drop uint8

const (
	dropFlowTableFull  drop = iota // least recently seen flow evicted to admit a new one
	dropFlowBufferFull             // out-of-order data over the per-flow cap: gap skipped
	dropBufferFull                 // out-of-order data over the global cap: gap skipped
	dropPendingFull                // too many pipelined requests: oldest emitted unanswered
	dropHeaderTooLarge             // header block over MaxHeaderBytes
	dropDuplicate                  // retransmitted or duplicated segment, already seen
	dropClosedFlow                 // data on a connection already closed (late duplicate copies)
	dropBodyMemory                 // a body cut short because unemitted exchanges hold BufferBytes of bodies
	nDrops
)

var dropNames = [nDrops]string{"flow_table_full", "flow_buffer_full", "buffer_full", "pending_full", "header_too_large", "duplicate", "closed_flow", "body_memory"}

// counters are written by the assembler goroutine and read at scrape time from others.
type counters struct {
	segments, flowsCreated, flowsEvicted, outOfOrder, gaps atomic.Uint64
	flows, bufferedBytes                                   atomic.Int64
	drops                                                  [nDrops]atomic.Uint64
	outcomes                                               [nOutcomes]atomic.Uint64
}

// Stats is a snapshot of one or more assemblers' counters.
type Stats struct {
	Segments           uint64
	Flows              int64 // currently tracked
	FlowsCreated       uint64
	FlowsEvicted       uint64
	OutOfOrderSegments uint64
	Gaps               uint64
	BufferedBytes      int64             // out-of-order bytes currently buffered
	Drops              map[string]uint64 // by reason
	Exchanges          map[string]uint64 // by outcome
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Segments:           c.segments.Load(),
		Flows:              c.flows.Load(),
		FlowsCreated:       c.flowsCreated.Load(),
		FlowsEvicted:       c.flowsEvicted.Load(),
		OutOfOrderSegments: c.outOfOrder.Load(),
		Gaps:               c.gaps.Load(),
		BufferedBytes:      c.bufferedBytes.Load(),
		Drops:              make(map[string]uint64, nDrops),
		Exchanges:          make(map[string]uint64, nOutcomes),
	}
	for i := range c.drops {
		s.Drops[dropNames[i]] = c.drops[i].Load()
	}
	for i := range c.outcomes {
		s.Exchanges[outcomeNames[i]] = c.outcomes[i].Load()
	}
	return s
}

// Add accumulates o into s, for summing workers.
func (s *Stats) Add(o Stats) {
	s.Segments += o.Segments
	s.Flows += o.Flows
	s.FlowsCreated += o.FlowsCreated
	s.FlowsEvicted += o.FlowsEvicted
	s.OutOfOrderSegments += o.OutOfOrderSegments
	s.Gaps += o.Gaps
	s.BufferedBytes += o.BufferedBytes
	if s.Drops == nil {
		s.Drops = map[string]uint64{}
	}
	if s.Exchanges == nil {
		s.Exchanges = map[string]uint64{}
	}
	for k, v := range o.Drops {
		s.Drops[k] += v
	}
	for k, v := range o.Exchanges {
		s.Exchanges[k] += v
	}
}
