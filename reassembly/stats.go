package reassembly

import (
	"github.com/metlo-labs/metlo-appliance/reassembly/http1"
	"github.com/metlo-labs/metlo-appliance/reassembly/http2"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// Stats is a snapshot of one or more assemblers' counters, every layer together.
type Stats struct {
	Segments           uint64
	Flows              int64 // currently tracked
	FlowsCreated       uint64
	FlowsEvicted       uint64
	OutOfOrderSegments uint64
	Gaps               uint64
	FlowsEnded         uint64            // connections that ended (closed, reset, evicted or flushed)
	OneSidedFlows      uint64            // of those, the ones that had shown one direction only
	BufferedBytes      int64             // memory budget in use: out-of-order data, held responses, unemitted bodies
	Drops              map[string]uint64 // by reason, from every layer (same-named reasons of both parsers add up)
	Exchanges          map[string]uint64 // by outcome, HTTP/1 and HTTP/2 together
	// Protocols counts connections by the protocol they were recognised as (http1,
	// http2, other); one upgraded from HTTP/1.1 to HTTP/2 counts under both.
	Protocols   map[string]uint64
	HTTP2Frames map[string]uint64 // HTTP/2 frames by type
	HTTP2Events map[string]uint64 // HTTP/2 events: HPACK misses, framing lost, upgrades, gRPC messages
}

// Stats returns a snapshot of the counters; safe to call from any goroutine.
func (a *Assembler) Stats() Stats {
	t, h, h2 := a.Assembler.Stats(), a.http1.Stats(), a.http2.Stats()
	s := Stats{
		Segments:           t.Segments,
		Flows:              t.Flows,
		FlowsCreated:       t.FlowsCreated,
		FlowsEvicted:       t.FlowsEvicted,
		OutOfOrderSegments: t.OutOfOrderSegments,
		Gaps:               t.Gaps,
		FlowsEnded:         t.Ended,
		OneSidedFlows:      t.OneSided,
		BufferedBytes:      int64(a.budget.Used()),
		Drops:              make(map[string]uint64, int(tcp.NumDrops)+int(http1.NumDrops)+int(http2.NumDrops)),
		Exchanges:          make(map[string]uint64, http1.NumOutcomes),
		Protocols:          make(map[string]uint64, NumProtocols),
		HTTP2Frames:        make(map[string]uint64, http2.NumFrameTypes),
		HTTP2Events:        make(map[string]uint64, http2.NumEvents),
	}
	for d := range tcp.NumDrops {
		s.Drops[d.String()] = t.Drops[d]
	}
	for d := range http1.NumDrops {
		s.Drops[d.String()] += h.Drops[d]
	}
	for d := range http2.NumDrops {
		s.Drops[d.String()] += h2.Drops[d]
	}
	for o := range http1.NumOutcomes {
		s.Exchanges[o.String()] = h.Outcomes[o]
	}
	for o := range http2.NumOutcomes {
		s.Exchanges[o.String()] += h2.Outcomes[o]
	}
	for p := range NumProtocols {
		s.Protocols[p.String()] = a.protocols[p].Load()
	}
	for i := range http2.NumFrameTypes {
		s.HTTP2Frames[http2.FrameTypeName(i)] = h2.Frames[i]
	}
	for e := range http2.NumEvents {
		s.HTTP2Events[e.String()] = h2.Events[e]
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
	s.FlowsEnded += o.FlowsEnded
	s.OneSidedFlows += o.OneSidedFlows
	s.BufferedBytes += o.BufferedBytes
	addMap(&s.Drops, o.Drops)
	addMap(&s.Exchanges, o.Exchanges)
	addMap(&s.Protocols, o.Protocols)
	addMap(&s.HTTP2Frames, o.HTTP2Frames)
	addMap(&s.HTTP2Events, o.HTTP2Events)
}

func addMap(dst *map[string]uint64, src map[string]uint64) {
	if *dst == nil {
		*dst = make(map[string]uint64, len(src))
	}
	for k, v := range src {
		(*dst)[k] += v
	}
}
