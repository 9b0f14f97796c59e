// Package sysmem tells how much memory this process may use: its cgroup's limit or the
// machine's memory. Budgets sized from it fit the service's MemoryMax or the container.
package sysmem

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Available is the memory this process may use: its cgroup limit when set and below the
// machine's memory, else the machine's memory; 0 when neither can be read.
func Available() int64 {
	ram := Physical()
	if lim, _ := CgroupLimit(); lim > 0 && (ram == 0 || lim < ram) {
		return lim
	}
	return ram
}

// CgroupLimit returns the tightest memory limit on this process's cgroup and its
// ancestors (cgroup v2 memory.max, or v1 memory.limit_in_bytes) and the file it came from;
// 0 when there is none.
func CgroupLimit() (int64, string) {
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

// Physical is the machine's memory (sysinfo(2) totalram), in bytes; 0 when unknown. A
// system call rather than /proc/meminfo, which a sandbox may hide (systemd's ProcSubset=pid).
func Physical() int64 {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit)
}
