package exporter

import (
	"net/netip"
	"strings"
	"unicode/utf8"

	"github.com/metlo-labs/metlo-appliance/exporter/redact"
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
)

// TraceEncoder writes exchanges as Metlo trace JSON into caller-owned buffers without
// reflection. It is not safe for concurrent use; give each goroutine its own.
type TraceEncoder struct {
	// Environment is meta.environment.
	Environment string
	// Redact masks credential headers and sensitive query, JSON, form and multipart fields;
	// nil masks nothing.
	Redact *redact.Redactor

	scratch []byte            // unescaped query components
	hdrMask [64]headerVerdict // Redact.Header's verdicts: header names repeat on every message
	masked  []byte            // a masked header or parameter value
	reqBody []byte            // redacted request body
	resBody []byte            // redacted response body
}

// AppendTrace appends the JSON trace of x to dst and returns the extended buffer.
func (enc *TraceEncoder) AppendTrace(dst []byte, x *exchange.Exchange) []byte {
	req, res := enc.bodies(x)
	return enc.appendTrace(dst, x, req, res, false)
}

// AppendTraceMax is AppendTrace for a consumer that rejects documents over max bytes: when
// the trace would be longer it trims the bodies (at UTF-8 boundaries) until it fits and
// flags it with meta.trimmed and the body-truncated flags. ok is false when the trace does
// not fit even with empty bodies; dst is then returned unchanged.
func (enc *TraceEncoder) AppendTraceMax(dst []byte, x *exchange.Exchange, max int) (out []byte, trimmed, ok bool) {
	req, res := enc.bodies(x)
	start := len(dst)
	out = enc.appendTrace(dst, x, req, res, false)
	if len(out)-start <= max {
		return out, false, true
	}
	for range 8 {
		excess := len(out) - start - max
		if excess <= 0 {
			return out, true, true
		}
		// Trim the longer body first; cutting raw bytes shrinks the output at least as much.
		if len(req) >= len(res) {
			req = cutUTF8(req, len(req)-excess)
		} else {
			res = cutUTF8(res, len(res)-excess)
		}
		out = enc.appendTrace(out[:start], x, req, res, true)
	}
	out = enc.appendTrace(out[:start], x, nil, nil, true)
	if len(out)-start <= max {
		return out, true, true
	}
	return out[:start], true, false
}

// cutUTF8 shortens b to at most n bytes without splitting a multi-byte character.
func cutUTF8(b []byte, n int) []byte {
	if n <= 0 {
		return b[:0]
	}
	if n >= len(b) {
		return b
	}
	for k := 0; k < utf8.UTFMax && n > 0 && !utf8.RuneStart(b[n]); k++ {
		n--
	}
	return b[:n]
}

// bodies returns the request and response bodies as they will be exported.
func (enc *TraceEncoder) bodies(x *exchange.Exchange) (req, res []byte) {
	req, res = x.Request.Body, x.Response.Body
	if enc.Redact != nil {
		var changed bool
		if enc.reqBody, changed = enc.Redact.AppendBody(enc.reqBody[:0], req, contentType(x.Request.Headers)); changed {
			req = enc.reqBody
		}
		if enc.resBody, changed = enc.Redact.AppendBody(enc.resBody[:0], res, contentType(x.Response.Headers)); changed {
			res = enc.resBody
		}
	}
	return req, res
}

