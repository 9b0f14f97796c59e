//go:build linux

package localaddr

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/metlo-labs/metlo-appliance/test/netnstest"
)

func TestSetContainsAndDiff(t *testing.T) {
	s := Set{
		Addrs:    []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("2001:db8::1")},
		Prefixes: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/24")},
	}
	for a, want := range map[string]bool{
		"10.0.0.1": true, "::ffff:10.0.0.1": true, "2001:db8::1": true, "10.9.0.200": true,
		"10.0.0.2": false, "2001:db8::2": false, "10.9.1.1": false,
	} {
		if got := s.Contains(netip.MustParseAddr(a)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", a, got, want)
		}
	}
	o := Set{Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.7")}}
	added, removed := s.Diff(o)
	if len(added) != 1 || added[0] != "10.0.0.7" || len(removed) != 2 {
		t.Errorf("diff: added %v removed %v", added, removed)
	}
	if s.Equal(o) || !s.Equal(s) {
		t.Error("Equal")
	}
}

// TestWatcherFollowsChanges adds and removes IPv4 and IPv6 addresses and local routes in a
// fresh namespace and checks that every change reaches onChange, once per change.
func TestWatcherFollowsChanges(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.Add(t, "mula")
	netnstest.Veth(t, ns, "d0", ns, "d1", 0) // this kernel has no dummy devices
	netnstest.IP(t, "-n", ns, "addr", "add", "10.50.0.1/24", "dev", "d0")

	var w *Watcher
	if err := netnstest.Do(ns, func() (err error) { w, err = Open(); return err }); err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	initial := w.Current()
	for _, a := range []string{"10.50.0.1", "127.0.0.1", "::1"} {
		if !initial.Contains(netip.MustParseAddr(a)) {
			t.Errorf("initial set %v lacks %s", initial, a)
		}
	}
	for _, p := range initial.Prefixes {
		if p.Addr().IsLoopback() {
			t.Errorf("loopback prefix %s in the set", p)
		}
	}

	sets := make(chan Set, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, func(s Set) { sets <- s }) }()

	waitFor := func(what string, cond func(Set) bool) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case s := <-sets:
				if cond(s) {
					if !cond(w.Current()) {
						t.Fatalf("%s: Current() disagrees with the last set", what)
					}
					return
				}
			case <-deadline:
				t.Fatalf("timed out waiting for %s; current %v", what, w.Current())
			}
		}
	}
	has := func(a string) func(Set) bool {
		return func(s Set) bool { return s.Contains(netip.MustParseAddr(a)) }
	}
	not := func(f func(Set) bool) func(Set) bool { return func(s Set) bool { return !f(s) } }

	netnstest.IP(t, "-n", ns, "addr", "add", "10.50.0.77/24", "dev", "d0")
	waitFor("a secondary IPv4 address", has("10.50.0.77"))
	netnstest.IP(t, "-n", ns, "addr", "add", "2001:db8:50::99/64", "dev", "d0", "nodad")
	waitFor("a new IPv6 address", has("2001:db8:50::99"))
	netnstest.IP(t, "-n", ns, "route", "add", "local", "10.60.0.0/24", "dev", "lo")
	waitFor("an AnyIP local route", func(s Set) bool {
		return s.Contains(netip.MustParseAddr("10.60.0.200")) && len(s.Prefixes) == 1
	})
	netnstest.IP(t, "-n", ns, "route", "add", "local", "10.70.0.5/32", "dev", "d0")
	waitFor("a /32 local route (how guest agents route load-balancer addresses)", has("10.70.0.5"))
	netnstest.IP(t, "-n", ns, "addr", "del", "10.50.0.77/24", "dev", "d0")
	waitFor("the secondary address gone", not(has("10.50.0.77")))
	netnstest.IP(t, "-n", ns, "route", "del", "local", "10.60.0.0/24", "dev", "lo")
	waitFor("the local route gone", not(has("10.60.0.200")))

	// A main-table route is not a local address: no new set.
	for len(sets) > 0 {
		<-sets
	}
	netnstest.IP(t, "-n", ns, "route", "add", "10.80.0.0/16", "dev", "d0")
	select {
	case s := <-sets:
		t.Errorf("a main-table route produced a new set %v", s)
	case <-time.After(300 * time.Millisecond):
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// TestCloseStopsRun checks that Close wakes a Run blocked on the socket.
func TestCloseStopsRun(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.Add(t, "mulc")
	var w *Watcher
	if err := netnstest.Do(ns, func() (err error) { w, err = Open(); return err }); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background(), func(Set) {}) }()
	time.Sleep(50 * time.Millisecond)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after Close: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
