//go:build linux

package udpsrc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/metlo-labs/metlo-appliance/datapath"
)

// mmsghdr mirrors struct mmsghdr; Go's alignment adds the same tail padding as C.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// controlSize fits one SO_RXQ_OVFL message (a uint32) with room to spare.
var controlSize = unix.CmsgSpace(4) * 2

// reader drains one socket with recvmmsg into buffers it owns and reuses.
type reader struct {
	so      *socket
	rc      syscall.RawConn
	hdrs    []mmsghdr
	iovs    []unix.Iovec
	bufs    []byte                  // batch*maxDatagram bytes, one slot per datagram
	control []byte                  // batch*controlSize bytes
	names   []unix.RawSockaddrInet6 // each datagram's sender
	maxDgm  int
	accept  []netip.Prefix // nil: every sender

	handler datapath.FrameHandler
	frame   datapath.Frame
	pending bool // frames handed on since the last Flush

	// readFn is r.readBatch bound once, so RawConn.Read does not allocate a closure per call.
	readFn func(fd uintptr) bool
	err    error // set by readBatch for run

	lastData time.Time // when the last datagram arrived
	lingered bool      // readBatch found the queue empty while lingering: sleep, then look again
}

// Reader pacing, as for the XDP rings: while datagrams keep coming, a reader that empties
// its queue sleeps linger and drains what came meanwhile instead of waiting to be woken
// for nearly every datagram (15 us of CPU per datagram at 50 000/s, mostly wake-ups);
// after idleAfter without datagrams it waits to be woken, costing nothing while idle.
const (
	linger    = time.Millisecond
	idleAfter = 20 * time.Millisecond
)

func newReader(so *socket, batch, maxDgm int, accept []netip.Prefix) (*reader, error) {
	rc, err := so.conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("get raw udp socket: %w", err)
	}
	r := &reader{
		so:      so,
		rc:      rc,
		hdrs:    make([]mmsghdr, batch),
		iovs:    make([]unix.Iovec, batch),
		bufs:    make([]byte, batch*maxDgm),
		control: make([]byte, batch*controlSize),
		names:   make([]unix.RawSockaddrInet6, batch),
		maxDgm:  maxDgm,
		accept:  accept,
		frame:   datapath.Frame{TunnelPayload: true, Encap: so.encap},
	}
	for i := range r.hdrs {
		r.iovs[i].Base = &r.bufs[i*maxDgm]
		r.iovs[i].SetLen(maxDgm)
		h := &r.hdrs[i].hdr
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
		h.Control = &r.control[i*controlSize]
		h.SetControllen(controlSize)
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Namelen = unix.SizeofSockaddrInet6
	}
	r.readFn = r.readBatch
	return r, nil
}

// run delivers datagrams until the socket is closed.
func (r *reader) run(newHandler func() datapath.FrameHandler) error {
	r.handler = newHandler()
	defer r.handler.Flush()
	for {
		if r.lingered {
			time.Sleep(linger)
			r.lingered = false
		}
		r.err = nil
		err := r.rc.Read(r.readFn)
		if err == nil {
			err = r.err
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			r.so.stats.readErrors.Add(1)
			return fmt.Errorf("receive udp datagrams: %w", err)
		}
	}
}

// readBatch is the RawConn.Read callback: it drains the socket batch by batch and returns
// false (wait for readability) once the queue is empty, flushing the handler first because
// the input just went quiet.
func (r *reader) readBatch(fd uintptr) bool {
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])),
			uintptr(len(r.hdrs)), unix.MSG_DONTWAIT|unix.MSG_TRUNC, 0, 0)
		switch errno {
		case 0:
		case unix.EAGAIN:
			if r.pending {
				r.handler.Flush()
				r.pending = false
			}
			if time.Since(r.lastData) < idleAfter {
				r.lingered = true
				return true // back to run, which sleeps and reads again
			}
			return false
		case unix.EINTR:
			continue
		default:
			r.err = errno
			return true
		}
		r.deliver(int(n))
	}
}

// deliver hands on the first n datagrams of the batch and readies their headers for reuse.
func (r *reader) deliver(n int) {
	now := time.Now().UnixNano()
	var bytes, truncated, rejected, handed uint64
	for i := 0; i < n; i++ {
		m := &r.hdrs[i]
		if r.accept != nil && !r.accepted(i) {
			rejected++
			continue
		}
		handed++
		wire := int(m.len) // real datagram length thanks to MSG_TRUNC
		got := min(wire, r.maxDgm)
		if m.hdr.Flags&unix.MSG_TRUNC != 0 || wire > r.maxDgm {
			truncated++
		}
		r.frame.Data = r.bufs[i*r.maxDgm : i*r.maxDgm+got]
		r.frame.WireLen = wire
		r.frame.Timestamp = now
		r.handler.HandleFrame(&r.frame)
		bytes += uint64(got)
	}
	// The drop count is cumulative, so the batch's last datagram carries the newest value.
	if drops, ok := rxqOverflow(r.control[(n-1)*controlSize : (n-1)*controlSize+int(r.hdrs[n-1].hdr.Controllen)]); ok {
		r.so.stats.drops.Store(uint64(drops))
	}
	for i := 0; i < n; i++ {
		r.hdrs[i].hdr.SetControllen(controlSize)
		r.hdrs[i].hdr.Flags = 0
		r.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
	}
	if handed > 0 {
		r.pending = true
	}
	if rejected > 0 {
		r.so.stats.rejected.Add(rejected)
	}
	r.lastData = time.Unix(0, now)
	r.so.stats.packets.Add(handed)
	r.so.stats.bytes.Add(bytes)
	if truncated > 0 {
		r.so.stats.truncated.Add(truncated)
	}
}

// accepted reports whether datagram i's sender is in the accept list.
func (r *reader) accepted(i int) bool {
	sa := &r.names[i]
	var addr netip.Addr
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		addr = netip.AddrFrom4(sa4.Addr)
	case unix.AF_INET6:
		addr = netip.AddrFrom16(sa.Addr).Unmap()
	default:
		return false
	}
	for _, p := range r.accept {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// rxqOverflow finds the SO_RXQ_OVFL drop counter in a datagram's control data without
// allocating (unix.ParseSocketControlMessage would).
func rxqOverflow(b []byte) (uint32, bool) {
	hdrLen := unix.CmsgLen(0)
	for len(b) >= hdrLen {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		l := int(h.Len)
		if l < hdrLen || l > len(b) {
			return 0, false
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SO_RXQ_OVFL && l >= hdrLen+4 {
			return binary.NativeEndian.Uint32(b[hdrLen:]), true
		}
		b = b[min(unix.CmsgSpace(l-hdrLen), len(b)):]
	}
	return 0, false
}
