package spool

import (
	"encoding/binary"
	"os"
	"slices"
	"sort"
)

// Notify is signalled (without blocking) after appends.
func (s *Spool) Notify() <-chan struct{} { return s.notify }

// Next hands out up to maxN records in order whose data totals at most maxBytes (always at
// least one record when any is unread). The records stay in the spool until acknowledged;
// their Data is valid until then.
//
// Records still in the memory tail are handed out where they lie (no copy, no checksum:
// they were checksummed as they were appended); older ones are read from the file into
// reused chunks and checked.
func (s *Spool) Next(maxN, maxBytes int) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
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
		return nil, nil
	}
	out := make([]Record, 0, min(int64(maxN), seg.records-seg.readRecs))
	total := 0
	for more := true; more && len(out) < maxN && seg.readRecs < seg.records; {
		if i := s.tailIndex(seg, seg.readOff); i >= 0 {
			out, total, more = s.readMemory(i, out, total, maxN, maxBytes)
		} else {
			out, total, more = s.readFile(seg, out, total, maxN, maxBytes)
		}
	}
	return out, nil
}

// tailIndex finds the tail chunk holding seg's offset off, or -1.
func (s *Spool) tailIndex(seg *segment, off int64) int {
	for i, c := range s.tail {
		switch {
		case c.seg.id > seg.id || (c.seg == seg && c.off > off):
			return -1 // the tail is in append order: it starts later
		case c.seg == seg && off < c.off+int64(len(c.b)):
			return i
		}
	}
	return -1
}

// readMemory hands out records from tail chunk i on; more is false once a limit is hit.
func (s *Spool) readMemory(i int, out []Record, total, maxN, maxBytes int) ([]Record, int, bool) {
	c := s.tail[i]
	seg := c.seg
	pos := uint32(seg.readOff - c.off)
	if c.rd >= len(c.idx) || c.idx[c.rd].pos != pos {
		// Not where the last read stopped (cannot happen; found again all the same).
		c.rd = sort.Search(len(c.idx), func(k int) bool { return c.idx[k].pos >= pos })
	}
	for ; c.rd < len(c.idx) && len(out) < maxN; c.rd++ {
		r := c.idx[c.rd]
		data := c.b[r.pos+recordHeader : r.pos+r.n : r.pos+r.n]
		if len(out) > 0 && total+len(data) > maxBytes {
			return out, total, false
		}
		out = append(out, Record{Key: r.key, Data: data, seg: seg.id, off: seg.readOff, c: c})
		c.out++
		total += len(data)
		seg.readOff += int64(r.n)
		seg.readRecs++
		s.st.Unread--
	}
	if c.rd < len(c.idx) {
		return out, total, false
	}
	if c != s.act {
		s.untail(i) // read to its end: memory need not hold it any longer
	}
	return out, total, true
}

// readFile reads records of seg from its file, at most one chunk's worth at a time (or one
// record, when it is longer); more is false once a limit is hit or the segment is damaged.
func (s *Spool) readFile(seg *segment, out []Record, total, maxN, maxBytes int) ([]Record, int, bool) {
	// Everything before the tail's first chunk of seg is in the file.
	end := seg.flushed
	for _, c := range s.tail {
		if c.seg == seg {
			end = min(end, c.off)
			break
		}
	}
	off := seg.readOff
	if end-off < recordHeader {
		s.readFailed(seg, errCorrupt)
		return out, total, false
	}
	// Read about what the records still wanted take, not a whole chunk: batches are usually
	// bounded by count.
	want := int64(s.chunkSize)
	if seg.records > 0 {
		avg := (seg.size - seg.start) / seg.records
		want = min(want, int64(maxN-len(out))*avg*5/4+recordHeader)
	}
	c, err := s.readChunk(seg, off, min(end-off, want))
	if err != nil {
		s.readFailed(seg, err)
		return out, total, false
	}
	if l := int64(binary.LittleEndian.Uint32(c.b)); int64(len(c.b)) < recordHeader+l && l <= MaxRecord && off+recordHeader+l <= end {
		// The first record is longer than what was read: read it whole.
		s.release(c)
		if c, err = s.readChunk(seg, off, recordHeader+l); err != nil {
			s.readFailed(seg, err)
			return out, total, false
		}
	}
	pos, more := 0, true
	for pos < len(c.b) && len(out) < maxN {
		key, data, n, err := parseRecord(c.b[pos:], seg.seed, true)
		if err != nil || (n == 0 && pos == 0) {
			s.readFailed(seg, errCorrupt) // a record that does not check out, or claims more than the file holds
			more = false
			break
		}
		if n == 0 {
			break // the rest is read next time
		}
		if len(out) > 0 && total+len(data) > maxBytes {
			more = false
			break
		}
		out = append(out, Record{Key: key, Data: data, seg: seg.id, off: off + int64(pos), c: c})
		c.out++
		total += len(data)
		pos += n
		seg.readOff += int64(n)
		seg.readRecs++
		s.st.Unread--
	}
	if c.out == 0 {
		s.release(c)
	}
	return out, total, more
}

