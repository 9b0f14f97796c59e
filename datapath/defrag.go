package datapath

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"
)

// IP fragment reassembly (RFC 791, RFC 8200 §4.5).
//
// Fragments of one datagram may reach different source goroutines (AF_PACKET fanout and
// XDP rings spread by a hash the NIC or kernel computes, not ours), and only the first
// fragment carries the ports the dispatcher shards by. So reassembly happens before
// sharding, in one Defragmenter every decoder of a pipeline shares, keyed by what every
// fragment carries: tunnel id, addresses, identification (and protocol for IPv4). It is
// split into lock-striped shards; a frame that is not a fragment never touches it. The
// goroutine whose fragment completes a datagram decodes the datagram and shards its
// segment by the inner flow like any other.
//
// Overlap policy, IPv4 and IPv6 alike (RFC 5722 for IPv6, and what Linux has done for
// IPv4 too since 4.19, so the appliance rebuilds what the receiving host accepted): a
// fragment whose bytes were all received already is a duplicate and ignored (mirroring both
// ends of a connection sends every fragment twice); any other overlap drops the whole
// datagram. Non-final IPv4 fragments count in whole 8-byte units, as Linux counts them.

// DefragConfig bounds IP fragment reassembly.
type DefragConfig struct {
	// MaxBytes bounds the memory held for datagrams being reassembled, data and
	// bookkeeping (0 = 4 MiB, Linux's ipfrag_high_thresh). Past it the oldest datagrams are
	// dropped (counted as evicted).
	MaxBytes int
	// Timeout drops a datagram this long (packet time) after its first fragment arrived if
	// it is still incomplete (0 = 30 s, Linux's ipfrag_time).
	Timeout time.Duration
}

const (
	defaultDefragBytes   = 4 << 20
	defaultDefragTimeout = 30 * time.Second
	defragShards         = 8
	maxDatagram          = 65535 // IPv4 total length, IPv6 payload length: neither can be larger
	maxFragments         = 256   // per datagram; 64 KiB over a 576-byte path takes 117
	datagramOverhead     = 256   // bytes charged per datagram for its struct and map entry
	spanSize             = 24
	poolPerShard         = 4 // finished datagrams kept with their buffers for reuse
	minDatagramBuf       = 2 << 10
)

// fragKey identifies a datagram. IPv6 identifies one by addresses and identification
// alone (RFC 8200); IPv4 adds the protocol (RFC 791). The tunnel id keeps tenants apart.
type fragKey struct {
	src, dst [16]byte
	tunnel   uint32
	id       uint32
	proto    uint8
	v6       bool
}

// shard picks the key's shard from a mix of its words.
func (k *fragKey) shard() int {
	le := binary.LittleEndian
	h := uint64(k.id) | uint64(k.tunnel)<<32
	for _, v := range [3]uint64{le.Uint64(k.src[8:]), le.Uint64(k.dst[8:]), le.Uint64(k.src[:8]) ^ le.Uint64(k.dst[:8])} {
		h = (h ^ v) * 0x9E3779B97F4A7C15
	}
	return int(h >> 61) // the top 3 bits: 8 shards
}

// fragment is one IP fragment as the decoder found it.
type fragment struct {
	key    fragKey
	off    int    // byte offset in the datagram's payload
	length int    // payload bytes the IP header claims
	data   []byte // the captured payload: shorter than length when the capture was truncated
	proto  uint8  // IPv4: the protocol; IPv6: the fragment header's next header
	more   bool
	v6     bool
	ignore bool // set on a first fragment whose headers show nothing worth decoding
}

// span is one stored fragment: payload bytes [start, end), captured up to captured.
type span struct{ start, end, captured int }

// datagram is a datagram being reassembled: fragments are copied to their offsets in buf.
type datagram struct {
	key        fragKey
	first      int64 // packet time of its first fragment
	buf        []byte
	spans      []span // sorted by start, disjoint
	total      int    // payload length, -1 until the last fragment arrived
	got        int    // payload bytes received
	proto      uint8  // the first fragment's protocol / next header
	ignore     bool
	charged    int
	prev, next *datagram // age order, oldest first
}

// fragResult is what adding a fragment did.
type fragResult uint8

const (
	fragHeld      fragResult = iota // stored; the datagram is still incomplete
	fragDuplicate                   // every byte of it was held already
	fragComplete                    // it completed its datagram
	fragIgnored                     // its datagram carries nothing the decoder wants
	fragDropped                     // refused: overlapping, inconsistent or over the budget
)

// Defragmenter reassembles IP datagrams from fragments; safe for concurrent use.
type Defragmenter struct {
	max     int64
	timeout int64
	held    atomic.Int64
	shards  [defragShards]defragShard
	c       defragCounters
}

