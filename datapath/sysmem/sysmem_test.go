package sysmem

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestCgroupLimitTakesTheTightestAncestor(t *testing.T) {
	sys := t.TempDir()
	write := func(rel, val string) {
		p := filepath.Join(sys, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(val+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("memory.max", "max")
	write("system.slice/memory.max", "4294967296")
	write("system.slice/metlo-appliance.service/memory.max", "max") // MemoryMax unset on the unit
	lim, where := cgroupLimitIn([]byte("0::/system.slice/metlo-appliance.service\n"), sys)
	if lim != 4<<30 || where != filepath.Join(sys, "system.slice/memory.max") {
		t.Fatalf("limit %d from %s", lim, where)
	}
	write("system.slice/metlo-appliance.service/memory.max", "1073741824")
	if lim, _ := cgroupLimitIn([]byte("0::/system.slice/metlo-appliance.service\n"), sys); lim != 1<<30 {
		t.Fatalf("limit %d, want the unit's 1 GiB", lim)
	}
	// cgroup v1: "no limit" is a huge number.
	write("memory/docker/abc/memory.limit_in_bytes", "9223372036854771712")
	if lim, _ := cgroupLimitIn([]byte("5:memory:/docker/abc\n"), sys); lim != 0 {
		t.Fatalf("v1 unlimited read as %d", lim)
	}
	write("memory/docker/abc/memory.limit_in_bytes", "536870912")
	if lim, _ := cgroupLimitIn([]byte("4:cpu,cpuacct:/docker/abc\n5:memory:/docker/abc\n"), sys); lim != 512<<20 {
		t.Fatalf("v1 limit %d", lim)
	}
}

func TestAvailableOnThisHost(t *testing.T) {
	if Available() <= 0 || Physical() <= 0 {
		t.Fatalf("available %d, physical %d", Available(), Physical())
	}
}

// Physical agrees with /proc/meminfo's MemTotal, which a sandbox may hide from the collector.
func TestPhysicalMatchesMeminfo(t *testing.T) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Skip(err)
	}
	var kb int64
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, _ = strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		}
	}
	if got := Physical(); kb == 0 || got != kb<<10 {
		t.Errorf("Physical() = %d, /proc/meminfo MemTotal = %d kB", got, kb)
	}
}
