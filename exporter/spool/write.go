package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// chunk holds records of one segment in memory: appended ones (the active chunk and the
// tail) or ones read back from the file. Records handed out point into it.
type chunk struct {
	b       []byte   // records of seg from offset off; cap leaves room for an end mark
	idx     []recRef // appended records in b, so the sender need not parse them
	rd      int      // index in idx of the next record to hand out
	seg     *segment
	off     int64
	flushed int  // bytes of b written to the file
	out     int  // records handed out by Next and not yet acknowledged
	tail    bool // in Spool.tail
}

// recRef locates one appended record in its chunk.
type recRef struct {
	pos, n uint32 // offset in chunk.b and length, header included
	key    uint64
}

// newSegment seals the active segment (if any) and starts a new one, in the spare file
// when there is one. Caller holds mu or has exclusive access.
func (s *Spool) newSegment() error {
	if n := len(s.segs); n > 0 && s.wf != nil {
		if err := s.flushLocked(); err != nil {
			return err
		}
		old := s.segs[n-1]
		old.sealed = true
		s.unsynced = append(s.unsynced, s.wf)
		s.wf, s.act = nil, nil
		if old.readRecs == old.records {
			s.dropTail(old) // all read: its chunks are no use in memory
		}
		s.deleteIfDone(old)
	}
	id := s.nextID
	s.nextID++
	path := s.segPath(id)
	f, alloc, err := s.createFile(path)
	if err != nil {
		return fmt.Errorf("create segment: %w", err)
	}
	// The header and an end mark: what a reused file held before can never be read as part
	// of this segment.
	if _, err := f.WriteAt(appendHeader(make([]byte, 0, headerSize+endMarkSize), id), 0); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("create segment: %w", err)
	}
	seg := &segment{id: id, path: path, seed: segmentSeed(id), start: headerSize, size: headerSize,
		flushed: headerSize, alloc: max(alloc, headerSize+endMarkSize), readOff: headerSize, ackPrefix: headerSize}
	s.wf = f
	s.segs = append(s.segs, seg)
	s.diskBytes += seg.disk()
	s.dirDirty = true
	return nil
}

// createFile creates the file of a new segment: the spare renamed (its pages are likely
// still cached and its blocks allocated, so overwriting it costs much less than filling a
// new file), else a new one. alloc is the file's length.
func (s *Spool) createFile(path string) (f *os.File, alloc int64, err error) {
	if s.spare != "" {
		spare, size := s.spare, s.spareSize
		s.spare, s.spareSize = "", 0
		s.diskBytes -= size
		if err := os.Rename(spare, path); err != nil {
			os.Remove(spare)
		} else if f, err := os.OpenFile(path, os.O_WRONLY, 0); err == nil {
			return f, size, nil
		} else {
			os.Remove(path)
		}
	}
	f, err = os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	return f, 0, err
}

