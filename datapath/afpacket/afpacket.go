//go:build linux

// Package afpacket captures frames from a network interface through TPACKET_V3 mmap rings,
// read in place, optionally fanned out over several sockets and goroutines.
// It is the capture for raw mirrored copies (GCP Packet Mirroring) where XDP is unavailable.
package afpacket

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/metlo-labs/metlo-appliance/datapath/sysmem"
)

// Defaults for the zero Config: rings hold 9001-byte MTU frames with room to spare.
const (
	DefaultBlockSize    = 1 << 20               // bytes per ring block; the largest frame must fit one block
	DefaultBlockTimeout = 10 * time.Millisecond // the kernel hands over a partly filled block after this
)

const (
	frameSize     = 4096                   // TPACKET_V3 packs frames of any size into a block; this only sets ring geometry
	pollTimeout   = 100 * time.Millisecond // a read waits this long before the handler is flushed
	flushInterval = 100 * time.Millisecond // longest a frame waits in a handler batch under steady light traffic
	statsInterval = time.Second            // how often kernel drop counters are fetched
)

// Config says which interface a Source captures and how its rings are sized.
type Config struct {
	// Interface is the network interface to capture (required).
	Interface string
	// BlockSize is the ring block size in bytes, a multiple of the page size and at least
	// 16 KiB; 0 means DefaultBlockSize.
	BlockSize int
	// NumBlocks is the number of blocks per ring; 0 derives it from RingBytes.
	NumBlocks int
	// RingBytes is the size of each socket's ring when NumBlocks is 0, rounded down to
	// whole blocks (at least 2); 0 picks datapath.AutoRingBytes for the number of sockets
	// (64 MiB each while that takes at most 1/16 of the memory).
	RingBytes int
	// BlockTimeout is how long the kernel keeps a partly filled block; 0 means DefaultBlockTimeout.
	BlockTimeout time.Duration
	// Fanout is the number of sockets (each with its own ring and goroutine) sharing the
	// interface's traffic by flow hash (PACKET_FANOUT_HASH); 0 means one per CPU, 1 no fanout.
	Fanout int
	// FanoutID names the kernel fanout group; 0 derives one from the process id and interface.
	FanoutID uint16
	// Logger receives setup messages; nil means slog.Default().
	Logger *slog.Logger
}

// Stats are a Source's counters, summed over its sockets.
type Stats struct {
	Packets      uint64 // frames handed to handlers
	Bytes        uint64 // captured bytes handed to handlers
	Drops        uint64 // frames the kernel dropped because a ring was full (tp_drops)
	QueueFreezes uint64 // times a ring filled up (tp_freeze_q_cnt)
	ReadErrors   uint64 // failed ring reads
}

// Source captures one interface; it implements datapath.Source.
type Source struct {
	cfg     Config
	log     *slog.Logger
	sockets []*socket
	closed  atomic.Bool
}

var _ datapath.StatsSource = (*Source)(nil)

// socket is one TPACKET_V3 ring and its counters.
type socket struct {
	r                                          *ring
	packets, bytes, drops, freezes, readErrors atomic.Uint64
	scratch                                    []byte // a frame with its VLAN tag put back
}

// New validates cfg and opens the rings (promiscuous, outgoing frames filtered out in the
// kernel), so a missing interface or permission fails here. Run (or Close) releases them;
// closing the sockets also ends their promiscuous-mode membership.
func New(cfg Config) (*Source, error) {
	if cfg.Interface == "" {
		return nil, errors.New("afpacket source: no interface given")
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = DefaultBlockSize
	}
	if cfg.BlockTimeout <= 0 {
		cfg.BlockTimeout = DefaultBlockTimeout
	}
	if cfg.Fanout <= 0 {
		cfg.Fanout = runtime.NumCPU()
	}
	if cfg.NumBlocks <= 0 {
		ring := cfg.RingBytes
		if ring <= 0 {
			ring = datapath.AutoRingBytes(cfg.Fanout, sysmem.Available())
		}
		cfg.NumBlocks = max(2, ring/max(cfg.BlockSize, 1))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BlockSize < 16<<10 || cfg.BlockSize%os.Getpagesize() != 0 {
		return nil, fmt.Errorf("afpacket source: block size %d must be a multiple of the page size (%d) and at least 16 KiB", cfg.BlockSize, os.Getpagesize())
	}
	iface, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("afpacket source: find interface: %w", err)
	}
	if cfg.FanoutID == 0 {
		cfg.FanoutID = uint16(os.Getpid()) ^ uint16(iface.Index)<<8
	}
	filter, err := ignoreOutgoing()
	if err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, log: cfg.Logger.With("source", "afpacket", "interface", cfg.Interface)}
	fanout := 0
	if cfg.Fanout > 1 {
		// Hash keeps a flow on one socket; rollover sends a packet to the next socket
		// when this one's ring is full rather than dropping it (reassembly sorts out the
		// rare flow whose packets then come from two readers).
		fanout = (unix.PACKET_FANOUT_HASH|unix.PACKET_FANOUT_FLAG_ROLLOVER)<<16 | int(cfg.FanoutID)
	}
	for range cfg.Fanout {
		r, err := openRing(iface.Index, cfg.BlockSize, cfg.NumBlocks, cfg.BlockTimeout, filter, fanout)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("capture on %s: %w", cfg.Interface, err)
		}
		s.sockets = append(s.sockets, &socket{r: r})
	}
	s.log.Info("capturing", "sockets", cfg.Fanout, "ring_bytes", cfg.BlockSize*cfg.NumBlocks)
	return s, nil
}

