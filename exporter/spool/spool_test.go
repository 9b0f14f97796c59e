package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var quiet = slog.New(slog.DiscardHandler)

func open(t testing.TB, dir string, o Options) *Spool {
	t.Helper()
	o.Logger = quiet
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func rec(i int) []byte {
	return fmt.Appendf(nil, `{"n":%d,"pad":"%s"}`, i, bytes.Repeat([]byte("x"), i%300))
}

func appendN(t testing.TB, s *Spool, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if _, err := s.Append(uint64(i), rec(i)); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
}

// drain reads everything unread in batches, checks it is numbered want..., and acks it.
func drain(t testing.TB, s *Spool, want int, ack bool) int {
	t.Helper()
	for {
		recs, err := s.Next(37, 4000)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return want
		}
		for _, r := range recs {
			if r.Key != uint64(want) || !bytes.Equal(r.Data, rec(want)) {
				t.Fatalf("record %d: key %d data %.40q", want, r.Key, r.Data)
			}
			want++
		}
		if ack {
			s.Ack(recs)
		}
	}
}

func segFiles(t testing.TB, dir string) []string {
	m, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	return m
}

func TestRoundTripAcrossSegmentsDeletesAcknowledged(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{MaxBytes: 10 << 20, SegmentBytes: 8 << 10})
	appendN(t, s, 0, 2000)
	if n := len(segFiles(t, dir)); n < 10 {
		t.Fatalf("%d segments for ~400 KB at 8 KB each", n)
	}
	if got := drain(t, s, 0, true); got != 2000 {
		t.Fatalf("read %d records, want 2000", got)
	}
	st := s.Stats()
	if st.Records != 0 || st.Bytes != 0 || st.Unread != 0 || st.SegmentsOnDisk != 1 {
		t.Fatalf("after acking everything: %+v", st)
	}
	if n := len(segFiles(t, dir)); n != 1 {
		t.Fatalf("%d segment files left, want only the active one", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(segFiles(t, dir)); n != 0 {
		t.Fatalf("%d segment files after a clean close with nothing pending", n)
	}
}

func TestReplayAfterRestartSkipsAcknowledged(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{SegmentBytes: 16 << 10})
	appendN(t, s, 0, 1000)
	// Read 600, acknowledge them out of order (second half first), leave the rest unread.
	var got [][]Record
	for n := 0; n < 600; {
		recs, _ := s.Next(min(50, 600-n), 1<<20)
		got = append(got, recs)
		n += len(recs)
	}
	for i := len(got) - 1; i >= 0; i-- {
		s.Ack(got[i])
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, Options{SegmentBytes: 16 << 10})
	defer s.Close()
	if st := s.Stats(); st.ReplayedRecords != 400 || st.Records != 400 || st.CorruptSegments != 0 {
		t.Fatalf("after restart: %+v, want 400 replayed", st)
	}
	if got := drain(t, s, 600, true); got != 1000 {
		t.Fatalf("replayed up to %d, want 1000", got)
	}
}

func TestUnacknowledgedInFlightIsReplayed(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	appendN(t, s, 0, 100)
	recs, _ := s.Next(60, 1<<20) // "in flight" when the process stops
	s.Ack(recs[:10])
	s.Close()
	s = open(t, dir, Options{})
	defer s.Close()
	if got := drain(t, s, 10, true); got != 100 {
		t.Fatalf("replayed up to %d", got)
	}
}

// copyDir snapshots dir as a crash would leave it: whatever reached the files.
func copyDir(t *testing.T, from string) string {
	to := t.TempDir()
	ents, _ := os.ReadDir(from)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(to, e.Name()), b, 0o600)
	}
	return to
}

func TestCrashKeepsWrittenRecords(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{SegmentBytes: 32 << 10})
	defer s.Close()
	appendN(t, s, 0, 500)
	s.mu.Lock()
	s.flushLocked() // what the flush ticker does every FlushInterval
	s.mu.Unlock()
	crashed := copyDir(t, dir) // the lock is not copied as held: the process is gone
	c := open(t, crashed, Options{SegmentBytes: 32 << 10})
	defer c.Close()
	if st := c.Stats(); st.ReplayedRecords != 500 {
		t.Fatalf("replayed %d of 500 written records", st.ReplayedRecords)
	}
	drain(t, c, 0, true)
}

