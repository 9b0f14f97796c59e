package xdp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/metlo-labs/metlo-appliance/test/netnstest"
)

// frameLog is a FrameHandler factory that keeps a copy of every frame delivered.
type frameLog struct {
	mu      sync.Mutex
	frames  []datapath.Frame
	flushes int
}

type logHandler struct{ log *frameLog }

func (h logHandler) HandleFrame(f *datapath.Frame) {
	c := *f
	c.Data = bytes.Clone(f.Data)
	h.log.mu.Lock()
	h.log.frames = append(h.log.frames, c)
	h.log.mu.Unlock()
}

func (h logHandler) Flush() {
	h.log.mu.Lock()
	h.log.flushes++
	h.log.mu.Unlock()
}

// streams reassembles the TCP payload of the frames per direction ("src:port>dst:port"),
// ordering by sequence number and dropping duplicates.
func (l *frameLog) streams(t *testing.T) map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	type seg struct {
		seq  uint32
		data []byte
	}
	flows := map[string][]seg{}
	for _, f := range l.frames {
		first := layers.LayerTypeEthernet
		if f.InnerIsIP {
			first = layers.LayerTypeIPv4
		}
		p := gopacket.NewPacket(f.Data, first, gopacket.NoCopy)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil || p.NetworkLayer() == nil || len(tcp.Payload) == 0 {
			continue
		}
		src, dst := p.NetworkLayer().NetworkFlow().Endpoints()
		key := fmt.Sprintf("%v:%d>%v:%d", src, tcp.SrcPort, dst, tcp.DstPort)
		flows[key] = append(flows[key], seg{tcp.Seq, tcp.Payload})
	}
	out := map[string]string{}
	for k, segs := range flows {
		sort.SliceStable(segs, func(i, j int) bool { return int32(segs[i].seq-segs[j].seq) < 0 })
		var b strings.Builder
		var next uint32
		for i, s := range segs {
			if i > 0 && int32(s.seq-next) < 0 {
				continue // duplicate (retransmission or the other direction's mirror copy)
			}
			b.Write(s.data)
			next = s.seq + uint32(len(s.data))
		}
		out[k] = b.String()
	}
	return out
}

// TestEndToEnd mirrors a real HTTP conversation with the kernel's own VXLAN device, then as raw
// copies, into a veth with the program attached, and checks the Source delivers every request.
func TestEndToEnd(t *testing.T) {
	needBPF(t)
	for _, mode := range []Mode{ModeNative, ModeGeneric} {
		t.Run(string(mode), func(t *testing.T) { testEndToEnd(t, mode) })
	}
}

