package xdp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/metlo-labs/metlo-appliance/datapath/localaddr"
	"golang.org/x/sys/unix"
)

// flushAfter bounds how long a frame can sit in a handler's batch while its ring is busy or
// quiet: readers flush at the first empty ring after this much time.
const flushAfter = 5 * time.Millisecond

// Source captures with the XDP program attached to one interface; it implements
// datapath.Source with one reader goroutine per CPU ring.
type Source struct {
	objs    *Objects
	link    link.Link
	mode    Mode
	iface   string
	log     *slog.Logger
	readers []*ringReader

	mu      sync.Mutex
	running bool
	stop    chan struct{} // closed by Close: readers drain and return
	done    chan struct{} // closed when Run returns
	closed  bool

	stopping      atomic.Bool   // readers drain their rings and return
	frames, bytes atomic.Uint64 // frames (and their bytes) handed to handlers
	badRecords    atomic.Uint64 // ring records that did not decode

	// watcher follows the host's addresses into the program's local maps (nil with a
	// static Config.LocalAddrs); followDone closes when it has stopped.
	watcher    *localaddr.Watcher
	followDone chan struct{}
}

var _ datapath.StatsSource = (*Source)(nil)

// Open loads the program for cfg, attaches it to cfg.Interface in cfg.Mode and returns the
// Source. Errors wrap ErrPermission, ErrKernelTooOld, ErrNativeUnsupported, ErrMTUTooLarge,
// ErrBusy or ErrNoInterface when the cause is one of those.
func Open(cfg Config) (*Source, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	iface, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrNoInterface, cfg.Interface, err)
	}
	// The watcher subscribes before it lists, in this thread's namespace, so the program
	// starts with every current address and misses none added after.
	var watcher *localaddr.Watcher
	var local localaddr.Set
	if cfg.LocalAddrs == nil {
		if watcher, err = localaddr.Open(); err != nil {
			return nil, fmt.Errorf("follow local addresses: %w", err)
		}
		local = watcher.Current()
		cfg.LocalAddrs = local.Addrs
	}
	objs, err := Load(cfg)
	if err != nil {
		if watcher != nil {
			watcher.Close()
		}
		return nil, err
	}
	s := &Source{objs: objs, mode: cfg.Mode, iface: cfg.Interface, log: cfg.Logger,
		stop: make(chan struct{}), done: make(chan struct{}), watcher: watcher}
	if watcher != nil {
		if err := objs.SetLocal(local); err != nil {
			s.closeResources()
			return nil, err
		}
	}
	for cpu, r := range objs.Rings {
		rd, err := newRingReader(r)
		if err != nil {
			s.closeResources()
			return nil, fmt.Errorf("open ring reader for cpu %d: %w", cpu, err)
		}
		s.readers = append(s.readers, rd)
	}
	flags := link.XDPDriverMode
	if cfg.Mode == ModeGeneric {
		flags = link.XDPGenericMode
	}
	s.link, err = link.AttachXDP(link.XDPOptions{Program: objs.Program, Interface: iface.Index, Flags: flags})
	if err != nil {
		s.closeResources()
		return nil, fmt.Errorf("attach xdp to %s: %w", cfg.Interface, classifyAttach(err, cfg.Mode, iface.MTU))
	}
	s.log.Info("xdp capture attached", "interface", cfg.Interface, "mode", cfg.Mode,
		"rings", len(s.readers), "ring_bytes", cfg.RingBytes, "raw", cfg.Raw,
		"local_addrs", len(objs.Local().Addrs), "local_routes", len(objs.Local().Prefixes), "follow_addresses", watcher != nil)
	if watcher != nil {
		s.followDone = make(chan struct{})
		go s.follow()
	}
	return s, nil
}

// follow keeps the program's local addresses equal to the host's until Close.
func (s *Source) follow() {
	defer close(s.followDone)
	err := s.watcher.Run(context.Background(), func(set localaddr.Set) {
		added, removed := s.objs.Local().Diff(set)
		if err := s.objs.SetLocal(set); err != nil {
			s.log.Error("local addresses changed but the xdp program could not learn them: raw capture may take this host's traffic to them",
				"added", added, "removed", removed, "err", err)
			return
		}
		s.log.Info("local addresses changed", "added", added, "removed", removed)
	})
	if err != nil {
		s.log.Error("no longer following local addresses: raw capture may take this host's traffic to new ones", "err", err)
	}
}

// Name implements datapath.Source.
func (s *Source) Name() string { return "xdp" }

// Mode is the mode the program is attached in.
func (s *Source) Mode() Mode { return s.mode }

// Objects exposes the loaded program and maps (counters for metrics and tests).
func (s *Source) Objects() *Objects { return s.objs }

// Interface is the interface the program is attached to.
func (s *Source) Interface() string { return s.iface }

// SourceStats reports what the program could not put into a full ring and records the
// readers could not decode.
func (s *Source) SourceStats() datapath.SourceStats {
	st := datapath.SourceStats{Dropped: map[string]uint64{datapath.DropBadRecord: s.badRecords.Load()}, Rejected: map[string]uint64{}}
	if c, err := s.objs.CounterValues(); err == nil {
		st.Dropped[datapath.DropRingBufferFull] = c["ringbuf_full"]
		st.Rejected[datapath.RejectSource] = c["rejected_source"]
		st.Rejected[datapath.RejectVNI] = c["rejected_vni"]
	}
	return st
}

