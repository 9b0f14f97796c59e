//go:build linux

package afpacket

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/metlo-labs/metlo-appliance/test/netnstest"
)

const testEtherType = 0x88b5 // IEEE local experimental: nothing else on the link uses it

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testFrame builds an Ethernet frame of size bytes carrying a direction marker and seq.
func testFrame(marker string, seq uint32, size int) []byte {
	f := make([]byte, size)
	copy(f, []byte{0x02, 0, 0, 0, 0, 0xaa, 0x02, 0, 0, 0, 0, 0xbb})
	binary.BigEndian.PutUint16(f[12:], testEtherType)
	copy(f[14:], marker)
	binary.BigEndian.PutUint32(f[17:], seq)
	for i := 21; i < size; i++ {
		f[i] = byte(seq) ^ byte(i)
	}
	return f
}

// sendRaw transmits frames on ifname through an AF_PACKET socket; call it inside inNetns.
func sendRaw(ifname string, frames [][]byte) error {
	tx, err := openSender(ifname)
	if err != nil {
		return err
	}
	defer tx.close()
	return tx.send(frames)
}

// sender is a transmit-only AF_PACKET socket; it stays in the namespace it was opened in.
type sender struct {
	fd int
	sa *unix.SockaddrLinklayer
}

func openSender(ifname string) (*sender, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0) // protocol 0: transmit only
	if err != nil {
		return nil, err
	}
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &sender{fd: fd, sa: &unix.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: 0xb588}}, nil // htons(testEtherType)
}

func (s *sender) send(frames [][]byte) error {
	for _, f := range frames {
		if err := unix.Sendto(s.fd, f, 0, s.sa); err != nil {
			return err
		}
	}
	return nil
}

func (s *sender) close() { unix.Close(s.fd) }

var promiscRE = regexp.MustCompile(`promiscuity (\d+)`)

// promiscuity returns the interface's promiscuous-mode reference count.
func promiscuity(t testing.TB, ns, dev string) int {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-d", "link", "show", "dev", dev).CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show: %v: %s", err, out)
	}
	m := promiscRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no promiscuity in %s", out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// vethPair creates namespaces capture and peer joined by veth "cap0" <-> "peer0" at MTU 9000.
func vethPair(t testing.TB) (capNS, peerNS string) {
	netnstest.Require(t)
	capNS, peerNS = netnstest.Add(t, "mucap"), netnstest.Add(t, "mupeer")
	netnstest.Veth(t, capNS, "cap0", peerNS, "peer0", 9000)
	return capNS, peerNS
}

// collector keeps copies of the test frames from every handler.
type collector struct {
	mu       sync.Mutex
	in       map[uint32][]received
	out      int
	handlers int
	flushes  atomic.Int64
	flushedN atomic.Int64 // len(in) at the latest Flush
}

type received struct {
	data    []byte
	wireLen int
	ts      int64
}

type collectorHandler struct{ c *collector }

func (c *collector) newHandler() datapath.FrameHandler {
	c.mu.Lock()
	c.handlers++
	c.mu.Unlock()
	return collectorHandler{c}
}

func (h collectorHandler) HandleFrame(f *datapath.Frame) {
	d := f.Data
	if len(d) < 21 || binary.BigEndian.Uint16(d[12:]) != testEtherType {
		return // IPv6 neighbour discovery and other link chatter
	}
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	switch string(d[14:17]) {
	case "IN ":
		seq := binary.BigEndian.Uint32(d[17:])
		h.c.in[seq] = append(h.c.in[seq], received{bytes.Clone(d), f.WireLen, f.Timestamp})
	case "OUT":
		h.c.out++
	}
}