// Append adds one record. dropped counts older records deleted to make room (DropOldest).
// ErrFull means the record itself was not kept; ErrWrite that the disk refused it.
func (s *Spool) Append(key uint64, data []byte) (dropped int64, err error) {
	n := int64(recordHeader + len(data))
	if n > MaxRecord+recordHeader {
		return 0, ErrFull
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	act := s.segs[len(s.segs)-1]
	if s.wf == nil || (act.size+n > s.o.SegmentBytes && act.records > 0) {
		if err := s.newSegment(); err != nil {
			s.noteWriteErr(err)
			return 0, ErrWrite
		}
		act = s.segs[len(s.segs)-1]
	}
	for s.diskBytes+max(act.size+n+endMarkSize, act.alloc)-act.disk() > s.o.MaxBytes {
		if s.spare != "" {
			s.dropSpare()
			continue
		}
		if s.o.Full == DropNewest {
			return dropped, ErrFull
		}
		victim := -1
		for i, seg := range s.segs[:len(s.segs)-1] {
			if seg.readRecs == 0 {
				victim = i
				break
			}
		}
		if victim < 0 {
			return dropped, ErrFull
		}
		seg := s.segs[victim]
		dropped += seg.records
		s.st.DroppedWhenFull += seg.records
		s.st.Records -= seg.records
		s.st.Bytes -= seg.size - seg.start
		s.st.Unread -= seg.records
		s.removeSegment(victim, false)
	}
	if c := s.act; c == nil || len(c.b)+int(n) > cap(c.b)-endMarkSize {
		// The active chunk is full: write it in one piece and start the next.
		if err := s.flushLocked(); err != nil {
			s.noteWriteErr(err)
			return dropped, ErrWrite
		}
		s.startChunk(act, int(n))
	}
	before := act.disk()
	c := s.act
	c.idx = append(c.idx, recRef{pos: uint32(len(c.b)), n: uint32(n), key: key})
	c.b = appendRecord(c.b, act.seed, key, data)
	act.size += n
	act.records++
	s.diskBytes += act.disk() - before
	s.st.Records++
	s.st.Bytes += n
	s.st.Unread++
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return dropped, nil
}

// startChunk makes a new chunk for seg's next records (need bytes at least) the active one
// and keeps the tail within maxTail by letting go of its oldest chunks, which are written:
// the sender reads their records from the file, if it has not yet.
func (s *Spool) startChunk(seg *segment, need int) {
	c := s.getChunk(need)
	c.seg, c.off, c.flushed, c.tail = seg, seg.size, 0, true
	s.act = c
	s.tail = append(s.tail, c)
	s.tailBytes += int64(cap(c.b))
	for s.tailBytes > maxTail && len(s.tail) > 1 {
		s.untail(0)
	}
}

// getChunk returns an empty chunk with room for need bytes and an end mark.
func (s *Spool) getChunk(need int) *chunk {
	if need <= s.chunkSize && len(s.free) > 0 {
		c := s.free[len(s.free)-1]
		s.free = s.free[:len(s.free)-1]
		return c
	}
	return &chunk{b: make([]byte, 0, max(need, s.chunkSize)+endMarkSize)}
}

// release takes back a chunk nothing refers to any more. Free chunks are kept while,
// with the tail, they stay within maxTail and a few chunks more: the tail grows again
// from them when the sender falls behind.
func (s *Spool) release(c *chunk) {
	size := int64(s.chunkSize + endMarkSize)
	if int64(cap(c.b)) != size || s.tailBytes+int64(len(s.free)+1)*size > maxTail+maxFree*size || s.closed {
		return // odd-sized or surplus: left to the garbage collector
	}
	*c = chunk{b: c.b[:0], idx: c.idx[:0]}
	s.free = append(s.free, c)
}

// untail removes tail[i] from memory's view; its records are read from the file from now.
func (s *Spool) untail(i int) {
	c := s.tail[i]
	s.tail = slices.Delete(s.tail, i, i+1)
	s.tailBytes -= int64(cap(c.b))
	c.tail = false
	if c == s.act {
		s.act = nil
	}
	if c.out == 0 {
		s.release(c)
	}
}

// dropTail removes seg's chunks from the tail.
func (s *Spool) dropTail(seg *segment) {
	for i := 0; i < len(s.tail); {
		if s.tail[i].seg == seg {
			s.untail(i)
			continue
		}
		i++
	}
}

func (s *Spool) noteWriteErr(err error) {
	if s.writeErr == nil || s.writeErr.Error() != err.Error() {
		s.log.Error("spool: write failed; traces that cannot be spooled are dropped", "dir", s.dir, "err", err)
	}
	s.writeErr = err
}

// flushLocked writes the unwritten part of the active chunk, followed by the end mark, in
// one write. On failure the end mark is put back after the last good record and the chunk
// kept for the next attempt.
func (s *Spool) flushLocked() error {
	c := s.act
	if c == nil || s.wf == nil || c.flushed == len(c.b) {
		return nil
	}
	seg := c.seg
	end := len(c.b)
	w := appendEndMark(c.b[:end], seg.seed)[c.flushed:] // into the room kept for it: no copy
	n, err := s.wf.WriteAt(w, c.off+int64(c.flushed))
	if err != nil {
		if n > 0 {
			if seg.alloc <= seg.flushed+endMarkSize {
				s.wf.Truncate(seg.flushed + endMarkSize)
			}
			s.wf.WriteAt(appendEndMark(nil, seg.seed), seg.flushed)
		}
		return fmt.Errorf("write %s: %w", seg.path, err)
	}
	c.flushed = end
	seg.flushed = c.off + int64(end)
	seg.alloc = max(seg.alloc, seg.flushed+endMarkSize)
	if s.writeErr != nil {
		s.log.Info("spool: writing again", "dir", s.dir)
		s.writeErr = nil
	}
	return nil
}

// removeSegment forgets segment i and deletes its file — or, when reuse is set and no spare
// is kept yet, keeps the file as the spare for the next segment.
func (s *Spool) removeSegment(i int, reuse bool) {
	seg := s.segs[i]
	if seg.rf != nil {
		seg.rf.Close()
		seg.rf = nil
	}
	s.dropTail(seg)
	s.diskBytes -= seg.disk()
	s.segs = slices.Delete(s.segs, i, i+1)
	s.dirDirty = true // a deleted segment reappearing after a power loss would be sent again
	spare := filepath.Join(s.dir, spareName)
	if reuse && s.spare == "" && s.reusable(seg.disk()) && os.Rename(seg.path, spare) == nil {
		s.spare, s.spareSize = spare, seg.disk()
		s.diskBytes += s.spareSize
		return
	}
	if err := os.Remove(seg.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("spool: cannot delete segment", "path", seg.path, "err", err)
	}
}

// dropSpare deletes the spare file to make room.
func (s *Spool) dropSpare() {
	os.Remove(s.spare)
	s.diskBytes -= s.spareSize
	s.spare, s.spareSize = "", 0
}

// deleteIfDone removes a sealed segment whose records were all read and acknowledged.
func (s *Spool) deleteIfDone(seg *segment) {
	if !seg.sealed || seg.acked < seg.records {
		return
	}
	if i := slices.Index(s.segs, seg); i >= 0 {
		s.removeSegment(i, true)
	}
}
