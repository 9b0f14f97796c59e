package redact

import (
	"encoding/binary"
	"math/bits"
)

// Finding bytes eight at a time in a machine word: JSON puts colons and quotes a few bytes
// apart, where a call to bytes.IndexByte costs more than the search.

const (
	ones = 0x0101010101010101
	low7 = 0x7f7f7f7f7f7f7f7f
)

// zeroBytes has the top bit set in exactly the bytes of w that are zero.
func zeroBytes(w uint64) uint64 {
	return ^((w&low7 + low7) | w | low7)
}

// lastIndexByteBefore returns the index of the last c in b before end, or -1.
func lastIndexByteBefore(b []byte, end int, c byte) int {
	pattern := ones * uint64(c)
	for ; end >= 8; end -= 8 {
		if m := zeroBytes(binary.LittleEndian.Uint64(b[end-8:]) ^ pattern); m != 0 {
			return end - 8 + (63-bits.LeadingZeros64(m))/8
		}
	}
	for end--; end >= 0; end-- {
		if b[end] == c {
			return end
		}
	}
	return -1
}
