package exporter

import (
	"sync/atomic"
	"time"
)

// recentSet remembers which endpoints were seen in the last window, lock-free and in fixed
// memory: one slot per hash bucket holds the key's upper half and the second it was last
// seen. A collision can make a new endpoint look recent (it is then treated as a repeat)
// with probability about 1 in the number of slots.
type recentSet struct {
	slots  []atomic.Uint64
	window uint32 // seconds
}

func newRecentSet(slots int, window time.Duration) *recentSet {
	n := 1
	for n < slots {
		n <<= 1
	}
	return &recentSet{slots: make([]atomic.Uint64, n), window: uint32(max(window/time.Second, 1))}
}

// seen records key at now and reports whether it had been seen within the window before.
func (r *recentSet) seen(key uint64, now time.Time) bool {
	slot := &r.slots[key&uint64(len(r.slots)-1)]
	tag, sec := key>>32, uint32(now.Unix())
	old := slot.Swap(tag<<32 | uint64(sec))
	return old>>32 == tag && old != 0 && sec-uint32(old) < r.window
}
