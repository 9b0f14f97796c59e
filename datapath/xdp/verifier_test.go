package xdp

import (
	"net/netip"
	"regexp"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"
)

// maxProcessed is the verifier work the capture program may need in any configuration:
// 60% of the kernel's 1 000 000-instruction limit, so growth towards the limit fails here
// before a kernel whose state pruning is weaker refuses the program in production.
const maxProcessed = 600_000

// TestVerifierBudget loads the program in every configuration the table tests use and
// checks how much verification it took (the figures in docs/xdp.md come from here, -v).
func TestVerifierBudget(t *testing.T) {
	needBPF(t)
	local := []netip.Addr{applianceV4}
	configs := map[string]Config{
		"raw":     {Raw: true, LocalAddrs: local},
		"no raw":  {LocalAddrs: local},
		"accept":  {Raw: true, LocalAddrs: local, AcceptSources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, AcceptVNIs: []uint32{1, 2, 3}},
		"filters": {Raw: true, LocalAddrs: local, TCPOnly: true, Ports: []uint16{80, 443}},
	}
	processed := regexp.MustCompile(`processed (\d+) insns .* peak_states (\d+)`)
	for name, cfg := range configs {
		cfg.RingBytes = 1 << 16
		cfg, err := cfg.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		spec, err := loadCapture()
		if err != nil {
			t.Fatal(err)
		}
		if err := setConstants(spec, cfg); err != nil {
			t.Fatal(err)
		}
		spec.Maps[captureMapRings].MaxEntries = 1
		spec.Maps[captureMapRings].InnerMap.MaxEntries = uint32(cfg.RingBytes)
		delete(spec.Programs, captureProgXdpBaseline)
		coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
			Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats, LogSizeStart: 1 << 16}})
		if err != nil {
			t.Fatalf("%s: load: %v", name, err)
		}
		prog := coll.Programs[captureProgXdpCapture]
		m := processed.FindStringSubmatch(prog.VerifierLog)
		var insns int
		if info, err := prog.Info(); err == nil {
			if ins, err := info.Instructions(); err == nil {
				insns = len(ins)
			}
		}
		coll.Close()
		if m == nil {
			t.Fatalf("%s: no statistics in the verifier log:\n%s", name, prog.VerifierLog)
		}
		n, _ := strconv.Atoi(m[1])
		t.Logf("%s: %d instructions, verifier processed %s (peak states %s)", name, insns, m[1], m[2])
		if n > maxProcessed {
			t.Errorf("%s: verifier processed %d instructions, budget %d", name, n, maxProcessed)
		}
	}
}
