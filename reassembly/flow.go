package reassembly

import (
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"time"
)

const dirUnknown int8 = -1

// closeLinger is how long a finished connection is remembered.
const closeLinger = 5 * time.Second

// flow is one TCP connection: two half-streams plus the FIFO of requests awaiting replies.
type flow struct {
	key          FlowKey
	a            *Assembler
	prev, next   *flow // LRU
	pprev, pnext *flow // pending-work list
	inPend       bool
	lastSeen     int64

	half      [2]half
	clientDir int8 // index into half of the client side, or dirUnknown
	closed    bool // finished; late copies of its segments are ignored
	closedAt  int64
	resetAt   int64 // packet time of an RST; the flow finishes a reorder timeout later
	ignored   bool  // not HTTP, or switched protocols: bytes are no longer parsed
	nonHTTP   bool
	httpSeen  bool // at least one message parsed: later garbage is an error, not "not HTTP"
	pipelined bool // more than one request was ever outstanding

	pending []*exState // requests awaiting a response, oldest first
}

// exState is an exchange under construction.
type exState struct {
	ex       exchange.Exchange
	startSeq uint32 // client sequence number of the request's first byte
	reqTime  int64
	reqDone  bool
	respDone bool
}

// oooSeg is an out-of-order segment copied aside until the bytes before it arrive.
type oooSeg struct {
	seq     uint32
	ack     uint32 // its ACK: pairing checks which request the server had seen
	hasAck  bool
	data    []byte
	missing int
	fin     bool
	ts      int64 // packet time
	arrived int64 // assembler time when it was buffered, for the reorder timeout
}

func (f *flow) segment(s *Segment) {
	h := &f.half[s.Dir]
	if s.Flags&FlagSYN != 0 && !f.closed && (h.synSeen && s.Seq != h.isn || !h.synSeen && f.resetAt != 0) {
		// A new connection reuses the 5-tuple and its predecessor's close was never
		// captured: its sequence numbers have nothing to do with the old stream's.
		f.finish()
		f.reopen()
	}
	if f.closed {
		// A SYN reuses the 5-tuple, unless it is a late copy of this connection's own SYN
		// (the other ENI's mirror of a short connection can lag a whole connection behind).
		if s.Flags&(FlagSYN|FlagACK) == FlagSYN && !(h.synSeen && s.Seq == h.isn) {
			f.reopen()
		} else {
			if len(s.Payload) > 0 {
				f.a.c.drops[dropClosedFlow].Add(1)
			}
			return
		}
	}
	if s.Flags&FlagSYN != 0 {
		if s.Flags&FlagACK == 0 {
			f.clientDir = int8(s.Dir)
		} else if f.clientDir == dirUnknown {
			f.clientDir = int8(1 - s.Dir)
		}
		if !h.synSeen {
			h.synSeen, h.isn = true, s.Seq
		}
		if !h.synced {
			h.synced, h.nextSeq = true, s.Seq+1
			h.drainOOO() // data that overtook the SYN
		}
		return
	}
	if s.Flags&FlagRST != 0 {
		// The other direction's last bytes (the reply the RST follows) may still be on a
		// slower capture queue: finish once the reorder timeout has passed.
		if f.resetAt == 0 {
			f.resetAt = f.a.now
			f.a.pendAdd(f)
		}
		return
	}
	h.ack, h.hasAck, h.ts = s.Ack, s.Flags&FlagACK != 0, s.Timestamp
	f.half[0].checkReorderTimeout()
	f.half[1].checkReorderTimeout()

	payload, seq, missing, fin := s.Payload, s.Seq, s.Missing, s.Flags&FlagFIN != 0
	if !h.synced {
		// No SYN seen yet for this direction. Copies travel different queues, so earlier
		// bytes (or the SYN) may still be on their way: hold the data aside until the SYN
		// arrives or the reorder timeout passes, then start at the lowest sequence number.
		// A bare ACK says nothing about where the data starts.
		if len(payload) > 0 || fin || missing > 0 {
			f.a.c.outOfOrder.Add(1)
			h.bufferOOO(seq, payload, missing, fin)
		}
		return
	}
	diff := int32(seq - h.nextSeq)
	if diff > 0 {
		f.a.c.outOfOrder.Add(1)
		h.bufferOOO(seq, payload, missing, fin)
		return
	}
	if diff < 0 {
		trim := int(-diff)
		total := len(payload) + missing
		if trim >= total {
			if total > 0 {
				f.a.c.drops[dropDuplicate].Add(1)
			}
			if fin && trim == total && !h.fin {
				h.deliver(nil, 0, true)
			}
			return
		}
		if trim <= len(payload) {
			payload = payload[trim:]
		} else {
			missing -= trim - len(payload)
			payload = nil
		}
	}
	h.deliver(payload, missing, fin)
	h.drainOOO()
}

