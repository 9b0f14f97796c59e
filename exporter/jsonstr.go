package exporter

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

const hexDigits = "0123456789abcdef"

// jsonSafe marks the ASCII bytes that go into a JSON string unescaped.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// fastEscape marks the escapes entries the fast path handles, so four entries can be
// checked with one AND.
const fastEscape = 1 << 31

// escapes packs, for each byte value, what the fast path writes: the output bytes in the
// low two bytes, their count (1 or 2) in the third, and fastEscape. 0 sends the byte to the
// slow path: control characters that need \u00XX, and bytes of 0x80 and above (copied when
// they form valid UTF-8 other than U+2028/U+2029).
var escapes = func() (t [256]uint32) {
	two := map[byte]byte{'"': '"', '\\': '\\', '\b': 'b', '\f': 'f', '\n': 'n', '\r': 'r', '\t': 't'}
	for c := 0; c < utf8.RuneSelf; c++ {
		switch e, ok := two[byte(c)]; {
		case ok:
			t[c] = '\\' | uint32(e)<<8 | 2<<16 | fastEscape
		case jsonSafe[c]:
			t[c] = uint32(c) | 1<<16 | fastEscape
		}
	}
	return t
}()

// appendJSONString appends s as a quoted JSON string. It escapes exactly like encoding/json
// with HTML escaping off: control characters, quote and backslash, U+2028/U+2029, and every
// invalid UTF-8 byte becomes \ufffd — so arbitrary body bytes always yield valid JSON.
//
// Bodies are most of what the collector writes and JSON bodies are dense with quotes, so
// the common bytes take a loop without unpredictable branches: one table load gives what to
// write (always two bytes, the second overwritten when only one counts) and how far to move.
func appendJSONString(dst []byte, s string) []byte {
	dst, _ = appendJSONStringChecked(dst, s)
	return dst
}

// appendJSONStringChecked is appendJSONString that also reports whether s held invalid
// UTF-8 (written as \ufffd). Only the slow path can see it, so the check costs nothing.
func appendJSONStringChecked(dst []byte, s string) (_ []byte, invalid bool) {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		// Room for the rest of s at two output bytes per input byte, plus one spare byte
		// for the unconditional second write.
		dst = slices.Grow(dst, 2*(len(s)-i)+1)
		n := len(dst)
		out := unsafe.Pointer(unsafe.SliceData(dst))
		// Plain runs 8 bytes at a time: no byte below 0x20 or at/above 0x80, no '"' or '\\'.
		for ; i+8 <= len(s); i += 8 {
			w := binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(s[i:]), 8))
			if hasZeroByte(w^quotes)|hasZeroByte(w^backslashes)|hasByteBelow(w, ' ')|w&highBits != 0 {
				break
			}
			*(*uint64)(unsafe.Add(out, n)) = w
			n += 8
		}
		// Four bytes per round while none needs the slow path. In bounds: the Grow above
		// left two bytes per remaining input byte plus one.
		for ; i+4 <= len(s); i += 4 {
			e0, e1, e2, e3 := escapes[s[i]], escapes[s[i+1]], escapes[s[i+2]], escapes[s[i+3]]
			if e0&e1&e2&e3&fastEscape == 0 {
				break
			}
			*(*uint16)(unsafe.Add(out, n)) = uint16(e0)
			n += int(e0 >> 16 & 3)
			*(*uint16)(unsafe.Add(out, n)) = uint16(e1)
			n += int(e1 >> 16 & 3)
			*(*uint16)(unsafe.Add(out, n)) = uint16(e2)
			n += int(e2 >> 16 & 3)
			*(*uint16)(unsafe.Add(out, n)) = uint16(e3)
			n += int(e3 >> 16 & 3)
		}
		for i < len(s) {
			if e := escapes[s[i]]; e != 0 {
				*(*uint16)(unsafe.Add(out, n)) = uint16(e)
				n += int(e >> 16 & 3)
				i++
				continue
			}
			if s[i] < utf8.RuneSelf {
				break // a control character
			}
			r, size := utf8.DecodeRuneInString(s[i:])
			if size == 1 || r == '\u2028' || r == '\u2029' {
				break // invalid UTF-8, or a rune JSON text must escape
			}
			// Valid multi-byte UTF-8 is copied as is: four bytes at once when s has them
			// (room is there: size >= 2 input bytes left at least 4 output bytes).
			if i+4 <= len(s) {
				*(*uint32)(unsafe.Add(out, n)) = binary.LittleEndian.Uint32(unsafe.Slice(unsafe.StringData(s[i:]), 4))
				n += size
				i += size
				continue
			}
			for end := i + size; i < end; i++ {
				*(*byte)(unsafe.Add(out, n)) = s[i]
				n++
			}
		}
		dst = dst[:n]
		if i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			i++
			continue
		}
		// The loop above copies valid multi-byte UTF-8 itself: what stops it here is an
		// invalid byte, or U+2028/U+2029.
		if r, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
			dst = append(dst, `\ufffd`...)
			i++
			invalid = true
		} else {
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
		}
	}
	return append(dst, '"'), invalid
}

const (
	lowBits     = 0x0101010101010101
	highBits    = 0x8080808080808080
	quotes      = '"' * lowBits
	backslashes = '\\' * lowBits
)

// hasByteBelow is non-zero when some byte of w is below b (exact under the same condition).
func hasByteBelow(w uint64, b byte) uint64 { return (w - uint64(b)*lowBits) &^ w & highBits }

// hasZeroByte is non-zero when some byte of w is zero (exact, given no byte of w has its
// high bit set; the caller rejects those words separately).
func hasZeroByte(w uint64) uint64 { return (w - lowBits) &^ w & highBits }

// appendJSONBytes is appendJSONString for a byte slice, without copying it.
func appendJSONBytes(dst []byte, b []byte) []byte {
	return appendJSONString(dst, bytesView(b))
}

// appendJSONBody appends a body as a JSON string: as text when it is valid UTF-8, else as
// base64 of its bytes (reported), so a binary body is never silently altered.
func appendJSONBody(dst []byte, b []byte) (_ []byte, isBase64 bool) {
	start := len(dst)
	dst, invalid := appendJSONStringChecked(dst, bytesView(b))
	if !invalid {
		return dst, false
	}
	dst = append(dst[:start], '"')
	dst = base64.StdEncoding.AppendEncode(dst, b)
	return append(dst, '"'), true
}

// bytesView returns b as a string sharing its memory; the caller must not keep it past a
// change to b.
func bytesView(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// appendJSONFloat appends f formatted the way encoding/json formats a float64.
func appendJSONFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, '0')
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

func appendJSONBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, "true"...)
	}
	return append(dst, "false"...)
}
