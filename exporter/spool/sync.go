package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// syncLoop writes buffered records every FlushInterval and fsyncs every SyncInterval.
func (s *Spool) syncLoop() {
	defer close(s.syncDone)
	t := time.NewTicker(s.o.FlushInterval)
	defer t.Stop()
	lastSync := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		if err := s.flushLocked(); err != nil {
			s.noteWriteErr(err)
		}
		if time.Since(lastSync) < s.o.SyncInterval {
			s.mu.Unlock()
			continue
		}
		lastSync = time.Now()
		files := append(s.unsynced, s.wf)
		s.unsynced = nil
		dir := s.dirDirty
		s.dirDirty = false
		wm := s.watermarkLocked()
		s.mu.Unlock()
		for i, f := range files {
			if f == nil {
				continue
			}
			if !s.o.NoSync {
				unix.Fdatasync(int(f.Fd()))
			}
			if i < len(files)-1 {
				f.Close()
			}
		}
		if dir && !s.o.NoSync {
			s.syncDir()
		}
		if wm != "" {
			s.writeWatermark(wm)
		}
	}
}

// syncDir makes segment files created or renamed lately survive a power loss: fsync of a
// file does not cover its name.
func (s *Spool) syncDir() {
	if d, err := os.Open(s.dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// watermarkLocked is the head segment's acknowledged prefix, when it changed.
func (s *Spool) watermarkLocked() string {
	if !s.ackDirty || len(s.segs) == 0 {
		return ""
	}
	s.ackDirty = false
	h := s.segs[0]
	return fmt.Sprintf("%016x %d\n", h.id, h.ackPrefix)
}

// The watermark file lets a restart skip records acknowledged in the head segment; losing
// it only means sending them again.
func (s *Spool) writeWatermark(wm string) {
	tmp := filepath.Join(s.dir, "ack.tmp")
	if err := os.WriteFile(tmp, []byte(wm), 0o640); err != nil {
		return
	}
	os.Rename(tmp, filepath.Join(s.dir, "ack"))
}

func (s *Spool) readWatermark() (uint64, int64) {
	b, err := os.ReadFile(filepath.Join(s.dir, "ack"))
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0
	}
	id, err1 := strconv.ParseUint(f[0], 16, 64)
	off, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || off < headerSizeV1 {
		return 0, 0
	}
	return id, off
}
