package http2

import "sync/atomic"

// Outcome says how an HTTP/2 stream ended. The names match the HTTP/1 parser's, so the
// two add up in one exchanges metric.
type Outcome uint8

// The outcomes counted per stream.
const (
	OutComplete       Outcome = iota // request and response both ended normally
	OutNoResponse                    // emitted without a response: timeout, reset, GOAWAY or close
	OutTruncated                     // emitted with a body cut (cap, gap), a message cut short or header fields missing
	OutOrphanResponse                // a response whose request was never seen; counted, not emitted
	OutParseError                    // a malformed frame or header block
	NumOutcomes
)

var outcomeNames = [NumOutcomes]string{"complete", "no_response", "truncated", "orphan_response", "parse_error"}

// String is the outcome's metric label.
func (o Outcome) String() string { return outcomeNames[o] }

// Drop says why the parser gave something up.
type Drop uint8

// The parser's drop reasons.
const (
	DropHeaderTooLarge Drop = iota // header block over MaxHeaderBytes: fields lost, HPACK table forgotten
	DropBodyMemory                 // a body cut short because the memory budget is spent
	DropStreamLimit                // more than MaxStreams open streams: the oldest emitted early
	DropHeaderMemory               // a header block dropped because the memory budget is spent (HPACK table forgotten)
	NumDrops
)

var dropNames = [NumDrops]string{"header_too_large", "body_memory", "stream_limit", "header_memory"}

// String is the drop's metric label.
func (d Drop) String() string { return dropNames[d] }

// Event is something noteworthy the parser met that is neither an outcome nor a drop.
type Event uint8

// The events counted.
const (
	EvHPACKUnknown Event = iota // a header field referenced a table entry the capture never saw; the field is missing
	EvHPACKError                // a header block could not be decoded (malformed, or partly lost): its fields after the fault are missing and the table is forgotten
	EvFramingLost               // a gap (or bad bytes) cut through frame boundaries: frames were hunted for again
	EvUpgrade                   // an HTTP/1.1 connection switched to HTTP/2 with Upgrade: h2c
	EvGRPCMessages              // gRPC messages rendered as JSON
	NumEvents
)

var eventNames = [NumEvents]string{"hpack_unknown_field", "hpack_error", "framing_lost", "h2c_upgrade", "grpc_messages"}

// String is the event's metric label.
func (e Event) String() string { return eventNames[e] }

// FrameTypeName is the label of frame type i as counted in Stats.Frames.
func FrameTypeName(i int) string { return frameTypeNames[i] }

// NumFrameTypes is the number of frame counters: the ten RFC 9113 types plus "unknown".
const NumFrameTypes = numKnownFrames + 1

// Stats is a snapshot of a parser's counters.
type Stats struct {
	Outcomes [NumOutcomes]uint64
	Drops    [NumDrops]uint64
	Events   [NumEvents]uint64
	Frames   [NumFrameTypes]uint64 // by type, index as FrameTypeName
}

// counters are written by the parser's goroutine and read at scrape time from others.
type counters struct {
	outcomes [NumOutcomes]atomic.Uint64
	drops    [NumDrops]atomic.Uint64
	events   [NumEvents]atomic.Uint64
	frames   [NumFrameTypes]atomic.Uint64
}

func (c *counters) snapshot() Stats {
	var s Stats
	for i := range c.outcomes {
		s.Outcomes[i] = c.outcomes[i].Load()
	}
	for i := range c.drops {
		s.Drops[i] = c.drops[i].Load()
	}
	for i := range c.events {
		s.Events[i] = c.events[i].Load()
	}
	for i := range c.frames {
		s.Frames[i] = c.frames[i].Load()
	}
	return s
}
