//go:build linux

// Package udpsrc receives VXLAN and GENEVE tunnels on plain UDP sockets (no root needed):
// each datagram becomes a frame whose Data starts at the tunnel header.
package udpsrc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/metlo-labs/metlo-appliance/datapath"
)

// Defaults for the zero Config.
const (
	DefaultVXLANPort   = 4789    // IANA VXLAN port, used by AWS VPC Traffic Mirroring
	DefaultGENEVEPort  = 6081    // IANA GENEVE port, used by AWS Gateway Load Balancer
	DefaultRecvBuffer  = 8 << 20 // bytes of kernel receive queue per socket
	DefaultBatchSize   = 64      // datagrams per recvmmsg call
	DefaultMaxDatagram = 9216    // bytes per datagram buffer: a 9001-byte MTU packet's payload fits
)

// Config says where a Source listens. The zero value listens on all addresses on the
// default VXLAN and GENEVE ports.
type Config struct {
	// BindAddr is the local address to bind; "" binds all addresses (IPv4 and IPv6).
	BindAddr string
	// AcceptSources, when set, are the only sender addresses whose datagrams are taken;
	// the others are read, dropped and counted (Stats.Rejected).
	AcceptSources []netip.Prefix
	// VXLANPorts receive VXLAN; nil means {DefaultVXLANPort}, an empty non-nil slice none.
	// Port 0 picks a free port (tests).
	VXLANPorts []int
	// GENEVEPorts receive GENEVE; nil means {DefaultGENEVEPort}, an empty non-nil slice none.
	GENEVEPorts []int
	// SocketsPerPort > 1 opens that many SO_REUSEPORT sockets per port, each read by its
	// own goroutine; 0 means 1.
	SocketsPerPort int
	// RecvBuffer is the socket receive buffer in bytes (SO_RCVBUFFORCE when permitted,
	// else SO_RCVBUF capped by net.core.rmem_max); 0 means DefaultRecvBuffer.
	RecvBuffer int
	// BatchSize is the number of datagrams read per system call; 0 means DefaultBatchSize.
	BatchSize int
	// MaxDatagram is the buffer size per datagram; longer ones are truncated and counted.
	// 0 means DefaultMaxDatagram.
	MaxDatagram int
	// Logger receives setup messages; nil means slog.Default().
	Logger *slog.Logger
}

// Stats are a Source's counters, summed over its sockets.
type Stats struct {
	Packets    uint64 // datagrams handed to handlers
	Bytes      uint64 // datagram bytes handed to handlers (after truncation)
	Truncated  uint64 // datagrams longer than MaxDatagram
	Drops      uint64 // datagrams the kernel dropped for a full receive queue (SO_RXQ_OVFL)
	Rejected   uint64 // datagrams from a sender outside AcceptSources
	ReadErrors uint64 // failed receive calls
}

// Source reads tunnel datagrams from UDP sockets; it implements datapath.Source.
type Source struct {
	cfg     Config
	log     *slog.Logger
	sockets []*socket
	closed  atomic.Bool
}

var _ datapath.StatsSource = (*Source)(nil)

// socket is one bound UDP socket with the encapsulation its port carries.
type socket struct {
	conn  *net.UDPConn
	encap datapath.Encap
	stats socketStats
}

// socketStats are one socket's counters, written only by its reader goroutine.
type socketStats struct {
	packets, bytes, truncated, drops, readErrors, rejected atomic.Uint64
}

// New validates cfg and binds every socket, so a bad port or address fails here rather
// than in Run. Run (or Close) releases them.
func New(cfg Config) (*Source, error) {
	if cfg.VXLANPorts == nil {
		cfg.VXLANPorts = []int{DefaultVXLANPort}
	}
	if cfg.GENEVEPorts == nil {
		cfg.GENEVEPorts = []int{DefaultGENEVEPort}
	}
	cfg.SocketsPerPort = orDefault(cfg.SocketsPerPort, 1)
	cfg.RecvBuffer = orDefault(cfg.RecvBuffer, DefaultRecvBuffer)
	cfg.BatchSize = orDefault(cfg.BatchSize, DefaultBatchSize)
	cfg.MaxDatagram = orDefault(cfg.MaxDatagram, DefaultMaxDatagram)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.VXLANPorts)+len(cfg.GENEVEPorts) == 0 {
		return nil, errors.New("udp source: no ports configured")
	}
	seen := map[int]bool{}
	for _, p := range append(append([]int(nil), cfg.VXLANPorts...), cfg.GENEVEPorts...) {
		if p < 0 || p > 65535 {
			return nil, fmt.Errorf("udp source: port %d out of range", p)
		}
		if p != 0 && seen[p] {
			return nil, fmt.Errorf("udp source: port %d configured twice", p)
		}
		seen[p] = true
	}
	s := &Source{cfg: cfg, log: cfg.Logger.With("source", "udp")}
	for _, pe := range []struct {
		ports []int
		encap datapath.Encap
	}{{cfg.VXLANPorts, datapath.EncapVXLAN}, {cfg.GENEVEPorts, datapath.EncapGENEVE}} {
		for _, port := range pe.ports {
			if err := s.listenPort(port, pe.encap); err != nil {
				s.Close()
				return nil, err
			}
		}
	}
	var vxlan, geneve []string
	for _, so := range s.sockets {
		a := so.conn.LocalAddr().String()
		if so.encap == datapath.EncapVXLAN {
			vxlan = append(vxlan, a)
		} else {
			geneve = append(geneve, a)
		}
	}
	accept := "any"
	if len(cfg.AcceptSources) > 0 {
		accept = fmt.Sprint(cfg.AcceptSources)
	}
	s.log.Info("listening for tunnels", "vxlan", vxlan, "geneve", geneve, "accept_sources", accept, "recv_buffer", s.cfg.RecvBuffer)
	if len(cfg.AcceptSources) == 0 && cfg.BindAddr == "" {
		s.log.Warn("tunnel ports are open to any sender on every address: anyone who can reach them can inject traffic that becomes traces; set accept-sources and udp-bind")
	}
	return s, nil
}

