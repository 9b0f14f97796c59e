package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A write that fails half-way must leave the old file in place: the rename happens only
// after every step succeeded.
func TestWriteFileAtomicKeepsOldFileOnWriteError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte("old: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// RLIMIT_FSIZE makes a write past 4 KiB fail with EFBIG (Go ignores SIGXFSZ).
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Skip("getrlimit:", err)
	}
	lim := old
	lim.Cur = 4096
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skip("setrlimit:", err)
	}
	err := writeFileAtomic(path, make([]byte, 64<<10), nil)
	if rerr := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); rerr != nil {
		t.Fatal("restore rlimit:", rerr)
	}
	if err == nil {
		t.Fatal("writeFileAtomic reported success although the write failed")
	}
	got, rerr := os.ReadFile(path)
	if rerr != nil || string(got) != "old: true\n" {
		t.Fatalf("old file replaced: %q, %v", got, rerr)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".config.yaml.*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
}
