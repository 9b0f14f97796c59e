package http2

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// serverFrames is what a server sends on a busy connection: per stream a response
// HEADERS block, 1 KB of DATA and a WINDOW_UPDATE, with a PING now and then. It returns
// the bytes and the number of frames.
func serverFrames(streams int) ([]byte, int) {
	c := newConn(nil, Config{})
	sv := c.peers[server]
	frames := 0
	body := []byte(strings.Repeat(`{"id":1,"v":"x"},`, 60))
	for i := range streams {
		sid := uint32(2*i + 1)
		c.headers(server, sid, false, ":status", "200", "content-type", "application/json", "server", "bench",
			"content-length", "1020", "x-request-id", fmt.Sprintf("req-%d", i))
		sv.fr.WriteData(sid, true, body)
		sv.fr.WriteWindowUpdate(0, 1020)
		frames += 3
		if i%10 == 0 {
			sv.fr.WritePing(false, [8]byte{byte(i)})
			frames++
		}
	}
	return c.pending(server), frames
}

// BenchmarkFramesLibrary reads the frames with golang.org/x/net/http2's Framer (frames
// reused, headers merged and decoded by hpack.Decoder): parsing and HPACK alone, from
// contiguous bytes.
func BenchmarkFramesLibrary(b *testing.B) {
	stream, frames := serverFrames(100)
	rd := bytes.NewReader(nil)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		rd.Reset(stream)
		fr := http2.NewFramer(io.Discard, rd)
		fr.SetReuseFrames()
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		n := 0
		for {
			f, err := fr.ReadFrame()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			switch f := f.(type) {
			case *http2.MetaHeadersFrame:
				n += len(f.Fields)
			case *http2.DataFrame:
				n += len(f.Data())
			}
		}
		_ = n
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*frames), "ns/frame")
}

// TestLibraryFramerAllocations records what the library's Framer allocates per frame type
// (the reason this package parses frames itself: DATA, WINDOW_UPDATE, PING and SETTINGS
// cost nothing here, see TestFramesDoNotAllocate).
func TestLibraryFramerAllocations(t *testing.T) {
	var buf bytes.Buffer
	w := http2.NewFramer(&buf, nil)
	enc := newEncoder()
	block := enc.block(":status", "200", "content-type", "application/json", "x-request-id", "r1")
	for name, write := range map[string]func(){
		"data":          func() { w.WriteData(1, false, make([]byte, 1000)) },
		"window_update": func() { w.WriteWindowUpdate(0, 1000) },
		"ping":          func() { w.WritePing(false, [8]byte{}) },
		"settings":      func() { w.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}) },
		"headers": func() {
			w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: true})
		},
	} {
		buf.Reset()
		write()
		frame := append([]byte(nil), buf.Bytes()...)
		rd := bytes.NewReader(frame)
		fr := http2.NewFramer(io.Discard, rd)
		fr.SetReuseFrames()
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		n := testing.AllocsPerRun(100, func() {
			rd.Reset(frame)
			if _, err := fr.ReadFrame(); err != nil {
				t.Fatal(err)
			}
		})
		t.Logf("library Framer: %s frame: %v allocations", name, n)
	}
}

// BenchmarkFramesOurs feeds the same frames, in 1448-byte segments, through the TCP layer
// and this package's stream consumer, which also builds the exchanges' responses.
func BenchmarkFramesOurs(b *testing.B) {
	stream, frames := serverFrames(100)
	c := newConn(b, Config{})
	c.handshake()
	c.prefaces()
	c.flush(client, 1448)
	c.flush(server, 1448)
	// The requests the responses answer, so every stream is tracked and emitted.
	cl := c.peers[client]
	for i := range 100 {
		c.headers(client, uint32(2*i+1), true, ":method", "GET", ":scheme", "http", ":path", fmt.Sprintf("/r/%d", i))
	}
	reqs := c.pending(client)
	emitted := 0
	c.p.out = exchange.HandlerFunc(func(*exchange.Exchange) { emitted++ }) // keep nothing alive
	k, d := tcp.NewKey(0, c.srv, c.cli)
	kc, dc := tcp.NewKey(0, c.cli, c.srv)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		// A fresh client encoder state per pass would cost allocations; the stream ids
		// repeat instead, which the consumer treats as new streams once the old ones ended.
		seg := tcp.Segment{Key: kc, Dir: dc, Flags: tcp.FlagACK, Seq: cl.seq, Payload: reqs, Timestamp: c.ts}
		c.asm.Segment(&seg)
		cl.seq += uint32(len(reqs))
		sv := c.peers[server]
		for off := 0; off < len(stream); off += 1448 {
			p := stream[off:min(off+1448, len(stream))]
			seg := tcp.Segment{Key: k, Dir: d, Flags: tcp.FlagACK, Seq: sv.seq, Payload: p, Timestamp: c.ts}
			c.asm.Segment(&seg)
			sv.seq += uint32(len(p))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*frames), "ns/frame")
	if emitted != 100*b.N {
		b.Fatalf("%d exchanges for %d passes", emitted, b.N)
	}
}
