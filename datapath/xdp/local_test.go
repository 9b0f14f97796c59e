package xdp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/metlo-labs/metlo-appliance/test/netnstest"
)

// TestRawModeFollowsNewAddresses attaches the program in raw mode (which takes TCP not
// addressed to the host), then gives the host new IPv4 and IPv6 addresses and local routes
// and connects to each from a client namespace, as SSH or a health check would. Each
// connection must complete on its first SYN (the dial timeout is below the kernel's 1 s
// retransmission), and the program must not have taken a single raw frame. With addresses
// read once at start, these connections time out while the collector runs.
func TestRawModeFollowsNewAddresses(t *testing.T) {
	needBPF(t)
	for _, mode := range []Mode{ModeNative, ModeGeneric} {
		t.Run(string(mode), func(t *testing.T) { testRawModeFollowsNewAddresses(t, mode) })
	}
}

func testRawModeFollowsNewAddresses(t *testing.T, mode Mode) {
	l := netnstest.NewLab(t, "cli", "app")
	l.Veth("cli", "cli0", "app", "col0", 0)
	l.In("cli", "ip addr add 10.20.0.1/24 dev cli0")
	l.In("cli", "ip addr add fd20::1/64 dev cli0 nodad")
	l.In("app", "ip addr add 10.20.0.2/24 dev col0")
	l.In("app", "ip addr add fd20::2/64 dev col0 nodad")
	l.In("cli", "ip route add 10.30.0.0/24 via 10.20.0.2")
	l.In("cli", "ip route add fd30::/64 via fd20::2")

	cfg := DefaultConfig("col0") // raw mode, local addresses followed live
	cfg.Mode = mode
	cfg.RingBytes = 1 << 20
	var src *Source
	if err := l.Do("app", func() (err error) { src, err = Open(cfg); return err }); err != nil {
		t.Fatalf("open: %v", err)
	}
	defer src.Close()
	frames := &frameLog{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go src.Run(ctx, func() datapath.FrameHandler { return logHandler{frames} })

	var ln net.Listener
	if err := l.Do("app", func() (err error) { ln, err = net.Listen("tcp", ":2222"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()

	connect := func(addr string) {
		t.Helper()
		var c net.Conn
		err := l.Do("cli", func() (err error) {
			c, err = net.DialTimeout("tcp", net.JoinHostPort(addr, "2222"), 800*time.Millisecond)
			return err
		})
		if err != nil {
			c, _ := src.Objects().CounterValues()
			t.Fatalf("connect to %s while capturing: %v (xdp counters %v, local %v)", addr, err, c, src.Objects().Local())
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(c, "hello %s\n", addr)
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "hello "+addr+"\n" {
			t.Fatalf("echo via %s: %q, %v", addr, line, err)
		}
	}
	learned := func(a string) {
		t.Helper()
		addr := netip.MustParseAddr(a)
		for deadline := time.Now().Add(3 * time.Second); !src.Objects().Local().Contains(addr); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s never reached the program's local set %v", a, src.Objects().Local())
			}
		}
	}

	connect("10.20.0.2")
	connect("fd20::2")
	for _, c := range []struct{ cmd, dial string }{
		{"ip addr add 10.20.0.77/24 dev col0", "10.20.0.77"},      // a secondary IPv4 address
		{"ip addr add fd20::77/64 dev col0 nodad", "fd20::77"},    // a new IPv6 address
		{"ip route add local 10.30.0.0/24 dev lo", "10.30.0.5"},   // an AnyIP range
		{"ip route add local fd30::/64 dev lo", "fd30::5"},        // an IPv6 AnyIP range
		{"ip route add local 10.40.0.9/32 dev col0", "10.40.0.9"}, // a load-balancer address routed to the host
	} {
		if c.dial == "10.40.0.9" {
			l.In("cli", "ip route add 10.40.0.9/32 via 10.20.0.2")
		}
		l.In("app", c.cmd)
		learned(c.dial)
		connect(c.dial)
	}
	counts, err := src.Objects().CounterValues()
	if err != nil {
		t.Fatal(err)
	}
	if counts["raw"] != 0 || counts["passed"] == 0 {
		t.Errorf("counters %v: the host's own connections were captured (raw > 0) or nothing passed", counts)
	}
	frames.mu.Lock()
	n := len(frames.frames)
	frames.mu.Unlock()
	if n != 0 {
		t.Errorf("%d frames captured; the host's own traffic must never be", n)
	}

	// A removed address is no longer the host's: mirrored TCP to it is captured again.
	l.In("app", "ip addr del 10.20.0.77/24 dev col0")
	for deadline := time.Now().Add(3 * time.Second); src.Objects().Local().Contains(netip.MustParseAddr("10.20.0.77")); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("removed address still in the program's local set")
		}
	}
}
