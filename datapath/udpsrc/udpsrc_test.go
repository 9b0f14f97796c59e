//go:build linux

package udpsrc

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metlo-labs/metlo-appliance/datapath"
)

// received is a copy of one delivered frame.
type received struct {
	encap   datapath.Encap
	data    []byte
	wireLen int
	ts      int64
	tunnel  bool
}

// sink collects frames from all of a source's goroutines.
type sink struct {
	mu       sync.Mutex
	frames   []received
	flushes  int
	handlers int
	changed  chan struct{}
}

func newSink() *sink { return &sink{changed: make(chan struct{}, 1)} }

type sinkHandler struct{ s *sink }

func (s *sink) newHandler() datapath.FrameHandler {
	s.mu.Lock()
	s.handlers++
	s.mu.Unlock()
	return sinkHandler{s}
}

func (h sinkHandler) HandleFrame(f *datapath.Frame) {
	h.s.mu.Lock()
	h.s.frames = append(h.s.frames, received{f.Encap, bytes.Clone(f.Data), f.WireLen, f.Timestamp, f.TunnelPayload})
	h.s.mu.Unlock()
	h.s.poke()
}

func (h sinkHandler) Flush() {
	h.s.mu.Lock()
	h.s.flushes++
	h.s.mu.Unlock()
	h.s.poke()
}

func (s *sink) poke() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// waitFor waits until cond holds (checked under the lock) or fails the test after 5 s.
func (s *sink) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		s.mu.Lock()
		ok := cond()
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-s.changed:
		case <-deadline:
			s.mu.Lock()
			defer s.mu.Unlock()
			t.Fatalf("timed out waiting for %s (have %d frames, %d flushes)", what, len(s.frames), s.flushes)
		}
	}
}

// start runs src in the background; the returned function cancels it and returns Run's error.
func start(t *testing.T, src *Source, s *sink) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, s.newHandler) }()
	stopped := false
	var runErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return within 5s of cancel")
			}
		}
		return runErr
	}
	t.Cleanup(func() { stop() })
	return stop
}

// vxlanDatagram builds a VXLAN header (I flag, VNI) followed by payload.
func vxlanDatagram(vni uint32, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	b[0] = 0x08
	binary.BigEndian.PutUint32(b[4:], vni<<8)
	return append(b, payload...)
}

// geneveDatagram builds a GENEVE base header for an Ethernet payload with one 8-byte option.
func geneveDatagram(vni uint32, payload []byte) []byte {
	b := make([]byte, 16, 16+len(payload))
	b[0] = 2 // version 0, option length 2 words
	binary.BigEndian.PutUint16(b[2:], 0x6558)
	binary.BigEndian.PutUint32(b[4:], vni<<8)
	binary.BigEndian.PutUint16(b[8:], 0x0108) // option class
	b[10], b[11] = 0x01, 1                    // type, length 1 word
	return append(b, payload...)
}

