package reassembly

import (
	"bytes"
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"strings"
	"time"
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
)

// maxLineBytes bounds chunk-size and trailer lines.
const maxLineBytes = 8 << 10

// half is one direction of a connection: TCP sequencing plus the HTTP parser reading it.
type half struct {
	f       *flow
	dir     Dir
	synced  bool
	synSeen bool   // a SYN was seen: isn holds its sequence number
	isn     uint32 // initial sequence number, to tell a new connection on the same 5-tuple
	fin     bool
	eofDone bool
	nextSeq uint32
	ack     uint32 // of the segment being processed
	hasAck  bool
	ts      int64

	ooo      []oooSeg
	oooBytes int

	state     parseState
	buf       []byte // partial header block, chunk line, or held response bytes
	remaining int64
	cur       *exState // message being read; nil for orphan responses (bytes counted, not kept)
	msg       messageBody
	msgSeq    uint32 // sequence number of the current message's first byte
	msgTS     int64
	msgAck    uint32
	msgHasAck bool
	gapInMsg  bool
	lostSync  bool // a gap may have swallowed whole messages: realign pairing by ACKs

	holdSeq   uint32
	holdTS    int64
	holdMarks []holdMark // where each held segment starts, with its ACK and time
	heldBytes int        // held bytes and marks charged to the out-of-order caps
	noHold    bool       // replaying held bytes as orphans: never hold them again
}

// holdMark records one held segment, or with gap set, bytes lost after the ones before it.
type holdMark struct {
	off    int
	gap    int
	ack    uint32
	hasAck bool
	ts     int64
}

// messageBody points at the side of an exchange whose body is being read.
type messageBody struct {
	body      *[]byte
	size      *int64
	truncated *bool
	encoding  string
}

func (h *half) init(f *flow, d Dir) {
	*h = half{f: f, dir: d}
}

func (h *half) isClient() bool { return h.f.clientDir == int8(h.dir) }
func (h *half) isServer() bool { return h.f.clientDir == int8(1-h.dir) }

func (h *half) dropBuffers() {
	h.unaccountHeld()
	h.buf, h.holdMarks = nil, nil
	h.cur, h.msg = nil, messageBody{}
}

// feed parses in-order bytes; seq is the sequence number of data[0].
func (h *half) feed(data []byte, seq uint32) {
	for len(data) > 0 {
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
		}
		if n < 0 {
			return
		}
		data = data[n:]
		seq += uint32(n)
	}
}

