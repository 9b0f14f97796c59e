package datapath

import "testing"

func TestAutoRingBytes(t *testing.T) {
	const mib, gib = 1 << 20, 1 << 30
	cases := []struct {
		rings  int
		memory int64
		want   int
	}{
		{2, 4 * gib, 64 * mib},  // 2 vCPU, 4 GiB: 128 MiB of rings
		{2, 24 * gib, 64 * mib}, // capped per ring
		{16, 8 * gib, 32 * mib}, // 512 MiB = 1/16 of 8 GiB
		{8, 1 * gib, 8 * mib},   // floor
		{3, 2 * gib, 32 * mib},  // 42.7 MiB each, rounded down to a power of two
		{2, 0, 64 * mib},        // memory unknown
		{0, 4 * gib, 64 * mib},  // no rings given
	}
	for _, c := range cases {
		if got := AutoRingBytes(c.rings, c.memory); got != c.want {
			t.Errorf("AutoRingBytes(%d, %d MiB) = %d MiB, want %d MiB", c.rings, c.memory/mib, got/mib, c.want/mib)
		}
	}
	if DefaultRingBytes() < MinAutoRingBytes {
		t.Errorf("DefaultRingBytes() = %d on this host", DefaultRingBytes())
	}
	if d := DefaultRingBytes(); d < MinAutoRingBytes || d > MaxAutoRingBytes || d&(d-1) != 0 {
		t.Errorf("DefaultRingBytes() = %d", d)
	}
}
