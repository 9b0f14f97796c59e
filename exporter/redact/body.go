package redact

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"mime"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// AppendBody appends body to dst with sensitive values masked, choosing the format from
// the message's Content-Type (form-urlencoded, multipart/form-data, anything JSON) or, for
// other types, from the body itself (an object or array is treated as JSON). It reports
// whether anything was masked; when nothing was, dst is returned unchanged and the caller
// keeps the original body.
func (r *Redactor) AppendBody(dst, body []byte, contentType string) ([]byte, bool) {
	if r == nil || len(body) == 0 {
		return dst, false
	}
	media := contentType
	if i := strings.IndexByte(media, ';'); i >= 0 {
		media = media[:i]
	}
	media = strings.TrimSpace(media)
	switch {
	case equalFold(media, "application/json"):
		return r.appendJSON(dst, body)
	case equalFold(media, "application/x-www-form-urlencoded"):
		return r.appendForm(dst, body)
	case equalFold(media, "multipart/form-data"):
		return r.appendMultipart(dst, body, contentType)
	case containsJSON(media) || looksJSON(body):
		return r.appendJSON(dst, body)
	}
	return dst, false
}

// equalFold reports whether s is want (ASCII lower case) in any ASCII case.
func equalFold(s, want string) bool {
	if len(s) != len(want) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

// containsJSON reports whether a media type mentions json in any case (application/json,
// application/problem+json, text/x-json, application/JSON).
func containsJSON(media string) bool {
	for i := 0; i+4 <= len(media); i++ {
		if media[i]|0x20 == 'j' && media[i+1]|0x20 == 's' && media[i+2]|0x20 == 'o' && media[i+3]|0x20 == 'n' {
			return true
		}
	}
	return false
}

func looksJSON(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{', '[':
			return true
		}
		return false
	}
	return false
}

// appendJSON masks the value of every object member whose unescaped key is sensitive, at
// any depth, copying everything else byte for byte. Malformed JSON is handled as far as it
// parses: nothing is ever lost, at worst nothing is masked.
func (r *Redactor) appendJSON(dst, body []byte) ([]byte, bool) {
	if len(body) >= 64 && !r.jsonMayMask(body) { // a short body is scanned as fast as pre-scanned
		return dst, false
	}
	start := len(dst)
	copied, changed := 0, false
	// Keys shorter than three bytes can only be extra names (decoding never lengthens).
	minKey := 3
	if r.fields != nil {
		minKey = 1
	}
	// One pass over the body, with the loops written out: JSON is mostly short strings
	// close together, where the calls would cost more than the bytes.
	n := len(body)
	for i := 0; i < n; {
		// The next string: a plain loop, then bytes.IndexByte over long stretches.
		if body[i] != '"' {
			lim := min(i+32, n)
			for i++; i < lim && body[i] != '"'; i++ {
			}
			if i == lim {
				if i == n {
					break
				}
				k := bytes.IndexByte(body[i:], '"')
				if k < 0 {
					break
				}
				i += k
			}
		}
		s := i
		// Its end: the same, skipping escaped bytes.
		j := s + 1
		for lim := min(j+32, n); j < lim && body[j] != '"'; j++ {
			if body[j] == '\\' {
				j++
			}
		}
		if j >= n {
			break // unterminated
		}
		if body[j] != '"' {
			if j = skipString(body, s); j < 0 {
				break
			}
			j-- // at the closing quote
		}
		end := j + 1
		for j = end; j < n && isSpace(body[j]); j++ {
		}
		if j >= n || body[j] != ':' {
			i = end // a value, not a key
			continue
		}
		if end-s-2 < minKey || !fieldName(r, body[s+1:end-1], jsonName) {
			i = j + 1
			continue
		}
		vStart := skipSpace(body, j+1)
		vEnd := skipValue(body, vStart)
		if vEnd <= vStart {
			i = j + 1
			continue
		}
		dst = append(dst, body[copied:vStart]...)
		dst = maskJSON(dst, body[vStart:vEnd])
		copied, i, changed = vEnd, vEnd, true
	}
	if !changed {
		return dst[:start], false
	}
	return append(dst, body[copied:]...), true
}

// jsonMayMask is the pre-scan: it reports false only when appendJSON would mask nothing in
// body, looking at nothing but what precedes each ':' (found eight bytes at a time, so long
// values cost little). A key K that appendJSON masks ends in an unescaped quote that
// white space and a ':' follow; the pre-scan takes the text C between that quote and the
// nearest quote before it. Either C is K, or K holds an escaped quote and C is what
// follows the last one: then K's normalised name contains '"', so it is sensitive only by
// ending in one of fieldSuffixes, which C then ends in too (each suffix being a name of
// its own, C is sensitive even when it is just the suffix). A C holding a backslash (an
// escape to decode) counts as sensitive. Extra field names are matched exactly, so with
// them the pre-scan is skipped.
func (r *Redactor) jsonMayMask(body []byte) bool {
	if r.fields != nil {
		return true
	}
	// Eight bytes at a time: a mask of the colons in each word, then each colon in turn.
	i := 0
	for ; i+8 <= len(body); i += 8 {
		for m := zeroBytes(binary.LittleEndian.Uint64(body[i:]) ^ (ones * ':')); m != 0; m &= m - 1 {
			c := i + bits.TrailingZeros64(m)/8
			if c >= 4 && body[c-1] == '"' && (body[c-2] == '"' || body[c-3] == '"' || body[c-4] == '"') {
				continue // right after a string shorter than three bytes (mayBeSensitiveKey's first test)
			}
			if r.mayBeSensitiveKey(body, c) {
				return true
			}
		}
	}
	for ; i < len(body); i++ {
		if body[i] == ':' && r.mayBeSensitiveKey(body, i) {
			return true
		}
	}
	return false
}

// mayBeSensitiveKey looks at what precedes the ':' at c: a quote (after white space) and,
// back to the quote before it, a name of at least three bytes that is sensitive or holds
// a backslash.
func (r *Redactor) mayBeSensitiveKey(body []byte, c int) bool {
	e := c - 1
	for e >= 0 && isSpace(body[e]) {
		e--
	}
	if e < 4 || body[e] != '"' || body[e-1] == '"' || body[e-2] == '"' || body[e-3] == '"' {
		return false // not after a string, or after one shorter than three bytes
	}
	o := lastIndexByteBefore(body, e, '"')
	if o < 0 {
		return true
	}
	key := body[o+1 : e]
	return bytes.IndexByte(key, '\\') >= 0 || fieldName(r, key, plainName)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// maskJSON appends v with every string replaced by a mask of its length and every number
// by 0; keys, structure, booleans and null are kept.
func maskJSON(dst, v []byte) []byte {
	var scratch []byte
	for i := 0; i < len(v); {
		c := v[i]
		switch {
		case c == '"':
			end := skipString(v, i)
			if end < 0 {
				return append(dst, v[i:]...)
			}
			if j := skipSpace(v, end); j < len(v) && v[j] == ':' {
				dst = append(dst, v[i:end]...) // a key
			} else {
				str := v[i+1 : end-1]
				if bytes.IndexByte(str, '\\') >= 0 {
					scratch = unescapeJSON(scratch[:0], str)
					str = scratch
				}
				dst = append(dst, '"')
				dst = appendStars(dst, utf8.RuneCount(str))
				dst = append(dst, '"')
			}
			i = end
		case c == '-' || ('0' <= c && c <= '9'):
			dst = append(dst, '0')
			for i < len(v) && strings.IndexByte("+-.eE0123456789", v[i]) >= 0 {
				i++
			}
		default:
			dst = append(dst, c)
			i++
		}
	}
	return dst
}

// skipString returns the index after the JSON string starting at b[i] == '"', or -1.
// JSON strings are mostly short (keys, small values): a plain loop ends them soonest; past
// 32 bytes the search jumps between quotes with bytes.IndexByte.
func skipString(b []byte, i int) int {
	j := i + 1
	for lim := min(j+32, len(b)); j < lim; j++ {
		switch b[j] {
		case '"':
			return j + 1
		case '\\':
			j++ // the escaped byte
		}
	}
	for ; j < len(b); j++ {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return -1
		}
		j += k
		bs := 0
		for p := j - 1; p > i && b[p] == '\\'; p-- {
			bs++
		}
		if bs%2 == 0 {
			return j + 1
		}
	}
	return -1
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// skipValue returns the index after the JSON value starting at b[i]; a malformed value
// extends to the end of b.
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
	for j < len(b) && strings.IndexByte(",}] \t\r\n", b[j]) < 0 {
		j++
	}
	return j
}

// unescapeJSON appends the decoded content of a JSON string (without its quotes). Invalid
// escapes are kept as written.
func unescapeJSON(dst, s []byte) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			dst = append(dst, c)
			continue
		}
		i++
		switch s[i] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(s, i+1)
			if !ok {
				dst = append(dst, '\\', 'u')
				continue
			}
			i += 4
			if utf16.IsSurrogate(r) {
				if r2, ok := hex4(s, i+3); ok && i+2 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						r = d
						i += 6
					}
				}
			}
			dst = utf8.AppendRune(dst, r)
		default: // \" \\ \/ and anything else: the character itself
			dst = append(dst, s[i])
		}
	}
	return dst
}

