package exporter

import (
	"strconv"
	"strings"

	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
)

// The protocol fields of a trace's meta: "protocol" (the request's version, "HTTP/1.1" or
// "HTTP/2.0"), "scheme" (HTTP/2's :scheme), "headersUnknown" (HTTP/2 header fields the
// capture could not decode), and for gRPC calls "grpcService", "grpcMethod" (from the path
// /package.Service/Method), "grpcStatus" and "grpcMessage" (the grpc-status and
// grpc-message trailers, as sent). The trace's response.status of a gRPC call is already
// the HTTP equivalent of its grpc-status (see docs/architecture.md).

// grpcCall is what a trace says about a gRPC call.
type grpcCall struct {
	service, method string
	status          int // -1 when the response carried no grpc-status
	message         string
}

// grpcOf reports whether x is a gRPC call (its request's Content-Type is
// application/grpc…) and what its path and trailers say.
func grpcOf(x *exchange.Exchange) (grpcCall, bool) {
	ok := false
	for _, h := range x.Request.Headers {
		if len(h.Name) == len("content-type") && strings.EqualFold(h.Name, "content-type") {
			ok = len(h.Value) >= len("application/grpc") && strings.EqualFold(h.Value[:len("application/grpc")], "application/grpc")
			break
		}
	}
	if !ok {
		return grpcCall{}, false
	}
	g := grpcCall{status: -1}
	g.service, g.method, _ = strings.Cut(strings.TrimPrefix(x.Request.Path, "/"), "/")
	for i := len(x.Response.Headers) - 1; i >= 0; i-- { // trailers come last
		switch h := x.Response.Headers[i]; h.Name {
		case "grpc-status":
			if n, err := strconv.Atoi(h.Value); err == nil && g.status < 0 {
				g.status = n
			}
		case "grpc-message":
			if g.message == "" {
				g.message = h.Value
			}
		}
	}
	return g, true
}

// appendProtocolMeta appends the protocol fields (see above) to a trace's meta object.
func appendProtocolMeta(b []byte, x *exchange.Exchange) []byte {
	if x.Request.Proto != "" {
		b = append(b, `,"protocol":`...)
		b = appendJSONString(b, x.Request.Proto)
	}
	if x.Request.Scheme != "" {
		b = append(b, `,"scheme":`...)
		b = appendJSONString(b, x.Request.Scheme)
	}
	if x.Flags&exchange.FlagHeadersUnknown != 0 {
		b = append(b, `,"headersUnknown":true`...)
	}
	g, ok := grpcOf(x)
	if !ok {
		return b
	}
	if g.service != "" {
		b = append(b, `,"grpcService":`...)
		b = appendJSONString(b, g.service)
	}
	if g.method != "" {
		b = append(b, `,"grpcMethod":`...)
		b = appendJSONString(b, g.method)
	}
	if g.status >= 0 {
		b = append(b, `,"grpcStatus":`...)
		b = appendInt(b, int64(g.status))
	}
	if g.message != "" {
		b = append(b, `,"grpcMessage":`...)
		b = appendJSONString(b, g.message)
	}
	return b
}

// setProtocolMeta fills the same fields in a TraceMeta.
func setProtocolMeta(m *TraceMeta, x *exchange.Exchange) {
	m.Protocol, m.Scheme = x.Request.Proto, x.Request.Scheme
	m.HeadersUnknown = x.Flags&exchange.FlagHeadersUnknown != 0
	if g, ok := grpcOf(x); ok {
		m.GRPCService, m.GRPCMethod, m.GRPCMessage = g.service, g.method, g.message
		if g.status >= 0 {
			m.GRPCStatus = &g.status
		}
	}
}