func (h collectorHandler) Flush() {
	h.c.flushes.Add(1)
	h.c.flushedN.Store(int64(h.c.count()))
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.in)
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCaptureOnVeth(t *testing.T) {
	capNS, peerNS := vethPair(t)
	if p := promiscuity(t, capNS, "cap0"); p != 0 {
		t.Fatalf("promiscuity %d before capture, want 0", p)
	}
	var src *Source
	var err error
	netnstest.Run(t, capNS, func() { src, err = New(Config{Interface: "cap0", Fanout: 2, Logger: quiet}) })
	if err != nil {
		t.Fatal(err)
	}
	if p := promiscuity(t, capNS, "cap0"); p != 2 {
		t.Errorf("promiscuity %d while capturing with 2 sockets, want 2", p)
	}

	col := &collector{in: map[uint32][]received{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, col.newHandler) }()
	defer cancel()

	const n = 300
	var in, out [][]byte
	for i := range uint32(n) {
		size := 60 + int(i*131)%(9014-60) // up to a full 9000-byte-MTU frame
		if i == n-1 {
			size = 9014
		}
		in = append(in, testFrame("IN ", i, size))
	}
	for i := range uint32(50) {
		out = append(out, testFrame("OUT", i, 200))
	}
	before := time.Now().UnixNano()
	var sendErr error
	// The capture side's own transmissions first: they must not show up.
	netnstest.Run(t, capNS, func() { sendErr = sendRaw("cap0", out) })
	if sendErr != nil {
		t.Fatal(sendErr)
	}
	netnstest.Run(t, peerNS, func() { sendErr = sendRaw("peer0", in) })
	if sendErr != nil {
		t.Fatal(sendErr)
	}
	waitUntil(t, "every frame from the peer", func() bool { return col.count() == n })
	// An idle ring flushes the handlers after the poll timeout; by then any duplicate or
	// outgoing copy would have surfaced too.
	waitUntil(t, "a flush while the ring is idle", func() bool { return col.flushedN.Load() == n })
	after := time.Now().UnixNano()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of cancel")
	}

	col.mu.Lock()
	defer col.mu.Unlock()
	for i, want := range in {
		got := col.in[uint32(i)]
		if len(got) != 1 {
			t.Fatalf("frame %d arrived %d times, want once", i, len(got))
		}
		if !bytes.Equal(got[0].data, want) || got[0].wireLen != len(want) {
			t.Fatalf("frame %d: %d bytes (wire %d), want %d identical bytes", i, len(got[0].data), got[0].wireLen, len(want))
		}
		if ts := got[0].ts; ts < before || ts > after {
			t.Errorf("frame %d: timestamp %d outside [%d, %d]", i, ts, before, after)
		}
	}
	if col.out != 0 {
		t.Errorf("captured %d of the capture side's own outgoing frames, want 0", col.out)
	}
	if col.handlers != 2 {
		t.Errorf("newHandler called %d times, want 2 (one per fanout socket)", col.handlers)
	}
	if st := src.Stats(); st.Packets < n || st.Bytes == 0 || st.Drops != 0 || st.ReadErrors != 0 {
		t.Errorf("stats %+v, want >= %d packets and no drops or errors", st, n)
	}
	if p := promiscuity(t, capNS, "cap0"); p != 0 {
		t.Errorf("promiscuity %d after Run returned, want 0 (restored)", p)
	}
}

