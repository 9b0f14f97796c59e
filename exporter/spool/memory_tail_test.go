package spool

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Sys().(*syscall.Stat_t).Ino
}

// flush writes the active chunk, as the flush ticker does every FlushInterval.
func flush(s *Spool) {
	s.mu.Lock()
	s.flushLocked()
	s.mu.Unlock()
}

// diskUse sums the sizes of the files the spool accounts for (segments and the spare).
func diskUse(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if filepath.Ext(e.Name()) == segSuffix || e.Name() == spareName {
			info, _ := e.Info()
			n += info.Size()
		}
	}
	return n
}

// A drained segment's file becomes the next segment (same inode): the pages it occupies
// are overwritten instead of new ones allocated; nothing of its old content comes back.
func TestDrainedSegmentFileIsReused(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{SegmentBytes: 16 << 10})
	appendN(t, s, 0, 400) // several segments
	first := segFiles(t, dir)[0]
	ino := inode(t, first)
	drain(t, s, 0, true)
	if _, err := os.Stat(filepath.Join(dir, spareName)); err != nil {
		t.Fatalf("no spare kept after draining: %v", err)
	}
	if got := inode(t, filepath.Join(dir, spareName)); got != ino {
		t.Fatalf("spare is inode %d, want the first segment's %d", got, ino)
	}
	appendN(t, s, 400, 600)
	reused := false
	for _, f := range segFiles(t, dir) {
		reused = reused || inode(t, f) == ino
	}
	if !reused {
		t.Fatal("the spare was not reused for a new segment")
	}
	flush(s)
	if got, want := s.Stats().DiskBytes, diskUse(t, dir); got != want {
		t.Fatalf("DiskBytes %d, files on disk %d", got, want)
	}
	if got := drain(t, s, 400, true); got != 600 {
		t.Fatalf("read up to %d, want 600", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened: nothing to replay, no damage, though reused files hold old records past
	// their end marks.
	s = open(t, dir, Options{SegmentBytes: 16 << 10})
	defer s.Close()
	if st := s.Stats(); st.ReplayedRecords != 0 || st.CorruptSegments != 0 {
		t.Fatalf("after a clean close: %+v", st)
	}
}

// A crash while a reused file holds a few new records and, past them, many old ones:
// exactly the new ones are replayed and nothing is counted as damaged.
func TestCrashInReusedSegmentReplaysOnlyItsRecords(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{SegmentBytes: 64 << 10})
	defer s.Close()
	appendN(t, s, 0, 600)
	drain(t, s, 0, true) // the first segments become the spare, then get reused
	appendN(t, s, 600, 610)
	flush(s)
	s.mu.Lock()
	wm := s.watermarkLocked() // what the sync ticker records every SyncInterval
	s.mu.Unlock()
	s.writeWatermark(wm)
	crashed := copyDir(t, dir)
	c := open(t, crashed, Options{SegmentBytes: 64 << 10})
	defer c.Close()
	if st := c.Stats(); st.ReplayedRecords != 10 || st.CorruptSegments != 0 {
		t.Fatalf("%+v: want the 10 new records replayed and no damage", st)
	}
	if got := drain(t, c, 600, true); got != 610 {
		t.Fatalf("replayed up to %d", got)
	}
}

// A crash between renaming the spare and writing the new header leaves a file whose header
// names the old segment: it holds no record of the new one and is removed quietly.
func TestInterruptedReuseIsNotDamage(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "0000000000000007.seg"), segmentFile(3, 50), 0o600)
	s := open(t, dir, Options{})
	defer s.Close()
	if st := s.Stats(); st.ReplayedRecords != 0 || st.CorruptSegments != 0 {
		t.Fatalf("%+v: want nothing replayed, nothing damaged", st)
	}
	if _, err := os.Stat(filepath.Join(dir, "0000000000000007.seg")); err == nil {
		t.Fatal("the interrupted segment file is still there")
	}
	// A damaged header over intact records is damage, and the records are kept.
	dir = t.TempDir()
	b := segmentFile(7, 50)
	b[len(magic)] ^= 1 // the id in the header
	os.WriteFile(filepath.Join(dir, "0000000000000007.seg"), b, 0o600)
	s2 := open(t, dir, Options{})
	defer s2.Close()
	if st := s2.Stats(); st.ReplayedRecords != 50 || st.CorruptSegments != 1 {
		t.Fatalf("%+v: want 50 replayed, one damaged header counted", st)
	}
}

// Data a power loss left half old, half new in a reused file: the old part is damage
// (records were lost), counted, and nothing old is replayed.
func TestTornWriteInReusedFileIsCounted(t *testing.T) {
	dir := t.TempDir()
	old := segmentFile(3, 200)
	cur := segmentFile(9, 20)
	torn := append([]byte(nil), old...)
	copy(torn, cur[:len(cur)-endMarkSize-100]) // the new records' last page never reached the disk
	os.WriteFile(filepath.Join(dir, "0000000000000009.seg"), torn, 0o600)
	s := open(t, dir, Options{})
	defer s.Close()
	st := s.Stats()
	if st.CorruptSegments != 1 || st.ReplayedRecords >= 20 || st.ReplayedRecords < 15 {
		t.Fatalf("%+v: want the intact new records and one damaged segment", st)
	}
	drain(t, s, 0, true)
}

