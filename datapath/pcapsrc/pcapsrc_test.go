package pcapsrc

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/metlo-labs/metlo-appliance/datapath"
)

var updateFixtures = flag.Bool("update", false, "rewrite the files in testdata/")

// recorder is a FrameHandler that copies every frame it sees.
type recorder struct {
	frames  []datapath.Frame
	flushes int
}

func (r *recorder) HandleFrame(f *datapath.Frame) {
	c := *f
	c.Data = append([]byte(nil), f.Data...)
	r.frames = append(r.frames, c)
}

func (r *recorder) Flush() { r.flushes++ }

// testPacket is one record of a generated capture.
type testPacket struct {
	data    []byte
	wireLen int
	ts      time.Time
}

// makePackets returns n Ethernet frames of varying length with distinct contents; every
// fifth one is captured truncated (wire length longer than the data).
func makePackets(n int) []testPacket {
	base := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)
	out := make([]testPacket, n)
	for i := range out {
		size := 60 + (i*97)%1455
		d := make([]byte, size)
		copy(d, []byte{0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00})
		for j := 14; j < size; j++ {
			d[j] = byte(i + j)
		}
		wl := size
		if i%5 == 4 {
			wl = size + 100
		}
		out[i] = testPacket{data: d, wireLen: wl, ts: base.Add(time.Duration(i) * 1001 * time.Microsecond)}
	}
	return out
}

