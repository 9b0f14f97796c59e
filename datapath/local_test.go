package datapath

import (
	"net/netip"
	"testing"

	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// TestLiveLocalSet changes a LocalSet under a decoder built before the change, as the
// address watcher does while capture runs: raw TCP to an address becomes the host's own
// (OutcomeLocal) the moment the set gains it, by address or local route, IPv4 or IPv6, and
// is traced again once the set loses it.
func TestLiveLocalSet(t *testing.T) {
	set := NewLocalSet(nil, nil)
	d := NewDecoder(DecoderConfig{Raw: true, Local: set})
	frames := map[string][]byte{
		"10.1.0.9": innerTCP(t, "10.1.0.5", "10.1.0.9", 40000, 22, 1, "SSH-2.0-x\r\n"),
		"fd00::9":  innerTCP6(t, "fd00::5", "fd00::9", 40000, 22, 1, "SSH-2.0-x\r\n"),
	}
	decode := func(dst string) Outcome {
		var seg tcp.Segment
		_, out := d.Decode(&Frame{Data: frames[dst]}, &seg)
		return out
	}
	for dst := range frames {
		if out := decode(dst); out != OutcomeTCP {
			t.Errorf("before: %s → %v, want tcp", dst, out)
		}
	}
	set.Set([]netip.Addr{netip.MustParseAddr("10.1.0.9"), netip.MustParseAddr("fd00::9")}, nil)
	for dst := range frames {
		if out := decode(dst); out != OutcomeLocal {
			t.Errorf("address added: %s → %v, want local", dst, out)
		}
	}
	set.Set(nil, []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("fd00::/64")})
	for dst := range frames {
		if out := decode(dst); out != OutcomeLocal {
			t.Errorf("local route: %s → %v, want local", dst, out)
		}
	}
	set.Set([]netip.Addr{netip.MustParseAddr("10.1.0.10")}, []netip.Prefix{netip.MustParsePrefix("10.1.1.0/24")})
	for dst := range frames {
		if out := decode(dst); out != OutcomeTCP {
			t.Errorf("removed: %s → %v, want tcp", dst, out)
		}
	}
}

func BenchmarkLocalSetContains(b *testing.B) {
	set := NewLocalSet([]netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"),
		netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fe80::1")}, nil)
	a := netip.MustParseAddr("172.16.1.1").As16()
	for b.Loop() {
		if set.Contains(a) {
			b.Fatal("contains")
		}
	}
}
