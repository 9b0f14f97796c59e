package reassembly

import (
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
	"net/netip"
	"testing"
	"time"
)

// conv scripts one TCP connection segment by segment.
type conv struct {
	t      testing.TB
	a      *Assembler
	got    []*exchange.Exchange
	cli    tcp.Endpoint
	srv    tcp.Endpoint
	cseq   uint32
	sseq   uint32
	ts     int64
	tunnel uint32
}

func ep(addr string, port uint16) tcp.Endpoint {
	return tcp.Endpoint{Addr: netip.MustParseAddr(addr).As16(), Port: port}
}

func newConv(t testing.TB, cfg Config) *conv {
	c := &conv{t: t, cli: ep("10.0.0.1", 51234), srv: ep("10.0.0.2", 8080), cseq: 1000, sseq: 5000, ts: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()}
	c.a = NewAssembler(cfg, exchange.HandlerFunc(func(e *exchange.Exchange) { c.got = append(c.got, e) }))
	return c
}

// seg builds (without sending) a segment from the client (fromClient) or the server.
func (c *conv) seg(fromClient bool, flags uint8, payload string) tcp.Segment {
	src, dst := c.srv, c.cli
	seq, ack := &c.sseq, c.cseq
	if fromClient {
		src, dst = c.cli, c.srv
		seq, ack = &c.cseq, c.sseq
	}
	k, d := tcp.NewKey(c.tunnel, src, dst)
	c.ts += int64(time.Millisecond)
	s := tcp.Segment{Key: k, Dir: d, Seq: *seq, Ack: ack, Flags: flags | tcp.FlagACK, Payload: []byte(payload), Timestamp: c.ts}
	*seq += uint32(len(payload))
	if flags&(tcp.FlagSYN|tcp.FlagFIN) != 0 {
		*seq++
	}
	return s
}

func (c *conv) send(s tcp.Segment) { c.a.Segment(&s) }

func (c *conv) handshake() {
	syn := c.seg(true, tcp.FlagSYN, "")
	syn.Flags = tcp.FlagSYN
	c.send(syn)
	c.send(c.seg(false, tcp.FlagSYN, ""))
	c.send(c.seg(true, 0, ""))
}

func (c *conv) client(p string) { c.send(c.seg(true, 0, p)) }
func (c *conv) server(p string) { c.send(c.seg(false, 0, p)) }

func (c *conv) close() {
	c.send(c.seg(true, tcp.FlagFIN, ""))
	c.send(c.seg(false, tcp.FlagFIN, ""))
}

func (c *conv) want(n int) []*exchange.Exchange {
	c.t.Helper()
	if len(c.got) != n {
		for _, e := range c.got {
			c.t.Logf("got %s %s -> %d flags=%b", e.Request.Method, e.Request.Target, e.Response.Status, e.Flags)
		}
		c.t.Fatalf("got %d exchanges, want %d; stats %+v", len(c.got), n, c.a.Stats())
	}
	return c.got
}

// forgotten moves time past the closed connections' linger, so every byte they held is
// back in the budget, and returns the stats then.
func (c *conv) forgotten() Stats {
	c.a.Advance(c.ts + int64(time.Minute))
	return c.a.Stats()
}
