// Package spool is a bounded, segmented write-ahead log of traces: appended by the
// exporter's encoders, read in order by one sender, and deleted only once every record of a
// segment has been acknowledged. It survives restarts, crashes and reboots (at least once:
// records sent but not yet acknowledged are sent again), skips and counts damaged segments
// instead of failing, and keeps within a byte budget by a documented full policy.
//
// No maintained Go library fits this access pattern (acknowledgements out of order from
// several requests in flight, drop-oldest at segment granularity, damaged data skipped rather
// than fatal): tidwall/wal refuses to open a damaged log and has no acknowledgements,
// nsqio/go-diskqueue deletes on read (an in-flight batch is lost in a crash) and has no
// total bound. The format is a few lines (record.go).
package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// FullPolicy says what Append does when the spool has no room for a record.
type FullPolicy int

const (
	// DropOldest deletes the oldest segment that the sender has not started reading.
	DropOldest FullPolicy = iota
	// DropNewest refuses the new record.
	DropNewest
)

// ParseFullPolicy reads "drop-oldest" or "drop-newest".
func ParseFullPolicy(s string) (FullPolicy, error) {
	switch s {
	case "drop-oldest", "":
		return DropOldest, nil
	case "drop-newest":
		return DropNewest, nil
	}
	return 0, fmt.Errorf("spool full policy %q: want drop-oldest or drop-newest", s)
}

