package http2

import (
	"errors"

	"golang.org/x/net/http2/hpack"
)

// HPACK (RFC 7541) decoding for a passive observer. The library's hpack.Decoder stops at
// the first reference to a table entry it does not hold and cannot hold an entry whose
// name it never saw, so a capture that joins a connection mid-way would lose every later
// header block. This decoder keeps the dynamic table's positions exact even when it lacks
// some entries' contents:
//
//   - the table is "our entries" (everything inserted since the capture joined or since
//     the table was last lost) followed, when unknownTail is set, by older entries never
//     seen. New entries go in front, so references to our entries always resolve to the
//     right field; a reference past them is an unknown field, reported as such.
//   - an entry inserted with a name taken from an unknown entry keeps its value and is
//     marked nameUnknown.
//   - the unknown tail is known to be gone once our entries leave less than 32 bytes of
//     room (every entry costs at least 32), or the table is emptied by a size update or an
//     oversized insert. Entry sizes only decide when we forget our own entries, never
//     which field a reference means, so an underestimate costs memory, not correctness.
//   - a header block that is lost or malformed may have inserted entries: the table is
//     then forgotten entirely (every entry becomes unknown) and rebuilt as above.

// defaultTableSize is SETTINGS_HEADER_TABLE_SIZE's initial value: an encoder's table
// never exceeds it without a size update in a header block.
const defaultTableSize = 4096

// maxTableSize is the largest table size update accepted.
const maxTableSize = 1 << 31

// maxKeptTableSize bounds the bytes of entries kept per direction, whatever size the
// encoder announces: references beyond it become unknown fields.
const maxKeptTableSize = 64 << 10

// entry is one HPACK table entry.
type entry struct {
	name, value string
	nameUnknown bool // inserted with the name of an entry never seen
}

// size is the entry's size per RFC 7541 §4.1 (an unknown name counts as empty).
func (e *entry) size() uint32 { return uint32(len(e.name)+len(e.value)) + 32 }

// field is one decoded header field.
type field struct {
	name, value string
	unknown     bool // it referenced a table entry never seen: name (and value) missing
	sensitive   bool // never-indexed literal
	// While a block is decoded, literal strings live in the scratch buffer at these
	// offsets (nOff < 0: name is already set).
	nOff, nEnd, vOff, vEnd int32
}

// hpackDecoder is one direction's decoding context.
type hpackDecoder struct {
	ring        []entry // dynamic table, a ring buffer; newest at ring[newest]
	newest, n   int
	size        uint32 // sum of our entries' sizes
	maxSize     uint32 // the encoder's table size, as last announced (or the default)
	unknownTail bool   // entries older than ours may exist that the capture never saw

	scratch []byte  // decoded literal strings of the block being decoded
	fields  []field // the block's fields, reused between blocks
	hw      huffWriter
}

// blockStats says what one decoded block lacked.
type blockStats struct {
	unknown int // references to entries the capture never saw (joined mid-connection, or table lost)
	invalid int // references past the table with no unknown tail: the sender's error, or our loss
}

var (
	errTruncatedBlock = errors.New("hpack: truncated field")
	errIntOverflow    = errors.New("hpack: integer overflow")
	errIndexZero      = errors.New("hpack: index 0")
	errSizeUpdate     = errors.New("hpack: table size update not at block start")
	errHuffman        = errors.New("hpack: invalid huffman string")
)

func newHPACKDecoder() hpackDecoder {
	return hpackDecoder{maxSize: defaultTableSize}
}

// lose forgets every entry: a header block was lost or could not be decoded, so the
// entries it inserted are unknown and every position after them shifts.
func (d *hpackDecoder) lose() {
	clear(d.ring)
	d.newest, d.n, d.size = 0, 0, 0
	d.unknownTail = true
}

// at returns dynamic entry i (1 = newest) of ours.
func (d *hpackDecoder) at(i int) *entry {
	return &d.ring[(d.newest-(i-1)+len(d.ring))%len(d.ring)]
}

func (d *hpackDecoder) evictOldest() {
	e := &d.ring[(d.newest-(d.n-1)+len(d.ring))%len(d.ring)]
	d.size -= e.size()
	*e = entry{}
	d.n--
}

