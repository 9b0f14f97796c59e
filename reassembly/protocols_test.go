package reassembly

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// h2writer frames HTTP/2 with the library's Framer and HPACK encoder.
type h2writer struct {
	buf  bytes.Buffer
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
}

func newH2Writer() *h2writer {
	w := &h2writer{}
	w.fr = http2.NewFramer(&w.buf, nil)
	w.enc = hpack.NewEncoder(&w.hbuf)
	return w
}

func (w *h2writer) headers(sid uint32, end bool, kv ...string) *h2writer {
	w.hbuf.Reset()
	for i := 0; i < len(kv); i += 2 {
		w.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: sid, BlockFragment: w.hbuf.Bytes(), EndStream: end, EndHeaders: true})
	return w
}

func (w *h2writer) data(sid uint32, end bool, s string) *h2writer {
	w.fr.WriteData(sid, end, []byte(s))
	return w
}

func (w *h2writer) settings() *h2writer {
	w.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	return w
}

// take returns the framed bytes and resets the buffer.
func (w *h2writer) take() string {
	s := w.buf.String()
	w.buf.Reset()
	return s
}

func TestPriorKnowledgeHTTP2(t *testing.T) {
	c := newConv(t, Config{})
	c.handshake()
	cw, sw := newH2Writer(), newH2Writer()
	c.client(http2.ClientPreface + cw.settings().headers(1, true, ":method", "GET", ":scheme", "http", ":authority", "api", ":path", "/v2/items?x=1").take())
	c.server(sw.settings().headers(1, false, ":status", "200", "content-type", "application/json").data(1, true, `{"items":[]}`).take())
	c.close()
	e := c.want(1)[0]
	if e.Request.Proto != "HTTP/2.0" || e.Request.Method != "GET" || e.Request.Path != "/v2/items" || e.Request.RawQuery != "x=1" ||
		e.Request.Host != "api" || e.Response.Status != 200 || string(e.Response.Body) != `{"items":[]}` {
		t.Fatalf("%+v %+v", e.Request, e.Response)
	}
	if s := c.a.Stats(); s.Protocols["http2"] != 1 || s.Protocols["http1"] != 0 || s.Exchanges["complete"] != 1 || s.HTTP2Frames["headers"] != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestServerSettingsFirstIsHTTP2(t *testing.T) {
	// The server's direction reaches the collector first (another queue).
	c := newConv(t, Config{})
	c.handshake()
	cw, sw := newH2Writer(), newH2Writer()
	req := c.seg(true, 0, http2.ClientPreface+cw.settings().headers(1, true, ":method", "GET", ":scheme", "http", ":path", "/s").take())
	c.server(sw.settings().headers(1, true, ":status", "204").take())
	c.send(req)
	c.close()
	if e := c.want(1)[0]; e.Response.Status != 204 || e.Request.Path != "/s" {
		t.Fatalf("%+v", e)
	}
}

func TestProtocolCounts(t *testing.T) {
	a := NewAssembler(Config{}, exchange.HandlerFunc(func(*exchange.Exchange) {}))
	run := func(port uint16, cli, srv string) {
		c := newConv(t, Config{})
		c.a = a
		c.cli = ep("10.9.0.1", port)
		c.handshake()
		c.client(cli)
		c.server(srv)
		c.close()
	}
	run(1, "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 204 No\r\n\r\n")
	run(2, http2.ClientPreface, newH2Writer().settings().take())
	run(3, "\x16\x03\x01\x02\x00 TLS client hello", "\x16\x03\x03")
	if s := a.Stats(); s.Protocols["http1"] != 1 || s.Protocols["http2"] != 1 || s.Protocols["other"] != 1 || s.Exchanges["non_http"] != 1 {
		t.Fatalf("protocols %v exchanges %v", s.Protocols, s.Exchanges)
	}
}

// midStream scripts a connection whose handshake and first bytes the capture missed.
func midStream(t *testing.T, cli, srv []string) *conv {
	c := newConv(t, Config{})
	c.cseq += 100000 // bytes sent before the capture began
	c.sseq += 200000
	for i := 0; i < max(len(cli), len(srv)); i++ {
		if i < len(cli) {
			c.client(cli[i])
		}
		if i < len(srv) {
			c.server(srv[i])
		}
	}
	c.a.FlushAll()
	return c
}

func TestMidStreamJoinHTTP2(t *testing.T) {
	// The capture starts inside a large DATA frame; later frames are found again, and
	// streams opened after the join are reported.
	cw, sw := newH2Writer(), newH2Writer()
	cw.headers(1, true, ":method", "GET", ":scheme", "http", ":path", "/before").take()
	sw.headers(1, false, ":status", "200").take()
	tail := sw.data(1, true, strings.Repeat("z", 5000)).take()[3000:]
	req := cw.headers(3, false, ":method", "POST", ":scheme", "http", ":path", "/after").data(3, true, "ping").take()
	resp := sw.headers(3, false, ":status", "201").data(3, true, "pong").take()
	c := midStream(t, []string{req}, []string{tail[:1400], tail[1400:] + resp})
	e := c.want(1)[0]
	if e.Request.Path != "/after" || string(e.Request.Body) != "ping" || e.Response.Status != 201 || string(e.Response.Body) != "pong" {
		t.Fatalf("%+v %+v", e.Request, e.Response)
	}
	if s := c.a.Stats(); s.Protocols["http2"] != 1 || s.Protocols["http1"] != 0 {
		t.Fatalf("protocols %v", s.Protocols)
	}
}

func TestMidStreamJoinHTTP1(t *testing.T) {
	// Joined inside a response body: the next request line decides.
	c := midStream(t,
		[]string{"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"},
		[]string{strings.Repeat("\x00\x01binary", 300), "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"})
	e := c.want(1)[0]
	if e.Request.Path != "/next" || string(e.Response.Body) != "ok" {
		t.Fatalf("%+v %+v", e.Request, e.Response)
	}
	if s := c.a.Stats(); s.Protocols["http1"] != 1 || s.Protocols["http2"] != 0 {
		t.Fatalf("protocols %v", s.Protocols)
	}
}

func TestEmptyConnectionsAreNotCounted(t *testing.T) {
	c := newConv(t, Config{})
	c.handshake()
	c.close()
	c.a.FlushAll()
	if s := c.a.Stats(); s.Protocols["http1"]+s.Protocols["http2"]+s.Protocols["other"] != 0 {
		t.Fatalf("protocols %v", s.Protocols)
	}
}

func TestMidStreamNothingRecognised(t *testing.T) {
	c := midStream(t, []string{strings.Repeat("\x17\x03\x03 encrypted", 100)}, []string{strings.Repeat("\x17\x03\x03 more", 100)})
	c.want(0)
	if s := c.a.Stats(); s.Protocols["other"] != 1 || s.BufferedBytes != 0 {
		t.Fatalf("protocols %v buffered %d", s.Protocols, s.BufferedBytes)
	}
}

const upgradeReq = "GET /up?x=1 HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"
const switching = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"

func TestUpgradeH2C(t *testing.T) {
	for _, order := range []string{"101 first", "preface first", "101 before request", "all in one"} {
		t.Run(order, func(t *testing.T) {
			c := newConv(t, Config{})
			c.handshake()
			cw, sw := newH2Writer(), newH2Writer()
			c.client("GET /before HTTP/1.1\r\nHost: svc\r\n\r\n")
			c.server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nh1")
			preface := http2.ClientPreface + cw.settings().headers(3, true, ":method", "GET", ":scheme", "http", ":authority", "svc", ":path", "/second").take()
			frames := sw.settings().headers(1, false, ":status", "200").data(1, true, "upgraded").
				headers(3, false, ":status", "200").data(3, true, "second").take()
			switch order {
			case "101 first":
				c.client(upgradeReq)
				c.server(switching)
				c.client(preface)
				c.server(frames)
			case "preface first": // the client's direction runs ahead of the server's
				c.client(upgradeReq)
				c.client(preface)
				c.server(switching)
				c.server(frames)
			case "101 before request":
				req := c.seg(true, 0, upgradeReq)
				c.server(switching)
				c.send(req)
				c.client(preface)
				c.server(frames)
			case "all in one":
				c.client(upgradeReq)
				c.server(switching + frames)
				c.client(preface)
			}
			c.close()
			got := c.want(3)
			if got[0].Request.Path != "/before" || string(got[0].Response.Body) != "h1" || got[0].Request.Proto != "HTTP/1.1" {
				t.Fatalf("before: %+v", got[0])
			}
			var up, second *exchange.Exchange
			for _, e := range got[1:] {
				switch e.Request.Path {
				case "/up":
					up = e
				case "/second":
					second = e
				}
			}
			if up == nil || second == nil {
				t.Fatalf("exchanges %v", got)
			}
			if up.Request.Method != "GET" || up.Request.RawQuery != "x=1" || up.Request.Host != "svc" || up.Response.Status != 200 ||
				string(up.Response.Body) != "upgraded" || up.Response.Proto != "HTTP/2.0" || up.Flags != 0 {
				t.Fatalf("upgrade request: %+v %+v flags %b", up.Request, up.Response, up.Flags)
			}
			if string(second.Response.Body) != "second" || second.Flags != 0 {
				t.Fatalf("second: %+v", second)
			}
			c.a.FlushAll()
			s := c.a.Stats()
			if s.Protocols["http1"] != 1 || s.Protocols["http2"] != 1 || s.HTTP2Events["h2c_upgrade"] != 1 || s.Exchanges["parse_error"] != 0 || s.BufferedBytes != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestWebSocketUpgradeStillIgnored(t *testing.T) {
	c := newConv(t, Config{})
	c.handshake()
	c.client("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	c.server("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello")
	c.client("\x82\x85\x00\x00\x00\x00PRI * HTTP/2.0\r\n")
	c.close()
	if e := c.want(1)[0]; e.Response.Status != 101 {
		t.Fatalf("%+v", e.Response)
	}
	if s := c.a.Stats(); s.Protocols["http2"] != 0 || s.Exchanges["parse_error"] != 0 {
		t.Fatalf("%+v", s)
	}
}

// TestHTTP2ThroughTCPLayerSplits feeds one HTTP/2 connection cut into segments of every
// size through the whole assembler.
func TestHTTP2ThroughTCPLayerSplits(t *testing.T) {
	cw, sw := newH2Writer(), newH2Writer()
	cli := http2.ClientPreface + cw.settings().take()
	srv := sw.settings().take()
	for i := range 5 {
		sid := uint32(2*i + 1)
		cli += cw.headers(sid, false, ":method", "PUT", ":scheme", "http", ":path", fmt.Sprintf("/k/%d", i)).data(sid, true, strings.Repeat("v", 50*i)).take()
		srv += sw.headers(sid, false, ":status", "200").data(sid, true, fmt.Sprint(i)).take()
	}
	for _, mss := range []int{1, 3, 13, 100, 1448} {
		c := newConv(t, Config{})
		c.handshake()
		for off := 0; off < max(len(cli), len(srv)); off += mss {
			if off < len(cli) {
				c.client(cli[off:min(off+mss, len(cli))])
			}
			if off < len(srv) {
				c.server(srv[off:min(off+mss, len(srv))])
			}
		}
		c.close()
		got := c.want(5)
		for i, e := range got {
			if e.Request.Path != fmt.Sprintf("/k/%d", i) || len(e.Request.Body) != 50*i || string(e.Response.Body) != fmt.Sprint(i) {
				t.Fatalf("mss %d: %d: %+v", mss, i, e)
			}
		}
	}
}

var _ = tcp.FlagFIN