func TestDamageIsSkippedAndCounted(t *testing.T) {
	mk := func(t *testing.T) (string, []string) {
		dir := t.TempDir()
		s := open(t, dir, Options{SegmentBytes: 8 << 10})
		appendN(t, s, 0, 300)
		s.Close()
		files := segFiles(t, dir)
		slices.Sort(files)
		if len(files) < 3 {
			t.Fatalf("%d segments", len(files))
		}
		return dir, files
	}
	countAll := func(t *testing.T, s *Spool) (n int, first int) {
		first = -1
		for {
			recs, _ := s.Next(100, 1<<20)
			if len(recs) == 0 {
				return n, first
			}
			for _, r := range recs {
				if first < 0 {
					first = int(r.Key)
				}
				if !bytes.Equal(r.Data, rec(int(r.Key))) {
					t.Fatalf("record %d damaged but replayed", r.Key)
				}
			}
			n += len(recs)
			s.Ack(recs)
		}
	}
	t.Run("truncated tail", func(t *testing.T) {
		dir, files := mk(t)
		last := files[len(files)-1]
		info, _ := os.Stat(last)
		os.Truncate(last, info.Size()-endMarkSize-5) // the end mark and part of the last record
		s := open(t, dir, Options{})
		defer s.Close()
		st := s.Stats()
		if st.CorruptSegments != 1 || st.CorruptBytes == 0 || st.ReplayedRecords != 299 {
			t.Fatalf("%+v: want one damaged segment and 299 records", st)
		}
		if n, _ := countAll(t, s); n != 299 {
			t.Fatalf("read %d", n)
		}
	})
	t.Run("bad header", func(t *testing.T) {
		dir, files := mk(t)
		b, _ := os.ReadFile(files[0])
		copy(b, "GARBAGE!")
		os.WriteFile(files[0], b, 0o600)
		s := open(t, dir, Options{})
		defer s.Close()
		st := s.Stats()
		n, first := countAll(t, s)
		if st.CorruptSegments != 1 || n == 0 || n >= 300 || first == 0 {
			t.Fatalf("%+v, read %d from %d: want the first segment skipped, the rest kept", st, n, first)
		}
		if _, err := os.Stat(files[0]); err == nil {
			t.Fatal("damaged segment left on disk")
		}
	})
	t.Run("flipped bit", func(t *testing.T) {
		dir, files := mk(t)
		b, _ := os.ReadFile(files[1])
		b[len(b)/2] ^= 0x40
		os.WriteFile(files[1], b, 0o600)
		s := open(t, dir, Options{})
		defer s.Close()
		st := s.Stats()
		n, _ := countAll(t, s)
		if st.CorruptSegments != 1 || n >= 300 || n < 150 {
			t.Fatalf("%+v, read %d: want the damaged half segment skipped", st, n)
		}
	})
	t.Run("unreadable file", func(t *testing.T) {
		dir, _ := mk(t)
		os.WriteFile(filepath.Join(dir, "00000000000000ff.seg"), nil, 0o600)
		s := open(t, dir, Options{})
		defer s.Close()
		if n, _ := countAll(t, s); n != 300 {
			t.Fatalf("read %d", n)
		}
		// An empty file is a creation a crash interrupted, not damage.
		if st := s.Stats(); st.CorruptSegments != 0 {
			t.Fatalf("%+v", st)
		}
	})
}

