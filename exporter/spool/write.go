package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
)

// newSegment seals the active segment (if any) and starts a new one. Caller holds mu or
// has exclusive access.
func (s *Spool) newSegment() error {
	if len(s.segs) > 0 && s.wf != nil {
		if err := s.flushLocked(); err != nil {
			return err
		}
		s.segs[len(s.segs)-1].sealed = true
		s.unsynced = append(s.unsynced, s.wf)
		s.wf = nil
		s.deleteIfDone(s.segs[len(s.segs)-1])
	}
	id := s.nextID
	s.nextID++
	path := s.segPath(id)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("create segment: %w", err)
	}
	if _, err := f.Write([]byte(magic)); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("create segment: %w", err)
	}
	s.wf = f
	s.buf, s.bufStart = s.buf[:0], headerSize
	s.segs = append(s.segs, &segment{id: id, path: path, size: headerSize, flushed: headerSize,
		readOff: headerSize, ackPrefix: headerSize})
	s.diskBytes += headerSize
	return nil
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
	}
	for s.diskBytes+n > s.o.MaxBytes {
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
		s.st.Bytes -= seg.size - headerSize
		s.st.Unread -= seg.records
		s.removeSegment(victim)
	}
	if act.size-act.flushed >= maxBuffered {
		if err := s.flushLocked(); err != nil {
			s.noteWriteErr(err)
			return dropped, ErrWrite
		}
	}
	act = s.segs[len(s.segs)-1]
	if len(s.buf) >= maxTail && act.flushed > s.bufStart {
		// Keep the newest written bytes for the sender; forget the rest.
		cut := min(act.flushed, act.size-maxTail/2) - s.bufStart
		if cut > 0 {
			n := copy(s.buf, s.buf[cut:])
			s.buf, s.bufStart = s.buf[:n], s.bufStart+cut
		}
	}
	s.buf = appendRecord(s.buf, key, data)
	act.size += n
	act.records++
	s.diskBytes += n
	s.st.Records++
	s.st.Bytes += n
	s.st.Unread++
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return dropped, nil
}

func (s *Spool) noteWriteErr(err error) {
	if s.writeErr == nil || s.writeErr.Error() != err.Error() {
		s.log.Error("spool: write failed; traces that cannot be spooled are dropped", "dir", s.dir, "err", err)
	}
	s.writeErr = err
}

// flushLocked writes the buffered tail of the active segment. On failure the file is cut
// back to its last good length and the buffer kept for the next attempt.
func (s *Spool) flushLocked() error {
	if s.wf == nil {
		return nil
	}
	act := s.segs[len(s.segs)-1]
	if act.flushed == act.size {
		return nil
	}
	n, err := s.wf.WriteAt(s.buf[act.flushed-s.bufStart:], act.flushed)
	if err != nil {
		if n > 0 {
			s.wf.Truncate(act.flushed)
		}
		return fmt.Errorf("write %s: %w", act.path, err)
	}
	act.flushed += int64(n)
	if s.writeErr != nil {
		s.log.Info("spool: writing again", "dir", s.dir)
		s.writeErr = nil
	}
	return nil
}

// removeSegment deletes segment i's file and forgets it.
func (s *Spool) removeSegment(i int) {
	seg := s.segs[i]
	if seg.rf != nil {
		seg.rf.Close()
	}
	if err := os.Remove(seg.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("spool: cannot delete segment", "path", seg.path, "err", err)
	}
	s.diskBytes -= seg.size
	s.segs = slices.Delete(s.segs, i, i+1)
}

// deleteIfDone removes a sealed segment whose records were all read and acknowledged.
func (s *Spool) deleteIfDone(seg *segment) {
	if !seg.sealed || seg.acked < seg.records {
		return
	}
	if i := slices.Index(s.segs, seg); i >= 0 {
		s.removeSegment(i)
	}
}