// Options configure a Spool; zero values take the defaults in brackets.
type Options struct {
	// MaxBytes bounds the segment files on disk [1 GiB].
	MaxBytes int64
	// SegmentBytes is the size at which the active segment is sealed and a new one begun
	// [MaxBytes/64, between 64 KiB and 64 MiB].
	SegmentBytes int64
	// Full is the policy when MaxBytes is reached [DropOldest].
	Full FullPolicy
	// FlushInterval bounds how long an appended record stays in memory before it is
	// written to the file (where a process crash cannot lose it) [200ms].
	FlushInterval time.Duration
	// SyncInterval bounds how long written records wait for fsync (where a power loss
	// cannot lose them) [1s].
	SyncInterval time.Duration
	// NoSync skips fsync altogether: for tests and throwaway spools only.
	NoSync bool
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Errors returned by Append.
var (
	// ErrFull means the record did not fit within MaxBytes (or, for Memory, the count limit).
	ErrFull = errors.New("spool full")
	// ErrFullBytes means a Memory backlog is at its byte limit.
	ErrFullBytes = errors.New("spool full (bytes)")
	// ErrWrite means the record could not be written (disk error); it is not kept.
	ErrWrite = errors.New("spool write failed")
	// ErrClosed means the spool is closed.
	ErrClosed = errors.New("spool closed")
	// ErrLocked means another process holds the spool directory.
	ErrLocked = errors.New("spool directory in use by another process")
)

// Stats describe a spool at one moment.
type Stats struct {
	Records, Bytes   int64 // appended and not yet acknowledged (record bytes)
	Unread           int64 // records not yet handed to the sender
	DiskBytes        int64 // size of the segment files (and of the spare kept for reuse)
	MaxBytes         int64
	CorruptSegments  int64 // segments found damaged (at open or while reading)
	CorruptBytes     int64 // bytes skipped in them
	WriteErrors      int64 // records lost to failed writes after Append accepted them
	ReplayedRecords  int64 // records found at Open, left by an earlier run
	DroppedWhenFull  int64 // records deleted by DropOldest
	DiskReadBytes    int64 // bytes the sender read back from segment files (the rest came from memory)
	SegmentsOnDisk   int
	Dir              string
	ReplayedSegments int
}

const (
	chunkBytes = 256 << 10 // appended records written to the file in one piece
	maxTail    = 8 << 20   // newest chunks kept in memory, so a sender that keeps up never reads the file
	maxFree    = 8         // chunks kept for reuse beyond what the tail may take back
	segSuffix  = ".seg"
	spareName  = "spare" // a drained segment file kept to be overwritten by the next segment
)

type segment struct {
	id        uint64
	path      string
	seed      uint32 // checksum seed of its records (segmentSeed; 0 for version 1)
	start     int64  // offset of the first record (the header's length)
	size      int64  // bytes appended, header included (written or in memory)
	flushed   int64  // bytes written to the file (the end mark follows them)
	alloc     int64  // the file's length, which a reused file may have beyond size
	records   int64
	readOff   int64 // the sender's next offset
	readRecs  int64
	acked     int64
	ackPrefix int64  // every record before this offset is acknowledged
	acks      []span // acknowledged records past ackPrefix, in order, ranges merged
	sealed    bool
	rf        *os.File // read handle, opened on first read
}

// disk is what the segment occupies on disk.
func (g *segment) disk() int64 { return max(g.size+endMarkSize, g.alloc) }

// Spool is a disk-backed backlog. Append is safe for concurrent use; Next is meant for one
// sender goroutine; Ack may be called from any goroutine.
//
// Appended records go into the active chunk, which is written to the file in one piece
// when full (and every FlushInterval). The newest chunks stay in memory (the tail, up to
// maxTail bytes) and the sender is handed records straight from them: the file is read
// only to replay an earlier run or when the sender has fallen behind the tail. A chunk is
// reused once it left the tail and every record handed out from it was acknowledged.
type Spool struct {
	dir  string
	o    Options
	log  *slog.Logger
	lock *os.File

	mu        sync.Mutex
	segs      []*segment // oldest first; the last is the active one
	wf        *os.File   // the active segment's write handle
	act       *chunk     // the chunk appends go to; also the last of tail
	tail      []*chunk   // chunks the sender reads from memory, in append order
	tailBytes int64
	free      []*chunk // chunks of chunkSize ready for reuse
	chunkSize int
	spare     string // path of a drained segment file kept for reuse, or ""
	spareSize int64
	unsynced  []*os.File // sealed write handles awaiting fsync and close
	dirDirty  bool       // a segment file was created or renamed since the last sync
	diskBytes int64
	st        Stats
	closed    bool
	nextID    uint64
	ackDirty  bool
	writeErr  error // last write failure, logged once per change

	notify   chan struct{}
	stop     chan struct{}
	syncDone chan struct{}
}

func (o *Options) withDefaults() {
	if o.MaxBytes <= 0 {
		o.MaxBytes = 1 << 30
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = min(max(o.MaxBytes/64, 64<<10), 64<<20)
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 200 * time.Millisecond
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Open opens (creating it if needed) the spool in dir, takes its lock, and scans what an
// earlier run left: intact records are kept for replay, damaged segments are skipped,
// truncated to their intact part or removed, and counted.
func Open(dir string, o Options) (*Spool, error) {
	o.withDefaults()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("open spool %s: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("open spool %s: lock: %w", dir, err)
	}
	s := &Spool{dir: dir, o: o, log: o.Logger, lock: lock, notify: make(chan struct{}, 1),
		stop: make(chan struct{}), syncDone: make(chan struct{}),
		chunkSize: int(min(max(o.SegmentBytes, 4<<10), chunkBytes))}
	s.st.Dir, s.st.MaxBytes = dir, o.MaxBytes
	if err := s.load(); err != nil {
		lock.Close()
		return nil, err
	}
	if err := s.newSegment(); err != nil {
		s.closeFiles()
		lock.Close()
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	go s.syncLoop()
	return s, nil
}

// load scans the segments an earlier run left.
func (s *Spool) load() error {
	ackSeg, ackOff := s.readWatermark()
	s.nextID = ackSeg + 1
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("open spool: %w", err)
	}
	var ids []uint64
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, segSuffix) {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 16, 64)
		if err != nil {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	s.loadSpare()
	for _, id := range ids {
		s.nextID = max(s.nextID, id+1)
		seg := &segment{id: id, path: s.segPath(id), sealed: true}
		from := int64(0)
		if id == ackSeg {
			from = ackOff
		}
		if id < ackSeg { // older than the acknowledged head: fully acknowledged, deletion interrupted
			os.Remove(seg.path)
			continue
		}
		keep, err := s.scan(seg, from)
		if err != nil {
			return err
		}
		if !keep || seg.records == seg.acked {
			os.Remove(seg.path)
			continue
		}
		s.segs = append(s.segs, seg)
		s.diskBytes += seg.disk()
		s.st.ReplayedRecords += seg.records - seg.acked
		s.st.ReplayedSegments++
	}
	return nil
}

// loadSpare keeps a spare file an earlier run left, if it is a segment file of a size this
// spool would reuse; the id in its header keeps new segment ids above the ones it held.
func (s *Spool) loadSpare() {
	path := filepath.Join(s.dir, spareName)
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	var hdr [headerSize]byte
	n, _ := io.ReadFull(f, hdr[:])
	info, err := f.Stat()
	_, id, _, ok := parseHeader(hdr[:n], 0)
	if err != nil || !ok || !s.reusable(info.Size()) {
		os.Remove(path)
		return
	}
	s.nextID = max(s.nextID, id+1)
	s.spare, s.spareSize = path, info.Size()
	s.diskBytes += info.Size()
}

// reusable says whether a file of size bytes is worth keeping as the spare.
func (s *Spool) reusable(size int64) bool { return size <= 2*s.o.SegmentBytes }

// scan validates one segment, counting records and truncating a damaged tail. Records
// before offset from are taken as acknowledged (the persisted watermark). keep is false
// for a file that holds no segment.
func (s *Spool) scan(seg *segment, from int64) (keep bool, err error) {
	f, err := os.OpenFile(seg.path, os.O_RDWR, 0)
	if err != nil {
		s.corrupt(seg.path, 0, fmt.Errorf("open: %w", err))
		return false, nil
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("open spool: %w", err)
	}
	if info.Size() == 0 {
		return false, nil // created, never written: a crash in between
	}
	r := bufio.NewReaderSize(f, 1<<20)
	hdr, _ := r.Peek(int(headerSize))
	hsize, hid, seed, ok := parseHeader(hdr, seg.id)
	if !ok {
		s.corrupt(seg.path, info.Size(), errors.New("bad segment header"))
		return false, nil
	}
	v2 := hsize == headerSize
	r.Discard(int(hsize))
	seg.seed, seg.start = seed, hsize
	if v2 && hid != seg.id {
		// A spare file renamed for this segment before its header was rewritten (a crash in
		// between) holds no record of it; a damaged header over good records does.
		if !startsSegment(r, seed) {
			s.log.Info("spool: removed a segment file whose creation was interrupted", "path", seg.path)
			return false, nil
		}
		s.corrupt(seg.path, 8, errors.New("segment header names another segment"))
	}
	off := hsize
	clean := false // the end mark (version 2) or the end of the file at a record boundary (version 1)
	var rec []byte
	for {
		var h [recordHeader]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			clean = !v2 && off == info.Size()
			break
		}
		if _, _, _, err := parseRecord(h[:], seed, false); err == errEnd {
			clean = true
			break
		}
		l := int64(binary.LittleEndian.Uint32(h[:]))
		if l > MaxRecord || off+recordHeader+l > info.Size() {
			break
		}
		if int64(cap(rec)) < recordHeader+l {
			rec = make([]byte, recordHeader+l)
		}
		rec = rec[:recordHeader+l]
		copy(rec, h[:])
		if _, err := io.ReadFull(r, rec[recordHeader:]); err != nil {
			break
		}
		if _, _, _, err := parseRecord(rec, seed, true); err != nil {
			break
		}
		end := off + recordHeader + l
		seg.records++
		if off < from {
			seg.acked++
			seg.readRecs++
			seg.readOff, seg.ackPrefix = end, end
		} else {
			s.st.Records++
			s.st.Bytes += recordHeader + l
			s.st.Unread++
		}
		off = end
	}
	if seg.readOff == 0 {
		seg.readOff, seg.ackPrefix = hsize, hsize
	}
	seg.size, seg.flushed, seg.alloc = off, off, info.Size()
	if !clean {
		s.corrupt(seg.path, info.Size()-off, errors.New("damaged or truncated record"))
		// Cut the damage off (and mark the end) so the next start finds the segment clean.
		err := f.Truncate(off)
		if err == nil && v2 {
			_, err = f.WriteAt(appendEndMark(nil, seed), off)
		}
		if err != nil {
			s.log.Warn("spool: cannot truncate damaged segment", "path", seg.path, "err", err)
		}
		seg.alloc = off + endMarkSize
	}
	return true, nil
}

// startsSegment says whether r continues with an intact record or the end mark of the
// segment whose checksum seed is seed (records too long to peek at count as not).
func startsSegment(r *bufio.Reader, seed uint32) bool {
	h, _ := r.Peek(recordHeader)
	if len(h) < recordHeader {
		return false
	}
	if _, _, _, err := parseRecord(h, seed, false); err != nil {
		return err == errEnd
	}
	l := int(binary.LittleEndian.Uint32(h))
	b, _ := r.Peek(recordHeader + l)
	_, _, n, err := parseRecord(b, seed, true)
	return err == nil && n > 0
}

func (s *Spool) corrupt(path string, n int64, why error) {
	s.st.CorruptSegments++
	s.st.CorruptBytes += n
	s.log.Warn("spool: skipped damaged data", "path", path, "bytes", n, "reason", why)
}

func (s *Spool) segPath(id uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%016x%s", id, segSuffix))
}

// Stats returns the spool's current counts.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.DiskBytes = s.diskBytes
	st.SegmentsOnDisk = len(s.segs)
	return st
}

// Fill is the share of MaxBytes in use by records (the spare file is free to take).
func (s *Spool) Fill() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return float64(s.diskBytes-s.spareSize) / float64(s.o.MaxBytes)
}

