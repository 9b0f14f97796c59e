package reassembly

import (
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
	"testing"
)

// FuzzAssembler drives one connection with arbitrary bytes: the input is a script of
// segments (direction, sequence jitter, flags, payload), so the fuzzer explores hostile
// HTTP, reordering, overlaps and gaps together. Nothing may panic, emitted exchanges must
// be well-formed and every buffer must be released at the end.
func FuzzAssembler(f *testing.F) {
	f.Add([]byte("\x00\x00\x10GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n\x01\x00\x10HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	f.Add([]byte("\x00\x00\x10POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\x01\x00\x10HTTP/1.1 204 No\r\n\r\n"))
	f.Add([]byte("\x01\x00\x10HTTP/1.1 200 OK\r\n\r\nstream\x00\x00\x10HEAD / HTTP/1.0\r\n\r\n\x00\x00\x01"))
	f.Add([]byte("\x00\x05\x10GET / HTTP/1.1\r\n\r\n\x00\xfb\x10GET /x HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, script []byte) {
		var got []*exchange.Exchange
		a := NewAssembler(Config{BodyCap: 512, MaxHeaderBytes: 1024, FlowBufferBytes: 4096, BufferBytes: 8192, MaxPending: 4},
			exchange.HandlerFunc(func(e *exchange.Exchange) { got = append(got, e) }))
		cli, srv := ep("10.0.0.1", 1000), ep("10.0.0.2", 80)
		seq := [2]uint32{100, 9000}
		ts := int64(1)
		for len(script) >= 3 {
			fromServer := script[0]&1 == 1
			jitter := int32(int8(script[1]))
			flags := script[2] | tcp.FlagACK
			script = script[3:]
			n := 0
			for n < len(script) && n < 200 && script[n] != 0 && script[n] != 1 {
				n++
			}
			payload := script[:n]
			script = script[n:]
			src, dst, d := cli, srv, 0
			if fromServer {
				src, dst, d = srv, cli, 1
			}
			k, dir := tcp.NewKey(0, src, dst)
			ts += 1e6
			s := tcp.Segment{Key: k, Dir: dir, Seq: seq[d] + uint32(jitter), Ack: seq[1-d], Flags: flags, Payload: payload, Timestamp: ts}
			if jitter == 0 {
				seq[d] += uint32(len(payload))
			}
			a.Segment(&s)
		}
		a.Advance(ts + int64(DefaultConfig().ResponseTimeout)*2)
		a.FlushAll()
		for _, e := range got {
			if e.Request.Method == "" {
				t.Fatalf("exchange without a request method: %+v", e)
			}
			if len(e.Request.Body) > 512 || len(e.Response.Body) > 512 {
				t.Fatalf("body over the cap: %d/%d", len(e.Request.Body), len(e.Response.Body))
			}
		}
		s := a.Stats()
		if s.Flows != 0 || s.BufferedBytes != 0 || a.budget.Used() != 0 {
			t.Fatalf("state left after FlushAll: %+v", s)
		}
	})
}
