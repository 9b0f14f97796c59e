package reassembly

import (
	"github.com/metlo-labs/metlo-appliance/reassembly/http1"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// Stats is a snapshot of one or more assemblers' counters, both layers together.
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
	Drops              map[string]uint64 // by reason, from every layer
	Exchanges          map[string]uint64 // by outcome
}

// Stats returns a snapshot of the counters; safe to call from any goroutine.
func (a *Assembler) Stats() Stats {
	t, h := a.Assembler.Stats(), a.http1.Stats()
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
		Drops:              make(map[string]uint64, int(tcp.NumDrops)+int(http1.NumDrops)),
		Exchanges:          make(map[string]uint64, http1.NumOutcomes),
	}
	for d := range tcp.NumDrops {
		s.Drops[d.String()] = t.Drops[d]
	}
	for d := range http1.NumDrops {
		s.Drops[d.String()] = h.Drops[d]
	}
	for o := range http1.NumOutcomes {
		s.Exchanges[o.String()] = h.Outcomes[o]
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
