package reassembly

import (
	"fmt"
	"testing"
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
			syn := c.seg(true, FlagSYN, "")
			syn.Flags = FlagSYN
			synAck := c.seg(false, FlagSYN, "")
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
	var segs []Segment
	syn := c.seg(true, FlagSYN, "")
	syn.Flags = FlagSYN
	segs = append(segs, syn, c.seg(false, FlagSYN, ""), c.seg(true, 0, ""),
		c.seg(true, 0, "GET /d HTTP/1.1\r\n\r\n"), c.seg(false, 0, resp(200, "Content-Length: 1\r\n", "d")),
		c.seg(true, FlagFIN, ""), c.seg(false, FlagFIN, ""))
	for _, s := range segs {
		c.send(s)
	}
	for _, s := range segs {
		c.send(s)
	}
	c.a.FlushAll()
	c.want(1)
}