// unmapped returns the prefixes with IPv4-mapped IPv6 ones turned into IPv4, as senders
// are compared unmapped; nil for none.
func unmapped(ps []netip.Prefix) []netip.Prefix {
	if len(ps) == 0 {
		return nil
	}
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(0, p.Bits()-96))
		}
		out = append(out, p.Masked())
	}
	return out
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// listenPort binds SocketsPerPort sockets to port; with port 0 the later sockets share
// the port the kernel picked for the first.
func (s *Source) listenPort(port int, encap datapath.Encap) error {
	reuse := s.cfg.SocketsPerPort > 1
	for i := 0; i < s.cfg.SocketsPerPort; i++ {
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) { serr = s.setSockopts(int(fd), reuse) })
			if err != nil {
				return err
			}
			return serr
		}}
		addr := net.JoinHostPort(s.cfg.BindAddr, strconv.Itoa(port))
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			return fmt.Errorf("listen on udp %s: %w", addr, err)
		}
		conn := pc.(*net.UDPConn)
		s.sockets = append(s.sockets, &socket{conn: conn, encap: encap})
		port = conn.LocalAddr().(*net.UDPAddr).Port
	}
	return nil
}

// setSockopts sizes the receive queue and asks for drop counts in each datagram's
// control data.
func (s *Source) setSockopts(fd int, reuse bool) error {
	if reuse {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fmt.Errorf("set SO_REUSEPORT: %w", err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, s.cfg.RecvBuffer); err != nil {
		// Without CAP_NET_ADMIN the kernel caps the size at net.core.rmem_max.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, s.cfg.RecvBuffer); err != nil {
			return fmt.Errorf("set SO_RCVBUF: %w", err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1); err != nil {
		s.log.Warn("kernel drop counts unavailable", "error", err)
	}
	return nil
}

// Name returns "udp".
func (s *Source) Name() string { return "udp" }

// SourceStats reports the datagrams the kernel dropped for full receive queues.
func (s *Source) SourceStats() datapath.SourceStats {
	st := s.Stats()
	return datapath.SourceStats{
		Dropped:  map[string]uint64{datapath.DropSocketOverflow: st.Drops},
		Rejected: map[string]uint64{datapath.RejectSource: st.Rejected},
	}
}

// LocalAddrs returns the bound address of every socket, in Config order.
func (s *Source) LocalAddrs() []*net.UDPAddr {
	out := make([]*net.UDPAddr, len(s.sockets))
	for i, so := range s.sockets {
		out[i] = so.conn.LocalAddr().(*net.UDPAddr)
	}
	return out
}

// Stats returns the counters summed over all sockets.
func (s *Source) Stats() Stats {
	var st Stats
	for _, so := range s.sockets {
		st.Packets += so.stats.packets.Load()
		st.Bytes += so.stats.bytes.Load()
		st.Truncated += so.stats.truncated.Load()
		st.Drops += so.stats.drops.Load()
		st.ReadErrors += so.stats.readErrors.Load()
		st.Rejected += so.stats.rejected.Load()
	}
	return st
}

// Close releases the sockets; Run does this itself when it returns.
func (s *Source) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	var errs []error
	for _, so := range s.sockets {
		errs = append(errs, so.conn.Close())
	}
	return errors.Join(errs...)
}

// Run reads every socket in its own goroutine until ctx is cancelled, then closes them.
func (s *Source) Run(ctx context.Context, newHandler func() datapath.FrameHandler) error {
	if s.closed.Load() {
		return errors.New("udp source: already closed")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	defer s.Close()

	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	readers := make([]*reader, len(s.sockets))
	for i, so := range s.sockets {
		r, err := newReader(so, s.cfg.BatchSize, s.cfg.MaxDatagram, unmapped(s.cfg.AcceptSources))
		if err != nil {
			return err
		}
		readers[i] = r
	}
	for _, r := range readers {
		wg.Go(func() {
			if err := r.run(newHandler); err != nil && ctx.Err() == nil {
				errOnce.Do(func() { firstErr = err })
				cancel()
			}
		})
	}
	wg.Wait()
	return firstErr
}