// startMessage skips blank lines between messages and decides what the next bytes are.
func (h *half) startMessage(data []byte, seq uint32) int {
	n := 0
	for n < len(data) && (data[n] == '\r' || data[n] == '\n') {
		n++
	}
	if n == len(data) {
		return n
	}
	if !h.isClient() {
		if k := classifyStart(data[n:]); k == startResponse || (k == startNeedMore && h.isServer()) {
			if h.f.clientDir == dirUnknown {
				h.f.clientDir = int8(1 - h.dir)
			}
			if len(h.f.pending) == 0 && !h.noHold {
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

func (h *half) startHold(seq uint32) {
	h.state = stHold
	h.holdSeq, h.holdTS = seq, h.f.a.now
	h.f.a.pendAdd(h.f)
}

// hold keeps response bytes until a request arrives to pair them with: the two
// directions of a connection may be captured out of order. Each held segment keeps its
// ACK, which pairing checks.
func (h *half) hold(data []byte) {
	h.holdMarks = append(h.holdMarks, holdMark{off: len(h.buf), ack: h.ack, hasAck: h.hasAck, ts: h.ts})
	h.buf = append(h.buf, data...)
	h.accountHeld(len(data) + holdMarkCost)
}

// holdMarkCost is what one held segment's mark costs, so a stream of tiny segments is
// bounded by the caps like their bytes are.
const holdMarkCost = 48

// accountHeld charges n held bytes to the per-flow and global out-of-order caps; over
// either, the held responses are given up as orphans rather than grow further.
func (h *half) accountHeld(n int) {
	a := h.f.a
	h.heldBytes += n
	a.addBuffered(n)
	if h.heldBytes > a.cfg.FlowBufferBytes || a.buffered > a.cfg.BufferBytes {
		h.releaseHold(true)
	}
}

// unaccountHeld returns the held bytes to the caps.
func (h *half) unaccountHeld() {
	h.f.a.addBuffered(-h.heldBytes)
	h.heldBytes = 0
}

// releaseHold replays held response bytes segment by segment, pairing them with the
// requests now pending; what still finds no request is held again. With orphan set
// (timeout, overflow, close) nothing is held again: unpaired responses are orphans.
func (h *half) releaseHold(orphan bool) {
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
	h.ack, h.hasAck, h.ts = savedAck, savedHas, savedTS
	if h.fin && h.state != stHold {
		h.eof()
	}
}

// readHead accumulates a start line and header block and acts on it once complete.
func (h *half) readHead(data []byte) int {
	limit := h.f.a.cfg.MaxHeaderBytes
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
func (h *half) checkStart(b []byte) bool {
	k := classifyStart(b)
	switch {
	case k == startNeedMore:
		return true
	case k == startRequest && !h.isServer(), k == startResponse && !h.isClient():
		if h.f.clientDir == dirUnknown {
			d := int8(h.dir)
			if k == startResponse {
				d = int8(1 - h.dir)
			}
			h.f.clientDir = d
		}
		return true
	}
	if !h.f.httpSeen {
		if !h.f.nonHTTP {
			h.f.nonHTTP = true
			h.f.a.c.outcomes[outNonHTTP].Add(1)
		}
		h.f.ignore()
		return false
	}
	h.protocolError()
	return false
}

func (h *half) headerTooLarge() {
	h.f.a.c.drops[dropHeaderTooLarge].Add(1)
	h.protocolError()
}

// protocolError abandons the current message and hunts for the next one.
func (h *half) protocolError() {
	h.f.a.c.outcomes[outParseError].Add(1)
	h.abandon()
}

// abandon drops the message in progress (keeping what a pending exchange already has) and
// resynchronises.
func (h *half) abandon() {
	if h.cur != nil {
		h.cur.ex.Flags |= exchange.FlagIncomplete
		h.finishSide()
	}
	h.buf = nil
	h.cur, h.msg = nil, messageBody{}
	h.state = stResync
}

func (h *half) onHead(block []byte) {
	hd, err := parseHead(block)
	if err != nil || hd.response != h.isServer() {
		h.protocolError()
		return
	}
	h.f.httpSeen = true
	if hd.response {
		h.onResponseHead(&hd)
	} else {
		h.onRequestHead(&hd)
	}
}

func (h *half) onRequestHead(hd *head) {
	st := &exState{startSeq: h.msgSeq, reqTime: h.msgTS}
	req := &st.ex.Request
	req.Method, req.Target, req.Proto, req.Host, req.Headers = hd.method, hd.target, hd.proto, hd.host, hd.headers
	req.Time = time.Unix(0, h.msgTS)
	req.Path, req.RawQuery = splitTarget(hd.target, &req.Host)
	h.setExchangeAddrs(st)
	h.cur = st
	h.msg = messageBody{body: &req.Body, size: &req.BodySize, truncated: &req.BodyTruncated, encoding: hd.encoding}
	switch {
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
	h.f.enqueue(st)
}

func (h *half) onResponseHead(hd *head) {
	f := h.f
	var st *exState
	if h.lostSync && h.msgHasAck {
		// Responses were lost in a gap. A server answers a request before the client sends
		// the next one unless it pipelines, so a response that acknowledges the next
		// request's bytes belongs to a later request: the ones before it went unanswered.
		for len(f.pending) > 1 && f.pending[0].reqDone && int32(h.msgAck-f.pending[1].startSeq) > 0 {
			old := f.popPending()
			old.ex.Flags |= exchange.FlagNoResponse | exchange.FlagGap
			f.a.emit(old)
		}
	}
	h.lostSync = false
	if len(f.pending) > 0 {
		st = f.pending[0]
		// A response sent before the server had received any of the request cannot be
		// its answer (we joined mid-connection or the request was lost).
		if h.msgHasAck && int32(h.msgAck-st.startSeq) <= 0 {
			st = nil
		}
	}
	method := ""
	if st != nil {
		method = st.ex.Request.Method
	}
	if hd.status >= 100 && hd.status < 200 && hd.status != 101 {
		h.state = stStart // informational (100 Continue): the final response follows
		return
	}
	if st == nil {
		f.a.c.outcomes[outOrphanResponse].Add(1)
		h.cur, h.msg = nil, messageBody{}
	} else {
		f.popPending()
		resp := &st.ex.Response
		resp.Status, resp.Reason, resp.Proto, resp.Headers = hd.status, hd.reason, hd.proto, hd.headers
		resp.Time = time.Unix(0, h.msgTS)
		h.cur = st
		h.msg = messageBody{body: &resp.Body, size: &resp.BodySize, truncated: &resp.BodyTruncated, encoding: hd.encoding}
	}
	switch {
	case hd.status == 101 || (method == "CONNECT" && hd.status < 300):
		h.endMessage()
		f.ignore() // the connection now carries another protocol
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
}

func (h *half) setExchangeAddrs(st *exState) {
	k := &h.f.key
	client, server := k.Lo, k.Hi
	if h.dir == HiToLo {
		client, server = k.Hi, k.Lo
	}
	st.ex.Tunnel, st.ex.Client, st.ex.Server = k.Tunnel, client.AddrPort(), server.AddrPort()
}

// splitTarget separates path and query, reducing an absolute-form target to its path
// (and using its authority as the host when the Host header is missing).
func splitTarget(target string, host *string) (path, query string) {
	if i := strings.Index(target, "://"); i > 0 && !strings.HasPrefix(target, "/") {
		rest := target[i+3:]
		auth, p, found := strings.Cut(rest, "/")
		if *host == "" {
			*host = auth
		}
		target = "/"
		if found {
			target = "/" + p
		}
	}
	path, query, _ = strings.Cut(target, "?")
	return path, query
}

func (h *half) preallocBody(n int64) {
	if h.cur != nil && n > 0 {
		*h.msg.body = make([]byte, 0, min(n, int64(h.f.a.cfg.BodyCap)))
	}
}

func (h *half) appendBody(b []byte) {
	m := &h.msg
	if m.size == nil {
		return // orphan: counted only
	}
	a := h.f.a
	*m.size += int64(len(b))
	room := a.cfg.BodyCap - len(*m.body)
	if len(b) > room {
		b = b[:max(room, 0)]
		*m.truncated = true
	}
	// Bodies of exchanges not yet emitted share one budget, so requests that are never
	// answered cannot pile up memory across many connections.
	if spare := a.cfg.BufferBytes - a.bodyBytes; len(b) > spare {
		b = b[:max(spare, 0)]
		*m.truncated = true
		a.c.drops[dropBodyMemory].Add(1)
	}
	if len(b) > 0 {
		*m.body = append(*m.body, b...)
		a.bodyBytes += len(b)
	}
}

// readLine handles chunk-size and trailer lines.
func (h *half) readLine(data []byte) int {
	i := bytes.IndexByte(data, '\n')
	var line []byte
	n := len(data)
	if i >= 0 {
		n = i + 1
	}
	if len(h.buf) > 0 || i < 0 {
		if len(h.buf)+n > maxLineBytes {
			h.protocolError()
			return -1
		}
		h.buf = append(h.buf, data[:n]...)
		if i < 0 {
			return n
		}
		line = h.buf
	} else {
		line = data[:n]
	}
	line = bytes.TrimRight(line, "\r\n")
	if h.state == stTrailers {
		h.buf = h.buf[:0]
		if len(line) == 0 {
			h.endMessage()
		}
		return n
	}
	size, ok := parseChunkSize(line)
	h.buf = h.buf[:0]
	if !ok {
		h.protocolError()
		return -1
	}
	if size == 0 {
		h.state = stTrailers
	} else {
		h.state, h.remaining = stChunkData, size
	}
	return n
}

func parseChunkSize(line []byte) (int64, bool) {
	if i := bytes.IndexByte(line, ';'); i >= 0 { // chunk extensions
		line = line[:i]
	}
	line = bytes.TrimSpace(line)
	if len(line) == 0 || len(line) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range line {
		switch {
		case c >= '0' && c <= '9':
			n = n<<4 | int64(c-'0')
		case c >= 'a' && c <= 'f':
			n = n<<4 | int64(c-'a'+10)
		case c >= 'A' && c <= 'F':
			n = n<<4 | int64(c-'A'+10)
		default:
			return 0, false
		}
	}
	return n, true
}

// endMessage completes the message being read.
func (h *half) endMessage() {
	h.finishSide()
	h.cur, h.msg = nil, messageBody{}
	h.state = stStart
	if len(h.buf) == 0 && cap(h.buf) > 4<<10 {
		h.buf = nil
	}
}

// finishSide decodes the body and marks this side of the exchange done, emitting the
// exchange once both sides are.
func (h *half) finishSide() {
	st := h.cur
	if st == nil {
		return
	}
	if m := &h.msg; m.body != nil && m.encoding != "" && m.encoding != "identity" && len(*m.body) > 0 {
		dec, cut, err := decodeBody(*m.body, m.encoding, h.f.a.cfg.BodyCap, *m.truncated)
		if err != nil {
			st.ex.Flags |= exchange.FlagDecodeError
		} else {
			h.f.a.bodyBytes += len(dec) - len(*m.body)
			*m.body, *m.truncated = dec, cut
		}
	}
	if h.gapInMsg {
		st.ex.Flags |= exchange.FlagGap
	}
	if h.isClient() {
		st.reqDone = true
	} else {
		st.respDone = true
	}
	if st.reqDone && st.respDone {
		h.f.a.emit(st)
	}
}

// gap reports n bytes of this direction lost (capture truncation or loss).
func (h *half) gap(n int) {
	if h.state == stHold {
		// The held bytes still await their request: keep the gap in its place among them
		// (counted when replayed), so a truncated packet does not orphan the response.
		if k := len(h.holdMarks) - 1; k >= 0 && h.holdMarks[k].gap > 0 && h.holdMarks[k].off == len(h.buf) {
			h.holdMarks[k].gap += n
		} else {
			h.holdMarks = append(h.holdMarks, holdMark{off: len(h.buf), gap: n, ack: h.ack, hasAck: h.hasAck, ts: h.ts})
			h.accountHeld(holdMarkCost)
		}
		return
	}
	h.f.a.c.gaps.Add(1)
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
	case stIgnore, stResync:
	case stStart:
		h.state = stResync
	default:
		h.gapInMsg = true
		h.abandon()
	}
}

// eof is the end of this direction: a body delimited by close ends here; anything else
// in progress was cut short.
func (h *half) eof() {
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
func (h *half) resync(data []byte) int {
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

func (h *half) isStartAt(b []byte, wantResp, either bool) bool {
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
