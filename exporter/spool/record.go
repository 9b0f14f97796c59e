package spool

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// On disk a segment is the 8-byte magic followed by records, each
//
//	length uint32 | crc32c(key ‖ data) uint32 | key uint64 | data [length]byte
//
// little endian. A record that does not check out ends the readable part of its segment.
const (
	magic        = "MLSPOOL1"
	headerSize   = int64(len(magic))
	recordHeader = 16
	// MaxRecord bounds one record; longer lengths can only come from damage.
	MaxRecord = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var errCorrupt = errors.New("corrupt record")

// Record is one spooled trace.
type Record struct {
	// Key is the caller's tag (the trace's endpoint key), stored with the data.
	Key uint64
	// Data is the trace; it stays valid until the record is acknowledged.
	Data []byte

	seg uint64 // segment id
	off int64  // offset of the record header in its segment
}

// Size is the record's footprint on disk.
func (r Record) Size() int64 { return int64(recordHeader + len(r.Data)) }

func appendRecord(dst []byte, key uint64, data []byte) []byte {
	var h [recordHeader]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(len(data)))
	binary.LittleEndian.PutUint64(h[8:], key)
	crc := crc32.Update(0, castagnoli, h[8:16])
	crc = crc32.Update(crc, castagnoli, data)
	binary.LittleEndian.PutUint32(h[4:], crc)
	dst = append(dst, h[:]...)
	return append(dst, data...)
}

// parseRecord reads the record at the start of b, verifying its checksum when check is
// set. It returns the record's total length, 0 when b holds only part of it, or errCorrupt.
func parseRecord(b []byte, check bool) (key uint64, data []byte, n int, err error) {
	if len(b) < recordHeader {
		return 0, nil, 0, nil
	}
	l := binary.LittleEndian.Uint32(b[0:])
	if l > MaxRecord {
		return 0, nil, 0, errCorrupt
	}
	n = recordHeader + int(l)
	if len(b) < n {
		return 0, nil, 0, nil
	}
	if check {
		crc := crc32.Update(0, castagnoli, b[8:16])
		crc = crc32.Update(crc, castagnoli, b[recordHeader:n])
		if crc != binary.LittleEndian.Uint32(b[4:]) {
			return 0, nil, 0, errCorrupt
		}
	}
	return binary.LittleEndian.Uint64(b[8:]), b[recordHeader:n], n, nil
}
