//go:build linux

// Package localaddr follows the host's own addresses live through rtnetlink: every address
// on every interface plus the local routes (AnyIP ranges, load-balancer addresses a guest
// agent routes to the host). Raw capture takes TCP not addressed to the host, so it must
// know every such address the moment it appears, or the appliance's own connections to it
// (SSH, health checks, exports) would be captured and dropped.
package localaddr

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Set is one view of the host's own addresses.
type Set struct {
	// Addrs are single addresses (interface addresses and local routes of full length),
	// sorted, IPv4 unmapped.
	Addrs []netip.Addr
	// Prefixes are local routes covering more than one address, sorted; loopback ranges
	// (127.0.0.0/8) are left out: no NIC delivers them.
	Prefixes []netip.Prefix
}

// Contains reports whether a is one of the set's addresses or inside one of its prefixes.
func (s Set) Contains(a netip.Addr) bool {
	a = a.Unmap()
	if _, ok := slices.BinarySearchFunc(s.Addrs, a, netip.Addr.Compare); ok {
		return true
	}
	for _, p := range s.Prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Equal reports whether s and o hold the same addresses and prefixes.
func (s Set) Equal(o Set) bool {
	return slices.Equal(s.Addrs, o.Addrs) && slices.Equal(s.Prefixes, o.Prefixes)
}

// Diff lists what o (the newer set) adds to s and what it removes, addresses and prefixes
// as strings for a log line.
func (s Set) Diff(o Set) (added, removed []string) {
	for _, a := range o.Addrs {
		if !slices.Contains(s.Addrs, a) {
			added = append(added, a.String())
		}
	}
	for _, p := range o.Prefixes {
		if !slices.Contains(s.Prefixes, p) {
			added = append(added, p.String())
		}
	}
	for _, a := range s.Addrs {
		if !slices.Contains(o.Addrs, a) {
			removed = append(removed, a.String())
		}
	}
	for _, p := range s.Prefixes {
		if !slices.Contains(o.Prefixes, p) {
			removed = append(removed, p.String())
		}
	}
	return added, removed
}

// Watcher follows the addresses of the network namespace it was opened in.
type Watcher struct {
	ev  *os.File // subscribed to address and route notifications, non-blocking
	req int      // dump requests, blocking
	seq uint32

	mu  sync.Mutex
	cur Set

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool
}

// List returns the current addresses of this thread's network namespace once.
func List() (Set, error) {
	w, err := Open()
	if err != nil {
		return Set{}, err
	}
	defer w.Close()
	return w.Current(), nil
}

// Open subscribes to address and route changes in the calling thread's network namespace,
// then lists the current addresses: a change racing with the listing is seen again as a
// notification, so nothing falls between the two.
func Open() (*Watcher, error) {
	groups := uint32(unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR | unix.RTMGRP_IPV4_ROUTE | unix.RTMGRP_IPV6_ROUTE)
	ev, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink socket: %w", err)
	}
	if err := unix.Bind(ev, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(ev)
		return nil, fmt.Errorf("subscribe to address changes: %w", err)
	}
	// Address storms (hundreds of changes at once) must not overflow the queue; ENOBUFS
	// is handled anyway (a full re-list).
	_ = unix.SetsockoptInt(ev, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	req, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		unix.Close(ev)
		return nil, fmt.Errorf("open rtnetlink socket: %w", err)
	}
	if err := unix.Bind(req, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(ev)
		unix.Close(req)
		return nil, fmt.Errorf("bind rtnetlink socket: %w", err)
	}
	w := &Watcher{ev: os.NewFile(uintptr(ev), "rtnetlink"), req: req}
	if w.cur, err = w.list(); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// Current returns the latest set.
func (w *Watcher) Current() Set {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur
}

// Close stops Run and releases the sockets; later calls do nothing.
func (w *Watcher) Close() error {
	w.closeOnce.Do(func() {
		w.closed.Store(true)
		w.closeErr = errors.Join(w.ev.Close(), unix.Close(w.req))
	})
	return w.closeErr
}

// Run calls onChange with the whole new set after every change to the host's addresses or
// local routes, until ctx is cancelled or the watcher is closed.
func (w *Watcher) Run(ctx context.Context, onChange func(Set)) error {
	// A deadline in the past wakes the blocked read without closing the socket.
	stop := context.AfterFunc(ctx, func() { _ = w.ev.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	rc, err := w.ev.SyscallConn()
	if err != nil {
		return fmt.Errorf("rtnetlink socket: %w", err)
	}
	buf := make([]byte, 64<<10)
	for {
		var relevant bool
		var rerr error
		// Read every queued notification, then re-list once: a burst of changes costs one
		// listing.
		err := rc.Read(func(fd uintptr) bool {
			read := false
			for {
				n, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
				switch {
				case err == unix.EAGAIN:
					return read
				case err == unix.EINTR:
					continue
				case err == unix.ENOBUFS: // notifications were lost: re-list
					relevant, read = true, true
					continue
				case err != nil:
					rerr = err
					return true
				}
				read = true
				if notificationMatters(buf[:n]) {
					relevant = true
				}
			}
		})
		if err != nil {
			if ctx.Err() != nil || w.closed.Load() {
				return nil
			}
			return fmt.Errorf("read address changes: %w", err)
		}
		if rerr != nil {
			return fmt.Errorf("read address changes: %w", rerr)
		}
		if !relevant {
			continue
		}
		set, err := w.list()
		if err != nil {
			return err
		}
		w.mu.Lock()
		changed := !set.Equal(w.cur)
		w.cur = set
		w.mu.Unlock()
		if changed {
			onChange(set)
		}
	}
}

// notificationMatters reports whether a batch of notifications touches addresses or local
// routes (route changes in the main table do not).
func notificationMatters(b []byte) bool {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return true // unparseable: re-list to be safe
	}
	for _, m := range msgs {
		switch m.Header.Type {
		case unix.RTM_NEWADDR, unix.RTM_DELADDR:
			return true
		case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
			if len(m.Data) >= unix.SizeofRtMsg && localRouteType(m.Data[7]) {
				return true
			}
		}
	}
	return false
}

func localRouteType(t uint8) bool { return t == unix.RTN_LOCAL || t == unix.RTN_ANYCAST }

// list dumps addresses and local routes.
func (w *Watcher) list() (Set, error) {
	var addrs []netip.Addr
	var prefixes []netip.Prefix
	err := w.dump(unix.RTM_GETADDR, unix.SizeofIfAddrmsg, func(m *syscall.NetlinkMessage) {
		if m.Header.Type != unix.RTM_NEWADDR {
			return
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(m)
		if err != nil {
			return
		}
		var local, address netip.Addr
		for _, a := range attrs {
			ip, ok := netip.AddrFromSlice(a.Value)
			if !ok {
				continue
			}
			switch a.Attr.Type {
			case unix.IFA_LOCAL:
				local = ip
			case unix.IFA_ADDRESS:
				address = ip
			}
		}
		// On point-to-point links IFA_ADDRESS is the peer and IFA_LOCAL ours.
		if local.IsValid() {
			addrs = append(addrs, local.Unmap())
		} else if address.IsValid() {
			addrs = append(addrs, address.Unmap())
		}
	})
	if err != nil {
		return Set{}, err
	}
	err = w.dump(unix.RTM_GETROUTE, unix.SizeofRtMsg, func(m *syscall.NetlinkMessage) {
		if m.Header.Type != unix.RTM_NEWROUTE || len(m.Data) < unix.SizeofRtMsg {
			return
		}
		family, dstLen, table, typ := m.Data[0], int(m.Data[1]), uint32(m.Data[4]), m.Data[7]
		if !localRouteType(typ) {
			return
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(m)
		if err != nil {
			return
		}
		var dst netip.Addr
		for _, a := range attrs {
			switch a.Attr.Type {
			case unix.RTA_DST:
				dst, _ = netip.AddrFromSlice(a.Value)
			case unix.RTA_TABLE:
				if len(a.Value) == 4 {
					table = binary.NativeEndian.Uint32(a.Value)
				}
			}
		}
		// Only the local table: policy-routing tables such as a transparent proxy's
		// "local 0.0.0.0/0" apply to marked packets alone.
		if table != unix.RT_TABLE_LOCAL || !dst.IsValid() || dstLen == 0 {
			return
		}
		dst = dst.Unmap()
		if (family == unix.AF_INET) != dst.Is4() {
			return
		}
		p := netip.PrefixFrom(dst, dstLen).Masked()
		switch {
		case dstLen == dst.BitLen():
			addrs = append(addrs, dst)
		case p.Addr().IsLoopback():
		default:
			prefixes = append(prefixes, p)
		}
	})
	if err != nil {
		return Set{}, err
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	slices.SortFunc(prefixes, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return Set{Addrs: slices.Compact(addrs), Prefixes: slices.Compact(prefixes)}, nil
}

// dump sends one dump request (family AF_UNSPEC, a zeroed header of hdrLen bytes) and hands
// every reply message to fn.
func (w *Watcher) dump(typ uint16, hdrLen int, fn func(*syscall.NetlinkMessage)) error {
	w.seq++
	req := make([]byte, unix.SizeofNlMsghdr+hdrLen)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], typ)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], w.seq)
	if err := unix.Sendto(w.req, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("list local addresses: %w", err)
	}
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(w.req, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("list local addresses: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("list local addresses: %w", err)
		}
		for i := range msgs {
			m := &msgs[i]
			if m.Header.Seq != w.seq {
				continue // a reply to an earlier, abandoned request
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
						return fmt.Errorf("list local addresses: %w", syscall.Errno(-errno))
					}
				}
				return nil
			default:
				fn(m)
			}
		}
	}
}