// reopen forgets a finished connection so a new one on the same 5-tuple starts clean.
func (f *flow) reopen() {
	f.half[0].releaseOOO()
	f.half[1].releaseOOO()
	f.half[0].init(f, LoToHi)
	f.half[1].init(f, HiToLo)
	f.clientDir, f.closed, f.ignored, f.nonHTTP, f.httpSeen, f.pipelined = dirUnknown, false, false, false, false, false
	f.resetAt = 0
	f.pending = nil
}

// finish ends the connection: messages cut short are completed as incomplete and every
// request still waiting is emitted without a response.
func (f *flow) finish() {
	if f.closed {
		return
	}
	for i := range f.half {
		f.half[i].forceDrain()
	}
	// Held responses are replayed first (paired where their request arrived meanwhile),
	// then the server side ends, so a response cut short by the close is attached before
	// the requests that are still waiting are emitted.
	for i := range f.half {
		f.half[i].releaseHold(true)
	}
	if f.clientDir != dirUnknown {
		f.half[1-f.clientDir].eof()
		f.half[f.clientDir].eof()
	}
	for _, st := range f.pending {
		if st.ex.Response.Status == 0 {
			st.ex.Flags |= exchange.FlagNoResponse
		}
		f.a.emit(st)
	}
	f.pending = nil
	f.closed = true
	f.closedAt = f.a.now
	f.half[0].dropBuffers()
	f.half[1].dropBuffers()
	// Linger briefly so late copies of its segments (the other ENI's mirror, retransmits)
	// are recognised as belonging to a finished connection, then forget it.
	f.a.pendAdd(f)
}

// expire runs the timeouts of a flow on the pending list.
func (f *flow) expire() {
	now, cfg := f.a.now, &f.a.cfg
	if f.closed {
		if now-f.closedAt > int64(closeLinger) {
			f.a.removeFlow(f)
		}
		return
	}
	if f.resetAt != 0 && now-f.resetAt > int64(cfg.ReorderTimeout) {
		f.finish()
		return
	}
	f.half[0].checkReorderTimeout()
	f.half[1].checkReorderTimeout()
	// A held response waits for its request as long as a request waits for its response.
	// Not just the reorder timeout: a live source with several rings (AF_PACKET fanout
	// splits a VXLAN flow's two directions by outer UDP port) can process one direction
	// seconds behind the other when the host is busy, while the other ring's packets
	// move the clock on. Held bytes stay under the buffer caps, and the next request on
	// the connection releases them anyway.
	for i := range f.half {
		h := &f.half[i]
		if h.state == stHold && now-h.holdTS > int64(cfg.ResponseTimeout) {
			h.releaseHold(true)
		}
	}
	deadline := now - int64(cfg.ResponseTimeout)
	for len(f.pending) > 0 && f.pending[0].reqDone && f.pending[0].reqTime < deadline {
		st := f.popPending()
		st.ex.Flags |= exchange.FlagNoResponse
		f.a.emit(st)
	}
	// A flow the timeouts above just closed stays listed until its linger ends.
	if !f.closed && !f.hasPendingWork() {
		f.a.pendRemove(f)
	}
}

func (f *flow) hasPendingWork() bool {
	return f.resetAt != 0 || len(f.pending) > 0 || len(f.half[0].ooo) > 0 || len(f.half[1].ooo) > 0 ||
		f.half[0].state == stHold || f.half[1].state == stHold
}

// enqueue adds a request to the FIFO that responses are paired from.
func (f *flow) enqueue(st *exState) {
	if len(f.pending) >= f.a.cfg.MaxPending {
		old := f.popPending()
		old.ex.Flags |= exchange.FlagNoResponse
		f.a.c.drops[dropPendingFull].Add(1)
		if old.reqDone {
			f.a.emit(old)
		} else {
			old.respDone = true // emitted when the request completes
		}
	}
	f.pending = append(f.pending, st)
	if len(f.pending) > 1 {
		f.pipelined = true
	}
	f.a.pendAdd(f)
	if f.clientDir != dirUnknown {
		if srv := &f.half[1-f.clientDir]; srv.state == stHold {
			srv.releaseHold(false)
		}
	}
}

// popPending removes the oldest pending request. It shifts in place rather than
// reslicing, so the backing array neither grows on every request nor keeps emitted
// exchanges alive.
func (f *flow) popPending() *exState {
	st := f.pending[0]
	n := copy(f.pending, f.pending[1:])
	f.pending[n] = nil
	f.pending = f.pending[:n]
	return st
}

// ignore stops parsing the connection (not HTTP, or it switched protocols).
func (f *flow) ignore() {
	f.ignored = true
	for i := range f.half {
		if h := &f.half[i]; h.cur != nil { // a request body the switch cut short
			h.cur.ex.Flags |= exchange.FlagIncomplete
			h.finishSide()
		}
		f.half[i].state = stIgnore
		f.half[i].dropBuffers()
	}
}

