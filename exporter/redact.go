package exporter

import (
	"bytes"
	"strings"
)

// Redacted replaces every redacted value.
const Redacted = "[REDACTED]"

// Redactor blanks the values of named headers, query parameters and JSON body fields
// before a trace leaves the appliance. Names match case-insensitively.
type Redactor struct {
	headers []string
	fields  []string
}

// NewRedactor returns a Redactor for the given header and field names, or nil when both
// lists are empty (nil redacts nothing at no cost).
func NewRedactor(headers, fields []string) *Redactor {
	r := &Redactor{}
	for _, h := range headers {
		if h = strings.TrimSpace(h); h != "" {
			r.headers = append(r.headers, h)
		}
	}
	for _, f := range fields {
		if f = strings.TrimSpace(f); f != "" {
			r.fields = append(r.fields, f)
		}
	}
	if len(r.headers) == 0 && len(r.fields) == 0 {
		return nil
	}
	return r
}

func (r *Redactor) header(name string) bool { return containsFold(r.headers, name) }

func (r *Redactor) field(name string) bool { return containsFold(r.fields, name) }

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// appendBody appends body to dst with the value of every JSON object member named in the
// field list replaced by "[REDACTED]", at any depth. It reports whether anything changed;
// when nothing did (no field names, not JSON, no match) dst holds no copy and the caller
// keeps the original body.
func (r *Redactor) appendBody(dst, body []byte) ([]byte, bool) {
	if len(r.fields) == 0 || !r.mayContainField(body) {
		return dst, false
	}
	copied, changed := 0, false
	for i := 0; i < len(body); {
		if body[i] != '"' {
			i++
			continue
		}
		end := skipString(body, i)
		if end < 0 {
			break // unterminated string: leave the rest as it is
		}
		j := skipSpace(body, end)
		if j >= len(body) || body[j] != ':' || !r.field(bytesView(body[i+1:end-1])) {
			i = end
			continue
		}
		vStart := skipSpace(body, j+1)
		vEnd := skipValue(body, vStart)
		if vEnd <= vStart {
			i = end
			continue
		}
		dst = append(dst, body[copied:vStart]...)
		dst = appendJSONString(dst, Redacted)
		copied, i, changed = vEnd, vEnd, true
	}
	if !changed {
		return dst, false
	}
	return append(dst, body[copied:]...), true
}

// mayContainField is a cheap pre-check: does any field name occur in body at all (any case)?
func (r *Redactor) mayContainField(body []byte) bool {
	var lower []byte
	for _, f := range r.fields {
		if len(f) > len(body) {
			continue
		}
		if lower == nil {
			lower = bytes.ToLower(body)
		}
		if bytes.Contains(lower, []byte(strings.ToLower(f))) {
			return true
		}
	}
	return false
}

// skipString returns the index after the JSON string starting at b[i] == '"', or -1.
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the index after the JSON value starting at b[i] (a string, a nested
// object or array, or a scalar); a malformed value extends to the end of b.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		if end := skipString(b, i); end > 0 {
			return end
		}
		return len(b)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end := skipString(b, j)
				if end < 0 {
					return len(b)
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i
	for j < len(b) && !strings.ContainsRune(",}] \t\r\n", rune(b[j])) {
		j++
	}
	return j
}
