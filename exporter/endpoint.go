package exporter

import (
	"strings"

	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
)

// Path rewrite reasons, the reason label of metlo_appliance_exporter_paths_rewritten_total.
// Metlo's backend (getValidPath) answers a whole batch 400 at the first trace whose path is
// empty, lacks a leading '/', contains one of \ ? < > & = or has more than two empty
// segments; all of these are legal in HTTP, so the appliance rewrites them first.
const (
	RewriteEmpty         = "empty"            // "" (or a request line without a path) → "/"
	RewriteNoSlash       = "no_leading_slash" // "*", "host:443" (CONNECT) → "/*", "/host:443"
	RewriteReserved      = "reserved_char"    // \ ? < > & = percent-encoded
	RewriteEmptySegments = "empty_segments"   // runs of '/' collapsed, as Metlo itself does for two
)

var rewriteReasons = []string{RewriteEmpty, RewriteNoSlash, RewriteReserved, RewriteEmptySegments}

// metloPath returns the path Metlo accepts for p, and why it differs ("" when p is kept).
// The rewrite is deterministic, so one endpoint keeps one path: reserved characters are
// percent-encoded (reversible), empty segments are dropped the way Metlo's getValidPath
// already drops them when there are at most two.
func metloPath(p string) (string, string) {
	if p == "" {
		return "/", RewriteEmpty
	}
	reserved := strings.ContainsAny(p, `\?<>&=`)
	noSlash := p[0] != '/'
	if !reserved && !noSlash && (p == "/" || countEmptyTokens(p) <= 2) {
		return p, ""
	}
	var b strings.Builder
	b.Grow(len(p) + 8)
	if noSlash {
		b.WriteByte('/')
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '\\', '?', '<', '>', '&', '=':
			b.WriteByte('%')
			b.WriteByte("0123456789ABCDEF"[c>>4])
			b.WriteByte("0123456789ABCDEF"[c&15])
		default:
			b.WriteByte(c)
		}
	}
	out, reason := b.String(), ""
	switch {
	case noSlash:
		reason = RewriteNoSlash
	case reserved:
		reason = RewriteReserved
	}
	if out != "/" && countEmptyTokens(out) > 2 {
		out = collapseSlashes(out)
		if reason == "" {
			reason = RewriteEmptySegments
		}
	}
	return out, reason
}

// countEmptyTokens is how many empty strings p.split("/") yields in JavaScript.
func countEmptyTokens(p string) int {
	n, start := 0, 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			if i == start {
				n++
			}
			start = i + 1
		}
	}
	return n
}

// collapseSlashes is "/" + the non-empty segments joined by "/" — what getValidPath stores.
func collapseSlashes(p string) string {
	var b strings.Builder
	for _, seg := range strings.Split(p, "/") {
		if seg != "" {
			b.WriteByte('/')
			b.WriteString(seg)
		}
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

// TraceInfo is what sinks may need to know about a trace without parsing it.
type TraceInfo struct {
	Method string
	Status int    // 0 when no response was seen
	Key    uint64 // the endpoint: host, method and path shape (ids replaced), hashed
}

// traceInfo describes x for the sinks.
func traceInfo(x *exchange.Exchange) TraceInfo {
	return TraceInfo{Method: x.Request.Method, Status: x.Response.Status, Key: endpointKey(x)}
}

// endpointKey hashes (host, method, path shape): path segments that look like identifiers
// (numbers, UUIDs, long hex or mixed tokens) count as one shape, so /users/7 and /users/8
// are the same endpoint — as Metlo's own inventory would group them.
func endpointKey(x *exchange.Exchange) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	add := func(s string) {
		for i := 0; i < len(s); i++ {
			h = (h ^ uint64(s[i])) * prime
		}
		h = (h ^ 0xff) * prime
	}
	if x.Request.Host != "" {
		add(x.Request.Host)
	} else {
		var buf [64]byte
		add(string(x.Server.Addr().AppendTo(buf[:0])))
	}
	add(x.Request.Method)
	p := x.Request.Path
	for start := 0; start <= len(p); {
		end := strings.IndexByte(p[start:], '/')
		if end < 0 {
			end = len(p)
		} else {
			end += start
		}
		if seg := p[start:end]; isIDSegment(seg) {
			add("{}")
		} else {
			add(seg)
		}
		start = end + 1
	}
	return h
}

// isIDSegment tells a parameter-like path segment from a fixed one.
func isIDSegment(s string) bool {
	if s == "" {
		return false
	}
	digits, hex, other := 0, 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			digits++
		case ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F'):
			hex++
		case c == '-' || c == '_':
		default:
			other++
		}
	}
	switch {
	case digits == len(s): // 7, 2024
		return true
	case other == 0 && digits > 0 && len(s) >= 8: // UUIDs, hex ids
		return true
	case digits > 0 && len(s) >= 16: // long mixed tokens
		return true
	}
	return false
}
