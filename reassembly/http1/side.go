package http1

import (
	"bytes"
	"strings"
	"time"

	"github.com/metlo-labs/metlo-appliance/reassembly/content"
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// parseState is where a half-stream's HTTP parser is within a message.
type parseState uint8

const (
	stStart      parseState = iota // between messages
	stHeaders                      // inside a start line + header block
	stBodyLength                   // Content-Length body, remaining bytes left
	stChunkSize                    // chunk-size line
	stChunkData                    // chunk data, remaining bytes left
	stChunkCRLF                    // the CRLF after chunk data, remaining bytes left
	stTrailers                     // trailer fields after the last chunk
	stBodyClose                    // body delimited by connection close
	stHold                         // response bytes waiting for their request to be seen
	stResync                       // framing lost: hunting for the next message start
	stIgnore                       // not parsed any more
	stSwitched                     // handed to another protocol's stream: the rest of a delivery goes there
)

// maxLineBytes bounds chunk-size and trailer lines.
const maxLineBytes = 8 << 10

// side is one direction of a connection: the HTTP parser reading it.
type side struct {
	// Fields are ordered by size so that the struct packs tightly: there are two per
	// connection, and idle connections are what floods are made of.
	s         *stream
	cur       *exState   // message being read; nil for orphan responses (bytes counted, not kept)
	buf       []byte     // partial header block, chunk line, or held response bytes
	holdMarks []holdMark // where each held segment starts, with its ACK and time
	msg       messageBody
	ts        int64 // of the segment being parsed
	remaining int64
	msgTS     int64
	holdTS    int64
	heldBytes int    // held bytes and marks charged to the caps
	ack       uint32 // of the segment being parsed
	msgSeq    uint32 // sequence number of the current message's first byte
	msgAck    uint32
	holdSeq   uint32
	end       uint32 // just past the last byte (or lost byte, or FIN) delivered: how far this direction has been seen
	dir       tcp.Dir
	state     parseState
	started   bool // bytes or a gap were delivered; end is valid
	ended     bool // the sender closed (FIN)
	eofDone   bool
	hasAck    bool
	msgHasAck bool
	gapInMsg  bool
	lostSync  bool // a gap may have swallowed whole messages: realign pairing by ACKs
	// The body of a response whose request is unknown is about to start: if a status line
	// comes instead, it answered a HEAD (or was another bodiless reply) and had no body.
	orphanBody bool
	noHold     bool // replaying held bytes as orphans: never hold them again
}

// messageBody points at the side of an exchange whose body is being read.
type messageBody struct {
	body      *[]byte
	size      *int64
	truncated *bool
	decoded   *string
	encoding  string
}

// begin notes the first delivery: a direction whose handshake the capture missed may
// start inside a message, so the parser hunts for the next message start.
func (h *side) begin() {
	if !h.started {
		h.started = true
		if h.state == stStart && !h.s.tc.HandshakeSeen(h.dir) {
			h.state = stResync
		}
	}
}

func (h *side) isClient() bool { return h.s.clientDir() == int8(h.dir) }
func (h *side) isServer() bool { return h.s.clientDir() == int8(1-h.dir) }

func (h *side) dropBuffers() {
	h.unaccountHeld()
	h.buf, h.holdMarks = nil, nil
	h.cur, h.msg = nil, messageBody{}
}

// feed parses in-order bytes; seq is the sequence number of data[0].
func (h *side) feed(data []byte, seq uint32) {
	for len(data) > 0 {
		if h.orphanBody {
			h.orphanBody = false
			if classifyStart(data) == startResponse {
				h.endMessage()
			}
		}
		var n int
		switch h.state {
		case stStart:
			n = h.startMessage(data, seq)
		case stHeaders:
			n = h.readHead(data)
		case stBodyLength, stChunkData:
			n = int(min(h.remaining, int64(len(data))))
			h.appendBody(data[:n])
			h.remaining -= int64(n)
			if h.remaining == 0 {
				if h.state == stChunkData {
					h.state, h.remaining = stChunkCRLF, 2
				} else {
					h.endMessage()
				}
			}
		case stChunkCRLF:
			for n < len(data) && h.remaining > 0 {
				want := byte('\n')
				if h.remaining == 2 {
					want = '\r'
				}
				if data[n] != want {
					if data[n] == '\n' && want == '\r' { // tolerate a bare LF
						h.remaining--
						continue
					}
					h.protocolError()
					return
				}
				n++
				h.remaining--
			}
			if h.remaining == 0 {
				h.state = stChunkSize
			}
		case stChunkSize, stTrailers:
			n = h.readLine(data)
		case stBodyClose:
			n = len(data)
			h.appendBody(data)
		case stHold:
			h.hold(data)
			return
		case stResync:
			n = h.resync(data)
		case stIgnore:
			return
		case stSwitched: // the rest of this delivery belongs to the stream that took over
			h.s.tc.Stream().Data(h.dir, data, tcp.Meta{Seq: seq, Ack: h.ack, HasAck: h.hasAck, Timestamp: h.ts})
			return
		}
		if n < 0 {
			return
		}
		data = data[n:]
		seq += uint32(n)
	}
}

// startMessage skips blank lines between messages and decides what the next bytes are.
func (h *side) startMessage(data []byte, seq uint32) int {
	n := 0
	for n < len(data) && (data[n] == '\r' || data[n] == '\n') {
		n++
	}
	if n == len(data) {
		return n
	}
	if h.isClient() && h.s.p.up != nil && isH2Preface(data[n:]) {
		if st := h.s.pendingH2C(); st != nil {
			h.s.upgrade(st, h.dir, false) // the client's preface overtook the server's 101
			return n
		}
	}
	if !h.isClient() {
		if k := classifyStart(data[n:]); k == startResponse || (k == startNeedMore && h.isServer()) {
			if h.s.clientDir() == dirUnknown {
				h.s.inferredClient = int8(1 - h.dir)
			}
			if !h.noHold && (len(h.s.pending) == 0 || h.s.clientBehind(h.hasAck, h.ack)) {
				h.startHold(seq + uint32(n))
				h.hold(data[n:])
				return -1
			}
		}
	}
	h.msgSeq, h.msgTS, h.msgAck, h.msgHasAck = seq+uint32(n), h.ts, h.ack, h.hasAck
	h.gapInMsg = false
	h.state = stHeaders
	return n
}

// readHead accumulates a start line and header block and acts on it once complete.
func (h *side) readHead(data []byte) int {
	limit := h.s.p.cfg.MaxHeaderBytes
	if len(h.buf) == 0 {
		if !h.checkStart(data) {
			return -1
		}
		if end := findHeadEnd(data, 0); end >= 0 {
			h.onHead(data[:end])
			return end
		}
		if len(data) > limit {
			h.headerTooLarge()
			return -1
		}
		h.buf = append(h.buf[:0], data...)
		return len(data)
	}
	old := len(h.buf)
	take := min(len(data), limit+4-old)
	if take <= 0 {
		h.headerTooLarge()
		return -1
	}
	h.buf = append(h.buf, data[:take]...)
	if old < 32 && !h.checkStart(h.buf) {
		return -1
	}
	end := findHeadEnd(h.buf, max(0, old-3))
	if end < 0 {
		if len(h.buf) > limit {
			h.headerTooLarge()
			return -1
		}
		return take
	}
	consumed := end - old
	h.onHead(h.buf[:end])
	h.buf = h.buf[:0]
	if cap(h.buf) > 4<<10 {
		h.buf = nil // keep idle flows small
	}
	return consumed
}

// checkStart rejects a message whose first bytes cannot begin HTTP; on the first message
// of a connection that marks the whole connection as not HTTP.
func (h *side) checkStart(b []byte) bool {
	k := classifyStart(b)
	switch {
	case k == startNeedMore:
		return true
	case k == startRequest && !h.isServer(), k == startResponse && !h.isClient():
		if h.s.clientDir() == dirUnknown {
			d := int8(h.dir)
			if k == startResponse {
				d = int8(1 - h.dir)
			}
			h.s.inferredClient = d
		}
		return true
	}
	if !h.s.httpSeen {
		if !h.s.nonHTTP {
			h.s.nonHTTP = true
			h.s.p.c.outcomes[OutNonHTTP].Add(1)
		}
		h.s.ignore()
		return false
	}
	h.protocolError()
	return false
}

func (h *side) headerTooLarge() {
	h.s.p.c.drops[DropHeaderTooLarge].Add(1)
	h.protocolError()
}

// protocolError abandons the current message and hunts for the next one.
func (h *side) protocolError() {
	h.s.p.c.outcomes[OutParseError].Add(1)
	if h.isServer() { // framing was lost: the responses that follow may not be the next ones'
		h.lostSync = true
	}
	h.abandon()
}

// abandon drops the message in progress (keeping what a pending exchange already has) and
// resynchronises.
func (h *side) abandon() {
	if h.cur != nil {
		h.cur.ex.Flags |= exchange.FlagIncomplete
		h.finishSide()
	}
	h.buf = nil
	h.cur, h.msg = nil, messageBody{}
	h.state, h.orphanBody = stResync, false
}

func (h *side) onHead(block []byte) {
	hd, err := parseHead(block)
	if err != nil || hd.response != h.isServer() {
		h.protocolError()
		return
	}
	h.s.httpSeen = true
	if hd.malformed {
		h.s.p.c.outcomes[OutFramingError].Add(1)
	}
	if hd.response {
		h.onResponseHead(&hd)
	} else {
		h.onRequestHead(&hd, len(block))
	}
}

// onRequestHead starts an exchange; headSize is what its header block holds in memory,
// charged to the budget while the exchange waits for its response.
func (h *side) onRequestHead(hd *head, headSize int) {
	st := &exState{startSeq: h.msgSeq, reqTime: h.msgTS, charged: exStateCost + headSize}
	h.s.p.budget.Require(st.charged)
	req := &st.ex.Request
	req.Method, req.Target, req.Proto, req.Host, req.Headers = hd.method, hd.target, hd.proto, hd.host, hd.headers
	req.Time = time.Unix(0, h.msgTS)
	req.Path, req.RawQuery = splitTarget(hd.method, hd.target, &req.Host)
	st.h2c = hd.upgradeH2C
	if hd.malformed {
		st.ex.Flags |= exchange.FlagFramingError
	}
	h.s.setExchangeAddrs(st, h.dir)
	h.cur = st
	h.msg = messageBody{body: &req.Body, size: &req.BodySize, truncated: &req.BodyTruncated, decoded: &req.BodyDecoded, encoding: hd.encoding}
	switch {
	case hd.untilClose:
		h.state = stBodyClose
	case hd.chunked:
		h.state = stChunkSize
	case hd.contentLength > 0:
		h.state, h.remaining = stBodyLength, hd.contentLength
		h.preallocBody(hd.contentLength)
	default:
		h.endMessage()
	}
	// Enqueued last: it replays held responses, and a 101 or CONNECT reply among them
	// stops parsing, which must not be undone by setting this request's framing after it.
	h.s.enqueue(st)
}

func (h *side) onResponseHead(hd *head) {
	s := h.s
	if h.lostSync && h.msgHasAck {
		s.realign(h.msgAck)
	}
	h.lostSync = false
	method, owed := "", false
	var st *exState
	switch {
	case len(s.owed) > 0 && (!h.msgHasAck || int32(h.msgAck-s.owed[0].startSeq) > 0):
		// The answer to a request emitted before its response came: counted, not paired
		// with the request after it.
		method, owed = s.owed[0].method, true
	case len(s.pending) > 0:
		st = s.pending[0]
		// A response sent before the server had received any of the request cannot be
		// its answer (we joined mid-connection or the request was lost).
		if h.msgHasAck && int32(h.msgAck-st.startSeq) <= 0 {
			st = nil
		}
	}
	if st != nil {
		method = st.ex.Request.Method
	}
	if hd.status >= 100 && hd.status < 200 && hd.status != 101 {
		h.state = stStart // informational (100 Continue): the final response follows
		return
	}
	switch {
	case owed:
		s.owed = s.owed[1:]
		if len(s.owed) == 0 {
			s.owed = nil
		}
		s.p.c.outcomes[OutLateResponse].Add(1)
		h.cur, h.msg = nil, messageBody{}
	case st == nil:
		s.p.c.outcomes[OutOrphanResponse].Add(1)
		h.cur, h.msg = nil, messageBody{}
	default:
		s.popPending()
		resp := &st.ex.Response
		resp.Status, resp.Reason, resp.Proto, resp.Headers = hd.status, hd.reason, hd.proto, hd.headers
		resp.Time = time.Unix(0, h.msgTS)
		if hd.malformed {
			st.ex.Flags |= exchange.FlagFramingError
		}
		h.cur = st
		h.msg = messageBody{body: &resp.Body, size: &resp.BodySize, truncated: &resp.BodyTruncated, decoded: &resp.BodyDecoded, encoding: hd.encoding}
	}
	if hd.status == 101 && st != nil && st.h2c && s.p.up != nil {
		h.cur, h.msg = nil, messageBody{}
		s.upgrade(st, tcp.Dir(1-h.dir), true)
		return
	}
	switch {
	case hd.status == 101 || (method == "CONNECT" && hd.status < 300):
		h.endMessage()
		s.ignore() // the connection now carries another protocol
	case method == "HEAD" || hd.status == 204 || hd.status == 304:
		h.endMessage()
	case hd.chunked:
		h.state = stChunkSize
	case hd.contentLength >= 0:
		if hd.contentLength == 0 {
			h.endMessage()
			return
		}
		h.state, h.remaining = stBodyLength, hd.contentLength
		h.preallocBody(hd.contentLength)
	default:
		h.state = stBodyClose
	}
	// Without its request the method is unknown: a reply to HEAD announces a body it
	// never sends, which the next bytes will show.
	h.orphanBody = method == "" && (h.state == stBodyLength || h.state == stChunkSize)
}

// splitTarget separates path and query. Every path starts with '/': an absolute-form
// target is reduced to its path (its authority becomes the host when the Host header is
// missing), the asterisk form (OPTIONS *) becomes "/*", the authority form of CONNECT
// becomes "/" with the authority as host, and any other target is prefixed with '/'.
func splitTarget(method, target string, host *string) (path, query string) {
	switch {
	case strings.HasPrefix(target, "/"):
	case target == "*":
		return "/*", ""
	case strings.Contains(target, "://"):
		rest := target[strings.Index(target, "://")+3:]
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		if *host == "" {
			*host = rest[:end]
		}
		target = rest[end:]
		if !strings.HasPrefix(target, "/") {
			target = "/" + target
		}
	case method == "CONNECT":
		if *host == "" {
			*host = target
		}
		return "/", ""
	default:
		target = "/" + target
	}
	path, query, _ = strings.Cut(target, "?")
	return path, query
}

// endMessage completes the message being read.
func (h *side) endMessage() {
	h.finishSide()
	h.cur, h.msg = nil, messageBody{}
	h.state, h.orphanBody = stStart, false
	if len(h.buf) == 0 && cap(h.buf) > 4<<10 {
		h.buf = nil
	}
}

// finishSide decodes the body and marks this side of the exchange done, emitting the
// exchange once both sides are.
func (h *side) finishSide() {
	st := h.cur
	if st == nil {
		return
	}
	if m := &h.msg; m.body != nil && m.encoding != "" && m.encoding != "identity" && len(*m.body) > 0 {
		dec, cut, err := content.Decode(*m.body, m.encoding, h.s.p.cfg.BodyCap, *m.truncated)
		if err != nil {
			st.ex.Flags |= exchange.FlagDecodeError
		} else {
			h.charge(cap(dec) - cap(*m.body)) // the decoded body replaces the encoded one
			*m.body, *m.truncated, *m.decoded = dec, cut, m.encoding
		}
	}
	if h.gapInMsg {
		st.ex.Flags |= exchange.FlagGap
	}
	if h.isClient() {
		st.reqDone = true
	} else {
		st.respDone = true
		if !st.ex.Response.Time.IsZero() {
			st.ex.Response.EndTime = time.Unix(0, h.ts)
		}
	}
	if st.reqDone && st.respDone {
		h.s.p.emit(st)
	}
}

// gap reports n bytes of this direction lost (capture truncation or loss).
func (h *side) gap(n int) {
	h.orphanBody = false
	if h.state == stHold {
		// The held bytes still await their request: keep the gap in its place among them,
		// so a truncated packet does not orphan the response.
		if k := len(h.holdMarks) - 1; k >= 0 && h.holdMarks[k].gap > 0 && h.holdMarks[k].off == len(h.buf) {
			h.holdMarks[k].gap += n
		} else {
			h.holdMarks = append(h.holdMarks, holdMark{off: len(h.buf), gap: n, ack: h.ack, hasAck: h.hasAck, ts: h.ts})
			h.accountHeld(holdMarkCost)
		}
		return
	}
	if h.state != stBodyLength && h.state != stChunkData && h.state != stBodyClose {
		h.lostSync = true
	}
	switch h.state {
	case stBodyLength, stChunkData:
		if int64(n) <= h.remaining {
			h.gapInMsg = true
			if h.msg.size != nil {
				*h.msg.size += int64(n)
				*h.msg.truncated = true
			}
			h.remaining -= int64(n)
			if h.remaining == 0 {
				if h.state == stChunkData {
					h.state, h.remaining = stChunkCRLF, 2
				} else {
					h.endMessage()
				}
			}
			return
		}
		h.gapInMsg = true
		h.abandon()
	case stBodyClose:
		h.gapInMsg = true
		if h.msg.size != nil {
			*h.msg.size += int64(n)
			*h.msg.truncated = true
		}
	case stIgnore, stSwitched, stResync:
	case stStart:
		h.state = stResync
	default:
		h.gapInMsg = true
		h.abandon()
	}
}

// eof is the end of this direction: a body delimited by close ends here; anything else
// in progress was cut short.
func (h *side) eof() {
	if h.eofDone || h.state == stHold {
		return // held bytes are replayed first; releaseHold ends the stream after them
	}
	h.eofDone = true
	switch h.state {
	case stBodyClose:
		h.endMessage()
	case stBodyLength, stChunkSize, stChunkData, stChunkCRLF, stTrailers:
		if h.cur != nil {
			h.cur.ex.Flags |= exchange.FlagIncomplete
		}
		h.endMessage()
	}
}

// resync scans for the start of the next message after lost framing: a line that is a
// valid request or status line for this direction.
func (h *side) resync(data []byte) int {
	wantResp, either := h.isServer(), !h.isClient() && !h.isServer()
	for i := 0; i < len(data); {
		if h.isStartAt(data[i:], wantResp, either) {
			h.state = stStart
			return i
		}
		j := bytes.IndexByte(data[i:], '\n')
		if j < 0 {
			break
		}
		i += j + 1
	}
	return len(data)
}

func (h *side) isStartAt(b []byte, wantResp, either bool) bool {
	line := b
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		line = b[:i]
		if either {
			return validStartLine(line, true) || validStartLine(line, false)
		}
		return validStartLine(line, wantResp)
	}
	// The line continues past this segment: accept a plausible beginning.
	k := classifyStart(b)
	if either {
		return len(b) >= 12 && (k == startRequest || k == startResponse)
	}
	return len(b) >= 12 && ((wantResp && k == startResponse) || (!wantResp && k == startRequest))
}
