package tcp

import "sync/atomic"

// Budget is the memory one assembler's buffers may hold, charged by every layer that
// copies bytes aside: out-of-order segments here, held responses and the bodies of
// unemitted exchanges in the protocol parsers. It is written by the assembler's goroutine
// and read by metrics from others.
type Budget struct {
	limit int64
	used  atomic.Int64
}

// NewBudget returns a budget of limit bytes.
func NewBudget(limit int) *Budget { return &Budget{limit: int64(limit)} }

// Room is how many more bytes fit.
func (b *Budget) Room() int { return int(max(b.limit-b.used.Load(), 0)) }

// Fits reports whether n more bytes fit.
func (b *Budget) Fits(n int) bool { return b.used.Load()+int64(n) <= b.limit }

// Charge records n more bytes held; callers check Fits or Room first.
func (b *Budget) Charge(n int) { b.used.Add(int64(n)) }

// Release returns n bytes.
func (b *Budget) Release(n int) { b.used.Add(-int64(n)) }

// Used is the number of bytes held now.
func (b *Budget) Used() int { return int(b.used.Load()) }

// Over reports whether the bytes held exceed the limit.
func (b *Budget) Over() bool { return b.used.Load() > b.limit }
