// Package reassembly rebuilds TCP byte streams from mirrored segments, parses HTTP/1.x in
// both directions and pairs requests with responses into Exchange values.
package reassembly

import "time"

// Config bounds what one Assembler may hold; zero fields take the defaults.
type Config struct {
	BodyCap         int           // decoded body bytes kept per message; longer bodies are truncated and flagged
	MaxHeaderBytes  int           // a header block larger than this is a parse error
	MaxFlows        int           // flows tracked by this assembler; the least recently seen is evicted beyond it
	FlowBufferBytes int           // out-of-order bytes buffered per flow before the gap is skipped
	BufferBytes     int           // budget across all flows of this assembler for out-of-order data, and separately for bodies of unemitted exchanges
	MaxPending      int           // requests awaiting a response per connection (pipelining depth)
	IdleTimeout     time.Duration // flows silent this long are flushed and forgotten
	ResponseTimeout time.Duration // a request unanswered this long is emitted with status 0
	ReorderTimeout  time.Duration // out-of-order data waits this long for the missing bytes
}

// DefaultConfig returns the limits used when a Config field is zero.
func DefaultConfig() Config {
	return Config{
		BodyCap:         64 << 10,
		MaxHeaderBytes:  64 << 10,
		MaxFlows:        1 << 20,
		FlowBufferBytes: 1 << 20,
		BufferBytes:     256 << 20,
		MaxPending:      128,
		IdleTimeout:     2 * time.Minute,
		ResponseTimeout: 30 * time.Second,
		ReorderTimeout:  time.Second,
	}
}

// WithDefaults returns c with every zero (or negative) field set to its default.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	orDefault(&c.BodyCap, d.BodyCap)
	orDefault(&c.MaxHeaderBytes, d.MaxHeaderBytes)
	orDefault(&c.MaxFlows, d.MaxFlows)
	orDefault(&c.FlowBufferBytes, d.FlowBufferBytes)
	orDefault(&c.BufferBytes, d.BufferBytes)
	orDefault(&c.MaxPending, d.MaxPending)
	orDefault(&c.IdleTimeout, d.IdleTimeout)
	orDefault(&c.ResponseTimeout, d.ResponseTimeout)
	orDefault(&c.ReorderTimeout, d.ReorderTimeout)
	return c
}

func orDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
