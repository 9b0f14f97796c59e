package xdp

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/metlo-labs/metlo-appliance/test/netnstest"
)

// countingHandler counts what one reader goroutine delivers.
type countingHandler struct {
	mu            *sync.Mutex
	frames, bytes *int
}

func (h countingHandler) HandleFrame(f *datapath.Frame) {
	h.mu.Lock()
	*h.frames++
	*h.bytes += len(f.Data)
	h.mu.Unlock()
}

func (h countingHandler) Flush() {}

// BenchmarkLiveReplay replays a VXLAN capture with tcpreplay --topspeed into a veth whose peer
// has the program attached natively, with the Source's readers consuming the rings, and
// reports the offered packet rate, the captured rate and ring-buffer drops.
func BenchmarkLiveReplay(b *testing.B) {
	needBPF(b)
	if _, err := exec.LookPath("tcpreplay"); err != nil {
		b.Skip("needs tcpreplay: ", err)
	}
	for _, size := range []int{64, 1514} {
		b.Run(fmt.Sprintf("vxlan/%dB", size), func(b *testing.B) { benchLiveReplay(b, size) })
	}
}

func benchLiveReplay(b *testing.B, size int) {
	const flows, loops = 1000, 200
	pcapPath := filepath.Join(b.TempDir(), "vxlan.pcap")
	writeVXLANPcap(b, pcapPath, flows, size)

	l := netnstest.NewLab(b, "gen", "app")
	l.Veth("gen", "gen0", "app", "col0", 1600)
	l.In("app", "ip addr add 10.0.0.2/24 dev col0")

	var src *Source
	cfg := DefaultConfig("col0")
	cfg.Logger = slog.New(slog.DiscardHandler)
	if err := l.Do("app", func() (err error) { src, err = Open(cfg); return err }); err != nil {
		b.Fatalf("open: %v", err)
	}
	defer src.Close()
	var mu sync.Mutex
	var frames, bytes int
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() {
		runDone <- src.Run(ctx, func() datapath.FrameHandler { return countingHandler{&mu, &frames, &bytes} })
	}()

	before, _ := src.Objects().CounterValues()
	var offered float64
	start := time.Now()
	b.ResetTimer()
	for range b.N {
		out := l.In("gen", fmt.Sprintf("tcpreplay --topspeed --loop=%d -i gen0 %s", loops, pcapPath))
		offered = parsePPS(b, out)
	}
	b.StopTimer()
	elapsed := time.Since(start)
	time.Sleep(200 * time.Millisecond) // let the readers finish the rings
	cancel()
	if err := <-runDone; err != nil {
		b.Fatal(err)
	}
	after, _ := src.Objects().CounterValues()
	sent := b.N * flows * loops
	mu.Lock()
	delivered := frames
	mu.Unlock()
	full := after["ringbuf_full"] - before["ringbuf_full"]
	if got := after["vxlan"] - before["vxlan"]; got != uint64(delivered) {
		b.Errorf("kernel captured %d, readers delivered %d", got, delivered)
	}
	b.ReportMetric(offered, "offered_pps")
	b.ReportMetric(float64(delivered)/elapsed.Seconds(), "captured_pps")
	b.ReportMetric(float64(full), "ringbuf_full")
	b.ReportMetric(float64(sent-delivered-int(full)), "lost_before_xdp")
}

var ppsRE = regexp.MustCompile(`Rated: [0-9.]+ Bps, [0-9.]+ Mbps, ([0-9.]+) pps`)

func parsePPS(b *testing.B, out string) float64 {
	m := ppsRE.FindStringSubmatch(out)
	if m == nil {
		b.Fatalf("no rate in tcpreplay output:\n%s", out)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// writeVXLANPcap writes flows VXLAN frames whose inner frames are size bytes, one per flow.
func writeVXLANPcap(b *testing.B, path string, flows, size int) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		b.Fatal(err)
	}
	hdr := len(tcpFrame(b, clientV4, serverV4, 1, 80, ""))
	payload := strings.Repeat("p", size-hdr)
	for i := range flows {
		inner := tcpFrame(b, clientV4, serverV4, uint16(10000+i), 80, payload)
		frame := vxlanFrame(b, mirrorV4, applianceV4, 4242, inner)
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, int64(i)), CaptureLength: len(frame), Length: len(frame)}
		if err := w.WritePacket(ci, frame); err != nil {
			b.Fatal(err)
		}
	}
}