func writePcap(t testing.TB, pkts []testPacket, nanos bool, link layers.LinkType) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if nanos {
		w = pcapgo.NewWriterNanos(&buf)
	}
	if err := w.WriteFileHeader(65535, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		ci := gopacket.CaptureInfo{Timestamp: p.ts, CaptureLength: len(p.data), Length: p.wireLen}
		if err := w.WritePacket(ci, p.data); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func writePcapng(t testing.TB, pkts []testPacket) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriter(&buf, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		ci := gopacket.CaptureInfo{Timestamp: p.ts, CaptureLength: len(p.data), Length: p.wireLen}
		if err := w.WritePacket(ci, p.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func runSource(t *testing.T, cfg Config) (*recorder, *Source, error) {
	t.Helper()
	src := New(cfg)
	rec := &recorder{}
	calls := 0
	err := src.Run(context.Background(), func() datapath.FrameHandler { calls++; return rec })
	if calls > 1 {
		t.Errorf("newHandler called %d times, want at most 1", calls)
	}
	return rec, src, err
}

func assertFrames(t *testing.T, got []datapath.Frame, want []testPacket, resolution time.Duration) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d frames, want %d", len(got), len(want))
	}
	for i, f := range got {
		w := want[i]
		if !bytes.Equal(f.Data, w.data) {
			t.Fatalf("frame %d: data differs (len %d, want %d)", i, len(f.Data), len(w.data))
		}
		if f.WireLen != w.wireLen {
			t.Errorf("frame %d: WireLen %d, want %d", i, f.WireLen, w.wireLen)
		}
		if wantTS := w.ts.Truncate(resolution).UnixNano(); f.Timestamp != wantTS {
			t.Errorf("frame %d: Timestamp %d, want %d", i, f.Timestamp, wantTS)
		}
		if f.TunnelPayload || f.Decapsulated || f.Encap != datapath.EncapRaw {
			t.Errorf("frame %d: unexpected tunnel flags %+v", i, f)
		}
	}
}

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadsFormats(t *testing.T) {
	pkts := makePackets(200)
	cases := []struct {
		name       string
		file       []byte
		resolution time.Duration
	}{
		{"pcap-micro", writePcap(t, pkts, false, layers.LinkTypeEthernet), time.Microsecond},
		{"pcap-nano", writePcap(t, pkts, true, layers.LinkTypeEthernet), time.Nanosecond},
		{"pcapng", writePcapng(t, pkts), time.Nanosecond},
		{"pcap-gzip", gzipBytes(t, writePcap(t, pkts, true, layers.LinkTypeEthernet)), time.Nanosecond},
		{"pcapng-gzip", gzipBytes(t, writePcapng(t, pkts)), time.Nanosecond},
	}
	for _, tc := range cases {
		t.Run(tc.name+"/file", func(t *testing.T) {
			rec, src, err := runSource(t, Config{Path: writeTemp(t, tc.name, tc.file)})
			if err != nil {
				t.Fatal(err)
			}
			assertFrames(t, rec.frames, pkts, tc.resolution)
			if rec.flushes != 1 {
				t.Errorf("Flush called %d times, want 1 (at the end)", rec.flushes)
			}
			st := src.Stats()
			var wantBytes uint64
			for _, p := range pkts {
				wantBytes += uint64(len(p.data))
			}
			if st.Packets != uint64(len(pkts)) || st.Bytes != wantBytes || st.ReadErrors != 0 {
				t.Errorf("stats %+v, want %d packets %d bytes 0 errors", st, len(pkts), wantBytes)
			}
		})
		t.Run(tc.name+"/stdin", func(t *testing.T) {
			// A plain io.Reader (not seekable) stands in for a pipe.
			rec, _, err := runSource(t, Config{Path: "-", Stdin: struct{ *bytes.Reader }{bytes.NewReader(tc.file)}})
			if err != nil {
				t.Fatal(err)
			}
			assertFrames(t, rec.frames, pkts, tc.resolution)
		})
	}
}

// fixturePackets are the records in testdata/*.pcap.
func fixturePackets() []testPacket { return makePackets(5) }

// TestFixtures writes testdata/ when run with -update, and checks the files are current.
func TestFixtures(t *testing.T) {
	full := writePcap(t, fixturePackets(), false, layers.LinkTypeEthernet)
	fixtures := map[string][]byte{
		// The last record's data is cut 10 bytes short, as when a capture is killed mid-write.
		"truncated.pcap": full[:len(full)-10],
		"linux_sll.pcap": writePcap(t, fixturePackets(), false, layers.LinkTypeLinuxSLL),
	}
	for name, want := range fixtures {
		p := filepath.Join("testdata", name)
		if *updateFixtures {
			if err := os.WriteFile(p, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%v (run go test -update to create it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run go test -update", p)
		}
	}
}

func TestTruncatedLastRecordIsCounted(t *testing.T) {
	rec, src, err := runSource(t, Config{Path: "testdata/truncated.pcap"})
	if err != nil {
		t.Fatalf("Run: %v, want nil for a truncated last record", err)
	}
	want := fixturePackets()
	assertFrames(t, rec.frames, want[:len(want)-1], time.Microsecond)
	if st := src.Stats(); st.ReadErrors != 1 || st.Packets != uint64(len(want)-1) {
		t.Errorf("stats %+v, want 1 read error and %d packets", st, len(want)-1)
	}
	if rec.flushes != 1 {
		t.Errorf("Flush called %d times, want 1", rec.flushes)
	}
}

func TestTruncatedInsideRecordHeader(t *testing.T) {
	full := writePcap(t, fixturePackets(), true, layers.LinkTypeEthernet)
	last := len(fixturePackets()[4].data)
	cut := full[:len(full)-last-8] // half of the last 16-byte record header remains
	rec, src, err := runSource(t, Config{Path: writeTemp(t, "cut.pcap", cut)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.frames) != 4 || src.Stats().ReadErrors != 1 {
		t.Errorf("got %d frames, %d read errors; want 4 and 1", len(rec.frames), src.Stats().ReadErrors)
	}
}

// Every link type the decoder reads is accepted and passed on with each frame.
func TestLinkTypes(t *testing.T) {
	cases := map[layers.LinkType]datapath.Link{
		layers.LinkTypeEthernet:  datapath.LinkEthernet,
		layers.LinkTypeLinuxSLL:  datapath.LinkSLL,
		layers.LinkTypeLinuxSLL2: datapath.LinkSLL2,
		layers.LinkTypeRaw:       datapath.LinkRawIP,
		layers.LinkTypeIPv4:      datapath.LinkRawIP,
		layers.LinkTypeIPv6:      datapath.LinkRawIP,
		layers.LinkTypeNull:      datapath.LinkNull,
		layers.LinkTypeLoop:      datapath.LinkNull,
		layers.LinkType(239):     datapath.LinkNFLOG,
	}
	for lt, want := range cases {
		t.Run(lt.String(), func(t *testing.T) {
			rec, _, err := runSource(t, Config{Path: "-", Stdin: bytes.NewReader(writePcap(t, fixturePackets(), false, lt))})
			if err != nil {
				t.Fatal(err)
			}
			if len(rec.frames) != len(fixturePackets()) {
				t.Fatalf("%d frames", len(rec.frames))
			}
			for _, f := range rec.frames {
				if f.Link != want {
					t.Fatalf("frame link %v, want %v", f.Link, want)
				}
			}
		})
	}
	// The committed fixture, a Linux cooked capture, which the first release refused.
	rec, _, err := runSource(t, Config{Path: "testdata/linux_sll.pcap"})
	if err != nil || len(rec.frames) != 5 || rec.frames[0].Link != datapath.LinkSLL {
		t.Fatalf("linux_sll.pcap: %v, %d frames", err, len(rec.frames))
	}
}

func TestRejectsUnreadableLinkType(t *testing.T) {
	_, _, err := runSource(t, Config{Path: "-", Stdin: bytes.NewReader(writePcap(t, fixturePackets(), false, layers.LinkTypeIEEE802_11))})
	var lte *datapath.LinkTypeError
	if !errors.As(err, &lte) || lte.Type != 105 || !strings.Contains(err.Error(), "(105)") || !strings.Contains(err.Error(), "Linux SLL2 (276)") {
		t.Fatalf("err = %v, want a LinkTypeError naming 802.11 (105) and the readable types", err)
	}
}

// A pcapng file may mix interfaces: each frame carries its interface's link type; an
// interface the decoder cannot read is reported once and its frames still counted.
func TestPcapngMixedInterfaces(t *testing.T) {
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriter(&buf, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	add := func(name string, lt layers.LinkType) int {
		id, err := w.AddInterface(pcapgo.NgInterface{Name: name, LinkType: lt, SnapLength: 65535})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	ifaces := []int{0, add("any", layers.LinkTypeLinuxSLL2), add("tun0", layers.LinkTypeRaw), add("wlan0mon", layers.LinkTypeIEEE80211Radio)}
	want := []datapath.Link{datapath.LinkEthernet, datapath.LinkSLL2, datapath.LinkRawIP, datapath.LinkUnknown}
	p := fixturePackets()[0]
	for round := range 2 {
		for _, id := range ifaces {
			ci := gopacket.CaptureInfo{Timestamp: p.ts.Add(time.Duration(round) * time.Second), CaptureLength: len(p.data), Length: len(p.data), InterfaceIndex: id}
			if err := w.WritePacket(ci, p.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	rec, _, err := runSource(t, Config{Path: "-", Stdin: &buf, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.frames) != 2*len(ifaces) {
		t.Fatalf("%d frames, want %d", len(rec.frames), 2*len(ifaces))
	}
	for i, f := range rec.frames {
		if f.Link != want[i%len(want)] {
			t.Errorf("frame %d: link %v, want %v", i, f.Link, want[i%len(want)])
		}
	}
	if n := strings.Count(logs.String(), "cannot read"); n != 1 || !strings.Contains(logs.String(), "interface=3") {
		t.Errorf("%d warnings, want one naming interface 3:\n%s", n, logs.String())
	}
}

func TestBadInput(t *testing.T) {
	cases := map[string]struct {
		data []byte
		want string
	}{
		"empty":        {nil, "read capture header"},
		"garbage":      {[]byte("GET / HTTP/1.1\r\n\r\n"), "unknown capture format"},
		"short header": {writePcap(t, nil, false, layers.LinkTypeEthernet)[:10], "read pcap header"},
		"bad gzip":     {[]byte{0x1f, 0x8b, 0, 0, 0, 0}, "gzip"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, err := runSource(t, Config{Path: "-", Stdin: bytes.NewReader(tc.data)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	if _, _, err := runSource(t, Config{Path: filepath.Join(t.TempDir(), "missing.pcap")}); err == nil || !strings.Contains(err.Error(), "open capture file") {
		t.Fatalf("missing file: err = %v", err)
	}
}

func TestCancelledContextStops(t *testing.T) {
	file := writePcap(t, makePackets(5000), true, layers.LinkTypeEthernet)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := &recorder{}
	err := New(Config{Path: "-", Stdin: bytes.NewReader(file)}).Run(ctx, func() datapath.FrameHandler { return rec })
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.frames) != 0 || rec.flushes != 1 {
		t.Errorf("got %d frames and %d flushes after cancel, want 0 and 1", len(rec.frames), rec.flushes)
	}
}

// counter is a FrameHandler that only counts, so allocation figures are the source's own.
type counter struct{ n, bytes int }

func (c *counter) HandleFrame(f *datapath.Frame) { c.n++; c.bytes += len(f.Data) }
func (c *counter) Flush()                        {}

func TestNoAllocationsPerPacket(t *testing.T) {
	const n = 20000
	for _, name := range []string{"pcap", "pcapng"} {
		file := writePcap(t, makePackets(n), true, layers.LinkTypeEthernet)
		if name == "pcapng" {
			file = writePcapng(t, makePackets(n))
		}
		allocs := testing.AllocsPerRun(3, func() {
			c := &counter{}
			if err := New(Config{Path: "-", Stdin: bytes.NewReader(file)}).Run(context.Background(), func() datapath.FrameHandler { return c }); err != nil || c.n != n {
				t.Fatalf("Run: %v, %d frames", err, c.n)
			}
		})
		// Setup (readers, buffers) costs a fixed few dozen; anything per packet would be >= n.
		if allocs > 100 {
			t.Errorf("%s: %.0f allocations for %d packets, want a constant setup cost", name, allocs, n)
		}
	}
}

func benchmarkRead(b *testing.B, file []byte, packets int) {
	b.SetBytes(int64(len(file)))
	b.ReportAllocs()
	for b.Loop() {
		c := &counter{}
		if err := New(Config{Path: "-", Stdin: bytes.NewReader(file)}).Run(context.Background(), func() datapath.FrameHandler { return c }); err != nil || c.n != packets {
			b.Fatalf("Run: %v, %d frames", err, c.n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*packets), "ns/packet")
}

func BenchmarkReadPcap(b *testing.B) {
	const n = 50000
	benchmarkRead(b, writePcap(b, makePackets(n), true, layers.LinkTypeEthernet), n)
}

func BenchmarkReadPcapng(b *testing.B) {
	const n = 50000
	benchmarkRead(b, writePcapng(b, makePackets(n)), n)
}

func BenchmarkReadPcapGzip(b *testing.B) {
	const n = 50000
	benchmarkRead(b, gzipBytes(b, writePcap(b, makePackets(n), true, layers.LinkTypeEthernet)), n)
}