func send(t *testing.T, to *net.UDPAddr, msgs ...[]byte) {
	t.Helper()
	c, err := net.DialUDP("udp", nil, to)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, m := range msgs {
		if _, err := c.Write(m); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoopbackVXLANAndGENEVE(t *testing.T) {
	src, err := New(Config{BindAddr: "127.0.0.1", VXLANPorts: []int{0}, GENEVEPorts: []int{0}})
	if err != nil {
		t.Fatal(err)
	}
	addrs := src.LocalAddrs()
	if len(addrs) != 2 || addrs[0].Port == addrs[1].Port {
		t.Fatalf("LocalAddrs = %v, want two distinct ports", addrs)
	}
	s := newSink()
	stop := start(t, src, s)

	const n = 100
	want := map[string]datapath.Encap{}
	var vx, gn [][]byte
	for i := range n {
		p := []byte(fmt.Sprintf("inner-frame-%03d-%s", i, strings.Repeat("x", i)))
		v, g := vxlanDatagram(42, p), geneveDatagram(7, p)
		vx, gn = append(vx, v), append(gn, g)
		want[string(v)], want[string(g)] = datapath.EncapVXLAN, datapath.EncapGENEVE
	}
	before := time.Now().UnixNano()
	send(t, addrs[0], vx...)
	send(t, addrs[1], gn...)
	s.waitFor(t, "all datagrams", func() bool { return len(s.frames) == 2*n })
	s.waitFor(t, "a flush once the sockets are drained", func() bool { return s.flushes > 0 })

	s.mu.Lock()
	for _, f := range s.frames {
		encap, ok := want[string(f.data)]
		if !ok {
			t.Fatalf("unexpected or duplicate datagram %q", f.data)
		}
		delete(want, string(f.data))
		if f.encap != encap || !f.tunnel || f.wireLen != len(f.data) || f.ts < before {
			t.Errorf("frame %q: encap %v tunnel %v wireLen %d ts %d; want %v true %d >= %d",
				f.data[:12], f.encap, f.tunnel, f.wireLen, f.ts, encap, len(f.data), before)
		}
	}
	handlers := s.handlers
	s.mu.Unlock()
	if handlers != 2 {
		t.Errorf("newHandler called %d times, want one per socket (2)", handlers)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	st := src.Stats()
	if st.Packets != 2*n || st.Truncated != 0 || st.Drops != 0 || st.ReadErrors != 0 {
		t.Errorf("stats %+v", st)
	}
	// Run closed the sockets: the ports are free again.
	c, err := net.ListenUDP("udp", addrs[0])
	if err != nil {
		t.Fatalf("port still bound after Run returned: %v", err)
	}
	c.Close()
}

func TestDualStackDefaultBind(t *testing.T) {
	src, err := New(Config{VXLANPorts: []int{0}, GENEVEPorts: []int{}})
	if err != nil {
		t.Fatal(err)
	}
	s := newSink()
	start(t, src, s)
	port := src.LocalAddrs()[0].Port
	send(t, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}, vxlanDatagram(1, []byte("over-v4")))
	if c, err := net.DialUDP("udp6", nil, &net.UDPAddr{IP: net.IPv6loopback, Port: port}); err == nil {
		c.Write(vxlanDatagram(1, []byte("over-v6")))
		c.Close()
		s.waitFor(t, "v4 and v6 datagrams", func() bool { return len(s.frames) == 2 })
	} else {
		t.Logf("no IPv6 loopback (%v): checked IPv4 only", err)
		s.waitFor(t, "v4 datagram", func() bool { return len(s.frames) == 1 })
	}
}

func TestTruncatedDatagramIsCounted(t *testing.T) {
	src, err := New(Config{BindAddr: "127.0.0.1", VXLANPorts: []int{0}, GENEVEPorts: []int{}, MaxDatagram: 128})
	if err != nil {
		t.Fatal(err)
	}
	s := newSink()
	start(t, src, s)
	big := vxlanDatagram(5, bytes.Repeat([]byte{0xab}, 492))
	send(t, src.LocalAddrs()[0], big, vxlanDatagram(5, []byte("small")))
	s.waitFor(t, "two datagrams and a flush", func() bool { return len(s.frames) == 2 && s.flushes > 0 })
	s.mu.Lock()
	f := s.frames[0]
	s.mu.Unlock()
	if f.wireLen != 500 || !bytes.Equal(f.data, big[:128]) {
		t.Errorf("truncated frame: wireLen %d len %d, want 500 and the first 128 bytes", f.wireLen, len(f.data))
	}
	if st := src.Stats(); st.Truncated != 1 || st.Packets != 2 || st.Bytes != 128+13 {
		t.Errorf("stats %+v, want 1 truncated, 2 packets, 141 bytes", st)
	}
}

func TestKernelDropsAreReported(t *testing.T) {
	src, err := New(Config{BindAddr: "127.0.0.1", VXLANPorts: []int{0}, GENEVEPorts: []int{}, RecvBuffer: 4096})
	if err != nil {
		t.Fatal(err)
	}
	// Overfill the tiny queue before anything reads it.
	const burst = 500
	msg := vxlanDatagram(9, bytes.Repeat([]byte{1}, 1000))
	for range burst {
		send(t, src.LocalAddrs()[0], msg)
	}
	s := newSink()
	start(t, src, s)
	s.waitFor(t, "the queued datagrams", func() bool { return len(s.frames) > 0 && s.flushes > 0 })
	// The drop counter travels with the next datagram that is queued.
	s.mu.Lock()
	flushes := s.flushes
	s.mu.Unlock()
	send(t, src.LocalAddrs()[0], vxlanDatagram(9, []byte("last")))
	// The flush after it means the batch, and its counters, are complete.
	s.waitFor(t, "the last datagram and a flush", func() bool {
		return string(s.frames[len(s.frames)-1].data[8:]) == "last" && s.flushes > flushes
	})
	st := src.Stats()
	if st.Drops == 0 || st.Drops+st.Packets != burst+1 {
		t.Errorf("stats %+v: want drops > 0 and drops+packets = %d", st, burst+1)
	}
	if got := src.SourceStats().Dropped[datapath.DropSocketOverflow]; got != st.Drops {
		t.Errorf("SourceStats reports %d socket overflows, Stats %d", got, st.Drops)
	}
}

func TestReusePortSockets(t *testing.T) {
	src, err := New(Config{BindAddr: "127.0.0.1", VXLANPorts: []int{0}, GENEVEPorts: []int{0}, SocketsPerPort: 2})
	if err != nil {
		t.Fatal(err)
	}
	addrs := src.LocalAddrs()
	if len(addrs) != 4 || addrs[0].Port != addrs[1].Port || addrs[2].Port != addrs[3].Port {
		t.Fatalf("LocalAddrs = %v, want 2 sockets on each of 2 ports", addrs)
	}
	s := newSink()
	start(t, src, s)
	const senders = 40
	for i := range senders { // distinct source ports spread over both sockets
		send(t, addrs[0], vxlanDatagram(uint32(i), []byte("v")))
		send(t, addrs[2], geneveDatagram(uint32(i), []byte("g")))
	}
	s.waitFor(t, "all datagrams", func() bool { return len(s.frames) == 2*senders })
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.handlers != 4 {
		t.Errorf("newHandler called %d times, want 4", s.handlers)
	}
	for _, f := range s.frames {
		if (f.encap == datapath.EncapVXLAN) != (f.data[len(f.data)-1] == 'v') {
			t.Errorf("datagram %q delivered as %v", f.data, f.encap)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	busy, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cases := map[string]struct {
		cfg  Config
		want string
	}{
		"no ports":     {Config{VXLANPorts: []int{}, GENEVEPorts: []int{}}, "no ports"},
		"duplicate":    {Config{VXLANPorts: []int{4789}, GENEVEPorts: []int{4789}}, "configured twice"},
		"out of range": {Config{VXLANPorts: []int{70000}}, "out of range"},
		"port in use":  {Config{BindAddr: "127.0.0.1", VXLANPorts: []int{busy.LocalAddr().(*net.UDPAddr).Port}, GENEVEPorts: []int{}}, "listen on udp"},
		"bad address":  {Config{BindAddr: "192.0.2.1", VXLANPorts: []int{0}}, "listen on udp"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			src, err := New(tc.cfg)
			if err == nil {
				src.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// countHandler counts frames without copying, so benchmarks measure the source.
type countHandler struct{ n int }

func (c *countHandler) HandleFrame(*datapath.Frame) { c.n++ }
func (c *countHandler) Flush()                      {}

// BenchmarkReceive measures the receive path alone: each round queues a burst with the
// timer stopped, then drains it through recvmmsg into the handler.
func BenchmarkReceive(b *testing.B) {
	src, err := New(Config{BindAddr: "127.0.0.1", VXLANPorts: []int{0}, GENEVEPorts: []int{}, RecvBuffer: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	so := src.sockets[0]
	r, err := newReader(so, DefaultBatchSize, DefaultMaxDatagram, nil)
	if err != nil {
		b.Fatal(err)
	}
	h := &countHandler{}
	r.handler = h
	c, err := net.DialUDP("udp", nil, src.LocalAddrs()[0])
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := vxlanDatagram(1, bytes.Repeat([]byte{0x42}, 1400))
	const burst = 1024
	drain := func(fd uintptr) { r.readBatch(fd) }
	b.ReportAllocs()
	b.SetBytes(burst * int64(len(msg)))
	for b.Loop() {
		b.StopTimer()
		for range burst {
			c.Write(msg)
		}
		h.n = 0
		b.StartTimer()
		for h.n < burst {
			r.rc.Control(drain)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*burst), "ns/packet")
}

// TestAcceptSources has datagrams arrive from accepted and other senders, over IPv4 and on
// a dual-stack socket over IPv6: only the accepted senders' reach the handler, the others
// are counted as rejected, in order, nothing lost on either side.
func TestAcceptSources(t *testing.T) {
	src, err := New(Config{VXLANPorts: []int{0}, GENEVEPorts: []int{},
		AcceptSources: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32"), netip.MustParsePrefix("::1/128")}})
	if err != nil {
		t.Fatal(err)
	}
	s := newSink()
	stop := start(t, src, s)
	port := src.LocalAddrs()[0].Port
	from := func(local net.IP, to net.IP, payload string) {
		t.Helper()
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: local}, &net.UDPAddr{IP: to, Port: port})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(vxlanDatagram(1, []byte(payload))); err != nil {
			t.Fatal(err)
		}
	}
	want := 0
	for i := range 3 {
		from(net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 1), fmt.Sprintf("stranger %d", i))
		from(net.IPv4(127, 0, 0, 2), net.IPv4(127, 0, 0, 1), fmt.Sprintf("mirror %d", i))
		want++
	}
	if c, err := net.DialUDP("udp6", nil, &net.UDPAddr{IP: net.IPv6loopback, Port: port}); err == nil {
		c.Write(vxlanDatagram(1, []byte("mirror v6")))
		c.Close()
		want++
	}
	s.waitFor(t, "the accepted datagrams", func() bool { return len(s.frames) == want })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, f := range s.frames {
		if !bytes.HasPrefix(f.data[8:], []byte("mirror")) {
			t.Errorf("a stranger's datagram was taken: %q", f.data[8:])
		}
	}
	if st := src.Stats(); st.Rejected != 3 || st.Packets != uint64(want) {
		t.Errorf("stats %+v: want 3 rejected, %d taken", st, want)
	}
	if got := src.SourceStats().Rejected[datapath.RejectSource]; got != 3 {
		t.Errorf("SourceStats rejected %d, want 3", got)
	}
}
