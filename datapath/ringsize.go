package datapath

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Capture ring sizing: the kernel-side buffer each live source drains (one XDP ring buffer
// per CPU, one TPACKET_V3 ring per AF_PACKET socket). It absorbs bursts and the moments the
// collector's threads do not get a CPU; whatever does not fit is dropped by the kernel.
const (
	// MaxAutoRingBytes is the automatic size of one ring: at ~700 bytes of ring per mirrored
	// frame, ~95 000 frames — a second of a busy 1 Gbit/s mirror even if the reader got no
	// CPU at all meanwhile.
	MaxAutoRingBytes = 64 << 20
	// MinAutoRingBytes is the smallest automatic size, for hosts with little memory.
	MinAutoRingBytes = 8 << 20
	// ringMemoryShare: all rings together take at most 1/16 of the memory available to
	// the process (its cgroup limit, else the host's RAM).
	ringMemoryShare = 16
)

// AutoRingBytes is the default size of each of rings capture rings: MaxAutoRingBytes,
// lowered so that all of them take at most 1/16 of the memory available (cgroup limit or
// RAM; 0 = unknown), never below MinAutoRingBytes; a power of two.
func AutoRingBytes(rings int, memory int64) int {
	size := int64(MaxAutoRingBytes)
	if memory > 0 && rings > 0 {
		size = min(size, memory/ringMemoryShare/int64(rings))
	}
	size = max(size, MinAutoRingBytes)
	p := int64(1)
	for p*2 <= size {
		p *= 2
	}
	return int(p)
}

// DefaultRingBytes is AutoRingBytes for one ring per CPU on this host.
func DefaultRingBytes() int { return AutoRingBytes(runtime.NumCPU(), AvailableMemory()) }

// AvailableMemory is the memory this process may use: its cgroup's limit (v2 memory.max or
// v1 memory.limit_in_bytes) when set, else the host's RAM; 0 when neither can be read.
func AvailableMemory() int64 {
	ram := meminfoTotal()
	if lim := cgroupLimit(); lim > 0 && (ram == 0 || lim < ram) {
		return lim
	}
	return ram
}

func meminfoTotal() int64 {
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

// cgroupLimit reads the memory limit of this process's cgroup; 0 when unlimited or unknown.
func cgroupLimit() int64 {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var file string
		switch {
		case parts[0] == "0" && parts[1] == "":
			file = "/sys/fs/cgroup" + parts[2] + "/memory.max"
		case strings.Contains(","+parts[1]+",", ",memory,"):
			file = "/sys/fs/cgroup/memory" + parts[2] + "/memory.limit_in_bytes"
		default:
			continue
		}
		v, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
		if err == nil && n > 0 && n < 1<<60 { // "max" and v1's 2^63-ish mean unlimited
			return n
		}
	}
	return 0
}
