package xdp

import (
	"encoding/binary"

	"github.com/metlo-labs/metlo-appliance/datapath"
)

// metaSize is sizeof(struct frame_meta): the header in front of each ring record.
const metaSize = 32

const (
	flagInnerIP    = 0x01 // FRAME_FLAG_INNER_IP
	flagCoarseTime = 0x02 // FRAME_FLAG_COARSE_TIME: timestamp within a tick, not exact
	flagWhole      = 0x04 // FRAME_FLAG_WHOLE: the whole received frame, tunnel included
)

// decodeRecord fills f from one ring record (frame_meta, alignment gap, inner frame); f.Data
// aliases raw. It reports false for a record too short for what its header claims.
func decodeRecord(raw []byte, clockOffset int64, f *datapath.Frame) bool {
	if len(raw) < metaSize {
		return false
	}
	capLen := int(binary.LittleEndian.Uint16(raw[16:]))
	off := int(binary.LittleEndian.Uint16(raw[18:]))
	if off < metaSize || off+capLen > len(raw) {
		return false
	}
	*f = datapath.Frame{
		Data:         raw[off : off+capLen : off+capLen],
		WireLen:      int(binary.LittleEndian.Uint32(raw[8:])),
		Timestamp:    int64(binary.LittleEndian.Uint64(raw[0:])) + clockOffset,
		Decapsulated: raw[21]&flagWhole == 0, // a whole frame is decoded from its outer Ethernet
		InnerIsIP:    raw[21]&flagInnerIP != 0,
		Encap:        datapath.Encap(raw[20]),
		Tunnel:       binary.LittleEndian.Uint32(raw[12:]),
	}
	return true
}
