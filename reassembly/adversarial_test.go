package reassembly

import (
	"fmt"
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
	"strings"
	"testing"
	"time"
)

// Adversarial cases: orderings and framings real mirrored traffic produces.

func TestPortReuseNewISN(t *testing.T) {
	// The first connection's close was never captured; a new one reuses the 5-tuple.
	for _, tc := range []struct {
		isn         uint32
		synAckFirst bool // the new SYN-ACK is captured before the new SYN
	}{{1000 + 5_000_000, false}, {0xFFF00000, false}, {0xFFF00000, true}} {
		t.Run(fmt.Sprint(tc), func(t *testing.T) {
			c := newConv(t, Config{})
			c.handshake()
			c.client("GET /old HTTP/1.1\r\n\r\n")
			c.server(resp(200, "Content-Length: 1\r\n", "o"))
			c.cseq, c.sseq = tc.isn, tc.isn*7
			syn := c.seg(true, tcp.FlagSYN, "")
			syn.Flags = tcp.FlagSYN
			synAck := c.seg(false, tcp.FlagSYN, "")
			if tc.synAckFirst {
				c.send(synAck)
				c.send(syn)
			} else {
				c.send(syn)
				c.send(synAck)
			}
			c.send(c.seg(true, 0, ""))
			c.client("GET /new HTTP/1.1\r\n\r\n")
			c.server(resp(200, "Content-Length: 1\r\n", "n"))
			c.close()
			got := c.want(2)
			if got[0].Request.Path != "/old" || got[0].Response.Status != 200 {
				t.Fatalf("first: %s %d", got[0].Request.Path, got[0].Response.Status)
			}
			if got[1].Request.Path != "/new" || string(got[1].Response.Body) != "n" || got[1].Flags != 0 {
				t.Fatalf("second: %s %q flags %b", got[1].Request.Path, got[1].Response.Body, got[1].Flags)
			}
		})
	}
}

func TestDuplicateCopyAfterClose(t *testing.T) {
	// Both ENIs mirrored; the second copy of the whole connection lags behind the first.
	c := newConv(t, Config{})
	var segs []tcp.Segment
	syn := c.seg(true, tcp.FlagSYN, "")
	syn.Flags = tcp.FlagSYN
	segs = append(segs, syn, c.seg(false, tcp.FlagSYN, ""), c.seg(true, 0, ""),
		c.seg(true, 0, "GET /d HTTP/1.1\r\n\r\n"), c.seg(false, 0, resp(200, "Content-Length: 1\r\n", "d")),
		c.seg(true, tcp.FlagFIN, ""), c.seg(false, tcp.FlagFIN, ""))
	for _, s := range segs {
		c.send(s)
	}
	for _, s := range segs {
		c.send(s)
	}
	c.a.FlushAll()
	c.want(1)
}

func TestSwitchedProtocolsResponseBeforeRequest(t *testing.T) {
	for _, tc := range []struct{ req, resp string }{
		{"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"},
		// An h2c switch hands the connection to HTTP/2: see TestUpgradeH2C.
		{"CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n", "HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x03garbage"},
	} {
		t.Run(tc.req[:4], func(t *testing.T) {
			c := newConv(t, Config{})
			c.handshake()
			req := c.seg(true, 0, tc.req)
			c.cseq = req.Seq + uint32(len(req.Payload))
			c.send(c.seg(false, 0, tc.resp))
			c.send(req)
			c.client("\x82\x85\x00\x00\x00\x00GET / HTTP/1.1\r\n\r\n") // tunnelled bytes
			c.server("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")   // tunnelled bytes
			c.close()
			got := c.want(1)
			if got[0].Response.Status/100 > 2 || got[0].Response.Status == 0 {
				t.Fatalf("got status %d flags %b", got[0].Response.Status, got[0].Flags)
			}
			if s := c.a.Stats(); s.Exchanges["parse_error"] != 0 || s.Exchanges["orphan_response"] != 0 {
				t.Fatalf("tunnel parsed: %+v", s.Exchanges)
			}
		})
	}
}

