// Package reassembly turns mirrored TCP segments into HTTP exchanges. It composes the
// stream layer (reassembly/tcp: flows, ordering, gaps, timeouts) with the protocol
// parsers (reassembly/http1, reassembly/http2), choosing a parser per connection from its
// first bytes (see protocols.go), and gives all of them one memory budget.
package reassembly

import (
	"time"

	"github.com/metlo-labs/metlo-appliance/reassembly/http1"
	"github.com/metlo-labs/metlo-appliance/reassembly/http2"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// Config bounds what one Assembler may hold; zero fields take the defaults.
type Config struct {
	BodyCap         int           // decoded body bytes kept per message; longer bodies are truncated and flagged
	MaxHeaderBytes  int           // a header block larger than this is a parse error
	MaxFlows        int           // flows tracked by this assembler; the least recently seen is evicted beyond it
	FlowBufferBytes int           // bytes set aside per connection direction: out-of-order data, and responses held for their request
	BufferBytes     int           // memory budget across all flows of this assembler: out-of-order data, held responses and bodies of unemitted exchanges
	MaxPending      int           // HTTP/1 requests awaiting a response per connection (pipelining depth)
	MaxStreams      int           // HTTP/2 streams tracked per connection (concurrent requests)
	IdleTimeout     time.Duration // flows silent this long are flushed and forgotten
	ResponseTimeout time.Duration // a request unanswered this long is emitted with status 0
	ReorderTimeout  time.Duration // out-of-order data waits this long for the missing bytes
}

// DefaultConfig returns the limits used when a Config field is zero.
func DefaultConfig() Config {
	t, h, h2 := tcp.DefaultConfig(), http1.DefaultConfig(), http2.DefaultConfig()
	return Config{
		BodyCap:         h.BodyCap,
		MaxHeaderBytes:  h.MaxHeaderBytes,
		MaxFlows:        t.MaxFlows,
		FlowBufferBytes: t.FlowBufferBytes,
		BufferBytes:     256 << 20,
		MaxPending:      h.MaxPending,
		MaxStreams:      h2.MaxStreams,
		IdleTimeout:     t.IdleTimeout,
		ResponseTimeout: h.ResponseTimeout,
		ReorderTimeout:  t.ReorderTimeout,
	}
}

// WithDefaults returns c with every zero (or negative) field set to its default.
func (c Config) WithDefaults() Config {
	t := c.tcp().WithDefaults()
	h := c.http1().WithDefaults()
	c.MaxFlows, c.FlowBufferBytes, c.IdleTimeout, c.ReorderTimeout = t.MaxFlows, t.FlowBufferBytes, t.IdleTimeout, t.ReorderTimeout
	c.BodyCap, c.MaxHeaderBytes, c.MaxPending, c.ResponseTimeout = h.BodyCap, h.MaxHeaderBytes, h.MaxPending, h.ResponseTimeout
	c.MaxStreams = c.http2().WithDefaults().MaxStreams
	if c.BufferBytes <= 0 {
		c.BufferBytes = DefaultConfig().BufferBytes
	}
	return c
}

func (c Config) tcp() tcp.Config {
	return tcp.Config{MaxFlows: c.MaxFlows, FlowBufferBytes: c.FlowBufferBytes, IdleTimeout: c.IdleTimeout, ReorderTimeout: c.ReorderTimeout}
}

func (c Config) http2() http2.Config {
	return http2.Config{BodyCap: c.BodyCap, MaxHeaderBytes: c.MaxHeaderBytes, MaxStreams: c.MaxStreams,
		ResponseTimeout: c.ResponseTimeout}
}

func (c Config) http1() http1.Config {
	return http1.Config{BodyCap: c.BodyCap, MaxHeaderBytes: c.MaxHeaderBytes, MaxPending: c.MaxPending,
		HoldBytes: c.FlowBufferBytes, ResponseTimeout: c.ResponseTimeout}
}