func (d *hpackDecoder) keepLimit() uint32 { return min(d.maxSize, maxKeptTableSize) }

// add inserts a new entry in front of the table, evicting the oldest as the encoder does.
func (d *hpackDecoder) add(e entry) {
	sz := e.size()
	if sz > d.maxSize {
		// RFC 7541 §4.4: the table is emptied, the entry not added.
		clear(d.ring)
		d.newest, d.n, d.size, d.unknownTail = 0, 0, 0, false
		return
	}
	for d.n > 0 && d.size+sz > d.keepLimit() {
		d.evictOldest()
	}
	if d.n == len(d.ring) {
		grown := make([]entry, max(8, 2*len(d.ring)))
		for i := range d.n { // oldest first
			grown[i] = *d.at(d.n - i)
		}
		d.ring, d.newest = grown, d.n-1
	}
	d.newest = (d.newest + 1) % len(d.ring)
	d.ring[d.newest] = e
	d.n++
	d.size += sz
	d.noteRoom()
}

// noteRoom clears the unknown tail once it cannot hold even the smallest entry.
func (d *hpackDecoder) noteRoom() {
	if d.maxSize < d.size+32 {
		d.unknownTail = false
	}
}

func (d *hpackDecoder) setMaxSize(v uint32) {
	d.maxSize = v
	for d.n > 0 && d.size > d.keepLimit() {
		d.evictOldest()
	}
	d.noteRoom()
}

// lookup resolves index i (static, then dynamic). ok is false for a reference past the
// table; unknown is set when the entry (or its name) was never seen.
func (d *hpackDecoder) lookup(i uint64, st *blockStats) (e entry, ok bool) {
	if i <= uint64(len(staticTable)) {
		return staticTable[i-1], true
	}
	j := i - uint64(len(staticTable))
	if j <= uint64(d.n) {
		e := *d.at(int(j))
		if e.nameUnknown {
			st.unknown++
		}
		return e, true
	}
	if d.unknownTail {
		st.unknown++
	} else {
		st.invalid++
	}
	return entry{}, false
}

// decode decodes one complete header block into d.fields (valid until the next call).
// On error the fields decoded before it are kept and the table is forgotten, since the
// rest of the block may have inserted entries.
func (d *hpackDecoder) decode(block []byte) ([]field, blockStats, error) {
	var st blockStats
	d.scratch = d.scratch[:0]
	d.fields = d.fields[:0]
	var err error
	for len(block) > 0 && err == nil {
		// Size updates may only open a block (one or two of them, RFC 7541 §4.2).
		block, err = d.decodeField(block, len(d.fields) == 0, &st)
	}
	if err != nil {
		d.lose()
	}
	d.finishStrings()
	return d.fields, st, err
}

// finishStrings turns the literal strings in scratch into one string shared by the block's
// fields: one allocation per block instead of one per field.
func (d *hpackDecoder) finishStrings() {
	if len(d.scratch) == 0 {
		return
	}
	s := string(d.scratch)
	for i := range d.fields {
		f := &d.fields[i]
		if f.nOff >= 0 {
			f.name = s[f.nOff:f.nEnd]
		}
		if f.vOff >= 0 {
			f.value = s[f.vOff:f.vEnd]
		}
	}
	if cap(d.scratch) > 64<<10 {
		d.scratch = nil // keep idle connections small
	}
}