func TestTruncatedResponseBeforeRequest(t *testing.T) {
	// The reply is captured before its request and one of its packets was truncated.
	c := newConv(t, Config{})
	c.handshake()
	req := c.seg(true, 0, "GET /big HTTP/1.1\r\n\r\n")
	c.cseq = req.Seq + uint32(len(req.Payload))
	c.send(c.seg(false, 0, resp(200, "Content-Length: 3000\r\n", strings.Repeat("a", 1000))))
	s := c.seg(false, 0, strings.Repeat("b", 500))
	s.Missing = 500
	c.sseq += 500
	c.send(s)
	c.send(c.seg(false, 0, strings.Repeat("c", 1000)))
	c.send(req)
	c.client("GET /next HTTP/1.1\r\n\r\n")
	c.server(resp(200, "Content-Length: 1\r\n", "n"))
	c.close()
	got := c.want(2)
	r := got[0].Response
	if r.Status != 200 || r.BodySize != 3000 || !r.BodyTruncated || got[0].Flags&exchange.FlagGap == 0 || len(r.Body) != 2500 {
		t.Fatalf("first: status %d size %d len %d trunc %v flags %b", r.Status, r.BodySize, len(r.Body), r.BodyTruncated, got[0].Flags)
	}
	if string(got[1].Response.Body) != "n" {
		t.Fatalf("second: %q", got[1].Response.Body)
	}
	if st := c.a.Stats(); st.Exchanges["orphan_response"] != 0 {
		t.Fatalf("stats %+v", st.Exchanges)
	}
}

func TestFlowForgottenWhenReorderTimeoutDeliversFIN(t *testing.T) {
	c := newConv(t, Config{})
	c.handshake()
	c.client("GET /x HTTP/1.1\r\n\r\n")
	c.server(resp(200, "Content-Length: 1\r\n", "x"))
	lost := c.seg(true, 0, "junk") // never captured
	_ = lost
	c.send(c.seg(true, tcp.FlagFIN, "")) // waits behind the hole
	c.send(c.seg(false, tcp.FlagFIN, ""))
	c.a.Advance(c.ts + int64(2*time.Second)) // reorder timeout: hole skipped, both FINs in
	c.want(1)
	c.a.Advance(c.ts + int64(10*time.Second)) // past the close linger
	if s := c.a.Stats(); s.Flows != 0 {
		t.Fatalf("closed flow still tracked: %+v", s)
	}
}
func TestRSTBeforeResponseFromOtherQueue(t *testing.T) {
	c := newConv(t, Config{})
	c.handshake()
	c.client("GET /r HTTP/1.1\r\n\r\n")
	r := c.seg(false, 0, resp(200, "Content-Length: 2\r\n", "ok"))
	c.send(c.seg(true, tcp.FlagRST, ""))
	c.send(r)
	c.a.Advance(c.ts + int64(10*time.Second))
	got := c.want(1)
	if got[0].Response.Status != 200 {
		t.Fatalf("status %d flags %b", got[0].Response.Status, got[0].Flags)
	}
}

func TestRSTMidBody(t *testing.T) {
	c := newConv(t, Config{})
	c.handshake()
	c.client("GET /cut HTTP/1.1\r\n\r\n")
	c.server(resp(200, "Content-Length: 100\r\n", "partial"))
	c.send(c.seg(false, tcp.FlagRST, ""))
	c.client("late bytes after the reset") // the client's copy still in flight: harmless
	c.a.Advance(c.ts + int64(3*time.Second))
	got := c.want(1)
	if got[0].Response.Status != 200 || string(got[0].Response.Body) != "partial" || got[0].Flags&exchange.FlagIncomplete == 0 {
		t.Fatalf("status %d body %q flags %b", got[0].Response.Status, got[0].Response.Body, got[0].Flags)
	}
	c.a.Advance(c.ts + int64(10*time.Second))
	if s := c.a.Stats(); s.Flows != 0 {
		t.Fatalf("reset flow still tracked: %+v", s)
	}
}

func TestRSTThenReuseWithoutCapturedSYN(t *testing.T) {
	// Capture joined mid-connection (no SYN seen); the client resets and at once reconnects
	// from the same port.
	c := newConv(t, Config{})
	c.client("GET /a HTTP/1.1\r\n\r\n")
	c.server(resp(200, "Content-Length: 1\r\n", "a"))
	c.a.Advance(c.ts + int64(2*time.Second)) // reorder timeout: both halves sync midstream
	c.send(c.seg(true, tcp.FlagRST, ""))
	c.cseq, c.sseq = 777777, 888888
	c.handshake()
	c.client("GET /b HTTP/1.1\r\n\r\n")
	c.server(resp(200, "Content-Length: 1\r\n", "b"))
	c.close()
	got := c.want(2)
	if got[0].Request.Path != "/a" || got[1].Request.Path != "/b" || string(got[1].Response.Body) != "b" {
		t.Fatalf("got %s, %s %q", got[0].Request.Path, got[1].Request.Path, got[1].Response.Body)
	}
}
