package reassembly

import (
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"time"
)

// scanInterval is how much packet time passes between timeout scans.
const scanInterval = int64(time.Second)

// Assembler rebuilds the TCP connections of one shard and turns their HTTP into exchanges.
// It is not safe for concurrent use: each worker goroutine owns one. Time advances only
// with the timestamps it is given, so replaying a capture is deterministic.
type Assembler struct {
	cfg   Config
	out   exchange.Handler
	flows map[FlowKey]*flow

	lruHead, lruTail *flow // all flows, most recently seen first
	pendHead         *flow // flows holding requests, held responses or out-of-order data

	now, lastScan int64
	buffered      int // out-of-order bytes across all flows
	bodyBytes     int // body bytes held by exchanges not yet emitted
	c             counters
}

// NewAssembler returns an assembler that hands finished exchanges to out.
func NewAssembler(cfg Config, out exchange.Handler) *Assembler {
	return &Assembler{cfg: cfg.WithDefaults(), out: out, flows: make(map[FlowKey]*flow)}
}

// Stats returns a snapshot of the counters; safe to call from any goroutine.
func (a *Assembler) Stats() Stats { return a.c.snapshot() }

// Segment processes one TCP segment. s.Payload is not retained.
func (a *Assembler) Segment(s *Segment) {
	a.c.segments.Add(1)
	if s.Timestamp > a.now {
		a.now = s.Timestamp
	}
	f := a.flows[s.Key]
	if f == nil {
		// A bare ACK, FIN or RST of an unknown connection carries nothing to rebuild.
		if s.Flags&FlagRST != 0 || (len(s.Payload) == 0 && s.Flags&FlagSYN == 0) {
			a.maybeScan()
			return
		}
		f = a.newFlow(s.Key)
	} else if f != a.lruHead {
		a.lruRemove(f)
		a.lruPush(f)
	}
	f.lastSeen = a.now
	f.segment(s)
	a.maybeScan()
}

// Advance moves the assembler's clock to now (Unix ns) without a packet, so idle flows
// and unanswered requests time out while a live source is quiet.
func (a *Assembler) Advance(now int64) {
	if now > a.now {
		a.now = now
	}
	a.maybeScan()
}

// FlushAll finishes every flow as if its connection closed: pending requests are emitted
// and all state is released. Used at the end of a capture file and at shutdown.
func (a *Assembler) FlushAll() {
	for f := a.lruHead; f != nil; {
		next := f.next
		f.finish()
		a.removeFlow(f)
		f = next
	}
}

func (a *Assembler) maybeScan() {
	if a.now-a.lastScan < scanInterval {
		return
	}
	a.lastScan = a.now
	idleBefore := a.now - int64(a.cfg.IdleTimeout)
	for f := a.lruTail; f != nil && f.lastSeen < idleBefore; f = a.lruTail {
		f.finish()
		a.removeFlow(f)
		a.c.flowsEvicted.Add(1)
	}
	for f := a.pendHead; f != nil; {
		next := f.pnext
		f.expire()
		f = next
	}
}

func (a *Assembler) newFlow(k FlowKey) *flow {
	if len(a.flows) >= a.cfg.MaxFlows && a.lruTail != nil {
		old := a.lruTail
		old.finish()
		a.removeFlow(old)
		a.c.drops[dropFlowTableFull].Add(1)
		a.c.flowsEvicted.Add(1)
	}
	f := &flow{key: k, a: a, clientDir: dirUnknown}
	f.half[0].init(f, LoToHi)
	f.half[1].init(f, HiToLo)
	a.flows[k] = f
	a.lruPush(f)
	a.c.flowsCreated.Add(1)
	a.c.flows.Store(int64(len(a.flows)))
	return f
}

func (a *Assembler) removeFlow(f *flow) {
	f.half[0].releaseOOO()
	f.half[1].releaseOOO()
	a.pendRemove(f)
	a.lruRemove(f)
	delete(a.flows, f.key)
	a.c.flows.Store(int64(len(a.flows)))
}

func (a *Assembler) lruPush(f *flow) {
	f.prev, f.next = nil, a.lruHead
	if a.lruHead != nil {
		a.lruHead.prev = f
	}
	a.lruHead = f
	if a.lruTail == nil {
		a.lruTail = f
	}
}

func (a *Assembler) lruRemove(f *flow) {
	if f.prev != nil {
		f.prev.next = f.next
	} else {
		a.lruHead = f.next
	}
	if f.next != nil {
		f.next.prev = f.prev
	} else {
		a.lruTail = f.prev
	}
	f.prev, f.next = nil, nil
}

// pendAdd puts f on the list the timeout scan walks.
func (a *Assembler) pendAdd(f *flow) {
	if f.inPend {
		return
	}
	f.inPend = true
	f.pprev, f.pnext = nil, a.pendHead
	if a.pendHead != nil {
		a.pendHead.pprev = f
	}
	a.pendHead = f
}

func (a *Assembler) pendRemove(f *flow) {
	if !f.inPend {
		return
	}
	f.inPend = false
	if f.pprev != nil {
		f.pprev.pnext = f.pnext
	} else {
		a.pendHead = f.pnext
	}
	if f.pnext != nil {
		f.pnext.pprev = f.pprev
	}
	f.pprev, f.pnext = nil, nil
}

func (a *Assembler) addBuffered(n int) {
	a.buffered += n
	a.c.bufferedBytes.Store(int64(a.buffered))
}

// emit hands a finished exchange on and counts its outcome.
func (a *Assembler) emit(st *exState) {
	ex := &st.ex
	a.bodyBytes -= len(ex.Request.Body) + len(ex.Response.Body)
	switch {
	case ex.Flags&exchange.FlagNoResponse != 0:
		a.c.outcomes[outNoResponse].Add(1)
	case ex.Request.BodyTruncated || ex.Response.BodyTruncated || ex.Flags&(exchange.FlagGap|exchange.FlagIncomplete) != 0:
		a.c.outcomes[outTruncated].Add(1)
	default:
		a.c.outcomes[outComplete].Add(1)
	}
	a.out.HandleExchange(ex)
}
