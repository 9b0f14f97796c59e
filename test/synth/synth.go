// Package synth generates mirror captures of keep-alive HTTP API traffic in memory, for
// benchmarks and for comparisons with other tools on identical input.
package synth

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Capture is an in-memory mirror capture: VXLAN frames of keep-alive API traffic.
type Capture struct {
	Frames    [][]byte // complete frames, outer Ethernet first
	Bytes     int64    // sum of the frame lengths
	Exchanges int      // request/response pairs in the traffic
}

// MSS is the TCP payload size frames are cut at.
const MSS = 1448

// frameBuilder writes Ethernet/IPv4/UDP/VXLAN/Ethernet/IPv4/TCP frames; checksums are left
// zero (the collector does not verify them, as a mirror's copies are already verified).
type frameBuilder struct{ vni uint32 }

func (fb frameBuilder) frame(src, dst [4]byte, sport, dport uint16, seq, ack uint32, flags uint8, payload []byte) []byte {
	const innerHdr = 14 + 20 + 20
	const outerHdr = 14 + 20 + 8 + 8
	f := make([]byte, outerHdr+innerHdr+len(payload))
	// outer Ethernet + IPv4 + UDP + VXLAN
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	o := f[14:]
	o[0] = 0x45
	binary.BigEndian.PutUint16(o[2:], uint16(len(f)-14))
	o[8], o[9] = 64, 17
	copy(o[12:], []byte{172, 31, 0, 10})
	copy(o[16:], []byte{172, 31, 0, 99})
	u := o[20:]
	binary.BigEndian.PutUint16(u[0:], 40000+sport%1000)
	binary.BigEndian.PutUint16(u[2:], 4789)
	binary.BigEndian.PutUint16(u[4:], uint16(len(f)-14-20))
	v := u[8:]
	v[0] = 0x08
	v[4], v[5], v[6] = byte(fb.vni>>16), byte(fb.vni>>8), byte(fb.vni)
	// inner Ethernet + IPv4 + TCP
	in := v[8:]
	binary.BigEndian.PutUint16(in[12:], 0x0800)
	ip := in[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+20+len(payload)))
	ip[8], ip[9] = 64, 6
	copy(ip[12:], src[:])
	copy(ip[16:], dst[:])
	t := ip[20:]
	binary.BigEndian.PutUint16(t[0:], sport)
	binary.BigEndian.PutUint16(t[2:], dport)
	binary.BigEndian.PutUint32(t[4:], seq)
	binary.BigEndian.PutUint32(t[8:], ack)
	t[12], t[13] = 5<<4, flags
	copy(t[20:], payload)
	return f
}

// Build makes conns connections of perConn exchanges each, interleaved the way
// concurrent clients interleave on the wire. respBody sizes the responses.
func Build(conns, perConn int, respBody func(r *rand.Rand) int) *Capture {
	r := rand.New(rand.NewPCG(1, 2))
	fb := frameBuilder{vni: 4242}
	type conn struct {
		cli, srv   [4]byte
		cport      uint16
		cseq, sseq uint32
		msgs       [][]byte // alternating request, response
	}
	cs := make([]*conn, conns)
	for i := range cs {
		c := &conn{cli: [4]byte{10, 1, byte(i >> 8), byte(i)}, srv: [4]byte{10, 2, 0, byte(i % 7)}, cport: uint16(20000 + i), cseq: r.Uint32(), sseq: r.Uint32()}
		for j := range perConn {
			var req string
			if j%3 == 2 {
				body := fmt.Sprintf(`{"name":"user-%d","email":"u%d@example.com","tags":["a","b"]}`, j, i)
				req = fmt.Sprintf("POST /api/v1/users HTTP/1.1\r\nHost: api.internal\r\nContent-Type: application/json\r\nUser-Agent: bench/1\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			} else {
				req = fmt.Sprintf("GET /api/v1/users/%d/orders?page=%d&sort=desc HTTP/1.1\r\nHost: api.internal\r\nAccept: application/json\r\nUser-Agent: bench/1\r\n\r\n", i, j)
			}
			n := respBody(r)
			body := strings.Repeat(`{"id":1,"v":"x"},`, n/17+1)[:n]
			resp := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nServer: bench\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			c.msgs = append(c.msgs, []byte(req), []byte(resp))
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
	for step := 0; step < 2*perConn; step++ {
		for _, c := range cs {
			m := c.msgs[step]
			fromClient := step%2 == 0
			for off := 0; off < len(m); off += MSS {
				seg := m[off:min(off+MSS, len(m))]
				if fromClient {
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

// MixedAPI sizes responses like a typical JSON API: 100 B to 2 KB.
func MixedAPI(r *rand.Rand) int { return 100 + r.IntN(1900) }

// WritePcap writes the capture as a pcap file, one frame every 10 µs of packet time.
func (c *Capture) WritePcap(w io.Writer) error {
	pw := pcapgo.NewWriter(w)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return err
	}
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, f := range c.Frames {
		ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(f), Length: len(f)}
		if err := pw.WritePacket(ci, f); err != nil {
			return err
		}
		ts = ts.Add(10 * time.Microsecond)
	}
	return nil
}
