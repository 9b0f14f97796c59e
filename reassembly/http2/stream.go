package http2

import (
	"time"
	"unsafe"

	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

const dirUnknown int8 = -1

// stream is one connection's HTTP/2 state: a frame reader per direction and the HTTP/2
// streams (request/response pairs) in progress.
type stream struct {
	p    *Parser
	tc   *tcp.Conn
	side [2]side

	clientDir    int8        // from the handshake, the preface, an upgrade or the first request seen
	streams      []*h2stream // in progress, oldest first
	last         *h2stream   // the stream found last (frames of one stream come in runs)
	maxRequestID uint32      // highest stream id whose request headers were seen (or lost)
	maxPushID    uint32      // highest promised stream id
}

// The memory a connection's state and a stream's cost the budget, besides the header
// fields, bodies and buffers charged as they grow.
const (
	connCost     = int(unsafe.Sizeof(stream{}))
	h2streamCost = int(unsafe.Sizeof(h2stream{}))
	headerCost   = int(unsafe.Sizeof(exchange.Header{}))
	entryCost    = int(unsafe.Sizeof(entry{}))
)

func (p *Parser) newStream(c *tcp.Conn) *stream {
	p.budget.Require(connCost)
	s := &stream{p: p, tc: c, clientDir: dirUnknown}
	if d, ok := c.ClientDir(); ok {
		s.clientDir = int8(d)
	}
	s.side[0].init(s, tcp.LoToHi)
	s.side[1].init(s, tcp.HiToLo)
	return s
}

// Data implements tcp.Stream.
func (s *stream) Data(d tcp.Dir, b []byte, m tcp.Meta) {
	h := &s.side[d]
	h.ts = m.Timestamp
	if !h.began {
		h.begin(b)
		if h.state == stPreface && s.clientDir == dirUnknown {
			s.clientDir = int8(d)
		}
	}
	h.feed(b)
}

// Gap implements tcp.Stream.
func (s *stream) Gap(d tcp.Dir, n int, m tcp.Meta) {
	h := &s.side[d]
	h.ts = m.Timestamp
	if !h.began {
		h.began = true
		h.enterResync()
		return
	}
	h.gap(n)
}

// End implements tcp.Stream. A direction's close says nothing more than that its streams
// get no more frames; Close, which follows, emits them.
func (s *stream) End(tcp.Dir) {}

// Close implements tcp.Stream: every stream still open is emitted as it stands.
func (s *stream) Close() {
	for len(s.streams) > 0 {
		st := s.streams[0]
		st.flagUnfinished()
		s.finish(st)
	}
	for i := range s.side {
		h := &s.side[i]
		h.releaseResync()
		h.releaseBlock()
		h.chargeTable(true)
		h.ctrl = nil
	}
	s.p.budget.Release(connCost)
}

// Expire implements tcp.Stream. A response whose request has not been seen waits for it
// ResponseTimeout (the client's direction may be on a slower capture queue), then counts
// as an orphan. Requests have no timer, as in HTTP/1: a stream is reported when it ends
// (a long poll, a streaming call), when it is reset, or when its connection closes, is
// evicted or goes idle; MaxStreams and the memory budget bound what waits.
func (s *stream) Expire(now int64) bool {
	before := now - int64(s.p.cfg.ResponseTimeout)
	waiting := false
	for i := 0; i < len(s.streams); {
		st := s.streams[i]
		if !st.reqSeen {
			if st.created < before {
				s.finish(st)
				continue
			}
			waiting = true
		}
		i++
	}
	return waiting
}

// find returns the stream with id sid, or nil.
func (s *stream) find(sid uint32) *h2stream {
	if s.last != nil && s.last.id == sid {
		return s.last
	}
	for i := len(s.streams) - 1; i >= 0; i-- {
		if st := s.streams[i]; st.id == sid {
			s.last = st
			return st
		}
	}
	return nil
}

// newH2Stream starts tracking stream sid; beyond MaxStreams the oldest is emitted early.
func (s *stream) newH2Stream(sid uint32, now int64) *h2stream {
	if len(s.streams) >= s.p.cfg.MaxStreams {
		s.p.c.drops[DropStreamLimit].Add(1)
		old := s.streams[0]
		old.flagUnfinished()
		s.finish(old)
	}
	s.p.budget.Require(h2streamCost)
	st := &h2stream{id: sid, created: now, role: [2]int8{roleNone, roleNone}, charged: h2streamCost}
	s.streams = append(s.streams, st)
	s.last = st
	return st
}

// remove stops tracking st.
func (s *stream) remove(st *h2stream) {
	for i, x := range s.streams {
		if x == st {
			n := copy(s.streams[i:], s.streams[i+1:])
			s.streams[i+n] = nil
			s.streams = s.streams[:i+n]
			break
		}
	}
	if s.last == st {
		s.last = nil
	}
	if len(s.streams) == 0 && cap(s.streams) > 64 {
		s.streams = nil // keep idle connections small
	}
}

// finish emits st (or counts it as an orphan when its request was never seen) and
// forgets it.
func (s *stream) finish(st *h2stream) {
	s.remove(st)
	if !st.reqSeen {
		if st.msg[roleResponse].started {
			s.p.c.outcomes[OutOrphanResponse].Add(1)
		}
		s.p.budget.Release(st.charged)
		return
	}
	st.finishBodies(s.p)
	st.mapGRPCStatus()
	s.p.budget.Release(st.charged)
	s.p.emit(&st.ex)
}

// dataTarget is the stream a DATA frame's content belongs to, nil when it is not kept
// (stream unknown: opened before the capture joined, or already emitted).
func (s *stream) dataTarget(h *side, sid uint32) *h2stream {
	st := s.find(sid)
	if st == nil || st.role[h.dir] == roleNone {
		return nil
	}
	return st
}

// endMessage notes END_STREAM from direction d; the stream is emitted once both its
// messages ended (a response that ends first waits for its request, which may be on a
// slower capture queue).
func (s *stream) endMessage(st *h2stream, d tcp.Dir) {
	r := st.role[d]
	if r == roleNone {
		return
	}
	st.msg[r].ended = true
	if r == roleResponse && st.msg[r].started {
		st.ex.Response.EndTime = time.Unix(0, s.side[d].ts)
	}
	if st.reqSeen && st.msg[roleRequest].ended && st.msg[roleResponse].ended {
		s.finish(st)
	}
}

// reset handles RST_STREAM: the stream ends now, complete or not. A stream whose request
// has not been seen yet waits for it like a response that came first (a server that
// answers before reading the request body resets the stream at once, and the client's
// direction may be on a slower capture queue); it ends when the request's headers come.
func (s *stream) reset(_ *side, sid uint32, _ uint32) {
	st := s.find(sid)
	if st == nil {
		return
	}
	if !st.reqSeen {
		st.reset = true
		return
	}
	st.flagUnfinished()
	s.finish(st)
}

// goAway handles GOAWAY: streams the sender's peer opened above lastID were never
// processed (RFC 9113 §6.8) and get no response.
func (s *stream) goAway(h *side, lastID uint32) {
	if s.clientDir == dirUnknown {
		return
	}
	odd := uint32(0) // streams the GOAWAY's receiver opened: odd ids if it is the client
	if int8(h.dir) != s.clientDir {
		odd = 1
	}
	for i := 0; i < len(s.streams); {
		st := s.streams[i]
		if st.id > lastID && st.id&1 == odd && !st.msg[roleResponse].started {
			st.flagUnfinished()
			s.finish(st)
			continue
		}
		i++
	}
}

// flagGapAll marks every open stream: a direction lost frames, any of them may be theirs.
func (s *stream) flagGapAll() {
	for _, st := range s.streams {
		st.ex.Flags |= exchange.FlagGap
	}
}

// blockLost notes a header block whose fields are unknown (lost in a gap, over the cap,
// or cut off). The stream it belongs to, if known, is flagged; a lost block from the
// client may have opened a stream, whose response then cannot be paired.
func (s *stream) blockLost(h *side, sid uint32, endStream bool) {
	s.p.c.outcomes[OutParseError].Add(1)
	if int8(h.dir) == s.clientDir && sid > s.maxRequestID && sid&1 == 1 {
		s.maxRequestID = sid
	}
	st := s.find(sid)
	if st == nil {
		return
	}
	st.ex.Flags |= exchange.FlagHeadersUnknown | exchange.FlagGap
	if endStream {
		s.endMessage(st, h.dir)
	}
}

// headers acts on a decoded header block: request headers open a stream, response
// headers answer one, a block without pseudo-headers holds trailers.
func (s *stream) headers(h *side, fields []field, unknown bool) {
	if h.blockPush {
		s.pushPromise(h, fields, unknown)
		return
	}
	sid := h.blockSid
	st := s.find(sid)
	kind := classify(fields)
	if kind == kindOther {
		switch {
		case st != nil && st.role[h.dir] != roleNone:
			kind = kindTrailers
		case unknown && s.clientDir != dirUnknown:
			// The pseudo-headers are among the fields we could not decode: the direction
			// says which message this is.
			kind = kindResponse
			if int8(h.dir) == s.clientDir {
				kind = kindRequest
			}
		default:
			return // trailers of a stream we do not track
		}
	}
	switch kind {
	case kindRequest:
		if st == nil {
			st = s.newH2Stream(sid, s.tc.Now())
		} else if st.reqSeen {
			s.p.c.outcomes[OutParseError].Add(1)
			return
		}
		if s.clientDir == dirUnknown {
			s.clientDir = int8(h.dir)
		}
		if sid > s.maxRequestID {
			s.maxRequestID = sid
		}
		st.setRequest(s, h, fields, h.dir)
	case kindResponse:
		if st == nil {
			if sid <= s.maxRequestID && sid&1 == 1 || sid&1 == 0 && sid <= s.maxPushID {
				// Its request was seen before this and is gone (emitted at a timeout), or
				// was lost or sent before the capture joined.
				s.p.c.outcomes[OutOrphanResponse].Add(1)
				return
			}
			st = s.newH2Stream(sid, s.tc.Now())
			s.tc.Wake() // the response waits ResponseTimeout for its request
		}
		if st.msg[roleResponse].started {
			s.p.c.outcomes[OutParseError].Add(1)
			return
		}
		if informational(fields) {
			return // 100 Continue, 103 Early Hints: the final response follows
		}
		st.setResponse(s, h, fields)
	case kindTrailers:
		if st == nil {
			return
		}
		st.addTrailers(h, fields)
	}
	if unknown {
		st.ex.Flags |= exchange.FlagHeadersUnknown
	}
	if h.blockEnd {
		s.endMessage(st, h.dir)
	}
	if st.reset && st.reqSeen && s.find(sid) == st {
		st.flagUnfinished()
		s.finish(st)
	}
}

// pushPromise opens the promised stream with the request the server says it answers.
func (s *stream) pushPromise(h *side, fields []field, unknown bool) {
	sid := h.blockPromised
	if sid == 0 || s.find(sid) != nil {
		s.p.c.outcomes[OutParseError].Add(1)
		return
	}
	if s.clientDir == dirUnknown {
		s.clientDir = int8(1 - h.dir)
	}
	s.maxPushID = max(s.maxPushID, sid)
	st := s.newH2Stream(sid, s.tc.Now())
	// The promise stands for the request; the client's direction sends nothing on it.
	st.setRequest(s, h, fields, 1-h.dir)
	st.msg[roleRequest].ended = true
	if unknown {
		st.ex.Flags |= exchange.FlagHeadersUnknown
	}
}
