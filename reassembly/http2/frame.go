package http2

import "strings"

// Preface is the client connection preface that opens every HTTP/2 connection (RFC 9113 §3.4).
const Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// frameHeaderLen is the size of the fixed frame header.
const frameHeaderLen = 9

// resyncMaxLen is the largest frame length accepted when hunting for a frame boundary in
// bytes whose framing is unknown: the default SETTINGS_MAX_FRAME_SIZE. Longer frames are
// legal once a peer allows them, but they are not used to find the framing.
const resyncMaxLen = 16384

// Frame types (RFC 9113 §6).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9
	numKnownFrames    = 10
)

// Frame flags.
const (
	flagEndStream  = 0x1 // DATA, HEADERS
	flagAck        = 0x1 // SETTINGS, PING
	flagEndHeaders = 0x4 // HEADERS, PUSH_PROMISE, CONTINUATION
	flagPadded     = 0x8 // DATA, HEADERS, PUSH_PROMISE
	flagPriority   = 0x20
)

// frameHeader is a parsed 9-byte frame header.
type frameHeader struct {
	length uint32
	typ    uint8
	flags  uint8
	sid    uint32 // stream identifier, reserved bit included (plausible clears it)
}

func parseFrameHeader(b []byte) frameHeader {
	return frameHeader{
		length: uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]),
		typ:    b[3],
		flags:  b[4],
		sid:    uint32(b[5])<<24 | uint32(b[6])<<16 | uint32(b[7])<<8 | uint32(b[8]),
	}
}

// allowedFlags are the flags each frame type defines; a sender must not set others.
var allowedFlags = [numKnownFrames]uint8{
	frameData:         flagEndStream | flagPadded,
	frameHeaders:      flagEndStream | flagEndHeaders | flagPadded | flagPriority,
	framePriority:     0,
	frameRSTStream:    0,
	frameSettings:     flagAck,
	framePushPromise:  flagEndHeaders | flagPadded,
	framePing:         flagAck,
	frameGoAway:       0,
	frameWindowUpdate: 0,
	frameContinuation: flagEndHeaders,
}

// plausible reports whether h could be a frame header a conforming peer sent: a known
// type, only its defined flags, the reserved bit clear, a stream id where the type needs
// one (and none where it must not), the fixed lengths of fixed-size frames, and a length
// within maxLen. Random bytes pass with a probability around 1e-7 per offset; two
// consecutive plausible headers are what resynchronisation requires.
func plausible(h frameHeader, maxLen uint32) bool {
	if h.length > maxLen || h.typ >= numKnownFrames || h.flags&^allowedFlags[h.typ] != 0 || h.sid>>31 != 0 {
		return false
	}
	switch h.typ {
	case frameData, frameHeaders, frameContinuation:
		return h.sid != 0
	case framePriority:
		return h.sid != 0 && h.length == 5
	case frameRSTStream:
		return h.sid != 0 && h.length == 4
	case frameSettings:
		return h.sid == 0 && h.length%6 == 0 && (h.flags&flagAck == 0 || h.length == 0)
	case framePushPromise:
		return h.sid != 0 && h.length >= 4
	case framePing:
		return h.sid == 0 && h.length == 8
	case frameGoAway:
		return h.sid == 0 && h.length >= 8
	default: // WINDOW_UPDATE
		return h.length == 4
	}
}

// IsPreface reports whether b begins with the client preface, or with a prefix of it at
// least 4 bytes long ("PRI " is a method reserved for the preface, RFC 9113 §11.6).
func IsPreface(b []byte) bool {
	n := min(len(b), len(Preface))
	return n >= 4 && string(b[:n]) == Preface[:n]
}

// IsServerPreface reports whether b begins with what an HTTP/2 server sends first on a
// connection: a SETTINGS frame (not an acknowledgement) on stream 0.
func IsServerPreface(b []byte) bool {
	if len(b) < frameHeaderLen {
		return false
	}
	h := parseFrameHeader(b)
	return h.typ == frameSettings && h.flags == 0 && plausible(h, resyncMaxLen)
}

// FindFrames returns the offset of the first frame boundary in b that the bytes prove:
// a plausible frame header followed, right after its payload, by another plausible one;
// or, when start is true (b begins where a TCP segment began, where senders usually begin
// frames), a plausible header at offset 0 whose frame ends exactly at the end of b. It
// returns -1 when no boundary is proven; more bytes may prove one later, from the offset
// returned as resume (earlier offsets are excluded for good).
func FindFrames(b []byte, start bool) (at, resume int) {
	for i := 0; i+frameHeaderLen <= len(b); i++ {
		h := parseFrameHeader(b[i:])
		if !plausible(h, resyncMaxLen) {
			continue
		}
		next := i + frameHeaderLen + int(h.length)
		if i == 0 && start && next == len(b) {
			return 0, 0
		}
		if next+frameHeaderLen > len(b) {
			return -1, i // undecided: wait for the bytes after this frame
		}
		if plausible(parseFrameHeader(b[next:]), resyncMaxLen) {
			return i, i
		}
	}
	return -1, max(0, len(b)-frameHeaderLen+1)
}

// frameTypeNames label the frame counters; index numKnownFrames is every other type.
var frameTypeNames = [numKnownFrames + 1]string{"data", "headers", "priority", "rst_stream", "settings",
	"push_promise", "ping", "goaway", "window_update", "continuation", "unknown"}

// hasPrefixFold reports whether s starts with prefix, ASCII case-insensitively.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
