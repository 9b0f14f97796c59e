package http1

import "bytes"

func (h *side) preallocBody(n int64) {
	if h.cur != nil && n > 0 {
		*h.msg.body = make([]byte, 0, min(n, int64(h.s.p.cfg.BodyCap)))
	}
}

func (h *side) appendBody(b []byte) {
	m := &h.msg
	if m.size == nil {
		return // orphan: counted only
	}
	p := h.s.p
	*m.size += int64(len(b))
	room := p.cfg.BodyCap - len(*m.body)
	if len(b) > room {
		b = b[:max(room, 0)]
		*m.truncated = true
	}
	// Bodies of exchanges not yet emitted share one budget, so requests that are never
	// answered cannot pile up memory across many connections.
	if spare := p.budget.Room(); len(b) > spare {
		b = b[:max(spare, 0)]
		*m.truncated = true
		p.c.drops[DropBodyMemory].Add(1)
	}
	if len(b) > 0 {
		*m.body = append(*m.body, b...)
		p.budget.Charge(len(b))
	}
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
