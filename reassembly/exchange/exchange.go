// Package exchange defines the protocol-neutral value every parser produces and every sink
// consumes: one request paired with its response, plus what went wrong on the way.
package exchange

import (
	"net/netip"
	"time"
)

// Header is one HTTP header field in wire order.
type Header struct {
	Name, Value string
}

// Request is the client half of an HTTP exchange.
type Request struct {
	Method   string
	Target   string // request-target as sent, e.g. "/api/users?page=2"
	Path     string // Target without the query
	RawQuery string // Target after '?', still percent-encoded
	Proto    string // "HTTP/1.1", "HTTP/2.0"
	Scheme   string // HTTP/2's :scheme ("http", or "https" behind a TLS-terminating proxy); empty for HTTP/1
	Host     string // Host header, or HTTP/2's :authority (empty when absent)
	Headers  []Header
	Body     []byte // decoded (de-chunked, decompressed) body, at most the configured cap
	// BodySize is the body length on the wire (after de-chunking, before decompression).
	BodySize      int64
	BodyTruncated bool
	Time          time.Time // capture time of the first byte
}

// Response is the server half of an HTTP exchange.
type Response struct {
	Status        int // 0 when no response was seen
	Reason        string
	Proto         string
	Headers       []Header
	Body          []byte
	BodySize      int64
	BodyTruncated bool
	Time          time.Time // capture time of the first byte; zero when no response
}

// Flags describe what went wrong, or unusually, for one exchange.
type Flags uint16

const (
	// FlagNoResponse marks a request emitted after its response timeout with status 0.
	FlagNoResponse Flags = 1 << iota
	// FlagGap marks an exchange whose bytes crossed a capture gap.
	FlagGap
	// FlagDecodeError marks a body whose Content-Encoding could not be decoded (raw bytes kept).
	FlagDecodeError
	// FlagIncomplete marks a message cut short by connection close or eviction.
	FlagIncomplete
	// FlagHeadersUnknown marks an HTTP/2 exchange some of whose header fields referenced
	// HPACK table entries the capture never saw (it joined the connection mid-way, or lost
	// a header block): those fields are missing.
	FlagHeadersUnknown
)

// Exchange is one HTTP request paired with its response.
type Exchange struct {
	Tunnel   uint32 // VNI, 0 for raw capture
	Client   netip.AddrPort
	Server   netip.AddrPort
	Request  Request
	Response Response
	Flags    Flags
}

// Duration is the time from the request's first byte to the response's first byte.
func (e *Exchange) Duration() time.Duration {
	if e.Response.Time.IsZero() {
		return 0
	}
	return e.Response.Time.Sub(e.Request.Time)
}

// Handler receives finished exchanges; it owns the value after the call.
type Handler interface {
	HandleExchange(*Exchange)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(*Exchange)

// HandleExchange calls f(e).
func (f HandlerFunc) HandleExchange(e *Exchange) { f(e) }
