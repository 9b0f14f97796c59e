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

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.BodyCap <= 0 {
		c.BodyCap = d.BodyCap
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if c.MaxFlows <= 0 {
		c.MaxFlows = d.MaxFlows
	}
	if c.FlowBufferBytes <= 0 {
		c.FlowBufferBytes = d.FlowBufferBytes
	}
	if c.BufferBytes <= 0 {
		c.BufferBytes = d.BufferBytes
	}
	if c.MaxPending <= 0 {
		c.MaxPending = d.MaxPending
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	if c.ResponseTimeout <= 0 {
		c.ResponseTimeout = d.ResponseTimeout
	}
	if c.ReorderTimeout <= 0 {
		c.ReorderTimeout = d.ReorderTimeout
	}
	return c
}
