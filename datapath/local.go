package datapath

import (
	"net/netip"
	"sync/atomic"
)

// LocalSet is the host's own addresses as every decoder sees them: raw TCP to or from one of
// them is the appliance's own traffic (SSH, scrapes, exports) and never traced. Set replaces
// the whole set at once, so a decoder reads either the old set or the new one, and changes
// reach every source goroutine without locks.
type LocalSet struct{ p atomic.Pointer[localView] }

// localView is one immutable set, in the form Decode compares against.
type localView struct {
	addrs    [][16]byte
	prefixes []netip.Prefix // IPv4 ones as v4-mapped IPv6
}

// NewLocalSet returns a set holding addrs and prefixes.
func NewLocalSet(addrs []netip.Addr, prefixes []netip.Prefix) *LocalSet {
	l := &LocalSet{}
	l.Set(addrs, prefixes)
	return l
}

// Set replaces the set's contents.
func (l *LocalSet) Set(addrs []netip.Addr, prefixes []netip.Prefix) {
	v := &localView{}
	for _, a := range addrs {
		v.addrs = append(v.addrs, a.As16())
	}
	for _, p := range prefixes {
		bits := p.Bits()
		if p.Addr().Is4() {
			bits += 96
		}
		v.prefixes = append(v.prefixes, netip.PrefixFrom(netip.AddrFrom16(p.Addr().As16()), bits))
	}
	l.p.Store(v)
}

// Contains reports whether a (16-byte form, IPv4 v4-mapped) is in the set.
func (l *LocalSet) Contains(a [16]byte) bool {
	v := l.p.Load()
	for i := range v.addrs {
		if v.addrs[i] == a {
			return true
		}
	}
	for _, p := range v.prefixes {
		if p.Contains(netip.AddrFrom16(a)) {
			return true
		}
	}
	return false
}