type defragShard struct {
	mu   sync.Mutex
	m    map[fragKey]*datagram
	head *datagram // oldest
	tail *datagram
	now  int64
	n    int
	pool []*datagram
	_    [64]byte // keeps the shards' locks on separate cache lines
}

type defragCounters struct {
	reassembled, expired, overlapping, invalid, evicted, ignored, unfinished, duplicates atomic.Uint64
}

// DefragStats are a Defragmenter's counters: what became of each datagram, duplicates
// ignored, and the memory held now.
type DefragStats struct {
	Reassembled uint64 // datagrams completed and decoded
	Expired     uint64 // dropped incomplete after the timeout
	Overlapping uint64 // dropped because fragments overlapped (RFC 5722)
	Invalid     uint64 // dropped as inconsistent: beyond 64 KiB, a fragment after the end, two different ends, too many fragments, an empty or unaligned fragment
	Evicted     uint64 // dropped to stay within the memory budget
	Ignored     uint64 // completed or expired without being kept: UDP to a port that is not a tunnel
	Unfinished  uint64 // still incomplete when the pipeline closed (end of a capture file)
	Duplicates  uint64 // fragments ignored because every byte of them was held already
	HeldBytes   int64  // memory held now: fragment data, bookkeeping and buffers kept for reuse
	Datagrams   int64  // datagrams being reassembled now
}

// NewDefragmenter returns a Defragmenter bounded by cfg.
func NewDefragmenter(cfg DefragConfig) *Defragmenter {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = defaultDefragBytes
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultDefragTimeout
	}
	return &Defragmenter{max: int64(cfg.MaxBytes), timeout: int64(cfg.Timeout)}
}

// Stats returns the counters; safe from any goroutine.
func (f *Defragmenter) Stats() DefragStats {
	s := DefragStats{
		Reassembled: f.c.reassembled.Load(), Expired: f.c.expired.Load(), Overlapping: f.c.overlapping.Load(),
		Invalid: f.c.invalid.Load(), Evicted: f.c.evicted.Load(), Ignored: f.c.ignored.Load(),
		Unfinished: f.c.unfinished.Load(), Duplicates: f.c.duplicates.Load(), HeldBytes: f.held.Load(),
	}
	for i := range f.shards {
		sh := &f.shards[i]
		sh.mu.Lock()
		s.Datagrams += int64(sh.n)
		sh.mu.Unlock()
	}
	return s
}

// Close drops every incomplete datagram (counted as unfinished) and the buffers kept for
// reuse; the Defragmenter stays usable.
func (f *Defragmenter) Close() {
	for i := range f.shards {
		sh := &f.shards[i]
		sh.mu.Lock()
		for sh.head != nil {
			f.drop(sh, sh.head, &f.c.unfinished)
		}
		for _, dg := range sh.pool {
			f.held.Add(-int64(dg.charged))
		}
		sh.pool = nil
		sh.mu.Unlock()
	}
}

