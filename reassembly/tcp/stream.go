package tcp

// Meta describes the segment a delivery came from: what a protocol parser needs besides
// the bytes to pair messages and time them.
type Meta struct {
	Seq       uint32 // sequence number of the first byte delivered (for a gap: the first byte lost)
	Ack       uint32 // the segment's acknowledgement: how much of the other direction its sender had
	HasAck    bool   // Ack is valid (the ACK flag was set)
	Flags     uint8  // the segment's TCP flags
	Timestamp int64  // capture time, Unix nanoseconds
}

// Stream consumes one connection's reassembled bytes. The assembler calls it from one
// goroutine; each direction's bytes, gaps and end arrive in stream order.
type Stream interface {
	// Data delivers in-order bytes sent in direction d; b is valid only during the call.
	Data(d Dir, b []byte, m Meta)
	// Gap reports n bytes of direction d that were lost (never captured, given up after the
	// reorder timeout, or cut by the capture length) before the next Data.
	Gap(d Dir, n int, m Meta)
	// End reports that direction d's sender closed (its FIN, in order).
	End(d Dir)
	// Close ends the connection: closed both ways, reset, evicted or flushed. The stream
	// finishes what it holds; nothing is delivered after it.
	Close()
	// Expire runs the stream's own timeouts at packet time now and reports whether it still
	// waits on one (then Expire is called again on the next scan).
	Expire(now int64) bool
}

// StreamFactory chooses the consumer of a connection when its first bytes arrive, seeing
// the direction and the bytes (nil when the connection starts with a gap or an end).
type StreamFactory interface {
	NewStream(c *Conn, d Dir, first []byte) Stream
}
