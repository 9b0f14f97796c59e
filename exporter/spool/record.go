package spool

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// On disk a segment is a header followed by records and an end mark, little endian:
//
//	header  "MLSPOOL2" | segment id uint64
//	record  length uint32 | crc32c(seed ‖ key ‖ data) uint32 | key uint64 | data [length]byte
//	end     0xffffffff | seed uint32 | "SPOOLEND"
//
// where seed is crc32c of the segment id (little endian). Seeding every checksum with the
// segment's id lets segment files be reused: what an earlier use of the file left beyond
// the end mark can never pass for a record of this segment. Every write ends with the end
// mark, so a file that stops anywhere else was cut short (a crash mid-write, damage).
//
// Version 1 segments ("MLSPOOL1", no id, checksums without seed, no end mark) are still
// read, so a spool left by an earlier release is replayed.
const (
	magicV1      = "MLSPOOL1"
	magic        = "MLSPOOL2"
	headerSizeV1 = int64(len(magicV1))
	headerSize   = int64(len(magic) + 8)
	recordHeader = 16
	endMarkSize  = recordHeader
	endKey       = "SPOOLEND"
	// MaxRecord bounds one record; longer lengths can only come from damage.
	MaxRecord = 64 << 20
)

// castagnoli is the table crc32 recognises to use the CPU's CRC32C instruction (SSE4.2,
// ARMv8): MakeTable returns that same table for crc32.Castagnoli.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	errCorrupt = errors.New("corrupt record")
	errEnd     = errors.New("end of segment")
)

// Record is one spooled trace.
type Record struct {
	// Key is the caller's tag (the trace's endpoint key), stored with the data.
	Key uint64
	// Data is the trace. It stays valid until the record is acknowledged; after Ack the
	// spool reuses its memory.
	Data []byte

	seg uint64 // segment id
	off int64  // offset of the record header in its segment
	c   *chunk // the memory holding Data; nil for the memory backlog
}

// Size is the record's footprint on disk.
func (r Record) Size() int64 { return int64(recordHeader + len(r.Data)) }

// segmentSeed is the checksum seed of segment id's records.
func segmentSeed(id uint64) uint32 {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], id)
	return crc32.Update(0, castagnoli, b[:])
}

// appendHeader appends a version 2 segment header and an end mark.
func appendHeader(dst []byte, id uint64) []byte {
	dst = append(dst, magic...)
	dst = binary.LittleEndian.AppendUint64(dst, id)
	return appendEndMark(dst, segmentSeed(id))
}

func appendEndMark(dst []byte, seed uint32) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, 0xffffffff)
	dst = binary.LittleEndian.AppendUint32(dst, seed)
	return append(dst, endKey...)
}

func appendRecord(dst []byte, seed uint32, key uint64, data []byte) []byte {
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(data)))
	dst = binary.LittleEndian.AppendUint32(dst, 0)
	dst = binary.LittleEndian.AppendUint64(dst, key)
	dst = append(dst, data...)
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Update(seed, castagnoli, dst[start+8:]))
	return dst
}

// parseRecord reads the record at the start of b, verifying its checksum against seed when
// check is set. It returns the record's total length, 0 when b holds only part of it,
// errEnd at this segment's end mark, or errCorrupt.
func parseRecord(b []byte, seed uint32, check bool) (key uint64, data []byte, n int, err error) {
	if len(b) < recordHeader {
		return 0, nil, 0, nil
	}
	l := binary.LittleEndian.Uint32(b[0:])
	if l > MaxRecord {
		if l == 0xffffffff && binary.LittleEndian.Uint32(b[4:]) == seed && string(b[8:16]) == endKey {
			return 0, nil, 0, errEnd
		}
		return 0, nil, 0, errCorrupt
	}
	n = recordHeader + int(l)
	if len(b) < n {
		return 0, nil, 0, nil
	}
	if check {
		if crc32.Update(seed, castagnoli, b[8:n]) != binary.LittleEndian.Uint32(b[4:]) {
			return 0, nil, 0, errCorrupt
		}
	}
	return binary.LittleEndian.Uint64(b[8:]), b[recordHeader:n:n], n, nil
}

// parseHeader reads a segment header: its version's length, the id it names (0 for
// version 1) and the records' checksum seed for a segment with file id fileID.
func parseHeader(b []byte, fileID uint64) (size int64, headerID uint64, seed uint32, ok bool) {
	switch {
	case len(b) >= int(headerSize) && string(b[:len(magic)]) == magic:
		return headerSize, binary.LittleEndian.Uint64(b[len(magic):]), segmentSeed(fileID), true
	case len(b) >= int(headerSizeV1) && string(b[:len(magicV1)]) == magicV1:
		return headerSizeV1, 0, 0, true
	}
	return 0, 0, 0, false
}