func hex4(s []byte, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range s[i : i+4] {
		d := unhex(c)
		if d < 0 {
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// unescapeForm appends the decoded form component ('+' is a space, %XX a byte; a broken
// escape is kept as written).
func unescapeForm(dst []byte, s []byte) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			dst = append(dst, ' ')
		case c == '%' && i+2 < len(s) && unhex(s[i+1]) >= 0 && unhex(s[i+2]) >= 0:
			dst = append(dst, byte(unhex(s[i+1])<<4|unhex(s[i+2])))
			i += 2
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// appendForm masks the values of sensitive fields in an application/x-www-form-urlencoded
// body, keeping names, order and separators.
func (r *Redactor) appendForm(dst, body []byte) ([]byte, bool) {
	start := len(dst)
	changed := false
	var scratch []byte
	for rest := body; len(rest) > 0; {
		pair := rest
		amp := bytes.IndexByte(rest, '&')
		if amp >= 0 {
			pair, rest = rest[:amp], rest[amp+1:]
		} else {
			rest = nil
		}
		name, val, hasEq := bytes.Cut(pair, []byte("="))
		if hasEq && fieldName(r, name, formName) {
			dst = append(append(dst, name...), '=')
			scratch = unescapeForm(scratch[:0], val)
			dst = appendStars(dst, utf8.RuneCount(scratch))
			changed = true
		} else {
			dst = append(dst, pair...)
		}
		if amp >= 0 {
			dst = append(dst, '&')
		}
	}
	if !changed {
		return dst[:start], false
	}
	return dst, true
}

// appendMultipart masks the content of parts whose form field name is sensitive.
func (r *Redactor) appendMultipart(dst, body []byte, contentType string) ([]byte, bool) {
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil || params["boundary"] == "" {
		return dst, false
	}
	delim := []byte("--" + params["boundary"])
	start := len(dst)
	changed := false
	copied := 0
	for pos := 0; ; {
		d := bytes.Index(body[pos:], delim)
		if d < 0 {
			break
		}
		hdrStart := pos + d + len(delim)
		hdrEnd := bytes.Index(body[hdrStart:], []byte("\r\n\r\n"))
		if hdrEnd < 0 {
			break
		}
		content := hdrStart + hdrEnd + 4
		next := bytes.Index(body[content:], append([]byte("\r\n"), delim...))
		contentEnd := len(body)
		if next >= 0 {
			contentEnd = content + next
		}
		if name, ok := partName(body[hdrStart:content]); ok && fieldName(r, name, plainName) {
			dst = append(dst, body[copied:content]...)
			dst = appendStars(dst, utf8.RuneCount(body[content:contentEnd]))
			copied, changed = contentEnd, true
		}
		if next < 0 {
			break
		}
		pos = contentEnd
	}
	if !changed {
		return dst[:start], false
	}
	return append(dst, body[copied:]...), true
}

// partName finds the name parameter of a part's Content-Disposition header.
func partName(headers []byte) (string, bool) {
	for _, line := range strings.Split(string(headers), "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "Content-Disposition") {
			continue
		}
		_, params, err := mime.ParseMediaType(strings.TrimSpace(v))
		if err != nil {
			return "", false
		}
		name, ok := params["name"]
		return name, ok
	}
	return "", false
}
