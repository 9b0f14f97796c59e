package synth

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2peer frames one side of an HTTP/2 connection with the library's Framer and HPACK
// encoder (dynamic table and Huffman coding on, as real peers send).
type h2peer struct {
	out  bytes.Buffer
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
}

func newH2Peer() *h2peer {
	p := &h2peer{}
	p.fr = http2.NewFramer(&p.out, nil)
	p.enc = hpack.NewEncoder(&p.hbuf)
	return p
}

func (p *h2peer) headers(sid uint32, end bool, kv ...string) {
	p.hbuf.Reset()
	for i := 0; i < len(kv); i += 2 {
		p.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: sid, BlockFragment: p.hbuf.Bytes(), EndStream: end, EndHeaders: true})
}

// take returns what was framed since the last call.
func (p *h2peer) take() []byte {
	b := append([]byte(nil), p.out.Bytes()...)
	p.out.Reset()
	return b
}

// BuildHTTP2 is Build for cleartext HTTP/2 with prior knowledge: conns connections of
// perConn exchanges, concurrency streams in flight at a time on each (the client sends a
// batch of requests, the server answers them), the same API calls and response sizes.
func BuildHTTP2(conns, perConn, concurrency int, respBody func(r *rand.Rand) int) *Capture {
	r := rand.New(rand.NewPCG(1, 2))
	fb := frameBuilder{vni: 4242}
	type conn struct {
		cli, srv   [4]byte
		cport      uint16
		cseq, sseq uint32
		flights    [][]byte // alternating client, server
	}
	cs := make([]*conn, conns)
	for i := range cs {
		c := &conn{cli: [4]byte{10, 1, byte(i >> 8), byte(i)}, srv: [4]byte{10, 2, 0, byte(i % 7)}, cport: uint16(20000 + i), cseq: r.Uint32(), sseq: r.Uint32()}
		cl, sv := newH2Peer(), newH2Peer()
		cl.out.WriteString(http2.ClientPreface)
		cl.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
		sv.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 250})
		sv.fr.WriteSettingsAck()
		c.flights = append(c.flights, cl.take(), sv.take())
		cl.fr.WriteSettingsAck()
		for j := 0; j < perConn; j += concurrency {
			batch := min(concurrency, perConn-j)
			for k := range batch {
				sid, n := uint32(2*(j+k)+1), j+k
				if n%3 == 2 {
					body := fmt.Sprintf(`{"name":"user-%d","email":"u%d@example.com","tags":["a","b"]}`, n, i)
					cl.headers(sid, false, ":method", "POST", ":scheme", "http", ":authority", "api.internal", ":path", "/api/v1/users",
						"content-type", "application/json", "user-agent", "bench/1", "content-length", strconv.Itoa(len(body)))
					cl.fr.WriteData(sid, true, []byte(body))
				} else {
					cl.headers(sid, true, ":method", "GET", ":scheme", "http", ":authority", "api.internal",
						":path", fmt.Sprintf("/api/v1/users/%d/orders?page=%d&sort=desc", i, n), "accept", "application/json", "user-agent", "bench/1")
				}
			}
			for k := range batch {
				sid := uint32(2*(j+k) + 1)
				size := respBody(r)
				body := strings.Repeat(`{"id":1,"v":"x"},`, size/17+1)[:size]
				sv.headers(sid, false, ":status", "200", "content-type", "application/json", "server", "bench", "content-length", strconv.Itoa(size))
				for off := 0; off < len(body); off += 16384 {
					end := min(off+16384, len(body))
					sv.fr.WriteData(sid, end == len(body), []byte(body[off:end]))
				}
			}
			c.flights = append(c.flights, cl.take(), sv.take())
		}
		cs[i] = c
	}
	capt := &Capture{Exchanges: conns * perConn}
	emit := func(b []byte) {
		capt.Frames = append(capt.Frames, b)
		capt.Bytes += int64(len(b))
	}
	for _, c := range cs { // handshakes
		emit(fb.frame(c.cli, c.srv, c.cport, 8080, c.cseq, 0, 0x02, nil))
		emit(fb.frame(c.srv, c.cli, 8080, c.cport, c.sseq, c.cseq+1, 0x12, nil))
		c.cseq++
		c.sseq++
	}
	for step := range len(cs[0].flights) {
		for _, c := range cs {
			m := c.flights[step]
			for off := 0; off < len(m); off += MSS {
				seg := m[off:min(off+MSS, len(m))]
				if step%2 == 0 {
					emit(fb.frame(c.cli, c.srv, c.cport, 8080, c.cseq, c.sseq, 0x18, seg))
					c.cseq += uint32(len(seg))
				} else {
					emit(fb.frame(c.srv, c.cli, 8080, c.cport, c.sseq, c.cseq, 0x18, seg))
					c.sseq += uint32(len(seg))
				}
			}
		}
	}
	for _, c := range cs {
		emit(fb.frame(c.cli, c.srv, c.cport, 8080, c.cseq, c.sseq, 0x11, nil))
		emit(fb.frame(c.srv, c.cli, 8080, c.cport, c.sseq, c.cseq+1, 0x11, nil))
	}
	return capt
}
