package reassembly

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/http2"

	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// protoScript encodes a conversation for FuzzProtocols: per delivery a 2-byte length, a
// control byte (bit 0 server, bit 1 a gap instead of bytes, bit 2 reorder: the segment is
// held and sent after the next one) and the bytes.
func protoScript(handshake bool, parts ...any) []byte {
	out := []byte{0}
	if handshake {
		out[0] = 1
	}
	for i := 0; i+1 < len(parts); i += 2 {
		b := []byte(parts[i+1].(string))
		out = binary.BigEndian.AppendUint16(out, uint16(len(b)))
		out = append(out, byte(parts[i].(int)))
		out = append(out, b...)
	}
	return out
}

// FuzzProtocols drives one connection through the whole assembler with arbitrary bytes,
// so the protocol choice, the sniffer, the h2c hand-over and both parsers meet hostile
// input together: nothing may panic, bodies stay capped and every byte charged to the
// memory budget is released once the connection is flushed.
func FuzzProtocols(f *testing.F) {
	cw, sw := newH2Writer(), newH2Writer()
	cli := http2.ClientPreface + cw.settings().headers(1, false, ":method", "POST", ":scheme", "http", ":path", "/a").data(1, true, "body").take()
	srv := sw.settings().headers(1, false, ":status", "200", "content-type", "application/grpc").data(1, false, "\x00\x00\x00\x00\x02\x08\x01").
		headers(1, true, "grpc-status", "0").take()
	f.Add(protoScript(true, 0, cli, 1, srv))
	f.Add(protoScript(false, 1, srv[20:], 0, cli[30:], 1, srv))
	f.Add(protoScript(true, 0, upgradeReq, 1, switching, 0, cli, 1, srv))
	f.Add(protoScript(true, 0, upgradeReq, 0, cli, 4|1, switching, 1, srv))
	f.Add(protoScript(false, 0, "xx\r\nGET / HTTP/1.1\r\n\r\n", 1, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"))
	f.Add(protoScript(true, 0, "PRI", 2, "\x00\x10", 0, cli))
	f.Fuzz(func(t *testing.T, script []byte) {
		var got []*exchange.Exchange
		a := NewAssembler(Config{BodyCap: 512, MaxHeaderBytes: 1024, FlowBufferBytes: 4096, BufferBytes: 1 << 20, MaxPending: 4, MaxStreams: 4},
			exchange.HandlerFunc(func(e *exchange.Exchange) { got = append(got, e) }))
		c := newConv(t, Config{})
		c.a = a
		if len(script) == 0 {
			return
		}
		if script[0]&1 != 0 {
			c.handshake()
		} else {
			c.cseq += 1 << 20
			c.sseq += 1 << 20
		}
		script = script[1:]
		var held *tcp.Segment
		for len(script) >= 3 {
			n := int(binary.BigEndian.Uint16(script)) % 4096
			ctl := script[2]
			script = script[3:]
			n = min(n, len(script))
			var s tcp.Segment
			if ctl&2 != 0 {
				s = c.seg(ctl&1 == 0, 0, "")
				s.Missing = n + 1
				if ctl&1 == 0 {
					c.cseq += uint32(n + 1)
				} else {
					c.sseq += uint32(n + 1)
				}
			} else {
				s = c.seg(ctl&1 == 0, 0, string(script[:n]))
				script = script[n:]
			}
			if ctl&4 != 0 && held == nil {
				held = &s
				continue
			}
			c.send(s)
			if held != nil {
				c.send(*held)
				held = nil
			}
		}
		if held != nil {
			c.send(*held)
		}
		c.close()
		a.FlushAll()
		for _, e := range got {
			if len(e.Request.Body) > 512 || len(e.Response.Body) > 512 {
				t.Fatalf("body over the cap: %d/%d", len(e.Request.Body), len(e.Response.Body))
			}
		}
		if s := a.Stats(); s.Flows != 0 || s.BufferedBytes != 0 {
			t.Fatalf("state left after FlushAll: flows %d buffered %d", s.Flows, s.BufferedBytes)
		}
	})
}