func testEndToEnd(t *testing.T, mode Mode) {
	l := netnstest.NewLab(t, "cli", "srv", "app")
	// client <-> server, and a server-side link to the appliance carrying the mirror.
	l.Veth("cli", "cli0", "srv", "srv0", 0)
	l.Veth("srv", "mir0", "app", "col0", 0)
	l.In("cli", "ip addr add 10.10.1.1/24 dev cli0")
	l.In("srv", "ip addr add 10.10.1.2/24 dev srv0")
	l.In("srv", "ip addr add 10.10.2.1/24 dev mir0")
	l.In("app", "ip addr add 10.10.2.2/24 dev col0")
	l.In("srv", "ip link add vx0 type vxlan id 4242 remote 10.10.2.2 dstport 4789 dev mir0")
	netnstest.NoOffloads(t, l.NS("srv"), "vx0")
	l.In("srv", "ip link set vx0 up")
	l.In("srv", "tc qdisc add dev srv0 clsact")
	mirror := func(to string) {
		for _, dir := range []string{"ingress", "egress"} {
			l.In("srv", "tc filter del dev srv0 "+dir)
			l.In("srv", "tc filter add dev srv0 "+dir+" protocol ip u32 match ip protocol 6 0xff action mirred egress mirror dev "+to)
		}
	}

	var src *Source
	cfg := DefaultConfig("col0")
	cfg.Mode = mode
	cfg.RingBytes = 1 << 20
	if err := l.Do("app", func() (err error) { src, err = Open(cfg); return err }); err != nil {
		t.Fatalf("open: %v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			src.Close()
		}
	})
	if out := l.In("app", "ip link show col0"); !strings.Contains(out, "xdp") {
		t.Fatalf("no xdp program on col0 after Open:\n%s", out)
	}
	frames := &frameLog{}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- src.Run(ctx, func() datapath.FrameHandler { return logHandler{frames} }) }()

	// SSH-like traffic to the appliance itself must keep working while capture runs.
	echo := startEcho(t, l, "app", "10.10.2.2:2222")
	defer echo.Close()

	requests := startHTTP(t, l, "srv", "10.10.1.2:8080")
	client := httpClient(l, "cli")

	mirror("vx0")
	for i := range 10 {
		get(t, client, fmt.Sprintf("http://10.10.1.2:8080/api/vxlan/%d?page=%d", i, i))
	}
	checkEcho(t, l, "srv", "10.10.2.2:2222")
	mirror("mir0")
	for i := range 10 {
		get(t, client, fmt.Sprintf("http://10.10.1.2:8080/api/raw/%d?page=%d", i, i))
	}
	checkEcho(t, l, "srv", "10.10.2.2:2222")

	want := requests()
	if len(want) != 20 {
		t.Fatalf("server logged %d requests, want 20", len(want))
	}
	deadline := time.Now().Add(5 * time.Second)
	var missing []string
	for {
		missing = missingLines(frames.streams(t), want)
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Errorf("%d request lines never captured, e.g. %q", len(missing), missing[0])
	}

	frames.mu.Lock()
	encaps := map[datapath.Encap]int{}
	for _, f := range frames.frames {
		encaps[f.Encap]++
		if f.Encap == datapath.EncapVXLAN && f.Tunnel != 4242 {
			t.Errorf("vxlan frame with vni %d, want 4242", f.Tunnel)
		}
		if f.WireLen < len(f.Data) || f.Timestamp < time.Now().Add(-time.Minute).UnixNano() {
			t.Errorf("frame wire %d len %d ts %d", f.WireLen, len(f.Data), f.Timestamp)
			break
		}
	}
	frames.mu.Unlock()
	if encaps[datapath.EncapVXLAN] == 0 || encaps[datapath.EncapRaw] == 0 {
		t.Errorf("frames by encap %v, want both vxlan and raw", encaps)
	}
	counts, err := src.Objects().CounterValues()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mode %s: counters %v, frames by encap %v", mode, counts, encaps)
	if counts["passed"] == 0 || counts["ringbuf_full"] != 0 {
		t.Errorf("counters %v: want passed > 0 (echo, arp) and no ringbuf_full", counts)
	}

	cancel()
	select {
	case err := <-runErr:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	frames.mu.Lock()
	flushes := frames.flushes
	frames.mu.Unlock()
	if flushes == 0 {
		t.Error("handlers were never flushed")
	}
	if err := src.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	closed = true
	if out := l.In("app", "ip link show col0"); strings.Contains(out, "xdp") {
		t.Errorf("xdp program still attached after Close:\n%s", out)
	}
}

func missingLines(streams map[string]string, want []string) []string {
	var all strings.Builder
	for _, s := range streams {
		all.WriteString(s)
		all.WriteString("\n")
	}
	text := all.String()
	var missing []string
	for _, w := range want {
		if !strings.Contains(text, w+"\r\n") {
			missing = append(missing, w)
		}
	}
	return missing
}

// startHTTP serves on addr inside namespace ns and returns a func listing the request lines
// it logged.
func startHTTP(t *testing.T, l *netnstest.Lab, ns, addr string) func() []string {
	var ln net.Listener
	if err := l.Do(ns, func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var lines []string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		lines = append(lines, fmt.Sprintf("%s %s %s", r.Method, r.RequestURI, r.Proto))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"path":%q}`, r.URL.Path)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(lines)
	}
}

// httpClient dials from namespace ns.
func httpClient(l *netnstest.Lab, ns string) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = l.Do(ns, func() error {
				var d net.Dialer
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
}

func get(t *testing.T, c *http.Client, url string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("get %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("get %s: %s", url, resp.Status)
	}
}

// startEcho runs a line echo server on addr inside ns: the stand-in for SSH to the appliance.
func startEcho(t *testing.T, l *netnstest.Lab, ns, addr string) net.Listener {
	var ln net.Listener
	if err := l.Do(ns, func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln
}

func checkEcho(t *testing.T, l *netnstest.Lab, ns, addr string) {
	t.Helper()
	var c net.Conn
	if err := l.Do(ns, func() (err error) { c, err = net.DialTimeout("tcp", addr, 3*time.Second); return err }); err != nil {
		t.Fatalf("echo dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	msg := "SSH-2.0-probe\n"
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("echo write: %v", err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) || got != msg {
		t.Fatalf("echo read %q, %v; want %q", got, err, msg)
	}
}