// Segments an earlier release wrote (version 1) are replayed.
func TestVersion1SegmentsReplay(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "0000000000000002.seg"), segmentFileV1(40), 0o600)
	os.WriteFile(filepath.Join(dir, "ack"), []byte("0000000000000002 8\n"), 0o600)
	s := open(t, dir, Options{})
	defer s.Close()
	if st := s.Stats(); st.ReplayedRecords != 40 || st.CorruptSegments != 0 {
		t.Fatalf("%+v: want 40 replayed", st)
	}
	if got := drain(t, s, 0, true); got != 40 {
		t.Fatalf("read %d", got)
	}
	appendN(t, s, 0, 5) // new records go to a version 2 segment after it
	if got := drain(t, s, 0, true); got != 5 {
		t.Fatalf("read %d", got)
	}
}

// A sender that keeps up is served from memory; one that falls behind the memory tail reads
// the file, checked, and gets the same records in the same order.
func TestSenderReadsFromMemoryUnlessBehind(t *testing.T) {
	s := open(t, t.TempDir(), Options{SegmentBytes: 1 << 20})
	defer s.Close()
	for i := 0; i < 3000; i += 100 {
		appendN(t, s, i, i+100)
		drain(t, s, i, true)
	}
	if st := s.Stats(); st.DiskReadBytes != 0 {
		t.Fatalf("read %d bytes from disk while keeping up", st.DiskReadBytes)
	}
	big := bytes.Repeat([]byte("z"), 2000)
	total := 2 * maxTail / len(big) // twice what the memory tail holds
	for i := range total {
		if _, err := s.Append(uint64(i), big); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	tail, free := s.tailBytes, len(s.free)
	s.mu.Unlock()
	if chunk := int64(s.chunkSize + endMarkSize); tail > maxTail || tail+int64(free)*chunk > maxTail+maxFree*chunk {
		t.Fatalf("memory tail %d bytes and %d free chunks: over %d bytes", tail, free, maxTail+maxFree*chunk)
	}
	n := 0
	for {
		recs, _ := s.Next(500, 2<<20)
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			if r.Key != uint64(n) || !bytes.Equal(r.Data, big) {
				t.Fatalf("record %d: key %d", n, r.Key)
			}
			n++
		}
		s.Ack(recs)
	}
	st := s.Stats()
	if n != total || st.DiskReadBytes < maxTail*3/4 || st.DiskReadBytes > 2*maxTail {
		t.Fatalf("read %d records, %d bytes from disk: want %d, the part beyond the tail from disk", n, st.DiskReadBytes, total)
	}
}

// Records handed out stay intact while others are acknowledged and their memory reused for
// new records; acknowledgements out of order and twice are counted once.
func TestHandedOutRecordsSurviveReuse(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{SegmentBytes: 64 << 10})
	rng := rand.New(rand.NewPCG(1, 2))
	next, want, all := 0, map[uint64][]byte{}, map[uint64][]byte{}
	var held [][]Record
	for round := range 300 {
		for range rng.IntN(40) {
			d := rec(next)
			if _, err := s.Append(uint64(next), d); err != nil {
				t.Fatal(err)
			}
			want[uint64(next)], all[uint64(next)] = d, d
			next++
		}
		if recs, _ := s.Next(1+rng.IntN(60), 1<<20); len(recs) > 0 {
			held = append(held, recs)
		}
		// Acknowledge a random held batch (sometimes a part of it, sometimes twice).
		if len(held) > 0 && rng.IntN(3) > 0 {
			k := rng.IntN(len(held))
			b := held[k]
			for _, r := range b {
				if !bytes.Equal(r.Data, want[r.Key]) {
					t.Fatalf("round %d: record %d changed while handed out", round, r.Key)
				}
			}
			cut := len(b)
			if rng.IntN(4) == 0 {
				cut = rng.IntN(len(b))
			}
			s.Ack(b[:cut])
			if rng.IntN(5) == 0 {
				s.Ack(b[:cut]) // twice
			}
			for _, r := range b[:cut] {
				delete(want, r.Key)
			}
			if cut == len(b) {
				held = append(held[:k], held[k+1:]...)
			} else {
				held[k] = b[cut:]
			}
		}
		if st := s.Stats(); st.Records != int64(len(want)) {
			t.Fatalf("round %d: %d records counted, %d unacknowledged", round, st.Records, len(want))
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Everything never acknowledged (held or unread) is replayed, intact. (So may be records
	// acknowledged past the head segment's acknowledged prefix: only that prefix is kept.)
	s = open(t, dir, Options{SegmentBytes: 64 << 10})
	defer s.Close()
	for {
		recs, _ := s.Next(100, 1<<20)
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			if !bytes.Equal(all[r.Key], r.Data) {
				t.Fatalf("replayed record %d damaged", r.Key)
			}
			delete(want, r.Key)
		}
		s.Ack(recs)
	}
	if len(want) > 0 {
		t.Fatalf("%d unacknowledged records not replayed", len(want))
	}
}
