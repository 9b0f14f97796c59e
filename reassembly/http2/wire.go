package http2

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"strconv"
	"unicode/utf8"
)

// Protocol buffers without a schema: the wire format (protobuf.dev "Encoding") says only a
// field's number and how its value is framed, so a message is rendered as a JSON object
// keyed by field number, in the order fields first appear:
//
//   - varint: a number (negative when the 64-bit value is a negative int64, as negative
//     int32/int64 values are encoded; a string when beyond ±2^53, where JSON numbers lose
//     precision);
//   - 64-bit: a double when it reads as one between 1e-9 and 1e15 in magnitude (or is 0),
//     else an unsigned integer (fixed64, sfixed64);
//   - 32-bit: likewise a float between 1e-6 and 1e9, else an unsigned integer;
//   - length-delimited: printable UTF-8 text as a string; else, when the bytes parse as a
//     message, that nested message; else {"$bytes": "<standard base64>"} (bytes fields,
//     packed repeated scalars);
//   - a field number seen more than once: an array of its values in order.
//
// Groups (wire types 3 and 4, long deprecated) and anything else that does not parse
// make the whole message {"$bytes": …}. Nesting deeper than maxDepth is kept as bytes.

const (
	maxDepth        = 32
	maxFieldsPerMsg = 4096
)

// wireField is one field of a parsed message.
type wireField struct {
	num   uint64
	typ   uint8
	v     uint64 // varint, fixed32, fixed64
	bytes []byte // length-delimited
	done  bool   // rendered (within a repeated group)
}

// parseMessage splits b into fields; ok is false unless every byte belongs to a
// well-formed field.
func parseMessage(b []byte, fields []wireField) ([]wireField, bool) {
	for len(b) > 0 {
		if len(fields) >= maxFieldsPerMsg {
			return fields, false
		}
		tag, n := binary.Uvarint(b)
		if n <= 0 {
			return fields, false
		}
		b = b[n:]
		f := wireField{num: tag >> 3, typ: uint8(tag & 7)}
		if f.num == 0 || f.num > 1<<29-1 {
			return fields, false
		}
		switch f.typ {
		case 0:
			if f.v, n = binary.Uvarint(b); n <= 0 {
				return fields, false
			}
			b = b[n:]
		case 1:
			if len(b) < 8 {
				return fields, false
			}
			f.v, b = binary.LittleEndian.Uint64(b), b[8:]
		case 5:
			if len(b) < 4 {
				return fields, false
			}
			f.v, b = uint64(binary.LittleEndian.Uint32(b)), b[4:]
		case 2:
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return fields, false
			}
			f.bytes, b = b[n:n+int(l)], b[n+int(l):]
		default:
			return fields, false
		}
		fields = append(fields, f)
	}
	return fields, true
}

// appendMessage appends the JSON rendering of message b; when b is not a well-formed
// message it returns dst unchanged and false.
func appendMessage(dst, b []byte, depth int) ([]byte, bool) {
	if depth >= maxDepth {
		return dst, false
	}
	var stack [16]wireField
	fields, ok := parseMessage(b, stack[:0])
	if !ok {
		return dst, false
	}
	dst = append(dst, '{')
	first := true
	for i := range fields {
		f := &fields[i]
		if f.done {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		dst = strconv.AppendUint(dst, f.num, 10)
		dst = append(dst, '"', ':')
		repeated := false
		for j := i + 1; j < len(fields); j++ {
			if fields[j].num == f.num {
				repeated = true
				break
			}
		}
		if !repeated {
			dst = appendValue(dst, f, depth)
			continue
		}
		dst = append(dst, '[')
		for j := i; j < len(fields); j++ {
			if g := &fields[j]; g.num == f.num {
				if j > i {
					dst = append(dst, ',')
				}
				dst = appendValue(dst, g, depth)
				g.done = true
			}
		}
		dst = append(dst, ']')
	}
	return append(dst, '}'), true
}

func appendValue(dst []byte, f *wireField, depth int) []byte {
	switch f.typ {
	case 0:
		return appendInteger(dst, f.v)
	case 1:
		if d := math.Float64frombits(f.v); f.v == 0 || readableFloat(d, 1e-9, 1e15) {
			return strconv.AppendFloat(dst, d, 'g', -1, 64)
		}
		return appendInteger(dst, f.v)
	case 5:
		if d := float64(math.Float32frombits(uint32(f.v))); f.v == 0 || readableFloat(d, 1e-6, 1e9) {
			return strconv.AppendFloat(dst, d, 'g', -1, 32)
		}
		return strconv.AppendUint(dst, f.v, 10)
	}
	if printable(f.bytes) {
		return appendJSONString(dst, f.bytes)
	}
	if out, ok := appendMessage(dst, f.bytes, depth+1); ok {
		return out
	}
	dst = append(dst, `{"$bytes":`...)
	dst = appendBase64(dst, f.bytes)
	return append(dst, '}')
}

func readableFloat(d, lo, hi float64) bool {
	a := math.Abs(d)
	return a >= lo && a <= hi
}

// appendInteger writes a varint's value as a JSON number, reading values with the top bit
// set as negative int64 (how negative int32/int64 fields are encoded).
func appendInteger(dst []byte, v uint64) []byte {
	const exact = 1 << 53
	if int64(v) < 0 {
		if n := int64(v); n >= -exact {
			return strconv.AppendInt(dst, n, 10)
		}
		dst = append(dst, '"')
		dst = strconv.AppendInt(dst, int64(v), 10)
		return append(dst, '"')
	}
	if v > exact {
		dst = append(dst, '"')
		dst = strconv.AppendUint(dst, v, 10)
		return append(dst, '"')
	}
	return strconv.AppendUint(dst, v, 10)
}

// printable reports text: valid UTF-8 without control characters other than tab and
// line breaks. Nested messages nearly always contain control bytes (tags and lengths
// below 32), so text is tried first.
func printable(b []byte) bool {
	if len(b) == 0 {
		return true
	}
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return false
		}
		i += n
	}
	return true
}

// appendJSONString appends b (valid UTF-8, or replaced where not) as a JSON string.
func appendJSONString(dst, b []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(b); {
		c := b[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n <= 1 {
				dst = append(dst, `\ufffd`...)
			} else {
				dst = append(dst, b[i:i+n]...)
			}
			i += n
			continue
		}
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20 || c == 0x7f:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			dst = append(dst, c)
		}
		i++
	}
	return append(dst, '"')
}

func appendBase64(dst, b []byte) []byte {
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, b)
	return append(dst, '"')
}