func TestFullPolicies(t *testing.T) {
	t.Run("drop-oldest", func(t *testing.T) {
		s := open(t, t.TempDir(), Options{MaxBytes: 64 << 10, SegmentBytes: 8 << 10})
		defer s.Close()
		var dropped int64
		for i := range 2000 {
			d, err := s.Append(uint64(i), rec(i))
			if err != nil {
				t.Fatalf("append %d: %v", i, err)
			}
			dropped += d
		}
		st := s.Stats()
		if dropped == 0 || st.DiskBytes > 64<<10 || st.DroppedWhenFull != dropped {
			t.Fatalf("dropped %d, %+v", dropped, st)
		}
		if dropped+st.Records != 2000 {
			t.Fatalf("dropped %d + kept %d != 2000 appended", dropped, st.Records)
		}
		recs, _ := s.Next(1, 1<<20)
		if recs[0].Key != uint64(dropped) {
			t.Fatalf("oldest kept is %d, want %d (the oldest were dropped)", recs[0].Key, dropped)
		}
	})
	t.Run("drop-newest", func(t *testing.T) {
		s := open(t, t.TempDir(), Options{MaxBytes: 64 << 10, SegmentBytes: 8 << 10, Full: DropNewest})
		defer s.Close()
		refused := 0
		for i := range 2000 {
			if _, err := s.Append(uint64(i), rec(i)); errors.Is(err, ErrFull) {
				refused++
			} else if err != nil {
				t.Fatal(err)
			}
		}
		st := s.Stats()
		if refused == 0 || int64(refused)+st.Records != 2000 || st.DiskBytes > 64<<10 {
			t.Fatalf("refused %d, %+v", refused, st)
		}
		recs, _ := s.Next(1, 1<<20)
		if recs[0].Key != 0 {
			t.Fatalf("oldest kept is %d, want 0", recs[0].Key)
		}
	})
	t.Run("never drops what is being sent", func(t *testing.T) {
		s := open(t, t.TempDir(), Options{MaxBytes: 32 << 10, SegmentBytes: 8 << 10})
		defer s.Close()
		appendN(t, s, 0, 20)
		inflight, _ := s.Next(5, 1<<20)
		for i := 20; i < 3000; i++ {
			s.Append(uint64(i), rec(i))
		}
		s.Ack(inflight) // must not panic or double-count
		if st := s.Stats(); st.Records < 0 || st.Bytes < 0 {
			t.Fatalf("%+v", st)
		}
	})
}

func TestLockedByAnotherOpen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	defer s.Close()
	if _, err := Open(dir, Options{Logger: quiet}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
}

func TestLargeAndBufferedRecords(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	defer s.Close()
	big := bytes.Repeat([]byte("y"), 3<<20)
	s.Append(1, []byte("small"))
	s.Append(2, big)
	s.Append(3, []byte("tail"))
	// The first read is bounded to 64 KiB: the big record needs a read of its own.
	var got []uint64
	for {
		recs, _ := s.Next(10, 64<<10)
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			got = append(got, r.Key)
			if r.Key == 2 && !bytes.Equal(r.Data, big) {
				t.Fatal("big record damaged")
			}
		}
		s.Ack(recs)
	}
	if !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("got %v", got)
	}
}

