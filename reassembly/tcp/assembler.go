package tcp

import (
	"time"
	"unsafe"
)

// connCost is what one tracked connection costs the budget besides its buffers: the Conn
// and its map entry (key, pointer, bucket overhead).
const connCost = int(unsafe.Sizeof(Conn{})) + int(unsafe.Sizeof(FlowKey{})) + 32

// scanInterval is how much packet time passes between timeout scans.
const scanInterval = int64(time.Second)

// Assembler rebuilds the TCP connections of one shard. It is not safe for concurrent use:
// each worker goroutine owns one.
type Assembler struct {
	cfg     Config
	budget  *Budget
	streams StreamFactory
	flows   map[FlowKey]*Conn

	lruHead, lruTail *Conn // all flows, most recently seen first
	pendHead         *Conn // flows waiting on a timer: out-of-order data, a reset, a linger, or their stream's

	now, lastScan int64
	current       *Conn // the connection being worked on: never evicted to make room
	c             counters
}

// NewAssembler returns an assembler whose out-of-order buffers are charged to budget and
// whose connections are consumed by the streams the factory picks.
func NewAssembler(cfg Config, budget *Budget, streams StreamFactory) *Assembler {
	a := &Assembler{cfg: cfg.WithDefaults(), budget: budget, streams: streams, flows: make(map[FlowKey]*Conn)}
	budget.reclaim = a.reclaim
	return a
}

// Stats returns a snapshot of the counters; safe to call from any goroutine.
func (a *Assembler) Stats() Stats { return a.c.snapshot() }

// Now is the assembler's packet time, Unix nanoseconds.
func (a *Assembler) Now() int64 { return a.now }

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
	a.current = f
	f.segment(s)
	a.current = nil
	a.maybeScan()
}

// Advance moves the clock to now (Unix ns) without a packet, so idle flows and waiting
// streams time out while a live source is quiet.
func (a *Assembler) Advance(now int64) {
	if now > a.now {
		a.now = now
	}
	a.maybeScan()
}

// FlushAll closes every connection, as at the end of a capture file or at shutdown:
// buffered data is delivered with its holes as gaps and every stream is closed.
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
		a.current = f
		f.expire()
		f = next
	}
	a.current = nil
}

// reclaim evicts the least recently seen connections, except the one being worked on,
// until need bytes fit the budget: their streams are closed (emitting what they hold) and
// their state is freed.
func (a *Assembler) reclaim(need int) {
	for f := a.lruTail; f != nil && !a.budget.Fits(need); {
		prev := f.prev
		if f != a.current {
			f.finish()
			a.removeFlow(f)
			a.c.drops[DropMemoryFull].Add(1)
			a.c.flowsEvicted.Add(1)
		}
		f = prev
	}
}

func (a *Assembler) newFlow(k FlowKey) *Conn {
	if len(a.flows) >= a.cfg.MaxFlows && a.lruTail != nil {
		old := a.lruTail
		old.finish()
		a.removeFlow(old)
		a.c.drops[DropFlowTableFull].Add(1)
		a.c.flowsEvicted.Add(1)
	}
	a.budget.Require(connCost)
	f := &Conn{key: k, a: a, clientDir: dirUnknown}
	f.half[0].init(f, LoToHi)
	f.half[1].init(f, HiToLo)
	a.flows[k] = f
	a.lruPush(f)
	a.c.flowsCreated.Add(1)
	a.c.flows.Store(int64(len(a.flows)))
	return f
}

func (a *Assembler) removeFlow(f *Conn) {
	a.budget.Release(connCost)
	f.half[0].releaseOOO()
	f.half[1].releaseOOO()
	a.pendRemove(f)
	a.lruRemove(f)
	delete(a.flows, f.key)
	a.c.flows.Store(int64(len(a.flows)))
}

func (a *Assembler) lruPush(f *Conn) {
	f.prev, f.next = nil, a.lruHead
	if a.lruHead != nil {
		a.lruHead.prev = f
	}
	a.lruHead = f
	if a.lruTail == nil {
		a.lruTail = f
	}
}

func (a *Assembler) lruRemove(f *Conn) {
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
func (a *Assembler) pendAdd(f *Conn) {
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

func (a *Assembler) pendRemove(f *Conn) {
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
