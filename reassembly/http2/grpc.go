package http2

import (
	"encoding/binary"
	"encoding/json"

	"github.com/metlo-labs/metlo-appliance/reassembly/content"
)

// gRPC over HTTP/2 (the gRPC "PROTOCOL-HTTP2" spec): a body is a sequence of messages,
// each a 1-byte compressed flag, a 4-byte big-endian length and the message; the call's
// status is the grpc-status trailer (grpc-message explains it).

// grpcCodes names the status codes 0-16 (google.rpc.Code).
var grpcCodes = [...]string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
	"OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

// grpcHTTPCodes is the HTTP status google.rpc.Code documents for each code (the mapping
// gRPC-HTTP gateways use): what a trace's status says for a gRPC call.
var grpcHTTPCodes = [...]int{200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401}

func grpcCodeName(code int) string {
	if code >= 0 && code < len(grpcCodes) {
		return grpcCodes[code]
	}
	return "UNKNOWN"
}

// grpcHTTPStatus maps a grpc-status code to an HTTP status; codes outside the spec are 500.
func grpcHTTPStatus(code int) int {
	if code >= 0 && code < len(grpcHTTPCodes) {
		return grpcHTTPCodes[code]
	}
	return 500
}

// looksLikeGRPC reports whether b is framed as gRPC messages: one or more, each a flag
// byte of 0 or 1 and a length that the bytes match exactly (the last may be cut when the
// body was).
func looksLikeGRPC(b []byte, cut bool) bool {
	if len(b) < 5 {
		return false
	}
	for len(b) > 0 {
		if len(b) < 5 {
			return cut
		}
		if b[0] > 1 {
			return false
		}
		n := uint64(binary.BigEndian.Uint32(b[1:5]))
		if n > uint64(len(b)-5) {
			return cut
		}
		b = b[5+n:]
	}
	return true
}

// gzipMagic begins every gzip stream: how a compressed message whose grpc-encoding the
// capture could not decode is recognised.
const gzipMagic = "\x1f\x8b"

// renderGRPC turns a gRPC body into JSON (see appendMessage for the form of a message): a
// single message as itself, several as an array. Compressed messages are decompressed
// (gzip, deflate; others are kept as {"$compressed": encoding, "$bytes": base64}). The
// output is cut at limit. It returns the rendering, whether it was cut (or the input
// was), how many messages it held and whether any could not be decoded.
func renderGRPC(raw []byte, m *message, limit int, rawCut bool) (out []byte, cut bool, n int, bad bool) {
	out = make([]byte, 1, min(limit, 2*len(raw)+16)+1)
	out[0] = '['
	for len(raw) > 0 {
		if len(raw) < 5 {
			cut = true // a prefix cut short
			break
		}
		flag, size := raw[0], binary.BigEndian.Uint32(raw[1:5])
		msg := raw[5:]
		if uint64(size) <= uint64(len(msg)) {
			msg = msg[:size]
		} else {
			cut = true
		}
		raw = raw[5+len(msg):]
		if n > 0 {
			out = append(out, ',')
		}
		n++
		switch {
		case flag&0x80 != 0: // gRPC-Web trailers frame: "name: value" lines
			out = append(out, `{"$trailers":`...)
			out = appendJSONString(out, msg)
			out = append(out, '}')
			continue
		case flag&1 != 0:
			enc := m.grpcEncoding
			if enc == "" && len(msg) >= 2 && string(msg[:2]) == gzipMagic {
				enc = "gzip"
			}
			dec, dcut, err := content.Decode(msg, enc, limit, cut)
			if err != nil || enc == "" || enc == "identity" {
				out = append(out, `{"$compressed":`...)
				out = appendJSONString(out, []byte(m.grpcEncoding))
				out = append(out, `,"$bytes":`...)
				out = appendBase64(out, msg)
				out = append(out, '}')
				bad = true
				continue
			}
			msg, cut = dec, cut || dcut
		}
		switch {
		case m.grpcJSON && json.Valid(msg):
			out = append(out, msg...)
		case m.grpcJSON:
			out = appendJSONString(out, msg)
		default:
			var ok bool
			if out, ok = appendMessage(out, msg, 0); !ok {
				out = append(out, `{"$bytes":`...)
				out = appendBase64(out, msg)
				out = append(out, '}')
			}
		}
		if len(out) > limit+1 {
			break
		}
	}
	if n == 1 {
		out = out[1:]
	} else {
		out = append(out, ']')
	}
	if n == 0 {
		out = out[:0]
	}
	if len(out) > limit {
		out, cut = out[:limit], true
	}
	return out, cut || rawCut, n, bad
}