// ignoreOutgoing is a classic BPF filter that drops the appliance's own transmissions
// (pkttype PACKET_OUTGOING) and accepts everything else whole.
func ignoreOutgoing() ([]bpf.RawInstruction, error) {
	const packetOutgoing = 4 // PACKET_OUTGOING in linux/if_packet.h
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: packetOutgoing, SkipTrue: 1},
		bpf.RetConstant{Val: 0x40000},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		return nil, fmt.Errorf("assemble outgoing filter: %w", err)
	}
	return prog, nil
}

// Name returns "afpacket".
func (s *Source) Name() string { return "afpacket" }

// Interface is the captured interface.
func (s *Source) Interface() string { return s.cfg.Interface }

// SourceStats reports the kernel's drops and ring freezes (refreshed every second while
// running).
func (s *Source) SourceStats() datapath.SourceStats {
	st := s.Stats()
	return datapath.SourceStats{
		Dropped:     map[string]uint64{datapath.DropPacketRingFull: st.Drops},
		RingFreezes: st.QueueFreezes,
	}
}

// Stats returns the counters summed over all sockets; kernel drop counts lag by up to a second.
func (s *Source) Stats() Stats {
	var st Stats
	for _, so := range s.sockets {
		st.Packets += so.packets.Load()
		st.Bytes += so.bytes.Load()
		st.Drops += so.drops.Load()
		st.QueueFreezes += so.freezes.Load()
		st.ReadErrors += so.readErrors.Load()
	}
	return st
}

// Close releases the rings; Run does this itself when it returns. Call it only when Run
// is not running.
func (s *Source) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	for _, so := range s.sockets {
		so.r.close()
	}
	return nil
}

// Run reads every ring in its own goroutine until ctx is cancelled, then closes them.
func (s *Source) Run(ctx context.Context, newHandler func() datapath.FrameHandler) error {
	if s.closed.Load() {
		return errors.New("afpacket source: already closed")
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stopped atomic.Bool
	stop := context.AfterFunc(ctx, func() { stopped.Store(true) })
	defer stop()

	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for _, so := range s.sockets {
		wg.Go(func() {
			if err := so.read(&stopped, newHandler()); err != nil {
				errOnce.Do(func() { firstErr = err })
				cancel()
			}
		})
	}
	wg.Wait()
	return firstErr
}

// read delivers frames from one ring until stopped is set.
func (so *socket) read(stopped *atomic.Bool, h datapath.FrameHandler) error {
	defer h.Flush()
	defer so.updateKernelStats()
	var (
		frame     datapath.Frame
		pending   bool
		lastFlush = time.Now().UnixNano()
		lastStats = lastFlush
	)
	deliver := func(data []byte, wire int, ts int64) {
		frame = datapath.Frame{Data: data, WireLen: wire, Timestamp: ts}
		h.HandleFrame(&frame)
	}
	for !stopped.Load() {
		b, ready := so.r.block()
		if !ready {
			if pending {
				h.Flush()
				pending = false
			}
			now := time.Now().UnixNano()
			lastFlush = now
			if now-lastStats >= int64(statsInterval) {
				so.updateKernelStats()
				lastStats = now
			}
			if err := so.r.wait(time.Now().Add(pollTimeout)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				so.readErrors.Add(1)
				return fmt.Errorf("wait for packet ring: %w", err)
			}
			continue
		}
		n, bytes := packets(b, &so.scratch, deliver)
		so.r.release(b)
		so.packets.Add(uint64(n))
		so.bytes.Add(uint64(bytes))
		pending = pending || n > 0
		// Under steady traffic the ring never runs dry: flush by the packets' own clock.
		if ts := frame.Timestamp; pending && ts-lastFlush >= int64(flushInterval) {
			h.Flush()
			pending = false
			lastFlush = ts
			if ts-lastStats >= int64(statsInterval) {
				so.updateKernelStats()
				lastStats = ts
			}
		}
	}
	return nil
}

// updateKernelStats adds PACKET_STATISTICS (which the kernel resets on every read) to the
// atomic counters.
func (so *socket) updateKernelStats() {
	drops, freezes, err := so.r.stats()
	if err != nil {
		return
	}
	so.drops.Add(drops)
	so.freezes.Add(freezes)
}
