package http1

import "sync/atomic"

// Outcome says how an HTTP message or connection ended.
type Outcome uint8

// The outcomes counted per exchange (and per connection, for non-HTTP).
const (
	OutComplete       Outcome = iota // request and response both seen in full
	OutNoResponse                    // request emitted after the response timeout or at close
	OutTruncated                     // emitted with a body cut at the cap or by a gap
	OutOrphanResponse                // response whose request was never seen; counted, not emitted
	OutParseError                    // malformed HTTP; the stream resyncs on the next message
	OutNonHTTP                       // a connection that does not speak HTTP/1.x; ignored
	OutFramingError                  // a message with framing a server must refuse; reported, flagged
	OutLateResponse                  // a response to a request emitted before it came (pending bound hit)
	NumOutcomes
)

var outcomeNames = [NumOutcomes]string{"complete", "no_response", "truncated", "orphan_response", "parse_error", "non_http", "framing_error", "late_response"}

// String is the outcome's metric label.
func (o Outcome) String() string { return outcomeNames[o] }

// Drop says why the parser gave something up.
type Drop uint8

// The parser's drop reasons.
const (
	DropPendingFull    Drop = iota // too many pipelined requests: oldest emitted unanswered
	DropHeaderTooLarge             // header block over MaxHeaderBytes
	DropBodyMemory                 // a body cut short because the memory budget is spent
	NumDrops
)

var dropNames = [NumDrops]string{"pending_full", "header_too_large", "body_memory"}

// String is the drop's metric label.
func (d Drop) String() string { return dropNames[d] }

// Stats is a snapshot of a parser's counters.
type Stats struct {
	Outcomes [NumOutcomes]uint64
	Drops    [NumDrops]uint64
}

// counters are written by the parser's goroutine and read at scrape time from others.
type counters struct {
	outcomes [NumOutcomes]atomic.Uint64
	drops    [NumDrops]atomic.Uint64
}

func (c *counters) snapshot() Stats {
	var s Stats
	for i := range c.outcomes {
		s.Outcomes[i] = c.outcomes[i].Load()
	}
	for i := range c.drops {
		s.Drops[i] = c.drops[i].Load()
	}
	return s
}
