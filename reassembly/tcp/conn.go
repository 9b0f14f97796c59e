package tcp

import "time"

const dirUnknown int8 = -1

// closeLinger is how long a finished connection is remembered, so late copies of its
// segments (the other ENI's mirror, retransmissions) are recognised and dropped.
const closeLinger = 5 * time.Second

// Conn is one TCP connection: two directions being sequenced, and the Stream consuming
// them. Its exported methods are what a Stream may ask of the stream layer.
type Conn struct {
	key          FlowKey
	a            *Assembler
	prev, next   *Conn // LRU
	pprev, pnext *Conn // timer list
	stream       Stream
	half         [2]half
	lastSeen     int64
	closedAt     int64 // packet time it finished
	resetAt      int64 // packet time of an RST; the connection finishes a reorder timeout later
	clientDir    int8  // direction of the client, from the handshake, or dirUnknown
	inPend       bool
	closed       bool    // finished; late copies of its segments are dropped
	ignored      bool    // the stream wants no more bytes: sequencing continues, delivery stops
	seen         [2]bool // a segment arrived in this direction (one-sided connections are counted)
}

// Key is the connection's flow key.
func (f *Conn) Key() FlowKey { return f.key }

// ClientDir returns the direction the client sends in, when the handshake showed it.
func (f *Conn) ClientDir() (Dir, bool) {
	if f.clientDir == dirUnknown {
		return 0, false
	}
	return Dir(f.clientDir), true
}

// HandshakeSeen reports whether direction d began with a SYN the capture saw; when not,
// its first bytes may fall inside a message.
func (f *Conn) HandshakeSeen(d Dir) bool { return f.half[d].synSeen }

// Now is the assembler's packet time, Unix nanoseconds.
func (f *Conn) Now() int64 { return f.a.now }

// Wake asks for the stream's Expire to be called on the next timeout scans, until it
// reports nothing left to wait for.
func (f *Conn) Wake() { f.a.pendAdd(f) }

// Ignore stops delivering the connection's bytes (not a protocol the stream reads, or it
// switched to one). Sequencing goes on without copying bytes aside, so the connection
// still closes and its stream still gets Expire and Close.
func (f *Conn) Ignore() {
	if f.ignored {
		return
	}
	f.ignored = true
	f.half[0].forgetOOOBytes()
	f.half[1].forgetOOOBytes()
}

// Stream is the connection's consumer (nil before its first bytes).
func (f *Conn) Stream() Stream { return f.stream }

// SetStream hands the connection to another consumer from the next delivery on: a
// protocol switch (HTTP/1.1 upgraded to HTTP/2), or the end of protocol detection.
func (f *Conn) SetStream(s Stream) { f.stream = s }

// segment sequences one segment of this connection.
func (f *Conn) segment(s *Segment) {
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
				f.a.c.drops[DropClosedFlow].Add(1)
			}
			return
		}
	}
	f.seen[s.Dir] = true
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
		if len(s.Payload) == 0 && s.Missing == 0 {
			return
		}
		// TCP Fast Open: the SYN carries data, which starts after the SYN's own number.
		seq := s.Seq + 1
		h.ack, h.hasAck, h.flags, h.ts = s.Ack, s.Flags&FlagACK != 0, s.Flags, s.Timestamp
		if int32(seq-h.nextSeq) > 0 {
			h.bufferOOO(seq, s.Payload, s.Missing, false)
		} else {
			h.deliverAt(seq, s.Payload, s.Missing, false)
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
	h.ack, h.hasAck, h.flags, h.ts = s.Ack, s.Flags&FlagACK != 0, s.Flags, s.Timestamp
	f.half[0].checkReorderTimeout()
	f.half[1].checkReorderTimeout()
	if s.Flags&FlagACK != 0 {
		f.half[1-s.Dir].acked(s.Ack)
	}

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
	if int32(seq-h.nextSeq) > 0 {
		f.a.c.outOfOrder.Add(1)
		h.bufferOOO(seq, payload, missing, fin)
		return
	}
	h.deliverAt(seq, payload, missing, fin)
}

// consumer returns the connection's stream, letting the factory choose it on first use.
func (f *Conn) consumer(d Dir, first []byte) Stream {
	if f.stream == nil {
		f.stream = f.a.streams.NewStream(f, d, first)
	}
	return f.stream
}

// reopen forgets a finished connection so a new one on the same 5-tuple starts clean.
func (f *Conn) reopen() {
	f.half[0].releaseOOO()
	f.half[1].releaseOOO()
	f.half[0].init(f, LoToHi)
	f.half[1].init(f, HiToLo)
	f.clientDir, f.closed, f.ignored, f.resetAt, f.stream = dirUnknown, false, false, 0, nil
	f.seen = [2]bool{}
}

// finish ends the connection: bytes still waiting behind holes are delivered with the
// holes as gaps, then the stream is closed.
func (f *Conn) finish() {
	if f.closed {
		return
	}
	f.half[0].forceDrain()
	f.half[1].forceDrain()
	if f.closed { // the drained bytes carried both FINs
		return
	}
	if f.stream != nil {
		f.stream.Close()
	}
	f.closed, f.closedAt = true, f.a.now
	f.a.c.ended.Add(1)
	if f.seen[0] != f.seen[1] {
		// The whole connection showed one direction only: the capture gets half of it (a
		// mirror filter, or a load balancer sending the directions to different appliances).
		f.a.c.oneSided.Add(1)
	}
	f.half[0].releaseOOO()
	f.half[1].releaseOOO()
	// Linger briefly so late copies of its segments are recognised, then forget it.
	f.a.pendAdd(f)
}

// expire runs the timeouts of a connection on the timer list.
func (f *Conn) expire() {
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
	if f.closed { // the reorder timeout delivered both FINs: the linger runs now
		return
	}
	waiting := f.stream != nil && f.stream.Expire(now)
	if !waiting && f.resetAt == 0 && len(f.half[0].ooo) == 0 && len(f.half[1].ooo) == 0 {
		f.a.pendRemove(f)
	}
}
