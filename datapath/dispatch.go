package datapath

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/metlo-labs/metlo-appliance/reassembly"
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// DispatcherConfig configures decoding and the reassembly workers.
type DispatcherConfig struct {
	Workers int // reassembly workers; each owns the flows whose hash maps to it
	Decoder DecoderConfig
	// Accept limits whose tunnel packets are taken (outer sources, VNIs); rejects are
	// counted by reason and go no further.
	Accept     TunnelAccept
	Reassembly reassembly.Config // totals; MaxFlows and BufferBytes are split across workers
	// Live makes idle workers advance their clocks with the wall clock, so quiet flows time
	// out; capture files run on packet time alone.
	Live bool
}

const (
	batchSegments = 256
	batchBytes    = 256 << 10
	batchesPerWkr = 8 // bounds memory in flight: workers × batches × batchBytes
	liveTick      = 250 * time.Millisecond
)

// batch carries segments and a copy of their payloads from a source goroutine to a worker.
type batch struct {
	segs []tcp.Segment
	buf  []byte
}

type worker struct {
	asm  *reassembly.Assembler
	in   chan *batch
	free chan *batch
}

// Dispatcher decodes frames and shards their segments over reassembly workers by the
// symmetric flow hash, so both directions of a connection meet in one worker.
type Dispatcher struct {
	cfg     DispatcherConfig
	workers []*worker
	wg      sync.WaitGroup

	mu       sync.Mutex
	handlers []*packetCounters
	closed   bool
}

// packetCounters are one handler's decode counters, read at scrape time.
type packetCounters struct {
	packets [NumEncaps][NumOutcomes]atomic.Uint64
	bytes   [NumEncaps]atomic.Uint64
	// waits and waitNanos count the times (and time) the handler waited for a worker to
	// free a batch: back-pressure that stalls the source (a live source's ring fills).
	waits, waitNanos atomic.Uint64
	// rejectedSource and rejectedVNI count tunnel packets the accept filter refused.
	rejectedSource, rejectedVNI atomic.Uint64
}

// NewDispatcher starts the workers; exchanges go to out, which is called from every
// worker goroutine concurrently.
func NewDispatcher(cfg DispatcherConfig, out exchange.Handler) *Dispatcher {
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	rc := cfg.Reassembly.WithDefaults()
	rc.MaxFlows = max(1, rc.MaxFlows/cfg.Workers)
	rc.BufferBytes = max(1, rc.BufferBytes/cfg.Workers)
	d := &Dispatcher{cfg: cfg}
	for range cfg.Workers {
		w := &worker{
			asm:  reassembly.NewAssembler(rc, out),
			in:   make(chan *batch, batchesPerWkr),
			free: make(chan *batch, batchesPerWkr),
		}
		for range batchesPerWkr {
			w.free <- &batch{segs: make([]tcp.Segment, 0, batchSegments), buf: make([]byte, 0, batchBytes)}
		}
		d.workers = append(d.workers, w)
		d.wg.Add(1)
		go d.run(w)
	}
	return d
}

func (d *Dispatcher) run(w *worker) {
	defer d.wg.Done()
	var tick <-chan time.Time
	if d.cfg.Live {
		t := time.NewTicker(liveTick)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case b, ok := <-w.in:
			if !ok {
				w.asm.FlushAll()
				return
			}
			for i := range b.segs {
				w.asm.Segment(&b.segs[i])
			}
			b.segs, b.buf = b.segs[:0], b.buf[:0]
			w.free <- b
		case now := <-tick:
			w.asm.Advance(now.UnixNano())
		}
	}
}

// NewHandler returns a FrameHandler for one source goroutine.
func (d *Dispatcher) NewHandler() FrameHandler {
	h := &handler{d: d, dec: NewDecoder(d.cfg.Decoder), pending: make([]*batch, len(d.workers)), c: &packetCounters{},
		accept: newAcceptFilter(d.cfg.Accept, d.cfg.Decoder)}
	d.mu.Lock()
	d.handlers = append(d.handlers, h.c)
	d.mu.Unlock()
	return h
}

