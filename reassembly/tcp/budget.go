package tcp

import "sync/atomic"

// Budget is the memory one assembler may hold, charged by every layer: connection state
// and out-of-order segments here; request heads, held responses and the bodies of
// unemitted exchanges in the protocol parsers. What a layer can do without (buffered
// bytes, body bytes) it checks with Fits or Room and sheds when full; what it cannot (the
// state of a connection, a request's header block) it takes with Require, which first
// evicts the least recently seen connections. It is written by the assembler's goroutine
// and read by metrics from others.
type Budget struct {
	limit   int64
	used    atomic.Int64
	reclaim func(need int) // set by the assembler: evict idle connections until need fits
}

// NewBudget returns a budget of limit bytes.
func NewBudget(limit int) *Budget { return &Budget{limit: int64(limit)} }

// Room is how many more bytes fit.
func (b *Budget) Room() int { return int(max(b.limit-b.used.Load(), 0)) }

// Fits reports whether n more bytes fit.
func (b *Budget) Fits(n int) bool { return b.used.Load()+int64(n) <= b.limit }

// Charge records n more bytes held; callers check Fits or Room first.
func (b *Budget) Charge(n int) { b.used.Add(int64(n)) }

// Require charges n bytes the caller cannot do without. Over the limit, the least
// recently seen connections are evicted to make room first; the charge is made either way.
func (b *Budget) Require(n int) {
	if b.reclaim != nil && !b.Fits(n) {
		b.reclaim(n)
	}
	b.Charge(n)
}

// Release returns n bytes.
func (b *Budget) Release(n int) { b.used.Add(-int64(n)) }

// Used is the number of bytes held now.
func (b *Budget) Used() int { return int(b.used.Load()) }

// Over reports whether the bytes held exceed the limit.
func (b *Budget) Over() bool { return b.used.Load() > b.limit }
