// Package reassembly turns mirrored TCP segments into HTTP exchanges. It composes the
// stream layer (reassembly/tcp: flows, ordering, gaps, timeouts) with the protocol
// parsers (reassembly/http1), choosing a parser per connection from its first bytes, and
// gives both one memory budget.
package reassembly

import (
	"time"

	"github.com/metlo-labs/metlo-appliance/reassembly/http1"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// Config bounds what one Assembler may hold; zero fields take the defaults.
type Config struct {
	BodyCap         int           // decoded body bytes kept per message; longer bodies are truncated and flagged
	MaxHeaderBytes  int           // a header block larger than this is a parse error
	MaxFlows        int           // flows tracked by this assembler; the least recently seen is evicted beyond it
	FlowBufferBytes int           // bytes set aside per connection direction: out-of-order data, and responses held for their request
	BufferBytes     int           // memory budget across all flows of this assembler: out-of-order data, held responses and bodies of unemitted exchanges
	MaxPending      int           // requests awaiting a response per connection (pipelining depth)
	IdleTimeout     time.Duration // flows silent this long are flushed and forgotten
	ResponseTimeout time.Duration // a request unanswered this long is emitted with status 0
	ReorderTimeout  time.Duration // out-of-order data waits this long for the missing bytes
}

// DefaultConfig returns the limits used when a Config field is zero.
func DefaultConfig() Config {
	t, h := tcp.DefaultConfig(), http1.DefaultConfig()
	return Config{
		BodyCap:         h.BodyCap,
		MaxHeaderBytes:  h.MaxHeaderBytes,
		MaxFlows:        t.MaxFlows,
		FlowBufferBytes: t.FlowBufferBytes,
		BufferBytes:     256 << 20,
		MaxPending:      h.MaxPending,
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
	if c.BufferBytes <= 0 {
		c.BufferBytes = DefaultConfig().BufferBytes
	}
	return c
}

func (c Config) tcp() tcp.Config {
	return tcp.Config{MaxFlows: c.MaxFlows, FlowBufferBytes: c.FlowBufferBytes, IdleTimeout: c.IdleTimeout, ReorderTimeout: c.ReorderTimeout}
}

func (c Config) http1() http1.Config {
	return http1.Config{BodyCap: c.BodyCap, MaxHeaderBytes: c.MaxHeaderBytes, MaxPending: c.MaxPending,
		HoldBytes: c.FlowBufferBytes, ResponseTimeout: c.ResponseTimeout}
}
