package tcp

// half is one direction of a connection: where its stream stands and the segments that
// arrived ahead of a hole.
type half struct {
	f        *Conn
	ooo      []oooSeg
	ts       int64 // of the segment being processed, passed on with what it delivers
	oooBytes int32
	isn      uint32 // initial sequence number, to tell a new connection on the same 5-tuple
	nextSeq  uint32
	ack      uint32 // of the segment being processed
	// The highest acknowledgement the other side sent for this direction: the receiver
	// had every byte before it, so a hole below it was lost by the mirror, not the network.
	peerAck    uint32
	dir        Dir
	flags      uint8 // of the segment being processed
	hasAck     bool  // of the segment being processed
	synced     bool  // nextSeq is known
	synSeen    bool  // a SYN was seen: isn holds its sequence number
	fin        bool
	hasPeerAck bool
}

// oooSeg is a segment copied aside until the bytes before it arrive.
type oooSeg struct {
	seq     uint32
	ack     uint32
	hasAck  bool
	flags   uint8
	data    []byte
	missing int
	fin     bool
	ts      int64 // packet time
	arrived int64 // assembler time when it was buffered, for the reorder timeout
}

func (h *half) init(f *Conn, d Dir) { *h = half{f: f, dir: d} }

func (h *half) meta(seq uint32) Meta {
	return Meta{Seq: seq, Ack: h.ack, HasAck: h.hasAck, Flags: h.flags, Timestamp: h.ts}
}

// acked notes an acknowledgement from the receiver of this direction and gives up the
// holes it covers: the endpoints exchanged those bytes, the mirror will not bring them.
func (h *half) acked(ack uint32) {
	if !h.hasPeerAck || int32(ack-h.peerAck) > 0 {
		h.peerAck, h.hasPeerAck = ack, true
	}
	if len(h.ooo) >= ackedHoleSegments {
		h.skipAckedHoles()
	}
}

// ackedHoleSegments is how many later segments of the same direction must have arrived
// before an acknowledged hole is given up, and it must have waited a quarter of the reorder
// timeout.
// The acknowledgement alone proves little: the other direction often travels another queue
// and overtakes; mirror paths (NLB, GWLB) reorder a direction's own packets by a few places;
// and a sender that moves between CPUs spreads one direction over two of XDP's per-CPU
// rings, one of which a busy host can drain late. Sixteen later segments, a quarter of the
// reorder timeout and the receiver's word that it had the bytes are evidence enough.
const ackedHoleSegments = 16

// skipAckedHoles declares gaps for the holes before buffered data that the receiver has
// already acknowledged, delivering the data behind them without waiting for the reorder
// timeout.
func (h *half) skipAckedHoles() {
	wait := int64(h.f.a.cfg.ReorderTimeout) / 4
	for h.synced && h.hasPeerAck && len(h.ooo) >= ackedHoleSegments && !h.f.closed &&
		int32(h.ooo[0].seq-h.nextSeq) > 0 && int32(h.peerAck-h.ooo[0].seq) >= 0 &&
		h.f.a.now-h.ooo[0].arrived >= wait {
		h.f.a.c.gapsAcked.Add(1)
		h.skipTo(h.ooo[0].seq)
		h.drainOOO()
	}
}

// checkReorderTimeout gives up on a hole whose bytes have been awaited long enough.
func (h *half) checkReorderTimeout() {
	if len(h.ooo) == 0 {
		return
	}
	if h.f.a.now-h.ooo[0].arrived > int64(h.f.a.cfg.ReorderTimeout) {
		h.forceDrain()
	} else {
		h.skipAckedHoles()
	}
}

// bufferOOO copies a segment that arrived ahead of a missing one. Over the per-direction
// cap or the budget, the wait ends at once: what is buffered is delivered and the holes
// become gaps.
func (h *half) bufferOOO(seq uint32, payload []byte, missing int, fin bool) {
	a := h.f.a
	if len(payload) == 0 && !fin && missing == 0 {
		return // a bare ACK ahead of the stream tells nothing
	}
	if h.f.ignored { // nobody reads the bytes: keep only where they are
		missing, payload = missing+len(payload), nil
	}
	overflow := NumDrops
	switch {
	case int(h.oooBytes)+len(payload) > a.cfg.FlowBufferBytes:
		overflow = DropFlowBufferFull
	case !a.budget.Fits(len(payload)):
		overflow = DropBufferFull
	}
	if overflow != NumDrops {
		a.c.drops[overflow].Add(1)
		h.forceDrain()
		if !h.synced {
			h.synced, h.nextSeq = true, seq
		}
		h.skipTo(seq)
		h.deliverAt(seq, payload, missing, fin)
		return
	}
	i := len(h.ooo)
	for i > 0 && int32(h.ooo[i-1].seq-seq) > 0 {
		i--
	}
	if i > 0 {
		// A copy of a buffered segment is a duplicate unless it carries more (the other
		// ENI's mirror may be less truncated).
		if p := &h.ooo[i-1]; p.seq == seq && len(p.data) >= len(payload) && len(p.data)+p.missing >= len(payload)+missing {
			a.c.drops[DropDuplicate].Add(1)
			return
		}
	}
	s := oooSeg{seq: seq, ack: h.ack, hasAck: h.hasAck, flags: h.flags, data: append([]byte(nil), payload...),
		missing: missing, fin: fin, ts: h.ts, arrived: a.now}
	h.ooo = append(h.ooo, oooSeg{})
	copy(h.ooo[i+1:], h.ooo[i:])
	h.ooo[i] = s
	h.oooBytes += int32(len(payload))
	a.budget.Charge(len(payload))
	a.pendAdd(h.f)
	h.skipAckedHoles()
}

