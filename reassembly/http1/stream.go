package http1

import (
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

const dirUnknown int8 = -1

// stream is one connection's HTTP/1 state: a parser per direction and the requests
// awaiting their responses.
type stream struct {
	p    *Parser
	tc   *tcp.Conn
	side [2]side

	inferredClient int8 // the client's direction as the messages showed it, when the handshake did not
	nonHTTP        bool
	httpSeen       bool // at least one message parsed: later garbage is an error, not "not HTTP"

	pending []*exState // requests awaiting a response, oldest first
	// owed are requests emitted before their response came (the pending bound was hit),
	// oldest first, all older than pending[0]: their responses are recognised by position
	// and counted, so they are not paired with the requests after them.
	owed []owedResponse
}

// owedResponse is what is kept of a request emitted without its response: where it
// started (pairing checks the response's ACK against it) and its method (framing).
type owedResponse struct {
	startSeq uint32
	method   string
}

// maxOwedFactor bounds owed responses per connection, as a multiple of MaxPending.
const maxOwedFactor = 16

// exState is an exchange under construction.
type exState struct {
	ex       exchange.Exchange
	startSeq uint32 // client sequence number of the request's first byte
	reqTime  int64
	charged  int // bytes charged to the budget until emitted: this state, the header block, body capacity
	reqDone  bool
	respDone bool
	h2c      bool // the request offers Upgrade: h2c
}

// clientDir is the client's direction: from the handshake when it was seen, else from the
// first message that told, else dirUnknown.
func (s *stream) clientDir() int8 {
	if d, ok := s.tc.ClientDir(); ok {
		return int8(d)
	}
	return s.inferredClient
}

// Data implements tcp.Stream.
func (s *stream) Data(d tcp.Dir, b []byte, m tcp.Meta) {
	sd := &s.side[d]
	sd.begin()
	sd.ack, sd.hasAck, sd.ts = m.Ack, m.HasAck, m.Timestamp
	sd.end = m.Seq + uint32(len(b)) // before parsing: a request parsed now is in these bytes
	if sd.state != stIgnore && sd.state != stSwitched {
		sd.feed(b, m.Seq)
	}
	s.clientAdvanced(d)
}

// Gap implements tcp.Stream.
func (s *stream) Gap(d tcp.Dir, n int, m tcp.Meta) {
	sd := &s.side[d]
	sd.begin()
	sd.ack, sd.hasAck, sd.ts = m.Ack, m.HasAck, m.Timestamp
	sd.end = m.Seq + uint32(n)
	sd.gap(n)
	s.clientAdvanced(d)
}

// End implements tcp.Stream.
func (s *stream) End(d tcp.Dir) {
	sd := &s.side[d]
	sd.ended = true
	if sd.started {
		sd.end++ // the FIN takes a sequence number: a reply to HTTP/1.0 acknowledges it
	}
	sd.eof()
	s.clientAdvanced(d)
}

// clientBehind reports whether a server segment acknowledges client bytes this stream has
// not seen yet: the client's direction travels another capture queue and lags. A response
// in such a segment may answer a request still on its way, so it waits (is held) rather
// than pair with an older request that lost its own response.
func (s *stream) clientBehind(hasAck bool, ack uint32) bool {
	c := s.clientDir()
	if !hasAck || c == dirUnknown || !s.side[c].started {
		return false
	}
	return int32(ack-s.side[c].end) > 0
}

// clientAdvanced lets a held response go once the client's direction has caught up with
// it (new request bytes, or a gap declared in their place).
func (s *stream) clientAdvanced(d tcp.Dir) {
	srv := &s.side[1-d]
	if srv.state != stHold || len(srv.holdMarks) == 0 || s.clientDir() != int8(d) {
		return // the common case, checked first: nothing held on the other side
	}
	if m := srv.holdMarks[0]; !s.clientBehind(m.hasAck, m.ack) {
		srv.releaseHold(false)
	}
}

// Close implements tcp.Stream: held responses are replayed first (paired where their
// request arrived meanwhile), then the server side ends, so a response cut short by the
// close is attached before the requests still waiting are emitted without one.
func (s *stream) Close() {
	for i := range s.side {
		s.side[i].releaseHold(true)
	}
	if c := s.clientDir(); c != dirUnknown {
		s.side[1-c].eof()
		s.side[c].eof()
	}
	for _, st := range s.pending {
		if st.ex.Response.Status == 0 {
			st.ex.Flags |= exchange.FlagNoResponse
		}
		s.p.emit(st)
	}
	s.pending, s.owed = nil, nil
	s.side[0].dropBuffers()
	s.side[1].dropBuffers()
	s.p.budget.Release(streamCost)
}

// Expire implements tcp.Stream. Requests have no timer: they wait for their response as
// long as the connection lives (a long poll answers after tens of seconds), within the
// memory budget. Held responses wait for their request ResponseTimeout. Not just the
// reorder timeout: a live source with several rings (AF_PACKET fanout splits a VXLAN
// flow's two directions by outer UDP port) can process one direction seconds behind the
// other when the host is busy, while the other ring's packets move the clock on. Held
// bytes stay under the caps, and the next request on the connection releases them anyway.
func (s *stream) Expire(now int64) bool {
	timeout := int64(s.p.cfg.ResponseTimeout)
	for i := range s.side {
		if sd := &s.side[i]; sd.state == stHold && now-sd.holdTS > timeout {
			sd.releaseHold(true)
		}
	}
	return s.side[0].state == stHold || s.side[1].state == stHold
}

// enqueue adds a request to the FIFO that responses are paired from. Past MaxPending the
// oldest is emitted without its response, which stays owed: when it comes it is counted
// against that request, and the requests after it keep pairing with theirs.
func (s *stream) enqueue(st *exState) {
	if len(s.pending) >= s.p.cfg.MaxPending {
		old := s.popPending()
		old.ex.Flags |= exchange.FlagNoResponse
		s.p.c.drops[DropPendingFull].Add(1)
		if len(s.owed) >= maxOwedFactor*s.p.cfg.MaxPending {
			s.owed = s.owed[1:] // its response, if it comes, may be misplaced: bounded memory first
		}
		s.owed = append(s.owed, owedResponse{startSeq: old.startSeq, method: old.ex.Request.Method})
		if old.reqDone {
			s.p.emit(old)
		} else {
			old.respDone = true // emitted when the request completes
		}
	}
	s.pending = append(s.pending, st)
	if c := s.clientDir(); c != dirUnknown {
		if srv := &s.side[1-c]; srv.state == stHold {
			srv.releaseHold(false)
		}
	}
}

// popPending removes the oldest pending request. It shifts in place rather than
// reslicing, so the backing array neither grows on every request nor keeps emitted
// exchanges alive.
func (s *stream) popPending() *exState {
	st := s.pending[0]
	n := copy(s.pending, s.pending[1:])
	s.pending[n] = nil
	s.pending = s.pending[:n]
	return st
}

// ignore stops parsing the connection (not HTTP, or it switched protocols); requests
// still pending are emitted by the timeouts or at close.
func (s *stream) ignore() {
	for i := range s.side {
		sd := &s.side[i]
		if sd.cur != nil { // a request body the switch cut short
			sd.cur.ex.Flags |= exchange.FlagIncomplete
			sd.finishSide()
		}
		sd.state = stIgnore
		sd.dropBuffers()
	}
	s.tc.Ignore()
}

// setExchangeAddrs fills the exchange's endpoints; client is the request's direction.
func (s *stream) setExchangeAddrs(st *exState, client tcp.Dir) {
	k := s.tc.Key()
	c, srv := k.Lo, k.Hi
	if client == tcp.HiToLo {
		c, srv = k.Hi, k.Lo
	}
	st.ex.Tunnel, st.ex.Client, st.ex.Server = k.Tunnel, c.AddrPort(), srv.AddrPort()
}

// realign drops the requests a gap in the server's direction left unanswered. A server
// answers a request before the client sends the next one unless it pipelines, so a
// response that acknowledges the next request's bytes belongs to a later request: the
// ones before it went unanswered (owed ones are forgotten, pending ones emitted).
func (s *stream) realign(ack uint32) {
	for len(s.owed) > 0 {
		next := uint32(0)
		switch {
		case len(s.owed) > 1:
			next = s.owed[1].startSeq
		case len(s.pending) > 0:
			next = s.pending[0].startSeq
		default:
			return
		}
		if int32(ack-next) <= 0 {
			return
		}
		s.owed = s.owed[1:]
	}
	for len(s.pending) > 1 && s.pending[0].reqDone && int32(ack-s.pending[1].startSeq) > 0 {
		old := s.popPending()
		old.ex.Flags |= exchange.FlagNoResponse | exchange.FlagGap
		s.p.emit(old)
	}
}