// add stores fr (packet time ts). When fr completes its datagram, the datagram's payload is
// copied into out (at least maxDatagram bytes) and returned with the protocol (or IPv6
// next header) of its first fragment and how many of its bytes the capture lacks.
func (f *Defragmenter) add(fr *fragment, ts int64, out []byte) (res fragResult, payload []byte, proto uint8, missing int) {
	sh := &f.shards[fr.key.shard()]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if ts > sh.now {
		sh.now = ts
	}
	for sh.head != nil && sh.now-sh.head.first > f.timeout {
		if sh.head.ignore {
			f.drop(sh, sh.head, &f.c.ignored)
		} else {
			f.drop(sh, sh.head, &f.c.expired)
		}
	}
	if sh.m == nil {
		sh.m = make(map[fragKey]*datagram)
	}
	dg := sh.m[fr.key]

	length := fr.length
	if fr.more && !fr.v6 {
		length &^= 7 // only whole 8-byte units of a non-final IPv4 fragment count
	}
	start, end := fr.off, fr.off+length
	if length <= 0 || end > maxDatagram || (fr.more && fr.v6 && length%8 != 0) {
		if dg != nil {
			f.drop(sh, dg, &f.c.invalid)
		} else {
			f.c.invalid.Add(1)
		}
		return fragDropped, nil, 0, 0
	}
	if dg == nil {
		dg = f.newDatagram(sh, &fr.key, ts)
		if dg == nil {
			f.c.evicted.Add(1)
			return fragDropped, nil, 0, 0
		}
	}

	// The stored fragments [i, j) share bytes with this one.
	i := 0
	for i < len(dg.spans) && dg.spans[i].end <= start {
		i++
	}
	j := i
	for j < len(dg.spans) && dg.spans[j].start < end {
		j++
	}
	if i < j {
		if dg.covers(i, j, start, end) {
			f.c.duplicates.Add(1)
			return fragDuplicate, nil, 0, 0
		}
		f.drop(sh, dg, &f.c.overlapping)
		return fragDropped, nil, 0, 0
	}
	switch {
	case !fr.more:
		if (dg.total >= 0 && end != dg.total) || end < dg.highest() {
			f.drop(sh, dg, &f.c.invalid)
			return fragDropped, nil, 0, 0
		}
		dg.total = end
	case dg.total >= 0 && end > dg.total:
		f.drop(sh, dg, &f.c.invalid)
		return fragDropped, nil, 0, 0
	}
	if len(dg.spans) >= maxFragments {
		f.drop(sh, dg, &f.c.invalid)
		return fragDropped, nil, 0, 0
	}
	if start == 0 {
		dg.proto = fr.proto
		if fr.ignore && !dg.ignore {
			dg.ignore = true
			dg.buf = dg.buf[:0] // keep tracking which bytes came, not the bytes
		}
	}
	captured := start + min(len(fr.data), length)
	if !dg.ignore {
		if !f.grow(sh, dg, end) {
			f.drop(sh, dg, &f.c.evicted)
			return fragDropped, nil, 0, 0
		}
		copy(dg.buf[start:captured], fr.data)
	}
	if len(dg.spans) == cap(dg.spans) {
		f.charge(dg, spanSize*max(4, cap(dg.spans))) // append doubles the capacity
	}
	dg.spans = append(dg.spans, span{})
	copy(dg.spans[i+1:], dg.spans[i:])
	dg.spans[i] = span{start, end, captured}
	dg.got += length

	if dg.total < 0 || dg.got != dg.total {
		if dg.ignore {
			return fragIgnored, nil, 0, 0
		}
		return fragHeld, nil, 0, 0
	}
	if dg.ignore {
		f.drop(sh, dg, &f.c.ignored)
		return fragIgnored, nil, 0, 0
	}
	// Complete: the payload runs to the first byte the capture lacks.
	n := 0
	for _, s := range dg.spans {
		if s.captured < s.end {
			n = s.captured
			break
		}
		n = s.end
	}
	n = copy(out, dg.buf[:n])
	proto = dg.proto
	missing = dg.total - n
	f.drop(sh, dg, &f.c.reassembled)
	return fragComplete, out[:n], proto, missing
}

// covers reports whether the stored spans [i, j), which all touch [start, end), hold every
// byte of it.
func (dg *datagram) covers(i, j, start, end int) bool {
	if dg.spans[i].start > start || dg.spans[j-1].end < end {
		return false
	}
	for k := i; k+1 < j; k++ {
		if dg.spans[k].end != dg.spans[k+1].start {
			return false
		}
	}
	return true
}

// highest is the end of the furthest fragment held.
func (dg *datagram) highest() int {
	if len(dg.spans) == 0 {
		return 0
	}
	return dg.spans[len(dg.spans)-1].end
}

// newDatagram starts a datagram (a pooled one when there is one), youngest in age order;
// nil when the budget cannot hold even its bookkeeping.
func (f *Defragmenter) newDatagram(sh *defragShard, k *fragKey, ts int64) *datagram {
	var dg *datagram
	if n := len(sh.pool); n > 0 {
		dg, sh.pool = sh.pool[n-1], sh.pool[:n-1]
	} else {
		if !f.reserve(sh, nil, datagramOverhead) {
			return nil
		}
		dg = &datagram{charged: datagramOverhead}
	}
	dg.key, dg.first, dg.total, dg.got, dg.proto, dg.ignore = *k, ts, -1, 0, 0, false
	dg.buf, dg.spans = dg.buf[:0], dg.spans[:0]
	dg.prev, dg.next = sh.tail, nil
	if sh.tail != nil {
		sh.tail.next = dg
	} else {
		sh.head = dg
	}
	sh.tail = dg
	sh.m[*k] = dg
	sh.n++
	return dg
}

// grow makes dg.buf at least end bytes long, within the budget.
func (f *Defragmenter) grow(sh *defragShard, dg *datagram, end int) bool {
	if end <= len(dg.buf) {
		return true
	}
	if end <= cap(dg.buf) {
		dg.buf = dg.buf[:end]
		return true
	}
	c := max(minDatagramBuf, cap(dg.buf))
	for c < end {
		c *= 2
	}
	c = min(c, maxDatagram)
	if !f.reserve(sh, dg, c-cap(dg.buf)) {
		return false
	}
	dg.charged += c - cap(dg.buf)
	nb := make([]byte, end, c)
	copy(nb, dg.buf)
	dg.buf = nb
	return true
}

