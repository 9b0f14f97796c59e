// Package http2 reads HTTP/2 (RFC 9113) from both directions of a reassembled TCP
// connection, as a passive observer: frames are parsed incrementally as bytes arrive,
// header blocks are decoded with an HPACK context per direction that survives joining a
// connection mid-way, and every stream becomes one exchange (request headers, body and
// trailers; response headers, body and trailers). gRPC streams get their status mapped
// and their length-prefixed protobuf messages rendered as JSON without a schema.
//
// A connection is handed over from the stream layer when its first bytes are the client
// preface, when frames are recognised in a connection joined mid-way, or by the HTTP/1
// parser after an "Upgrade: h2c" switch.
package http2

import "time"

// Config bounds what the parser keeps; zero fields take the defaults.
type Config struct {
	BodyCap         int           // decoded body bytes kept per message; longer bodies are truncated and flagged
	MaxHeaderBytes  int           // a header block (HEADERS + CONTINUATION) larger than this is dropped and the HPACK table forgotten
	MaxStreams      int           // streams tracked per connection; beyond it the oldest is emitted as it stands
	ResponseTimeout time.Duration // a stream unfinished this long is emitted as it stands (no response, or incomplete)
}

// DefaultConfig returns the limits used when a Config field is zero.
func DefaultConfig() Config {
	return Config{
		BodyCap:         64 << 10,
		MaxHeaderBytes:  64 << 10,
		MaxStreams:      1024,
		ResponseTimeout: 30 * time.Second,
	}
}

// WithDefaults returns c with every zero (or negative) field set to its default.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	orDefault(&c.BodyCap, d.BodyCap)
	orDefault(&c.MaxHeaderBytes, d.MaxHeaderBytes)
	orDefault(&c.MaxStreams, d.MaxStreams)
	orDefault(&c.ResponseTimeout, d.ResponseTimeout)
	return c
}

func orDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