// readChunk reads n bytes of seg from offset off into a chunk. Caller holds mu.
func (s *Spool) readChunk(seg *segment, off, n int64) (*chunk, error) {
	if seg.rf == nil {
		f, err := os.Open(seg.path)
		if err != nil {
			return nil, err
		}
		seg.rf = f
	}
	c := s.getChunk(int(n))
	c.b = c.b[:n]
	if _, err := seg.rf.ReadAt(c.b, off); err != nil {
		s.release(c)
		return nil, err
	}
	c.seg, c.off = seg, off
	s.st.DiskReadBytes += n
	return c, nil
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
	s.dropTail(seg)
	if seg == s.segs[len(s.segs)-1] {
		// Never append after damage: start a fresh segment.
		if err := s.newSegment(); err != nil {
			s.noteWriteErr(err)
		}
		return
	}
	s.deleteIfDone(seg)
}

// Ack marks records as done (delivered, or dropped for good); fully acknowledged sealed
// segments are deleted. A record's Data must not be used after its Ack.
func (s *Spool) Ack(recs []Record) {
	if len(recs) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var seg *segment
	for i := 0; i < len(recs); {
		r := recs[i]
		if seg == nil || seg.id != r.seg {
			if seg != nil {
				s.deleteIfDone(seg)
			}
			seg = s.segment(r.seg)
		}
		if seg == nil || seg.isAcked(r.off) {
			i++
			continue // already gone (damaged and skipped), or acknowledged twice
		}
		// Batches are runs of consecutive records: acknowledge each run as one range.
		start, end := r.off, r.off
		for ; i < len(recs) && recs[i].seg == seg.id && recs[i].off == end && (end == start || !seg.isAcked(end)); i++ {
			if c := recs[i].c; c != nil {
				if c.out--; c.out == 0 && !c.tail {
					s.release(c)
				}
			}
			end += recs[i].Size()
			seg.acked++
			s.st.Records--
		}
		s.st.Bytes -= end - start
		seg.addAcked(start, end)
		s.ackDirty = true
	}
	if seg != nil {
		s.deleteIfDone(seg)
	}
}

func (s *Spool) segment(id uint64) *segment {
	for _, sg := range s.segs {
		if sg.id == id {
			return sg
		}
	}
	return nil
}

// span is a range of acknowledged records past a segment's acknowledged prefix.
type span struct{ start, end int64 }

// isAcked says whether the record at off is acknowledged.
func (g *segment) isAcked(off int64) bool {
	if off < g.ackPrefix {
		return true
	}
	k := sort.Search(len(g.acks), func(k int) bool { return g.acks[k].start > off }) - 1
	return k >= 0 && off < g.acks[k].end
}

// addAcked records the records in [start, end) as acknowledged, merging ranges.
func (g *segment) addAcked(start, end int64) {
	if start == g.ackPrefix {
		g.ackPrefix = end
		for len(g.acks) > 0 && g.acks[0].start == g.ackPrefix {
			g.ackPrefix = g.acks[0].end
			g.acks = g.acks[1:]
		}
		return
	}
	k := sort.Search(len(g.acks), func(k int) bool { return g.acks[k].start > start })
	switch {
	case k > 0 && g.acks[k-1].end == start && k < len(g.acks) && g.acks[k].start == end:
		g.acks[k-1].end = g.acks[k].end
		g.acks = slices.Delete(g.acks, k, k+1)
	case k > 0 && g.acks[k-1].end == start:
		g.acks[k-1].end = end
	case k < len(g.acks) && g.acks[k].start == end:
		g.acks[k].start = start
	default:
		g.acks = slices.Insert(g.acks, k, span{start, end})
	}
}