func TestMemoryBacklog(t *testing.T) {
	m := NewMemory(10, 1<<20)
	for i := range 12 {
		_, err := m.Append(uint64(i), rec(i))
		if (i < 10) != (err == nil) {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	recs, _ := m.Next(4, 1<<20)
	m.Ack(recs)
	if st := m.Stats(); st.Records != 6 || st.Unread != 6 {
		t.Fatalf("%+v", st)
	}
	if _, err := NewMemory(100, 20).Append(0, rec(1)); !errors.Is(err, ErrFullBytes) {
		t.Fatalf("byte limit: %v", err)
	}
}

// segmentFile is what a spool writes for segment id holding records 0..n-1.
func segmentFile(id uint64, n int) []byte {
	b := appendHeader(nil, id)[:headerSize]
	for i := range n {
		b = appendRecord(b, segmentSeed(id), uint64(i), rec(i))
	}
	return appendEndMark(b, segmentSeed(id))
}

// segmentFileV1 is what an earlier release wrote (version 1: no id, no seed, no end mark).
func segmentFileV1(n int) []byte {
	b := []byte(magicV1)
	for i := range n {
		b = appendRecord(b, 0, uint64(i), rec(i))
	}
	return b
}

// FuzzSegment opens a spool whose only segment holds arbitrary bytes: Open never fails and
// every record it replays is intact.
func FuzzSegment(f *testing.F) {
	valid, validV1 := segmentFile(1, 5), segmentFileV1(5)
	f.Add(valid)
	f.Add(valid[:len(valid)-3])
	f.Add(valid[:len(valid)-endMarkSize])
	f.Add(validV1)
	f.Add(validV1[:len(validV1)-3])
	f.Add([]byte(magic))
	f.Add([]byte(magicV1))
	f.Add([]byte("nonsense"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, seg []byte) {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			os.Remove(filepath.Join(dir, e.Name()))
		}
		os.WriteFile(filepath.Join(dir, "0000000000000001.seg"), seg, 0o600)
		s, err := Open(dir, Options{Logger: quiet, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		prefix := func(v []byte) bool { return bytes.HasPrefix(seg, v[:min(len(seg), len(v))]) }
		for {
			recs, _ := s.Next(100, 1<<20)
			if len(recs) == 0 {
				break
			}
			for _, r := range recs {
				if !bytes.Equal(r.Data, rec(int(r.Key))) && r.Key < 5 && (prefix(valid) || prefix(validV1)) {
					t.Fatalf("record %d replayed damaged", r.Key)
				}
			}
			s.Ack(recs)
		}
		s.Append(9, []byte("after")) // the spool keeps working
		recs, _ := s.Next(1, 100)
		if len(recs) != 1 || string(recs[0].Data) != "after" {
			t.Fatalf("append after damage: %v", recs)
		}
	})
}

// BenchmarkSpool is one trace of ~2 KB through the spool: append, read back, acknowledge.
func BenchmarkSpool(b *testing.B) {
	s := open(b, b.TempDir(), Options{MaxBytes: 1 << 30})
	defer s.Close()
	data := bytes.Repeat([]byte("t"), 2000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	defer reportCPU(b, cpuTime())
	for i := 0; b.Loop(); i++ {
		if _, err := s.Append(uint64(i), data); err != nil {
			b.Fatal(err)
		}
		if i%256 == 255 {
			for {
				recs, _ := s.Next(256, 2<<20)
				if len(recs) == 0 {
					break
				}
				s.Ack(recs)
			}
		}
	}
	_ = io.Discard
}

// reportCPU adds the process's CPU time (user+system, all threads: the sync goroutine's
// writes included) per operation since cpu0; on a shared machine it is steadier than wall time.
func reportCPU(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSpoolAppend is the intake side alone: what each trace costs when the sender
// reads only a paced fraction back.
func BenchmarkSpoolAppend(b *testing.B) {
	s := open(b, b.TempDir(), Options{MaxBytes: 8 << 30})
	defer s.Close()
	data := bytes.Repeat([]byte("t"), 2000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	defer reportCPU(b, cpuTime())
	for i := 0; b.Loop(); i++ {
		if _, err := s.Append(uint64(i), data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFileWrite is what the kernel charges for the spool's writes, the reason drained
// segment files are reused: 256 KiB pwrites filling 16 MiB files, each fdatasync'd when
// full, into a new file every time (the old one deleted) or over the same file again.
// cpu-ns/1300B is per sample trace's worth of bytes.
func BenchmarkFileWrite(b *testing.B) {
	const chunk, file = chunkBytes, 16 << 20
	for _, reuse := range []bool{false, true} {
		name := "new"
		if reuse {
			name = "reused"
		}
		b.Run(name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "seg")
			buf := bytes.Repeat([]byte("t"), chunk)
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			defer func() { f.Close() }()
			if reuse { // the file exists, written and synced once
				for off := int64(0); off < file; off += chunk {
					f.WriteAt(buf, off)
				}
				f.Sync()
			}
			b.SetBytes(chunk)
			cpu0 := cpuTime()
			b.ResetTimer()
			var off int64
			for range b.N {
				if off == file {
					unix.Fdatasync(int(f.Fd()))
					off = 0
					if !reuse {
						f.Close()
						os.Remove(path)
						if f, err = os.Create(path); err != nil {
							b.Fatal(err)
						}
					}
				}
				if _, err := f.WriteAt(buf, off); err != nil {
					b.Fatal(err)
				}
				off += chunk
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N)/chunk*1300, "cpu-ns/1300B")
		})
	}
}
