package http2

import (
	"encoding/binary"

	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// sideState is where one direction's frame reader stands.
type sideState uint8

const (
	stFrameHeader sideState = iota // reading a 9-byte frame header
	stPreface                      // matching the client preface
	stSkip101                      // skipping the server's HTTP/1.1 101 response (h2c upgrade seen from the client first)
	stPrefix                       // the fixed fields before a frame's content: pad length, priority, promised stream
	stContent                      // a frame's content
	stPadding                      // a frame's padding
	stResync                       // framing unknown (joined mid-way, or lost in a gap): hunting for frame boundaries
)

// maxCtrlBytes is how much of a control frame's payload is kept (GOAWAY debug data and
// long SETTINGS are cut; what is parsed fits).
const maxCtrlBytes = 64

// maxSkip101 bounds the HTTP/1.1 response skipped before an upgraded server's frames.
const maxSkip101 = 16 << 10

// resyncBufBytes bounds the bytes kept while hunting for frame boundaries: room for a
// frame of the largest length accepted there plus the next header.
const resyncBufBytes = 2 * (resyncMaxLen + 2*frameHeaderLen)

// side is one direction of a connection: the frame reader and the HPACK context of what
// that direction sends.
type side struct {
	s     *stream
	dir   tcp.Dir
	began bool
	state sideState
	ts    int64 // capture time of the segment being parsed

	hdr  [frameHeaderLen]byte
	hdrN int
	fh   frameHeader // the frame being read
	fTS  int64       // capture time of its first byte

	pre     [6]byte
	preN    int
	preWant int
	left    int  // content bytes left in the current frame
	pad     int  // padding after the content
	bad     bool // malformed frame (padding longer than the frame): its content is ignored

	target *h2stream // the DATA frame's stream; nil when unknown (its bytes are not kept)
	ctrl   []byte    // the first maxCtrlBytes of a control frame's payload

	// The header block being assembled: HEADERS or PUSH_PROMISE, then CONTINUATION.
	block         []byte
	inBlock       bool
	blockSid      uint32
	blockPromised uint32 // PUSH_PROMISE's promised stream
	blockPush     bool
	blockEnd      bool // END_STREAM on the HEADERS frame
	blockLost     bool // bytes of the block are missing: its fields are lost and so is the table
	blockTS       int64
	blockCharged  int // capacity of block charged to the budget

	dec          hpackDecoder
	tableCharged int // the decoding table's memory charged to the budget

	prefN    int    // preface bytes matched
	skipTail uint32 // last four bytes seen while skipping the 101 response
	skipN    int

	rs       []byte // bytes held while hunting for frame boundaries
	rsResume int    // offsets of rs before it are ruled out
}

func (h *side) init(s *stream, d tcp.Dir) {
	*h = side{s: s, dir: d, dec: newHPACKDecoder()}
}

// begin picks how the direction's first bytes are read.
func (h *side) begin(b []byte) {
	h.began = true
	switch {
	case string(b[:min(len(b), len(Preface))]) == Preface[:min(len(b), len(Preface))]:
		h.state = stPreface
	case h.s.tc.HandshakeSeen(h.dir):
		h.state = stFrameHeader
	default:
		h.enterResync()
	}
}

// feed parses in-order bytes.
func (h *side) feed(b []byte) {
	whole := len(b)
	for len(b) > 0 {
		switch h.state {
		case stFrameHeader:
			if h.hdrN == 0 && len(b) >= frameHeaderLen {
				h.fh = parseFrameHeader(b)
				b = b[frameHeaderLen:]
			} else {
				n := copy(h.hdr[h.hdrN:], b)
				h.hdrN += n
				b = b[n:]
				if h.hdrN < frameHeaderLen {
					return
				}
				h.hdrN = 0
				h.fh = parseFrameHeader(h.hdr[:])
			}
			h.beginFrame()
		case stPrefix:
			n := copy(h.pre[h.preN:h.preWant], b)
			h.preN += n
			b = b[n:]
			if h.preN == h.preWant {
				h.afterPrefix()
			}
		case stContent:
			n := min(len(b), h.left)
			h.content(b[:n])
			h.left -= n
			b = b[n:]
			if h.left == 0 {
				h.endContent()
			}
		case stPadding:
			n := min(len(b), h.pad)
			h.pad -= n
			b = b[n:]
			if h.pad == 0 {
				h.endFrame()
			}
		case stPreface:
			n := min(len(b), len(Preface)-h.prefN)
			if string(b[:n]) != Preface[h.prefN:h.prefN+n] {
				h.s.p.c.outcomes[OutParseError].Add(1)
				h.enterResync()
				continue
			}
			h.prefN += n
			b = b[n:]
			if h.prefN == len(Preface) {
				h.state = stFrameHeader
			}
		case stSkip101:
			b = h.skip101(b)
		case stResync:
			h.resync(b, len(b) == whole)
			return
		}
	}
}

// skip101 passes over an HTTP/1.1 response head (the 101 of an h2c upgrade) before the
// server's first frame.
func (h *side) skip101(b []byte) []byte {
	if h.skipN == 0 && b[0] != 'H' {
		h.state = stFrameHeader // no HTTP/1.1 response after all: frames start here
		return b
	}
	for i, c := range b {
		h.skipTail = h.skipTail<<8 | uint32(c)
		h.skipN++
		if h.skipTail == 0x0d0a0d0a {
			h.state = stFrameHeader
			return b[i+1:]
		}
	}
	if h.skipN > maxSkip101 {
		h.s.p.c.outcomes[OutParseError].Add(1)
		h.enterResync()
	}
	return nil
}

// beginFrame acts on a complete frame header.
func (h *side) beginFrame() {
	fh := &h.fh
	fh.sid &^= 1 << 31
	h.fTS = h.ts
	if fh.typ < numKnownFrames {
		h.s.p.c.frames[fh.typ].Add(1)
	} else {
		h.s.p.c.frames[numKnownFrames].Add(1)
	}
	if h.inBlock && (fh.typ != frameContinuation || fh.sid != h.blockSid) {
		// RFC 9113 §6.10: nothing may come between a header block's frames.
		h.s.p.c.outcomes[OutParseError].Add(1)
		h.abandonBlock()
	}
	if fh.typ == frameContinuation && !h.inBlock {
		// The block it continues was not seen (joined mid-way, or lost): its fields are
		// unknown and so are the entries it added to the table.
		h.dec.lose()
		h.s.blockLost(h, fh.sid, false)
	}
	h.bad, h.target, h.preN = false, nil, 0
	h.preWant = 0
	switch fh.typ {
	case frameData:
		if padded(fh) {
			h.preWant = 1
		}
	case frameHeaders:
		if padded(fh) {
			h.preWant = 1
		}
		if fh.flags&flagPriority != 0 {
			h.preWant += 5
		}
	case framePushPromise:
		h.preWant = 4
		if padded(fh) {
			h.preWant = 5
		}
	}
	if h.preWant > int(fh.length) {
		h.preWant = 0
		h.bad = true
	}
	h.left = int(fh.length) - h.preWant
	if h.preWant > 0 {
		h.state = stPrefix
		return
	}
	h.afterPrefix()
}

// padded reports whether the frame starts with a pad length (only three types may).
func padded(fh *frameHeader) bool {
	return fh.flags&flagPadded != 0 && (fh.typ == frameData || fh.typ == frameHeaders || fh.typ == framePushPromise)
}

// afterPrefix applies the fixed fields and starts the content.
func (h *side) afterPrefix() {
	fh := &h.fh
	h.pad = 0
	if padded(fh) && !h.bad {
		h.pad = int(h.pre[0])
		if h.pad > h.left {
			h.pad, h.bad = 0, true // RFC 9113 §6.1: a protocol error; skip the frame
			h.s.p.c.outcomes[OutParseError].Add(1)
		} else {
			h.left -= h.pad
		}
	}
	switch fh.typ {
	case frameData:
		if !h.bad {
			h.target = h.s.dataTarget(h, fh.sid)
		}
	case frameHeaders, framePushPromise:
		h.inBlock, h.blockSid, h.blockTS = true, fh.sid, h.fTS
		h.blockPush = fh.typ == framePushPromise
		h.blockEnd = fh.typ == frameHeaders && fh.flags&flagEndStream != 0
		h.blockLost = h.bad
		h.block = h.block[:0]
		if h.blockPush && h.preWant >= 4 {
			h.blockPromised = binary.BigEndian.Uint32(h.pre[h.preWant-4:]) &^ (1 << 31)
		}
	case frameContinuation:
	default:
		h.ctrl = h.ctrl[:0]
	}
	if h.left == 0 {
		h.endContent()
		return
	}
	h.state = stContent
}

// content takes the next bytes of the current frame's content.
func (h *side) content(b []byte) {
	switch h.fh.typ {
	case frameData:
		if h.target != nil {
			h.target.appendBody(h, b)
		}
	case frameHeaders, framePushPromise, frameContinuation:
		if !h.inBlock || h.blockLost {
			return
		}
		p := h.s.p
		need := len(h.block) + len(b)
		if need > p.cfg.MaxHeaderBytes {
			p.c.drops[DropHeaderTooLarge].Add(1)
			h.blockLost = true
			h.block = h.block[:0]
			return
		}
		if need > cap(h.block) {
			size := min(max(need, 2*cap(h.block), 256), p.cfg.MaxHeaderBytes)
			if !p.budget.Fits(size - h.blockCharged) {
				p.c.drops[DropHeaderMemory].Add(1)
				h.blockLost = true
				h.block = h.block[:0]
				return
			}
			grown := make([]byte, len(h.block), size)
			copy(grown, h.block)
			p.budget.Charge(size - h.blockCharged)
			h.block, h.blockCharged = grown, size
		}
		h.block = append(h.block, b...)
	default:
		if n := min(len(b), maxCtrlBytes-len(h.ctrl)); n > 0 {
			h.ctrl = append(h.ctrl, b[:n]...)
		}
	}
}

func (h *side) endContent() {
	if h.pad > 0 {
		h.state = stPadding
		return
	}
	h.endFrame()
}

// endFrame acts on a complete frame.
func (h *side) endFrame() {
	h.state = stFrameHeader
	fh := &h.fh
	s := h.s
	switch fh.typ {
	case frameData:
		if h.target != nil && fh.flags&flagEndStream != 0 {
			s.endMessage(h.target, h.dir)
		}
		h.target = nil
	case frameHeaders, framePushPromise, frameContinuation:
		if h.inBlock && fh.flags&flagEndHeaders != 0 {
			h.finishBlock()
		}
	case frameRSTStream:
		if len(h.ctrl) == 4 && !h.bad {
			s.reset(h, fh.sid, binary.BigEndian.Uint32(h.ctrl))
		}
	case frameGoAway:
		if len(h.ctrl) >= 8 {
			s.goAway(h, binary.BigEndian.Uint32(h.ctrl)&^(1<<31))
		}
	case frameSettings:
		if fh.flags&flagAck == 0 {
			h.settings()
		}
	}
}

// settings applies a SETTINGS frame: SETTINGS_HEADER_TABLE_SIZE bounds the table the
// peer's encoder may use (and so the peer's decoding context here).
func (h *side) settings() {
	for b := h.ctrl; len(b) >= 6; b = b[6:] {
		if binary.BigEndian.Uint16(b) == 0x1 {
			peer := &h.s.side[1-h.dir].dec
			v := binary.BigEndian.Uint32(b[2:])
			if v < peer.maxSize {
				peer.setMaxSize(v)
			}
		}
	}
}

// finishBlock decodes a complete header block and hands its fields to the stream.
func (h *side) finishBlock() {
	h.inBlock = false
	if h.blockLost {
		h.dec.lose()
		h.s.p.c.events[EvHPACKError].Add(1)
		h.s.blockLost(h, h.blockSid, h.blockEnd)
	} else {
		fields, st, err := h.dec.decode(h.block)
		if err != nil {
			h.s.p.c.events[EvHPACKError].Add(1)
			h.s.p.c.outcomes[OutParseError].Add(1)
		}
		if st.unknown+st.invalid > 0 {
			h.s.p.c.events[EvHPACKUnknown].Add(uint64(st.unknown + st.invalid))
		}
		h.s.headers(h, fields, err != nil || st.unknown+st.invalid > 0)
	}
	h.chargeTable(false)
	if cap(h.block) > 16<<10 {
		h.releaseBlock() // keep idle connections small
	}
}

// releaseBlock gives the header block buffer back.
func (h *side) releaseBlock() {
	h.s.p.budget.Release(h.blockCharged)
	h.block, h.blockCharged = nil, 0
}

// chargeTable brings the budget's share of the decoding table up to date (to nothing
// when the connection is done).
func (h *side) chargeTable(done bool) {
	want := 0
	if !done {
		want = int(h.dec.size) + cap(h.dec.ring)*entryCost
	}
	if d := want - h.tableCharged; d > 0 {
		h.s.p.budget.Require(d)
	} else {
		h.s.p.budget.Release(-d)
	}
	h.tableCharged = want
}

// abandonBlock gives up a header block cut off by another frame: its entries are lost.
func (h *side) abandonBlock() {
	h.inBlock = false
	h.dec.lose()
	h.s.blockLost(h, h.blockSid, h.blockEnd)
}

// gap reports n bytes of this direction lost.
func (h *side) gap(n int) {
	switch h.state {
	case stContent:
		if n <= h.left {
			h.lostContent(n)
			h.left -= n
			if h.left == 0 {
				h.endContent()
			}
			return
		}
	case stPadding:
		if n <= h.pad {
			h.pad -= n
			if h.pad == 0 {
				h.endFrame()
			}
			return
		}
	case stResync:
		h.releaseResync() // bytes before a hole cannot chain with bytes after it
		return
	}
	h.lostFraming()
}

// lostContent notes n bytes missing from the current frame's content.
func (h *side) lostContent(n int) {
	switch h.fh.typ {
	case frameData:
		if h.target != nil {
			h.target.lostBody(h, n)
		}
	case frameHeaders, framePushPromise, frameContinuation:
		if h.inBlock {
			h.blockLost = true
		}
	}
}

// lostFraming gives up the frame boundaries after a gap or bad bytes: any frame may have
// been lost, so every open stream may miss data, and any header block may have changed
// the table.
func (h *side) lostFraming() {
	h.s.p.c.events[EvFramingLost].Add(1)
	if h.inBlock {
		h.inBlock = false
		h.s.blockLost(h, h.blockSid, false)
	}
	h.s.flagGapAll()
	h.enterResync()
}

func (h *side) enterResync() {
	h.state = stResync
	h.hdrN, h.target, h.inBlock = 0, nil, false
	h.dec.lose()
	h.releaseResync()
}

func (h *side) releaseResync() {
	h.s.p.budget.Release(len(h.rs))
	h.rs, h.rsResume = h.rs[:0], 0
	if cap(h.rs) > resyncBufBytes {
		h.rs = nil
	}
}

// resync hunts for frame boundaries in bytes whose framing is unknown. A plausible frame
// header right at the start of a segment is taken at once (senders begin frames where
// their writes begin); elsewhere two consecutive plausible headers are required.
func (h *side) resync(b []byte, segStart bool) {
	if len(h.rs) == 0 && segStart && len(b) >= frameHeaderLen && plausible(parseFrameHeader(b), resyncMaxLen) {
		h.state = stFrameHeader
		h.feed(b)
		return
	}
	p := h.s.p
	if !p.budget.Fits(len(b)) {
		p.c.drops[DropBodyMemory].Add(1)
		h.releaseResync()
		return
	}
	h.rs = append(h.rs, b...)
	p.budget.Charge(len(b))
	at, resume := FindFrames(h.rs[h.rsResume:], false)
	if at >= 0 {
		rest := h.rs[h.rsResume+at:]
		p.budget.Release(len(h.rs))
		h.rs, h.rsResume = nil, 0 // rest still holds the bytes
		h.state = stFrameHeader
		h.feed(rest)
		return
	}
	h.rsResume += resume
	if len(h.rs) > resyncBufBytes {
		drop := max(h.rsResume, len(h.rs)-resyncBufBytes/2)
		n := copy(h.rs, h.rs[drop:])
		h.rs = h.rs[:n]
		h.rsResume = max(0, h.rsResume-drop)
		p.budget.Release(drop)
	}
}
