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
	// The bytes to read: from the file up to what was written, then from the buffer.
	want := int64(maxBytes) + int64(maxN)*recordHeader
	end := min(seg.size, seg.readOff+want)
	var mem []byte
	fileEnd := min(end, seg.flushed)
	if end > seg.flushed && seg == s.segs[len(s.segs)-1] {
		from := max(seg.readOff, seg.flushed) - seg.flushed
		mem = append([]byte(nil), s.buf[from:end-seg.flushed]...)
	}
	if seg.rf == nil && fileEnd > seg.readOff {
		f, err := os.Open(seg.path)
		if err != nil {
			s.readFailed(seg, err)
			s.mu.Unlock()
			return nil, nil
		}
		seg.rf = f
	}
	rf, off := seg.rf, seg.readOff
	s.mu.Unlock()

	buf := make([]byte, 0, end-off)
	if fileEnd > off {
		buf = buf[:fileEnd-off]
		if _, err := rf.ReadAt(buf, off); err != nil {
			s.mu.Lock()
			s.readFailed(seg, err)
			s.mu.Unlock()
			return nil, nil
		}
	}
	buf = append(buf, mem...)
	var out []Record
	total, pos := 0, 0
	for len(out) < maxN {
		key, data, n, err := parseRecord(buf[pos:])
		if err != nil {
			s.mu.Lock()
			s.readFailed(seg, err)
			s.mu.Unlock()
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
	s.mu.Unlock()
	return out, nil
}

// nextLong reads the single record at off that did not fit the first read.
func (s *Spool) nextLong(seg *segment, off int64) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var hdr [recordHeader]byte
	var whole []byte
	if seg.rf == nil && off < seg.flushed {
		f, err := os.Open(seg.path)
		if err != nil {
			s.readFailed(seg, err)
			return nil, nil
		}
		seg.rf = f
	}
	if off+recordHeader <= seg.flushed {
		if _, err := seg.rf.ReadAt(hdr[:], off); err != nil {
			s.readFailed(seg, err)
			return nil, nil
		}
	} else {
		copy(hdr[:], s.buf[off-seg.flushed:])
	}
	l := int64(uint32(hdr[0]) | uint32(hdr[1])<<8 | uint32(hdr[2])<<16 | uint32(hdr[3])<<24)
	if l > MaxRecord {
		s.readFailed(seg, errCorrupt)
		return nil, nil
	}
	n := recordHeader + l
	whole = make([]byte, n)
	fileN := max(min(seg.flushed-off, n), 0)
	if fileN > 0 {
		if _, err := seg.rf.ReadAt(whole[:fileN], off); err != nil {
			s.readFailed(seg, err)
			return nil, nil
		}
	}
	if fileN < n {
		copy(whole[fileN:], s.buf[max(off-seg.flushed, 0):])
	}
	key, data, got, err := parseRecord(whole)
	if err != nil || got == 0 {
		s.readFailed(seg, errCorrupt)
		return nil, nil
	}
	seg.readOff += n
	seg.readRecs++
	s.st.Unread--
	return []Record{{Key: key, Data: data, seg: seg.id, off: off}}, nil
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
		s.buf = s.buf[:0]
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
