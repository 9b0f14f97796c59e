// Package http1 parses HTTP/1.x in both directions of a reassembled TCP connection and
// pairs requests with responses into exchanges: an incremental parser per direction,
// a FIFO of requests per connection (pipelining), ACK checks that a response answers the
// request it is paired with, responses held until their request is seen, and bodies
// de-chunked, decoded and capped.
package http1

import "time"

// Config bounds what the parser keeps; zero fields take the defaults.
type Config struct {
	BodyCap         int           // decoded body bytes kept per message; longer bodies are truncated and flagged
	MaxHeaderBytes  int           // a header block larger than this is a parse error
	MaxPending      int           // requests awaiting a response per connection: pipelining depth, and what a connection may queue while a hole in its responses is waited out
	HoldBytes       int           // response bytes held per connection while their request is not yet seen
	ResponseTimeout time.Duration // a request unanswered this long is emitted with status 0; held responses wait as long
}

// DefaultConfig returns the limits used when a Config field is zero.
func DefaultConfig() Config {
	return Config{
		BodyCap:         64 << 10,
		MaxHeaderBytes:  64 << 10,
		MaxPending:      4096, // charged to the memory budget; a busy keep-alive connection queues ~1000 behind a hole
		HoldBytes:       1 << 20,
		ResponseTimeout: 30 * time.Second,
	}
}

// WithDefaults returns c with every zero (or negative) field set to its default.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	orDefault(&c.BodyCap, d.BodyCap)
	orDefault(&c.MaxHeaderBytes, d.MaxHeaderBytes)
	orDefault(&c.MaxPending, d.MaxPending)
	orDefault(&c.HoldBytes, d.HoldBytes)
	orDefault(&c.ResponseTimeout, d.ResponseTimeout)
	return c
}

func orDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
