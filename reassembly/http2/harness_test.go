package http2

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// streams is the test's StreamFactory: every connection is HTTP/2.
type streams struct{ p *Parser }

func (f streams) NewStream(c *tcp.Conn, _ tcp.Dir, _ []byte) tcp.Stream { return f.p.NewStream(c) }

// peer is one end of a scripted connection: the library's Framer and HPACK encoder
// write its frames, so the bytes come from an independent implementation.
type peer struct {
	out bytes.Buffer // framed, not yet sent
	fr  *http2.Framer
	enc *encoder
	seq uint32
}

// conn scripts one HTTP/2 connection through a real stream layer.
type conn struct {
	t      testing.TB
	budget *tcp.Budget
	p      *Parser
	asm    *tcp.Assembler
	got    []*exchange.Exchange
	cli    tcp.Endpoint
	srv    tcp.Endpoint
	peers  [2]*peer // 0 client, 1 server
	ts     int64
}

const (
	client = 0
	server = 1
)

func newConn(t testing.TB, cfg Config) *conn {
	c := &conn{t: t, budget: tcp.NewBudget(64 << 20), ts: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC).UnixNano()}
	c.p = NewParser(cfg, c.budget, exchange.HandlerFunc(func(e *exchange.Exchange) { c.got = append(c.got, e) }))
	c.asm = tcp.NewAssembler(tcp.Config{}, c.budget, streams{c.p})
	c.cli = tcp.Endpoint{Addr: netip.MustParseAddr("10.0.0.1").As16(), Port: 40000}
	c.srv = tcp.Endpoint{Addr: netip.MustParseAddr("10.0.0.2").As16(), Port: 8080}
	for i := range c.peers {
		pe := &peer{enc: newEncoder(), seq: uint32(1000 + 50000*i)}
		pe.fr = http2.NewFramer(&pe.out, nil)
		c.peers[i] = pe
	}
	return c
}

// segment sends one TCP segment from who with the given payload (missing: bytes the
// capture lacks after it).
func (c *conn) segment(who int, flags uint8, payload []byte, missing int) {
	src, dst := c.cli, c.srv
	if who == server {
		src, dst = c.srv, c.cli
	}
	k, d := tcp.NewKey(0, src, dst)
	pe, other := c.peers[who], c.peers[1-who]
	c.ts += int64(time.Millisecond)
	s := tcp.Segment{Key: k, Dir: d, Seq: pe.seq, Ack: other.seq, Flags: flags | tcp.FlagACK, Payload: payload, Missing: missing, Timestamp: c.ts}
	if flags&tcp.FlagSYN != 0 && who == client {
		s.Flags = tcp.FlagSYN
	}
	pe.seq += uint32(len(payload) + missing)
	if flags&(tcp.FlagSYN|tcp.FlagFIN) != 0 {
		pe.seq++
	}
	c.asm.Segment(&s)
}

func (c *conn) handshake() {
	c.segment(client, tcp.FlagSYN, nil, 0)
	c.segment(server, tcp.FlagSYN, nil, 0)
	c.segment(client, 0, nil, 0)
}

// prefaces writes the client preface + SETTINGS and the server's SETTINGS.
func (c *conn) prefaces() {
	c.peers[client].out.WriteString(Preface)
	c.check(c.peers[client].fr.WriteSettings())
	c.check(c.peers[server].fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 100}))
	c.check(c.peers[server].fr.WriteSettingsAck())
	c.check(c.peers[client].fr.WriteSettingsAck())
}

func (c *conn) check(err error) {
	if err != nil {
		c.t.Helper()
		c.t.Fatal(err)
	}
}

// headers writes one HEADERS frame (END_HEADERS) from who.
func (c *conn) headers(who int, sid uint32, end bool, kv ...string) {
	c.check(c.peers[who].fr.WriteHeaders(http2.HeadersFrameParam{StreamID: sid, BlockFragment: c.peers[who].enc.block(kv...), EndStream: end, EndHeaders: true}))
}

func (c *conn) data(who int, sid uint32, end bool, body string) {
	c.check(c.peers[who].fr.WriteData(sid, end, []byte(body)))
}

// flush sends who's pending bytes in segments of at most mss bytes.
func (c *conn) flush(who int, mss int) {
	pe := c.peers[who]
	b := append([]byte(nil), pe.out.Bytes()...)
	pe.out.Reset()
	for len(b) > 0 {
		n := min(len(b), mss)
		c.segment(who, 0, b[:n], 0)
		b = b[n:]
	}
}

// pending returns and clears who's pending bytes (to send them by hand).
func (c *conn) pending(who int) []byte {
	pe := c.peers[who]
	b := append([]byte(nil), pe.out.Bytes()...)
	pe.out.Reset()
	return b
}

func (c *conn) close() {
	c.segment(client, tcp.FlagFIN, nil, 0)
	c.segment(server, tcp.FlagFIN, nil, 0)
	c.asm.FlushAll()
}

// want checks the number of exchanges and that the budget is back to zero.
func (c *conn) want(n int) []*exchange.Exchange {
	c.t.Helper()
	if len(c.got) != n {
		for _, e := range c.got {
			c.t.Logf("got %s %s -> %d flags=%b", e.Request.Method, e.Request.Target, e.Response.Status, e.Flags)
		}
		c.t.Fatalf("got %d exchanges, want %d; stats %+v", len(c.got), n, c.p.Stats())
	}
	return c.got
}

// byPath returns the exchange for path.
func (c *conn) byPath(path string) *exchange.Exchange {
	c.t.Helper()
	for _, e := range c.got {
		if e.Request.Target == path {
			return e
		}
	}
	c.t.Fatalf("no exchange for %s", path)
	return nil
}

func header(hs []exchange.Header, name string) string {
	var vals []string
	for _, h := range hs {
		if h.Name == name {
			vals = append(vals, h.Value)
		}
	}
	return strings.Join(vals, ",")
}
