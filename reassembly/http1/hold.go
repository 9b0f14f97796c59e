package http1

// holdMark records one held segment, or with gap set, bytes lost after the ones before it.
type holdMark struct {
	off    int
	gap    int
	ack    uint32
	hasAck bool
	ts     int64
}

func (h *side) startHold(seq uint32) {
	h.state = stHold
	h.holdSeq, h.holdTS = seq, h.s.tc.Now()
	h.s.tc.Wake()
}

// hold keeps response bytes until a request arrives to pair them with: the two
// directions of a connection may be captured out of order. Each held segment keeps its
// ACK, which pairing checks.
func (h *side) hold(data []byte) {
	h.holdMarks = append(h.holdMarks, holdMark{off: len(h.buf), ack: h.ack, hasAck: h.hasAck, ts: h.ts})
	h.buf = append(h.buf, data...)
	h.accountHeld(len(data) + holdMarkCost)
}

// holdMarkCost is what one held segment's mark costs, so a stream of tiny segments is
// bounded by the caps like their bytes are.
const holdMarkCost = 48

// accountHeld charges n held bytes to the per-direction cap and the memory budget; over
// either, the held responses are given up as orphans rather than grow further.
func (h *side) accountHeld(n int) {
	p := h.s.p
	h.heldBytes += n
	p.budget.Charge(n)
	if h.heldBytes > p.cfg.HoldBytes || p.budget.Over() {
		h.shedHold()
	}
}

// shedHold gives up the oldest held responses as orphans, up to a response boundary from
// which what remains fits in three quarters of the cap, and keeps holding the rest. The
// client's direction lagging by more than the cap (another capture ring dozens of
// responses behind) then costs the oldest responses that did not fit, not every one held.
// Under memory pressure everything goes.
func (h *side) shedHold() {
	keep := h.s.p.cfg.HoldBytes / 4 * 3
	if h.s.p.budget.Over() {
		keep = 0
	}
	h.replayHold(true, keep)
}

// unaccountHeld returns the held bytes to the caps.
func (h *side) unaccountHeld() {
	h.s.p.budget.Release(h.heldBytes)
	h.heldBytes = 0
}

// releaseHold replays held response bytes segment by segment, pairing them with the
// requests now pending; what still finds no request is held again. With orphan set
// (timeout, overflow, close) nothing is held again: unpaired responses are orphans.
func (h *side) releaseHold(orphan bool) { h.replayHold(orphan, 0) }

// replayHold is releaseHold that, with orphan set and keep > 0, stops replaying at the
// first segment that starts a message once the bytes after it are at most keep, and holds
// those again.
func (h *side) replayHold(orphan bool, keep int) {
	if h.state != stHold {
		return
	}
	data, marks := h.buf, h.holdMarks
	h.buf, h.holdMarks = nil, nil
	h.unaccountHeld()
	h.state = stStart
	savedAck, savedHas, savedTS := h.ack, h.hasAck, h.ts
	h.noHold = orphan
	seq := h.holdSeq
	for i, m := range marks {
		if i > 0 && keep > 0 && h.state == stStart && len(data)-m.off <= keep {
			h.rehold(seq, data[m.off:], marks[i:])
			break
		}
		end := len(data)
		if i+1 < len(marks) {
			end = marks[i+1].off
		}
		h.ack, h.hasAck, h.ts = m.ack, m.hasAck, m.ts
		h.feed(data[m.off:end], seq)
		seq += uint32(end - m.off)
		if m.gap > 0 {
			h.gap(m.gap)
			seq += uint32(m.gap)
		}
	}
	h.noHold = false
	if orphan {
		// Responses were given up: the requests they answered will come without them, and
		// the next response pairs by its ACK rather than with the oldest waiting request.
		h.lostSync = true
	}
	h.ack, h.hasAck, h.ts = savedAck, savedHas, savedTS
	if h.ended && h.state != stHold {
		h.eof()
	}
}

// rehold holds the tail of the old held buffer again: data, from seq on, whose segments
// marks describe (offsets into the old buffer, data starting at marks[0].off). The parser
// is at a message start and buffers nothing, so the old buffer is reused in place.
func (h *side) rehold(seq uint32, data []byte, marks []holdMark) {
	base := marks[0].off
	for i := range marks {
		marks[i].off -= base
	}
	h.buf, h.holdMarks = data, marks
	h.state, h.holdSeq, h.holdTS = stHold, seq, marks[0].ts
	h.heldBytes = len(data) + len(marks)*holdMarkCost
	h.s.p.budget.Charge(h.heldBytes)
}