func (enc *TraceEncoder) appendTrace(b []byte, x *exchange.Exchange, reqBody, resBody []byte, trimmed bool) []byte {
	b = append(b, `{"request":{"url":{"host":`...)
	if x.Request.Host != "" {
		b = appendJSONString(b, x.Request.Host)
	} else {
		b = appendJSONString(b, traceHost(x))
	}
	path, rewrite := metloPath(x.Request.Path)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, path)
	b = append(b, `,"parameters":[`...)
	first := true
	forEachParam(x.Request.RawQuery, func(name, value string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		var s string
		enc.scratch, s = unescapeQuery(enc.scratch[:0], name)
		b = append(b, `{"name":`...)
		b = appendJSONString(b, s)
		mask := enc.Redact.Field(s)
		b = append(b, `,"value":`...)
		enc.scratch, s = unescapeQuery(enc.scratch[:0], value)
		if mask {
			enc.masked = redact.AppendMask(enc.masked[:0], s)
			b = appendJSONBytes(b, enc.masked)
		} else {
			b = appendJSONString(b, s)
		}
		b = append(b, '}')
	})
	b = append(b, `]},"headers":`...)
	b = enc.appendHeaders(b, x.Request.Headers)
	b = append(b, `,"body":`...)
	b, reqBase64 := appendJSONBody(b, reqBody)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, x.Request.Method)
	b = append(b, `},"response":{"status":`...)
	b = appendInt(b, int64(x.Response.Status))
	b = append(b, `,"headers":`...)
	b = enc.appendHeaders(b, x.Response.Headers)
	b = append(b, `,"body":`...)
	b, resBase64 := appendJSONBody(b, resBody)
	b = append(b, `},"meta":{"environment":`...)
	b = appendJSONString(b, enc.Environment)
	b = append(b, `,"incoming":true,"source":`...)
	b = appendAddr(b, x.Client)
	b = append(b, `,"sourcePort":`...)
	b = appendInt(b, int64(x.Client.Port()))
	b = append(b, `,"destination":`...)
	b = appendAddr(b, x.Server)
	b = append(b, `,"destinationPort":`...)
	b = appendInt(b, int64(x.Server.Port()))
	b = append(b, `,"metloSource":"`+MetloSource+`","vni":`...)
	b = appendInt(b, int64(x.Tunnel))
	b = append(b, `,"startTime":`...)
	b = appendRFC3339Nano(b, x.Request.Time)
	b = append(b, `,"durationMs":`...)
	b = appendJSONFloat(b, durationMs(x.Duration()))
	b = append(b, `,"ttfbMs":`...)
	b = appendJSONFloat(b, durationMs(x.TimeToFirstByte()))
	b = append(b, `,"requestBodyTruncated":`...)
	b = appendJSONBool(b, x.Request.BodyTruncated || (trimmed && len(reqBody) < len(x.Request.Body)))
	b = append(b, `,"responseBodyTruncated":`...)
	b = appendJSONBool(b, x.Response.BodyTruncated || (trimmed && len(resBody) < len(x.Response.Body)))
	b = append(b, `,"noResponse":`...)
	b = appendJSONBool(b, x.Flags&exchange.FlagNoResponse != 0)
	b = append(b, `,"gap":`...)
	b = appendJSONBool(b, x.Flags&exchange.FlagGap != 0)
	b = append(b, `,"decodeError":`...)
	b = appendJSONBool(b, x.Flags&exchange.FlagDecodeError != 0)
	b = append(b, `,"incomplete":`...)
	b = appendJSONBool(b, x.Flags&exchange.FlagIncomplete != 0)
	if x.Flags&exchange.FlagFramingError != 0 {
		b = append(b, `,"framingError":true`...)
	}
	if reqBase64 {
		b = append(b, `,"requestBodyEncoding":"base64"`...)
	}
	if resBase64 {
		b = append(b, `,"responseBodyEncoding":"base64"`...)
	}
	if x.Request.BodyDecoded != "" {
		b = append(b, `,"requestBodyDecoded":`...)
		b = appendJSONString(b, x.Request.BodyDecoded)
	}
	if x.Response.BodyDecoded != "" {
		b = append(b, `,"responseBodyDecoded":`...)
		b = appendJSONString(b, x.Response.BodyDecoded)
	}
	if trimmed {
		b = append(b, `,"trimmed":true`...)
	}
	if rewrite != "" && x.Request.Path != "" {
		b = append(b, `,"originalPath":`...)
		b = appendJSONString(b, x.Request.Path)
	}
	if src := originalSource(x.Request.Headers); src != "" {
		b = append(b, `,"originalSource":`...)
		b = appendJSONString(b, src)
	}
	b = appendProtocolMeta(b, x)
	return append(b, "}}"...)
}

func (enc *TraceEncoder) appendHeaders(b []byte, hs []exchange.Header) []byte {
	b = append(b, '[')
	for i, h := range hs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendJSONString(b, h.Name)
		b = append(b, `,"value":`...)
		if enc.maskHeader(h.Name) {
			enc.masked = enc.Redact.AppendHeaderValue(enc.masked[:0], h.Name, h.Value)
			b = appendJSONBytes(b, enc.masked)
		} else {
			b = appendJSONString(b, h.Value)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

// headerVerdict is Redact.Header's answer for one header name.
type headerVerdict struct {
	name string
	mask bool
}

// maskHeader is Redact.Header, remembered per name in a small direct-mapped cache (a
// string compare, where a map would hash the name).
func (enc *TraceEncoder) maskHeader(name string) bool {
	if enc.Redact == nil {
		return false
	}
	if name == "" {
		return enc.Redact.Header(name)
	}
	// Two-way: a name may sit in its slot or the one next to it (pairs of names that share
	// a slot, such as User-Agent and Content-Length, then both stay).
	h := (uint(len(name))*0x9e37 ^ uint(name[0])*0x85eb ^ uint(name[len(name)-1])*0xc2b3 ^ uint(name[len(name)/2])*0x27d5) >> 4
	a := &enc.hdrMask[h%uint(len(enc.hdrMask))]
	b := &enc.hdrMask[(h^1)%uint(len(enc.hdrMask))]
	switch {
	case a.name == name:
		return a.mask
	case b.name == name:
		return b.mask
	case a.name != "" && b.name == "":
		a = b
	}
	a.name, a.mask = strings.Clone(name), enc.Redact.Header(name)
	return a.mask
}

// appendAddr appends the quoted IP of ap (IPv4-mapped addresses as plain IPv4).
func appendAddr(b []byte, ap netip.AddrPort) []byte {
	b = append(b, '"')
	b = ap.Addr().Unmap().AppendTo(b)
	return append(b, '"')
}

// isContentType reports whether a header name is Content-Type in any ASCII case.
func isContentType(name string) bool {
	const want = "content-type"
	if len(name) != len(want) {
		return false
	}
	for i := 0; i < len(want); i++ {
		if c := name[i]; c != want[i] && !('A' <= c && c <= 'Z' && c+('a'-'A') == want[i]) {
			return false
		}
	}
	return true
}

// contentType is the first Content-Type header's value.
func contentType(hs []exchange.Header) string {
	for _, h := range hs {
		if isContentType(h.Name) {
			return h.Value
		}
	}
	return ""
}