// charge counts bookkeeping growth; it may overshoot the budget by a few hundred bytes,
// which the next reserve pays back.
func (f *Defragmenter) charge(dg *datagram, n int) {
	dg.charged += n
	f.held.Add(int64(n))
}

// reserve makes room for n more bytes: first by freeing this shard's pooled buffers, then
// by dropping its oldest datagrams other than keep, then — so that datagrams piled up in
// one shard cannot starve the others — the pools and oldest datagrams of shards whose lock
// is free (TryLock: never waiting while holding this shard's lock, so no deadlock). Shards
// reserve concurrently, so the budget can be exceeded by at most one growth per shard.
func (f *Defragmenter) reserve(sh *defragShard, keep *datagram, n int) bool {
	for f.held.Load()+int64(n) > f.max {
		if f.shed(sh, keep) {
			continue
		}
		freed := false
		for i := range f.shards {
			o := &f.shards[i]
			if o == sh || !o.mu.TryLock() {
				continue
			}
			freed = f.shed(o, nil)
			o.mu.Unlock()
			if freed {
				break
			}
		}
		if !freed {
			return false
		}
	}
	f.held.Add(int64(n))
	return true
}

// shed frees one pooled buffer of sh, or else drops its oldest datagram other than keep
// (counted as evicted); false when sh has nothing to give. sh's lock is held.
func (f *Defragmenter) shed(sh *defragShard, keep *datagram) bool {
	if k := len(sh.pool); k > 0 {
		f.held.Add(-int64(sh.pool[k-1].charged))
		sh.pool[k-1] = nil
		sh.pool = sh.pool[:k-1]
		return true
	}
	victim := sh.head
	if victim != nil && victim == keep {
		victim = victim.next
	}
	if victim == nil {
		return false
	}
	f.drop(sh, victim, &f.c.evicted)
	return true
}

// drop finishes dg, counting it in c, and keeps its buffers for reuse while the pool has
// room.
func (f *Defragmenter) drop(sh *defragShard, dg *datagram, c *atomic.Uint64) {
	c.Add(1)
	delete(sh.m, dg.key)
	if dg.prev != nil {
		dg.prev.next = dg.next
	} else {
		sh.head = dg.next
	}
	if dg.next != nil {
		dg.next.prev = dg.prev
	} else {
		sh.tail = dg.prev
	}
	dg.prev, dg.next = nil, nil
	sh.n--
	if len(sh.pool) < poolPerShard {
		sh.pool = append(sh.pool, dg)
		return
	}
	f.held.Add(-int64(dg.charged))
}

// fragment hands an IP fragment to the defragmenter, unless what it carries is of no use
// (a protocol that is neither TCP nor a tunnel, raw TCP that raw mode would refuse), and
// decodes the datagram it completes. v6 fragments continue with the extension headers of
// the fragmentable part.
func (w *walk) fragment(fr *fragment, src, dst *[16]byte) Outcome {
	switch fr.proto {
	case ipProtoTCP:
		if w.depth == 0 && w.encap == EncapRaw {
			if !w.d.raw {
				return OutcomeNotMirrored
			}
			if w.d.isLocal(*src, *dst) {
				return OutcomeLocal
			}
		}
	case ipProtoUDP, ipProtoGRE, ipProtoIPIP, ipProtoIPv6:
		if w.depth >= maxTunnelDepth {
			return OutcomeNonTCP
		}
		if fr.proto == ipProtoUDP && fr.off == 0 && len(fr.data) >= 4 {
			dport := binary.BigEndian.Uint16(fr.data[2:4])
			fr.ignore = !w.d.vxlan.has(dport) && !w.d.geneve.has(dport)
		}
	case 0, 43, 60: // IPv6 extension headers that may open the fragmentable part
		if !fr.v6 {
			return OutcomeNonTCP
		}
	default:
		return OutcomeNonTCP
	}
	if w.d.scratch == nil {
		w.d.scratch = make([]byte, maxDatagram)
	}
	res, payload, proto, missing := w.d.defrag.add(fr, w.ts, w.d.scratch)
	switch res {
	case fragHeld, fragDuplicate:
		return OutcomeFragment
	case fragIgnored:
		return OutcomeNonTCP
	case fragDropped:
		return OutcomeFragmentDropped
	}
	if fr.v6 {
		return w.ip6ext(proto, payload, src, dst, missing, true)
	}
	return w.l4(proto, payload, src, dst, missing)
}
