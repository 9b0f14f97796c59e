package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The shares of memory-limit that the budgets not set explicitly get. What is left (about
// a third) is the runtime's headroom: garbage not yet collected, goroutine stacks, the
// exchanges in flight between the stages, buffers of the capture sources.
const (
	reassemblyShare = 0.40 // buffer-bytes: connections, waiting requests, bodies, out-of-order data
	intakeShare     = 0.15 // queue-bytes: exchanges waiting to be encoded
	metloQueueShare = 0.10 // metlo-queue-bytes: traces waiting for the backend without a spool
)

// memory shares of what the machine or the service's cgroup allows, when memory-limit is 0.
const (
	cgroupShare   = 0.75 // of the cgroup's limit (the unit's MemoryMax)
	physicalShare = 0.50 // of the machine's memory when no cgroup limit applies
)

// resolveMemory fills memory-limit when it is 0 (from the cgroup limit, else physical
// memory) and derives every byte budget left at 0 from it. It returns where the limit
// came from, for the log and `config`.
func (c *Config) resolveMemory() string {
	source := "memory-limit"
	if c.MemoryLimit == 0 {
		if lim, path := cgroupMemoryLimit(); lim > 0 {
			c.MemoryLimit, source = int64(float64(lim)*cgroupShare), "75% of the cgroup limit "+path
		} else if total := physicalMemory(); total > 0 {
			c.MemoryLimit, source = int64(float64(total)*physicalShare), "50% of physical memory"
		} else {
			c.MemoryLimit, source = 1<<30, "built-in 1 GiB (memory size unknown)"
		}
	}
	share := func(f float64) int64 { return max(int64(float64(c.MemoryLimit)*f), 1<<20) }
	if c.BufferBytes == 0 {
		c.BufferBytes = int(share(reassemblyShare))
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = share(intakeShare)
	}
	if c.MetloQueueBytes == 0 {
		c.MetloQueueBytes = share(metloQueueShare)
	}
	return source
}

// cgroupMemoryLimit returns the tightest memory limit on this process's cgroup and its
// ancestors (cgroup v2 memory.max, or v1 memory.limit_in_bytes), 0 when there is none.
func cgroupMemoryLimit() (int64, string) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, ""
	}
	return cgroupLimitIn(data, "/sys/fs/cgroup")
}

// cgroupLimitIn reads the limits named by a /proc/<pid>/cgroup file under the cgroup
// file-system root sys.
func cgroupLimitIn(data []byte, sys string) (int64, string) {
	var best int64
	var where string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// "0::/system.slice/x.service" (v2) or "4:memory:/docker/…" (v1).
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		var root, file string
		switch {
		case parts[0] == "0" && parts[1] == "":
			root, file = sys, "memory.max"
		case strings.Contains(","+parts[1]+",", ",memory,"):
			root, file = filepath.Join(sys, "memory"), "memory.limit_in_bytes"
		default:
			continue
		}
		for dir := filepath.Join(root, parts[2]); strings.HasPrefix(dir, root); dir = filepath.Dir(dir) {
			if v, ok := readLimit(filepath.Join(dir, file)); ok && (best == 0 || v < best) {
				best, where = v, filepath.Join(dir, file)
			}
			if dir == root {
				break
			}
		}
	}
	return best, where
}

// readLimit reads a cgroup limit file; "max" and v1's "no limit" (a huge page-aligned
// number) are no limit.
func readLimit(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	s := strings.TrimSpace(string(b))
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 || v >= 1<<62 {
		return 0, false
	}
	return v, true
}

// physicalMemory is MemTotal from /proc/meminfo, in bytes; 0 when unknown.
func physicalMemory() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