func (d *hpackDecoder) decodeField(b []byte, first bool, st *blockStats) ([]byte, error) {
	c := b[0]
	switch {
	case c&0x80 != 0: // indexed field
		i, rest, err := readInt(7, b)
		if err != nil {
			return b, err
		}
		if i == 0 {
			return b, errIndexZero
		}
		e, ok := d.lookup(i, st)
		d.fields = append(d.fields, field{name: e.name, value: e.value, unknown: !ok || e.nameUnknown, nOff: -1, vOff: -1})
		return rest, nil
	case c&0xc0 == 0x40: // literal with incremental indexing
		return d.literal(b, 6, true, false, st)
	case c&0xf0 == 0x00: // literal without indexing
		return d.literal(b, 4, false, false, st)
	case c&0xf0 == 0x10: // literal never indexed
		return d.literal(b, 4, false, true, st)
	default: // 001xxxxx: dynamic table size update
		// The size is not checked against SETTINGS_HEADER_TABLE_SIZE, which a capture
		// that joined mid-way never saw; only absurd sizes are refused.
		v, rest, err := readInt(5, b)
		if err != nil {
			return b, err
		}
		if v > maxTableSize {
			return b, errSizeUpdate
		}
		misplaced := !first && d.size > 0
		d.setMaxSize(uint32(v))
		if misplaced {
			// RFC 7541 §4.2 allows it only at the start of a block (like the library, we
			// let an empty table pass); a sender that puts one elsewhere still changed its
			// table, so it is applied and the block counted bad.
			return rest, errSizeUpdate
		}
		return rest, nil
	}
}

func (d *hpackDecoder) literal(b []byte, prefix uint8, index, sensitive bool, st *blockStats) ([]byte, error) {
	ni, b, err := readInt(prefix, b)
	if err != nil {
		return b, err
	}
	f := field{sensitive: sensitive, nOff: -1, vOff: -1}
	nameUnknown := false
	if ni > 0 {
		e, ok := d.lookup(ni, st)
		f.name, nameUnknown = e.name, !ok || e.nameUnknown
	} else {
		f.nOff = int32(len(d.scratch))
		if b, err = d.readString(b); err != nil {
			return b, err
		}
		f.nEnd = int32(len(d.scratch))
	}
	f.vOff = int32(len(d.scratch))
	if b, err = d.readString(b); err != nil {
		return b, err
	}
	f.vEnd = int32(len(d.scratch))
	f.unknown = nameUnknown
	if index {
		// The entry outlives the block: give it its own string (name and value share it).
		e := entry{nameUnknown: nameUnknown}
		if f.nOff >= 0 {
			s := string(d.scratch[f.nOff:f.vEnd])
			e.name, e.value = s[:f.nEnd-f.nOff], s[f.nEnd-f.nOff:]
			d.scratch = d.scratch[:f.nOff]
		} else {
			e.name, e.value = f.name, string(d.scratch[f.vOff:f.vEnd])
			d.scratch = d.scratch[:f.vOff]
		}
		f.name, f.value, f.nOff, f.vOff = e.name, e.value, -1, -1
		d.add(e)
	}
	d.fields = append(d.fields, f)
	return b, nil
}

// readString appends one (possibly Huffman-coded) string literal to scratch.
func (d *hpackDecoder) readString(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return b, errTruncatedBlock
	}
	huff := b[0]&0x80 != 0
	n, b, err := readInt(7, b)
	if err != nil {
		return b, err
	}
	if n > uint64(len(b)) {
		return b, errTruncatedBlock
	}
	s := b[:n]
	if !huff {
		d.scratch = append(d.scratch, s...)
		return b[n:], nil
	}
	d.hw.b = d.scratch
	_, herr := hpack.HuffmanDecode(&d.hw, s)
	d.scratch = d.hw.b
	d.hw.b = nil
	if herr != nil {
		return b, errHuffman
	}
	return b[n:], nil
}

// huffWriter appends what hpack.HuffmanDecode writes to a byte slice.
type huffWriter struct{ b []byte }

func (w *huffWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// readInt reads an HPACK integer with an n-bit prefix (RFC 7541 §5.1).
func readInt(n uint8, b []byte) (uint64, []byte, error) {
	if len(b) == 0 {
		return 0, b, errTruncatedBlock
	}
	mask := uint64(1)<<n - 1
	v := uint64(b[0]) & mask
	b = b[1:]
	if v < mask {
		return v, b, nil
	}
	for shift := uint(0); ; shift += 7 {
		if len(b) == 0 {
			return 0, b, errTruncatedBlock
		}
		if shift > 56 {
			return 0, b, errIntOverflow
		}
		c := b[0]
		b = b[1:]
		v += uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, b, nil
		}
	}
}