// drainOOO delivers buffered segments that have become contiguous, each with its own ACK
// and time, then gives the direction back the segment it was processing: a drain can
// happen in the middle of a segment (a timeout or an ACK noticed first), which must then be
// delivered with its own ACK, not the last buffered one's (pairing checks it).
func (h *half) drainOOO() {
	ack, hasAck, flags, ts := h.ack, h.hasAck, h.flags, h.ts
	for len(h.ooo) > 0 && int32(h.ooo[0].seq-h.nextSeq) <= 0 && !h.f.closed {
		s := h.popOOO()
		h.ack, h.hasAck, h.flags, h.ts = s.ack, s.hasAck, s.flags, s.ts
		if data, missing, fin, ok := h.trimDelivered(s.seq, s.data, s.missing, s.fin); ok {
			h.deliver(data, missing, fin)
		}
	}
	h.ack, h.hasAck, h.flags, h.ts = ack, hasAck, flags, ts
}

// trimDelivered cuts off the front of a segment starting at seq that the stream has
// already delivered. ok is false when nothing is left, the segment's FIN included.
func (h *half) trimDelivered(seq uint32, payload []byte, missing int, fin bool) ([]byte, int, bool, bool) {
	trim := int(h.nextSeq - seq)
	if trim <= 0 {
		return payload, missing, fin, true
	}
	total := len(payload) + missing
	if trim >= total {
		// Only a FIN right at the end is news.
		return nil, 0, true, fin && trim == total && !h.fin
	}
	if trim <= len(payload) {
		return payload[trim:], missing, fin, true
	}
	return nil, missing - (trim - len(payload)), fin, true
}

func (h *half) popOOO() oooSeg {
	s := h.ooo[0]
	h.ooo[0] = oooSeg{}
	h.ooo = h.ooo[1:]
	if len(h.ooo) == 0 {
		h.ooo = nil
	}
	h.oooBytes -= int32(len(s.data))
	h.f.a.budget.Release(len(s.data))
	return s
}

// forceDrain gives up waiting for missing bytes: every buffered segment is delivered in
// order with the holes between them reported as gaps. A direction whose start was never
// seen begins at its lowest buffered byte.
func (h *half) forceDrain() {
	if !h.synced && len(h.ooo) > 0 {
		h.synced, h.nextSeq = true, h.ooo[0].seq
	}
	for len(h.ooo) > 0 && !h.f.closed {
		h.skipTo(h.ooo[0].seq)
		h.drainOOO()
	}
}

// skipTo declares the bytes up to seq lost.
func (h *half) skipTo(seq uint32) {
	if n := int32(seq - h.nextSeq); n > 0 {
		start := h.nextSeq
		h.nextSeq = seq
		h.gap(start, int(n))
	}
}

func (h *half) gap(start uint32, n int) {
	h.f.a.c.gaps.Add(1)
	if !h.f.ignored {
		h.f.consumer(h.dir, nil).Gap(h.dir, n, h.meta(start))
	}
}

func (h *half) releaseOOO() {
	for len(h.ooo) > 0 {
		h.popOOO()
	}
}

// forgetOOOBytes keeps the buffered segments' positions but not their bytes.
func (h *half) forgetOOOBytes() {
	for i := range h.ooo {
		s := &h.ooo[i]
		h.oooBytes -= int32(len(s.data))
		h.f.a.budget.Release(len(s.data))
		s.missing += len(s.data)
		s.data = nil
	}
}

// deliverAt delivers a segment that starts at or before the next expected byte: what was
// delivered already is trimmed off (retransmissions, overlaps), the rest goes to the
// stream, then whatever buffered data it made contiguous.
func (h *half) deliverAt(seq uint32, payload []byte, missing int, fin bool) {
	if seq == h.nextSeq { // the common case: exactly the next bytes
		h.deliver(payload, missing, fin)
		if len(h.ooo) > 0 {
			h.drainOOO()
		}
		return
	}
	if behind, n := int32(h.nextSeq-seq), len(payload)+missing; n > 0 && int(behind) >= n {
		h.f.a.c.drops[DropDuplicate].Add(1) // every byte was delivered already
	}
	data, missing, fin, ok := h.trimDelivered(seq, payload, missing, fin)
	if !ok {
		return
	}
	h.deliver(data, missing, fin)
	h.drainOOO()
}

// deliver passes in-order bytes to the stream and advances the direction.
func (h *half) deliver(payload []byte, missing int, fin bool) {
	if len(payload) > 0 {
		start := h.nextSeq
		h.nextSeq += uint32(len(payload))
		if !h.f.ignored {
			h.f.consumer(h.dir, payload).Data(h.dir, payload, h.meta(start))
		}
	}
	if missing > 0 {
		start := h.nextSeq
		h.nextSeq += uint32(missing)
		h.gap(start, missing)
	}
	if fin && !h.fin {
		h.fin = true
		h.nextSeq++
		if !h.f.ignored {
			h.f.consumer(h.dir, nil).End(h.dir)
		}
		if h.f.half[0].fin && h.f.half[1].fin {
			h.f.finish()
		}
	}
}