// Close writes and syncs everything, records the acknowledged position and releases the
// directory. Unacknowledged records stay for the next Open.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	err := s.flushLocked()
	s.mu.Unlock()
	close(s.stop)
	<-s.syncDone
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ackDirty = true
	wm := s.watermarkLocked()
	if s.wf != nil && !s.o.NoSync {
		if serr := s.wf.Sync(); err == nil {
			err = serr
		}
	}
	s.closeFiles()
	// An empty active segment is not worth keeping (its file may become the spare).
	if n := len(s.segs); n > 0 && s.segs[n-1].records == s.segs[n-1].acked {
		s.removeSegment(n-1, true)
	}
	if len(s.segs) == 0 {
		os.Remove(filepath.Join(s.dir, "ack"))
	} else if wm != "" {
		s.writeWatermark(wm)
	}
	if !s.o.NoSync {
		s.syncDir()
	}
	s.act, s.tail, s.free = nil, nil, nil
	s.lock.Close()
	if err != nil {
		return fmt.Errorf("close spool %s: %w", s.dir, err)
	}
	return nil
}

func (s *Spool) closeFiles() {
	for _, f := range s.unsynced {
		if !s.o.NoSync {
			f.Sync()
		}
		f.Close()
	}
	s.unsynced = nil
	if s.wf != nil {
		s.wf.Close()
		s.wf = nil
	}
	for _, seg := range s.segs {
		if seg.rf != nil {
			seg.rf.Close()
			seg.rf = nil
		}
	}
}
