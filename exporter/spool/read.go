package spool

import "os"

// Notify is signalled (without blocking) after appends.
func (s *Spool) Notify() <-chan struct{} { return s.notify }

// Next hands out up to maxN records in order whose data totals at most maxBytes (always at
// least one record when any is unread). The records stay in the spool until acknowledged.
func (s *Spool) Next(maxN, maxBytes int) ([]Record, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	var seg *segment
	for _, sg := range s.segs {
		if sg.readRecs < sg.records {
			seg = sg
			break
		}
	}
	if seg == nil {
		s.mu.Unlock()
		return nil, nil
	}
	// Usually the bytes are still in memory (the active segment's tail); else read the file.
	// Reads happen under the lock: one per batch, and rarely from disk.
	want := int64(maxBytes) + int64(maxN)*recordHeader
	if seg.records > 0 {
		// Read about what maxN records take, not maxBytes: batches are usually bounded by count.
		avg := (seg.size - headerSize) / seg.records
		want = min(want, int64(maxN)*avg*5/4+recordHeader)
	}
	off := seg.readOff
	end := min(seg.size, off+want)
	buf, err := s.readRange(seg, off, end)
	if err != nil {
		s.readFailed(seg, err)
		s.mu.Unlock()
		return nil, nil
	}
	// Bytes still in memory were checksummed as they were appended; only the file's are
	// checked again.
	fromMemory := seg == s.segs[len(s.segs)-1] && off >= s.bufStart
	s.mu.Unlock()
	var out []Record
	var damaged error
	total, pos := 0, 0
	for len(out) < maxN {
		key, data, n, err := parseRecord(buf[pos:], !fromMemory)
		if err != nil {
			damaged = err
			break
		}
		if n == 0 {
			if len(out) == 0 && off+int64(pos) < end {
				// The first record is longer than what was read: read it whole.
				return s.nextLong(seg, off)
			}
			break
		}
		if len(out) > 0 && total+len(data) > maxBytes {
			break
		}
		out = append(out, Record{Key: key, Data: data, seg: seg.id, off: off + int64(pos)})
		total += len(data)
		pos += n
	}
	s.mu.Lock()
	seg.readOff += int64(pos)
	seg.readRecs += int64(len(out))
	s.st.Unread -= int64(len(out))
	if damaged != nil {
		s.readFailed(seg, damaged)
	}
	s.mu.Unlock()
	return out, nil
}

// nextLong reads the single record at off that did not fit the first read.
func (s *Spool) nextLong(seg *segment, off int64) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hdr, err := s.readRange(seg, off, off+recordHeader)
	if err != nil {
		s.readFailed(seg, err)
		return nil, nil
	}
	l := int64(uint32(hdr[0]) | uint32(hdr[1])<<8 | uint32(hdr[2])<<16 | uint32(hdr[3])<<24)
	if l > MaxRecord || off+recordHeader+l > seg.size {
		s.readFailed(seg, errCorrupt)
		return nil, nil
	}
	n := recordHeader + l
	whole, err := s.readRange(seg, off, off+n)
	if err != nil {
		s.readFailed(seg, err)
		return nil, nil
	}
	key, data, got, err := parseRecord(whole, true)
	if err != nil || got == 0 {
		s.readFailed(seg, errCorrupt)
		return nil, nil
	}
	seg.readOff += n
	seg.readRecs++
	s.st.Unread--
	return []Record{{Key: key, Data: data, seg: seg.id, off: off}}, nil
}

// readRange copies bytes [off, end) of seg: from the active segment's in-memory tail where
// it has them, else from the file. Caller holds mu.
func (s *Spool) readRange(seg *segment, off, end int64) ([]byte, error) {
	out := make([]byte, 0, end-off)
	active := seg == s.segs[len(s.segs)-1]
	fileEnd := min(end, seg.flushed)
	if active {
		fileEnd = min(end, s.bufStart)
	}
	if fileEnd > off {
		if seg.rf == nil {
			f, err := os.Open(seg.path)
			if err != nil {
				return nil, err
			}
			seg.rf = f
		}
		out = out[:fileEnd-off]
		if _, err := seg.rf.ReadAt(out, off); err != nil {
			return nil, err
		}
	}
	if active && end > max(off, s.bufStart) {
		out = append(out, s.buf[max(off, s.bufStart)-s.bufStart:end-s.bufStart]...)
	}
	return out, nil
}

// readFailed gives up the unread rest of seg: damaged on disk since it was written or
// scanned. Caller holds mu.
func (s *Spool) readFailed(seg *segment, err error) {
	lost := seg.records - seg.readRecs
	s.corrupt(seg.path, seg.size-seg.readOff, err)
	s.st.Records -= lost
	s.st.Bytes -= seg.size - seg.readOff
	s.st.Unread -= lost
	seg.records = seg.readRecs
	if seg == s.segs[len(s.segs)-1] {
		// Never append after damage: start a fresh segment.
		s.buf, s.bufStart = s.buf[:0], seg.flushed
		if err := s.newSegment(); err != nil {
			s.noteWriteErr(err)
		}
		return
	}
	s.deleteIfDone(seg)
}

// Ack marks records as done (delivered, or dropped for good); fully acknowledged sealed
// segments are deleted.
func (s *Spool) Ack(recs []Record) {
	if len(recs) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var seg *segment
	for _, r := range recs {
		if seg == nil || seg.id != r.seg {
			if seg != nil {
				s.deleteIfDone(seg)
			}
			seg = nil
			for _, sg := range s.segs {
				if sg.id == r.seg {
					seg = sg
					break
				}
			}
			if seg == nil {
				continue // already gone (damaged and skipped)
			}
		}
		end := r.off + r.Size()
		if r.off < seg.ackPrefix || seg.acks[r.off] != 0 {
			continue // acknowledged twice
		}
		seg.acked++
		s.st.Records--
		s.st.Bytes -= r.Size()
		if r.off == seg.ackPrefix {
			seg.ackPrefix = end
			for {
				e, ok := seg.acks[seg.ackPrefix]
				if !ok {
					break
				}
				delete(seg.acks, seg.ackPrefix)
				seg.ackPrefix = e
			}
		} else {
			if seg.acks == nil {
				seg.acks = map[int64]int64{}
			}
			seg.acks[r.off] = end
		}
		s.ackDirty = true
	}
	if seg != nil {
		s.deleteIfDone(seg)
	}
}