func TestKernelDropsAreCounted(t *testing.T) {
	capNS, peerNS := vethPair(t)
	var src *Source
	var err error
	// The smallest ring (16 KiB x 2 blocks) overflows at once while nobody reads it.
	netnstest.Run(t, capNS, func() {
		src, err = New(Config{Interface: "cap0", Fanout: 1, BlockSize: 16 << 10, NumBlocks: 2, Logger: quiet})
	})
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for i := range uint32(200) {
		frames = append(frames, testFrame("IN ", i, 1000))
	}
	var sendErr error
	netnstest.Run(t, peerNS, func() { sendErr = sendRaw("peer0", frames) })
	if sendErr != nil {
		t.Fatal(sendErr)
	}
	col := &collector{in: map[uint32][]received{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, col.newHandler) }()
	waitUntil(t, "the frames that fit", func() bool { return col.count() > 0 && col.flushes.Load() > 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := src.Stats()
	got := uint64(col.count())
	// Link chatter (IPv6 neighbour discovery) can take ring space too, hence >=.
	if st.Drops == 0 || st.Drops+got < 200 || st.Drops > 200 {
		t.Errorf("stats %+v with %d test frames received: want drops > 0 and drops+received >= 200", st, got)
	}
	if ss := src.SourceStats(); ss.Dropped[datapath.DropPacketRingFull] != st.Drops || ss.RingFreezes != st.QueueFreezes {
		t.Errorf("SourceStats %+v, want the kernel's %d drops and %d freezes", ss, st.Drops, st.QueueFreezes)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := map[string]struct {
		cfg  Config
		want string
	}{
		"no interface":      {Config{}, "no interface"},
		"small block":       {Config{Interface: "lo", BlockSize: 4096}, "block size"},
		"unaligned block":   {Config{Interface: "lo", BlockSize: 20000}, "block size"},
		"missing interface": {Config{Interface: "nosuchif0"}, "find interface"},
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

// countHandler counts frames without copying so the benchmark measures capture.
type countHandler struct{ n *atomic.Int64 }

func (c countHandler) HandleFrame(*datapath.Frame) { c.n.Add(1) }
func (c countHandler) Flush()                      {}

// BenchmarkCaptureVeth blasts 1000-byte frames from the peer namespace and reports the
// capture's ns/packet (the sender shares the CPUs, so this is an upper bound) and drops.
func BenchmarkCaptureVeth(b *testing.B) {
	capNS, peerNS := vethPair(b)
	var src *Source
	var err error
	netnstest.Run(b, capNS, func() { src, err = New(Config{Interface: "cap0", Fanout: 1, Logger: quiet}) })
	if err != nil {
		b.Fatal(err)
	}
	var got atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, func() datapath.FrameHandler { return countHandler{&got} }) }()
	frames := make([][]byte, 1000)
	for i := range frames {
		frames[i] = testFrame("IN ", uint32(i), 1000)
	}
	var tx *sender
	netnstest.Run(b, peerNS, func() { tx, err = openSender("peer0") })
	if err != nil {
		b.Fatal(err)
	}
	defer tx.close()
	b.SetBytes(1000)
	start := time.Now()
	for sent := 0; sent < b.N; {
		batch := frames[:min(len(frames), b.N-sent)]
		if err := tx.send(batch); err != nil {
			b.Fatal(err)
		}
		sent += len(batch)
	}
	deadline := time.Now().Add(5 * time.Second)
	for got.Load()+int64(src.Stats().Drops) < int64(b.N) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	cancel()
	<-done
	st := src.Stats()
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N), "ns/packet")
	b.ReportMetric(float64(st.Drops), "drops")
}

// vlanCollector keeps the frames that carry the test marker behind an 802.1Q tag.
type vlanCollector struct {
	mu     sync.Mutex
	frames []received
}

func (c *vlanCollector) HandleFrame(f *datapath.Frame) {
	d := f.Data
	if len(d) < 25 || binary.BigEndian.Uint16(d[12:]) != 0x8100 || binary.BigEndian.Uint16(d[16:]) != testEtherType {
		return
	}
	c.mu.Lock()
	c.frames = append(c.frames, received{bytes.Clone(d), f.WireLen, f.Timestamp})
	c.mu.Unlock()
}
func (c *vlanCollector) Flush() {}

// TestVLANTagIsRestored sends 802.1Q-tagged frames: the kernel hands the tag to the ring
// beside the frame (VLAN offload), and the source must put it back, byte for byte.
func TestVLANTagIsRestored(t *testing.T) {
	capNS, peerNS := vethPair(t)
	var src *Source
	var err error
	netnstest.Run(t, capNS, func() { src, err = New(Config{Interface: "cap0", Fanout: 1, Logger: quiet}) })
	if err != nil {
		t.Fatal(err)
	}
	col := &vlanCollector{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, func() datapath.FrameHandler { return col }) }()
	var frames [][]byte
	for i := range uint32(20) {
		plain := testFrame("IN ", i, 200+int(i))
		tagged := append(bytes.Clone(plain[:12]), 0x81, 0x00, 0x20|byte(i>>8), byte(i+7)) // PCP 1, VID i+7
		frames = append(frames, append(tagged, plain[12:]...))
	}
	var sendErr error
	netnstest.Run(t, peerNS, func() { sendErr = sendRaw("peer0", frames) })
	if sendErr != nil {
		t.Fatal(sendErr)
	}
	waitUntil(t, "the tagged frames", func() bool { col.mu.Lock(); defer col.mu.Unlock(); return len(col.frames) == len(frames) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, got := range col.frames {
		if !bytes.Equal(got.data, frames[i]) || got.wireLen != len(frames[i]) {
			t.Fatalf("frame %d: got % x (wire %d), want % x", i, got.data[:20], got.wireLen, frames[i][:20])
		}
	}
}
