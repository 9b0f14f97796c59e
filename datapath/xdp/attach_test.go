package xdp

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/metlo-labs/metlo-appliance/test/netnstest"
)

// TestOpenErrors checks the typed errors a capture=auto caller falls back on.
func TestOpenErrors(t *testing.T) {
	needBPF(t)
	l := netnstest.NewLab(t, "a", "b")
	l.Veth("a", "v0", "b", "v1", 0)

	open := func(cfg Config) (s *Source, err error) {
		err = l.Do("b", func() error { s, err = Open(cfg); return err })
		return s, err
	}
	if _, err := open(DefaultConfig("nosuch0")); !errors.Is(err, ErrNoInterface) {
		t.Errorf("missing interface: %v, want ErrNoInterface", err)
	}
	first, err := open(DefaultConfig("v1"))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if _, err := open(DefaultConfig("v1")); !errors.Is(err, ErrBusy) {
		t.Errorf("second attach: %v, want ErrBusy", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	bad := DefaultConfig("v1")
	bad.Ports = make([]uint16, 17)
	if _, err := open(bad); err == nil || !strings.Contains(err.Error(), "invalid xdp config") {
		t.Errorf("17 zero ports: %v, want a config error", err)
	}
}

// TestJumboMTU attaches at the 9001-byte MTU AWS mirrors use. The program is built with frags
// (xdp.frags), so drivers with multi-buffer XDP accept it; the test records what veth on this
// kernel does in each mode and, where attaching works, that a jumbo VXLAN frame arrives whole.
func TestJumboMTU(t *testing.T) {
	needBPF(t)
	for _, mode := range []Mode{ModeNative, ModeGeneric} {
		t.Run(string(mode), func(t *testing.T) {
			l := netnstest.NewLab(t, "a", "b")
			l.Veth("a", "v0", "b", "v1", 9001)
			l.In("a", "ip addr add 10.0.0.1/24 dev v0")
			l.In("b", "ip addr add 10.0.0.2/24 dev v1")
			cfg := DefaultConfig("v1")
			cfg.Mode = mode
			var src *Source
			err := l.Do("b", func() (err error) { src, err = Open(cfg); return err })
			if errors.Is(err, ErrMTUTooLarge) {
				t.Skipf("%s mode refuses mtu 9001 here (%v): use generic mode or a lower MTU", mode, err)
			}
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer src.Close()
			frames := &frameLog{}
			go src.Run(t.Context(), func() datapath.FrameHandler { return logHandler{frames} })

			inner := tcpFrame(t, clientV4, serverV4, 1, 80, strings.Repeat("J", 8900))
			var conn net.Conn
			if err := l.Do("a", func() (err error) { conn, err = net.Dial("udp", "10.0.0.2:4789"); return err }); err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(append(vxlanHeader(5, 0x08), inner...)); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(3 * time.Second)
			for time.Now().Before(deadline) {
				frames.mu.Lock()
				n := len(frames.frames)
				var got []byte
				if n > 0 {
					got = frames.frames[0].Data
				}
				frames.mu.Unlock()
				if n > 0 {
					if string(got) != string(inner) {
						t.Fatalf("jumbo frame: got %d bytes, want %d", len(got), len(inner))
					}
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			c, _ := src.Objects().CounterValues()
			t.Fatalf("no jumbo frame captured; counters %v", c)
		})
	}
}

// TestRingFullReportedBySource overflows a 4 KiB ring that nobody reads with real frames
// through an attached program: what did not fit is in SourceStats as ring_buffer_full.
func TestRingFullReportedBySource(t *testing.T) {
	needBPF(t)
	l := netnstest.NewLab(t, "a", "b")
	l.Veth("a", "v0", "b", "v1", 0)
	l.In("a", "ip addr add 10.0.0.1/24 dev v0")
	l.In("b", "ip addr add 10.0.0.2/24 dev v1")
	cfg := DefaultConfig("v1")
	cfg.RingBytes = 4096
	var src *Source
	if err := l.Do("b", func() (err error) { src, err = Open(cfg); return err }); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var conn net.Conn
	if err := l.Do("a", func() (err error) { conn, err = net.Dial("udp", "10.0.0.2:4789"); return err }); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	datagram := append(vxlanHeader(5, 0x08), tcpFrame(t, clientV4, serverV4, 1, 80, strings.Repeat("f", 900))...)
	const n = 20 // 1152-byte slots: 3 fit
	for range n {
		if _, err := conn.Write(datagram); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		c, _ := src.Objects().CounterValues()
		if c["vxlan"]+c["ringbuf_full"] >= n {
			st := src.SourceStats()
			if got := st.Dropped[datapath.DropRingBufferFull]; got != c["ringbuf_full"] || got < n-3 {
				t.Fatalf("SourceStats %v, counters %v: want ring_buffer_full = ringbuf_full >= %d", st, c, n-3)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("frames never reached the program: %v", c)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