// reorder timeout helper shared by expire and segment.
func (h *half) checkReorderTimeout() {
	if len(h.ooo) > 0 && h.f.a.now-h.ooo[0].arrived > int64(h.f.a.cfg.ReorderTimeout) {
		h.forceDrain()
	}
}

// bufferOOO copies a segment that arrived ahead of a missing one.
func (h *half) bufferOOO(seq uint32, payload []byte, missing int, fin bool) {
	a := h.f.a
	if len(payload) == 0 && !fin && missing == 0 {
		return // a bare ACK ahead of the stream tells nothing
	}
	overflow := nDrops
	switch {
	case h.oooBytes+len(payload) > a.cfg.FlowBufferBytes:
		overflow = dropFlowBufferFull
	case a.buffered+len(payload) > a.cfg.BufferBytes:
		overflow = dropBufferFull
	}
	if overflow != nDrops {
		// Out of room: stop waiting for the missing bytes, deliver what is buffered and
		// this segment, with the holes reported as gaps.
		a.c.drops[overflow].Add(1)
		h.forceDrain()
		if !h.synced {
			h.syncMidstream(seq)
		}
		h.skipTo(seq)
		h.deliver(payload, missing, fin)
		h.drainOOO()
		return
	}
	i := len(h.ooo)
	for i > 0 && int32(h.ooo[i-1].seq-seq) > 0 {
		i--
	}
	if i > 0 && h.ooo[i-1].seq == seq && len(h.ooo[i-1].data) >= len(payload) {
		a.c.drops[dropDuplicate].Add(1)
		return
	}
	s := oooSeg{seq: seq, ack: h.ack, hasAck: h.hasAck, data: append([]byte(nil), payload...), missing: missing, fin: fin, ts: h.ts, arrived: a.now}
	h.ooo = append(h.ooo, oooSeg{})
	copy(h.ooo[i+1:], h.ooo[i:])
	h.ooo[i] = s
	h.oooBytes += len(payload)
	a.addBuffered(len(payload))
	a.pendAdd(h.f)
}

// drainOOO delivers buffered segments that have become contiguous.
func (h *half) drainOOO() {
	for len(h.ooo) > 0 && int32(h.ooo[0].seq-h.nextSeq) <= 0 && !h.f.closed {
		s := h.popOOO()
		h.ack, h.hasAck, h.ts = s.ack, s.hasAck, s.ts
		trim := int(h.nextSeq - s.seq)
		total := len(s.data) + s.missing
		if trim >= total {
			if s.fin && trim == total && !h.fin {
				h.deliver(nil, 0, true)
			}
			continue
		}
		data, missing := s.data, s.missing
		if trim <= len(data) {
			data = data[trim:]
		} else {
			missing -= trim - len(data)
			data = nil
		}
		h.deliver(data, missing, s.fin)
	}
}

func (h *half) popOOO() oooSeg {
	s := h.ooo[0]
	h.ooo[0] = oooSeg{}
	h.ooo = h.ooo[1:]
	if len(h.ooo) == 0 {
		h.ooo = nil
	}
	h.oooBytes -= len(s.data)
	h.f.a.addBuffered(-len(s.data))
	return s
}

// forceDrain gives up waiting for missing bytes: every buffered segment is delivered in
// order with the holes between them reported as gaps.
func (h *half) forceDrain() {
	if !h.synced && len(h.ooo) > 0 {
		h.syncMidstream(h.ooo[0].seq)
	}
	for len(h.ooo) > 0 && !h.f.closed {
		h.skipTo(h.ooo[0].seq)
		h.drainOOO()
	}
}

// syncMidstream starts a direction whose SYN was never seen at seq; the parser hunts for
// the next message start, since seq may fall inside one.
func (h *half) syncMidstream(seq uint32) {
	h.synced, h.nextSeq = true, seq
	if h.state == stStart {
		h.state = stResync
	}
}

// skipTo declares the bytes up to seq lost.
func (h *half) skipTo(seq uint32) {
	if n := int32(seq - h.nextSeq); n > 0 {
		h.nextSeq = seq
		h.gap(int(n))
	}
}

func (h *half) releaseOOO() {
	for len(h.ooo) > 0 {
		h.popOOO()
	}
}

// deliver passes in-order bytes to the parser and advances the stream.
func (h *half) deliver(payload []byte, missing int, fin bool) {
	if len(payload) > 0 {
		start := h.nextSeq
		h.nextSeq += uint32(len(payload))
		if h.state != stIgnore {
			h.feed(payload, start)
		}
	}
	if missing > 0 {
		h.nextSeq += uint32(missing)
		h.gap(missing)
	}
	if fin && !h.fin {
		h.fin = true
		h.nextSeq++
		h.eof()
		if h.f.half[0].fin && h.f.half[1].fin {
			h.f.finish()
		}
	}
}