// Collector returns a Prometheus collector for the program's counters.
func (s *Source) Collector() *Collector { return NewCollector(s.objs) }

// Run reads every CPU's ring in its own goroutine, each with a handler from newHandler,
// until ctx is cancelled or Close is called; then it drains the rings and returns nil.
func (s *Source) Run(ctx context.Context, newHandler func() datapath.FrameHandler) error {
	s.mu.Lock()
	if s.running || s.closed {
		s.mu.Unlock()
		return errors.New("xdp source: run called twice or after close")
	}
	s.running = true
	s.mu.Unlock()
	defer close(s.done)

	handlers := make([]datapath.FrameHandler, len(s.readers))
	for i := range handlers {
		handlers[i] = newHandler()
	}
	var wg sync.WaitGroup
	errs := make([]error, len(s.readers))
	for i, rd := range s.readers {
		wg.Go(func() { errs[i] = s.readRing(rd, handlers[i]) })
	}
	readersDone := make(chan struct{})
	go func() { wg.Wait(); close(readersDone) }()

	select {
	case <-ctx.Done():
	case <-s.stop:
	case <-readersDone:
	}
	// Each reader hands on what is in its ring, then returns.
	s.stopping.Store(true)
	for _, rd := range s.readers {
		rd.interrupt()
	}
	<-readersDone
	return errors.Join(errs...)
}

// Reader pacing. A reader that finds its ring empty shortly after records came sleeps for
// linger instead of waiting to be woken: the kernel wakes a waiting reader at the first
// record after it caught up, so under steady load a reader that waits is woken for nearly
// every record (a context switch each), while one that lingers drains a millisecond's worth
// at a time. After idleAfter without records it waits to be woken, costing nothing idle.
const (
	linger       = time.Millisecond
	idleAfter    = 20 * time.Millisecond
	releaseBytes = 256 << 10 // space given back to the producer at least this often
)

// readRing hands each record of one ring to h until Run stops it, then drains the ring.
func (s *Source) readRing(r *ringReader, h datapath.FrameHandler) error {
	defer h.Flush()
	var (
		f         datapath.Frame
		offset    = clockOffset()
		pending   bool // frames handed on since the last Flush
		stopping  bool
		cons      = r.consumer()
		now       = time.Now()
		lastData  = now
		lastFlush = now
		lastClock = now
	)
	var stopAt uint64 // with stopping: what the ring held when told to stop
	for {
		prod := r.producer()
		if !stopping && s.stopping.Load() {
			stopping, stopAt = true, prod
		}
		released := cons
		var frames, bytes uint64
		for {
			sample, after, ok := r.next(cons, prod)
			if !ok {
				break
			}
			cons = after
			if sample != nil {
				if decodeRecord(sample, offset, &f) {
					h.HandleFrame(&f)
					frames++
					bytes += uint64(len(f.Data))
				} else if s.badRecords.Add(1) == 1 {
					s.log.Warn("xdp ring record shorter than its header says; skipping such records", "len", len(sample))
				}
			}
			if cons-released >= releaseBytes {
				r.release(cons)
				released = cons
			}
		}
		if cons != released {
			r.release(cons)
		}
		now = time.Now()
		if frames > 0 {
			s.frames.Add(frames)
			s.bytes.Add(bytes)
			pending = true
			lastData = now
		}
		if pending && (now.Sub(lastFlush) >= flushAfter || frames == 0) {
			h.Flush()
			pending, lastFlush = false, now
		}
		if now.Sub(lastClock) >= time.Second {
			offset, lastClock = clockOffset(), now
		}
		switch {
		case stopping && (frames == 0 || cons >= stopAt):
			return nil // drained what the ring held when told to stop
		case frames > 0:
			// More may have come while these were handled.
		case now.Sub(lastData) < idleAfter:
			time.Sleep(linger)
		default:
			if _, err := r.wait(-1); err != nil {
				return fmt.Errorf("read xdp ring: %w", err)
			}
		}
	}
}

// Close detaches the program, lets a running Run drain the rings and return, and frees the
// maps. It is safe to call more than once.
func (s *Source) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	running := s.running
	s.mu.Unlock()

	var errs []error
	if s.watcher != nil {
		errs = append(errs, s.watcher.Close())
		if s.followDone != nil {
			<-s.followDone
		}
	}
	if s.link != nil {
		if err := s.link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach xdp from %s: %w", s.iface, err))
		}
	}
	close(s.stop)
	if running {
		<-s.done
	}
	errs = append(errs, s.closeResources())
	return errors.Join(errs...)
}

func (s *Source) closeResources() error {
	var errs []error
	if s.watcher != nil {
		errs = append(errs, s.watcher.Close())
	}
	for _, rd := range s.readers {
		errs = append(errs, rd.close())
	}
	errs = append(errs, s.objs.Close())
	return errors.Join(errs...)
}

// clockOffset converts the program's bpf_ktime_get_ns (CLOCK_MONOTONIC) to Unix time.
func clockOffset() int64 {
	var ts unix.Timespec
	before := time.Now().UnixNano()
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return before - ts.Nano()
}
