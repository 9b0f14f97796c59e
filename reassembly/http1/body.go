package http1

import "bytes"

// preallocBody sizes the body for its announced length, up to preallocBytes: a
// Content-Length is a promise the capture may not keep (a flood of requests announcing
// 64 KiB and sending 900 bytes must not hold 64 KiB each). Longer bodies grow as they come.
func (h *side) preallocBody(n int64) {
	if h.cur != nil && n > 0 {
		size := min(int(min(n, int64(h.s.p.cfg.BodyCap), preallocBytes)), h.s.p.budget.Room())
		*h.msg.body = make([]byte, 0, size)
		h.charge(size)
	}
}

// preallocBytes bounds what a Content-Length alone makes the parser allocate.
const preallocBytes = 4 << 10

// charge adds n bytes (negative to return them) to what the current exchange holds.
func (h *side) charge(n int) {
	h.cur.charged += n
	h.s.p.budget.Charge(n)
}

// appendBody keeps body bytes up to the cap. Bodies of exchanges not yet emitted share the
// memory budget with everything else, charged by capacity (what the heap really holds),
// so requests that are never answered cannot pile up memory across many connections.
func (h *side) appendBody(b []byte) {
	m := &h.msg
	if m.size == nil {
		return // orphan: counted only
	}
	p := h.s.p
	*m.size += int64(len(b))
	body := *m.body
	if room := p.cfg.BodyCap - len(body); len(b) > room {
		b = b[:max(room, 0)]
		*m.truncated = true
	}
	if need := len(body) + len(b); need > cap(body) {
		// Grow as append would (doubling, bounded by the cap), or exactly when that does
		// not fit, or as far as the budget allows.
		size := min(max(need, 2*cap(body)), p.cfg.BodyCap)
		if !p.budget.Fits(size - cap(body)) {
			size = need
		}
		if spare := p.budget.Room(); size-cap(body) > spare {
			size = cap(body) + spare
			b = b[:max(size-len(body), 0)]
			*m.truncated = true
			p.c.drops[DropBodyMemory].Add(1)
		}
		if size > cap(body) {
			grown := make([]byte, len(body), size)
			copy(grown, body)
			h.charge(size - cap(body))
			body = grown
		}
	}
	*m.body = append(body, b...)
}

// readLine handles chunk-size and trailer lines.
func (h *side) readLine(data []byte) int {
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
