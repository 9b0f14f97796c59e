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
	Method string
	Target string // request-target as sent, e.g. "/api/users?page=2"
	// Path always starts with '/': the target without its query for origin- and
	// absolute-form targets, "/*" for the asterisk form (OPTIONS *), "/" for the authority
	// form (CONNECT host:port, whose authority becomes Host), and '/' + the target for
	// anything else.
	Path     string
	RawQuery string // Target after '?', still percent-encoded
	Proto    string // "HTTP/1.1", "HTTP/2.0"
	Scheme   string // HTTP/2's :scheme ("http", or "https" behind a TLS-terminating proxy); empty for HTTP/1
	Host     string // Host header, or HTTP/2's :authority (empty when absent)
	Headers  []Header
	Body     []byte // decoded (de-chunked, decompressed) body, at most the configured cap
	// BodySize is the body length on the wire (after de-chunking, before decompression).
	BodySize      int64
	BodyTruncated bool
	// BodyDecoded names the Content-Encoding undone to produce Body ("gzip", "br", …);
	// the Content-Encoding and Content-Length headers still describe the encoded body.
	BodyDecoded string
	Time        time.Time // capture time of the first byte
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
	BodyDecoded   string    // as for Request
	Time          time.Time // capture time of the first byte; zero when no response
	EndTime       time.Time // capture time of the segment that completed it; zero when no response
}

// Flags describe what went wrong, or unusually, for one exchange.
type Flags uint16

const (
	// FlagNoResponse marks a request emitted without a response (status 0): its connection
	// ended first, a later response proved it unanswered, or the pending bound was hit.
	FlagNoResponse Flags = 1 << iota
	// FlagGap marks an exchange whose bytes crossed a capture gap.
	FlagGap
	// FlagDecodeError marks a body whose Content-Encoding could not be decoded (raw bytes kept).
	FlagDecodeError
	// FlagIncomplete marks a message cut short by connection close or eviction.
	FlagIncomplete
	// FlagFramingError marks a message whose header fields a server must refuse
	// (conflicting or invalid Content-Length, Transfer-Encoding that does not end in
	// chunked on a request, whitespace before a field's colon, lines that are not fields):
	// reported anyway, framed the way RFC 9112 §6.3 tells a recipient to.
	FlagFramingError
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

// Duration is the time from the request's first byte to the end of the response (for a
// streamed response, its last event); 0 without a response.
func (e *Exchange) Duration() time.Duration {
	switch {
	case e.Response.Time.IsZero():
		return 0
	case e.Response.EndTime.IsZero():
		return e.Response.Time.Sub(e.Request.Time)
	}
	return e.Response.EndTime.Sub(e.Request.Time)
}

// TimeToFirstByte is the time from the request's first byte to the response's first byte;
// 0 without a response.
func (e *Exchange) TimeToFirstByte() time.Duration {
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