// Close waits for the sources to be done (the caller's job), then drains the workers and
// flushes every open flow.
func (d *Dispatcher) Close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	d.mu.Unlock()
	for _, w := range d.workers {
		close(w.in)
	}
	d.wg.Wait()
}

// Snapshot is the pipeline's counters at one moment.
type Snapshot struct {
	Packets    [NumEncaps][NumOutcomes]uint64
	Bytes      [NumEncaps]uint64
	Reassembly reassembly.Stats
	// BackpressureWaits and BackpressureTime: how often and how long source goroutines
	// waited for the workers.
	BackpressureWaits uint64
	BackpressureTime  time.Duration
	// Rejected counts tunnel packets refused by DispatcherConfig.Accept, by Reject* reason.
	Rejected map[string]uint64
}

// Snapshot sums every handler's and worker's counters; safe from any goroutine.
func (d *Dispatcher) Snapshot() Snapshot {
	s := Snapshot{Rejected: map[string]uint64{RejectSource: 0, RejectVNI: 0}}
	d.mu.Lock()
	for _, c := range d.handlers {
		for e := range c.packets {
			for o := range c.packets[e] {
				s.Packets[e][o] += c.packets[e][o].Load()
			}
			s.Bytes[e] += c.bytes[e].Load()
		}
		s.BackpressureWaits += c.waits.Load()
		s.BackpressureTime += time.Duration(c.waitNanos.Load())
		s.Rejected[RejectSource] += c.rejectedSource.Load()
		s.Rejected[RejectVNI] += c.rejectedVNI.Load()
	}
	d.mu.Unlock()
	for _, w := range d.workers {
		s.Reassembly.Add(w.asm.Stats())
	}
	return s
}

// handler decodes one source goroutine's frames and batches segments per worker.
type handler struct {
	d       *Dispatcher
	dec     *Decoder
	pending []*batch
	c       *packetCounters
	accept  *acceptFilter // nil: every tunnel packet is taken
}

func (h *handler) HandleFrame(f *Frame) {
	if h.accept != nil && h.accept.sourceRejected(f) {
		h.c.rejectedSource.Add(1)
		return
	}
	var seg tcp.Segment
	encap, out := h.dec.Decode(f, &seg)
	if (out == OutcomeTCP || out == OutcomeTruncated) && h.accept != nil && h.accept.vniRejected(encap, seg.Key.Tunnel) {
		h.c.rejectedVNI.Add(1)
		return
	}
	h.c.packets[encap][out].Add(1)
	h.c.bytes[encap].Add(uint64(len(f.Data)))
	if out != OutcomeTCP && out != OutcomeTruncated {
		return
	}
	wi := 0
	if n := len(h.d.workers); n > 1 {
		wi = int(seg.Hash % uint32(n))
	}
	b := h.pending[wi]
	if b != nil && (len(b.segs) == cap(b.segs) || len(b.buf)+len(seg.Payload) > cap(b.buf)) {
		h.send(wi)
		b = nil
	}
	if b == nil {
		select {
		case b = <-h.d.workers[wi].free:
		default:
			// Back-pressure: the worker is behind. A live source's kernel ring absorbs (and
			// counts) the overload meanwhile; the wait is counted so it can be told apart.
			start := time.Now()
			b = <-h.d.workers[wi].free
			h.c.waits.Add(1)
			h.c.waitNanos.Add(uint64(time.Since(start)))
		}
		h.pending[wi] = b
	}
	if len(seg.Payload) > cap(b.buf) { // larger than a whole batch (jumbo super-frame): own copy
		seg.Payload = append([]byte(nil), seg.Payload...)
	} else {
		off := len(b.buf)
		b.buf = append(b.buf, seg.Payload...)
		seg.Payload = b.buf[off:len(b.buf):len(b.buf)]
	}
	b.segs = append(b.segs, seg)
}

func (h *handler) send(wi int) {
	if b := h.pending[wi]; b != nil && len(b.segs) > 0 {
		h.d.workers[wi].in <- b
		h.pending[wi] = nil
	}
}

func (h *handler) Flush() {
	for i := range h.pending {
		if h.pending[i] != nil {
			if len(h.pending[i].segs) > 0 {
				h.send(i)
			}
		}
	}
}
