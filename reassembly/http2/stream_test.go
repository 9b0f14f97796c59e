package http2

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

func TestPriorKnowledgeExchange(t *testing.T) {
	c := newConn(t, Config{})
	c.handshake()
	c.prefaces()
	c.headers(client, 1, false, ":method", "POST", ":scheme", "http", ":authority", "api.example:8080",
		":path", "/api/users?page=2&q=a%20b", "content-type", "application/json", "x-request-id", "r1")
	c.data(client, 1, false, `{"name":`)
	c.data(client, 1, true, `"bob"}`)
	c.headers(server, 1, false, ":status", "201", "content-type", "application/json")
	c.data(server, 1, false, `{"id":7}`)
	c.headers(server, 1, true, "x-trailer", "done")
	c.flush(client, 1448)
	c.flush(server, 1448)
	c.close()
	e := c.want(1)[0]
	r := e.Request
	if r.Method != "POST" || r.Scheme != "http" || r.Host != "api.example:8080" || r.Target != "/api/users?page=2&q=a%20b" ||
		r.Path != "/api/users" || r.RawQuery != "page=2&q=a%20b" || r.Proto != "HTTP/2.0" {
		t.Fatalf("request %+v", r)
	}
	if string(r.Body) != `{"name":"bob"}` || r.BodySize != 14 || header(r.Headers, "x-request-id") != "r1" || header(r.Headers, ":path") != "" {
		t.Fatalf("request body %q headers %v", r.Body, r.Headers)
	}
	if e.Response.Status != 201 || string(e.Response.Body) != `{"id":7}` || header(e.Response.Headers, "x-trailer") != "done" || e.Flags != 0 {
		t.Fatalf("response %+v flags %b", e.Response, e.Flags)
	}
	if e.Client.String() != "10.0.0.1:40000" || e.Server.String() != "10.0.0.2:8080" {
		t.Fatalf("endpoints %v %v", e.Client, e.Server)
	}
	if d := e.Duration(); d <= 0 {
		t.Fatalf("duration %v", d)
	}
	s := c.p.Stats()
	if s.Outcomes[OutComplete] != 1 || s.Frames[frameData] != 3 || s.Frames[frameHeaders] != 3 || s.Frames[frameSettings] != 4 || c.budget.Used() != 0 {
		t.Fatalf("stats %+v budget %d", s, c.budget.Used())
	}
}

func TestInterleavedStreamsEverySplit(t *testing.T) {
	// Ten concurrent streams, frames interleaved, then the bytes cut at every segment size
	// from 1 byte up: the exchanges never change.
	build := func(c *conn) {
		c.handshake()
		c.prefaces()
		for i := range 10 {
			sid := uint32(2*i + 1)
			c.headers(client, sid, i%2 == 0, ":method", []string{"GET", "PUT"}[i%2], ":scheme", "http", ":authority", "h", ":path", fmt.Sprintf("/s/%d", i))
		}
		for i := range 10 {
			sid := uint32(2*i + 1)
			if i%2 == 1 {
				c.data(client, sid, true, strings.Repeat(fmt.Sprint(i), 100*i))
			}
			c.headers(server, sid, false, ":status", "200", "x-i", fmt.Sprint(i))
		}
		for i := 9; i >= 0; i-- {
			c.data(server, uint32(2*i+1), false, strings.Repeat("r", i))
			c.data(server, uint32(2*i+1), true, fmt.Sprint(i))
		}
	}
	for _, mss := range []int{1, 2, 3, 7, 9, 10, 64, 100, 1448, 1 << 20} {
		c := newConn(t, Config{})
		build(c)
		c.flush(client, mss)
		c.flush(server, mss)
		c.close()
		c.want(10)
		for i := range 10 {
			e := c.byPath(fmt.Sprintf("/s/%d", i))
			wantReq := ""
			if i%2 == 1 {
				wantReq = strings.Repeat(fmt.Sprint(i), 100*i)
			}
			if string(e.Request.Body) != wantReq || string(e.Response.Body) != strings.Repeat("r", i)+fmt.Sprint(i) ||
				header(e.Response.Headers, "x-i") != fmt.Sprint(i) || e.Flags != 0 {
				t.Fatalf("mss %d stream %d: %q / %q flags %b", mss, i, e.Request.Body, e.Response.Body, e.Flags)
			}
		}
		if c.budget.Used() != 0 {
			t.Fatalf("mss %d: budget %d", mss, c.budget.Used())
		}
	}
}

func TestContinuationPaddingPriorityAndControlFrames(t *testing.T) {
	c := newConn(t, Config{})
	c.handshake()
	c.prefaces()
	cl, sv := c.peers[client], c.peers[server]
	block := cl.enc.block(":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/cont", "x-long", strings.Repeat("v", 300))
	c.check(cl.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:10], EndStream: true, PadLength: 7,
		Priority: http2.PriorityParam{StreamDep: 0, Weight: 200, Exclusive: true}}))
	c.check(cl.fr.WriteContinuation(1, false, block[10:100]))
	c.check(cl.fr.WriteContinuation(1, true, block[100:]))
	c.check(cl.fr.WritePriority(3, http2.PriorityParam{Weight: 1}))
	c.check(cl.fr.WriteWindowUpdate(0, 1<<20))
	c.check(cl.fr.WritePing(false, [8]byte{1, 2, 3}))
	c.check(sv.fr.WritePing(true, [8]byte{1, 2, 3}))
	c.check(sv.fr.WriteRawFrame(0xfa, 0xff, 1, []byte("an extension frame nobody knows")))
	c.headers(server, 1, false, ":status", "200")
	c.check(sv.fr.WriteDataPadded(1, false, []byte("pad"), make([]byte, 200)))
	c.check(sv.fr.WriteDataPadded(1, true, []byte("ded"), []byte{}))
	c.check(sv.fr.WriteWindowUpdate(1, 100))
	c.flush(client, 5)
	c.flush(server, 5)
	c.close()
	e := c.want(1)[0]
	if e.Request.Target != "/cont" || header(e.Request.Headers, "x-long") != strings.Repeat("v", 300) || string(e.Response.Body) != "padded" || e.Flags != 0 {
		t.Fatalf("%+v %q flags %b", e.Request, e.Response.Body, e.Flags)
	}
	s := c.p.Stats()
	if s.Frames[frameContinuation] != 2 || s.Frames[framePriority] != 1 || s.Frames[framePing] != 2 || s.Frames[numKnownFrames] != 1 || s.Frames[frameWindowUpdate] != 2 {
		t.Fatalf("frames %v", s.Frames)
	}
}

func TestResetGoAwayAndPush(t *testing.T) {
	c := newConn(t, Config{})
	c.handshake()
	c.prefaces()
	for sid := uint32(1); sid <= 7; sid += 2 {
		c.headers(client, sid, true, ":method", "GET", ":scheme", "http", ":authority", "h", ":path", fmt.Sprintf("/r%d", sid))
	}
	// 1: refused with RST_STREAM; 3: answered; 5, 7: above GOAWAY's last stream id.
	c.check(c.peers[server].fr.WriteRSTStream(1, http2.ErrCodeRefusedStream))
	sv := c.peers[server]
	c.check(sv.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 3, PromiseID: 2, EndHeaders: true,
		BlockFragment: sv.enc.block(":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/pushed.css")}))
	c.headers(server, 3, false, ":status", "200")
	c.data(server, 3, true, "three")
	c.headers(server, 2, false, ":status", "200", "content-type", "text/css")
	c.data(server, 2, true, "body{}")
	c.check(sv.fr.WriteGoAway(3, http2.ErrCodeNo, []byte("shutting down")))
	c.flush(client, 1448)
	c.flush(server, 1448)
	// Before the connection closes: the reset, the streams GOAWAY refused, the answered
	// and the pushed stream are out.
	if len(c.got) != 5 {
		t.Fatalf("%d exchanges before close", len(c.got))
	}
	c.close()
	c.want(5)
	if e := c.byPath("/r1"); e.Flags != exchange.FlagNoResponse {
		t.Fatalf("reset stream: %d flags %b", e.Response.Status, e.Flags)
	}
	if e := c.byPath("/r3"); e.Response.Status != 200 || string(e.Response.Body) != "three" || e.Flags != 0 {
		t.Fatalf("answered stream: %+v", e.Response)
	}
	for _, p := range []string{"/r5", "/r7"} {
		if e := c.byPath(p); e.Flags != exchange.FlagNoResponse {
			t.Fatalf("%s after GOAWAY: flags %b", p, e.Flags)
		}
	}
	if e := c.byPath("/pushed.css"); string(e.Response.Body) != "body{}" || e.Flags != 0 {
		t.Fatalf("pushed: %q flags %b", e.Response.Body, e.Flags)
	}
}

func TestPushPromiseIsAnExchange(t *testing.T) {
	c := newConn(t, Config{})
	c.handshake()
	c.prefaces()
	c.headers(client, 1, true, ":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/index.html")
	sv := c.peers[server]
	c.check(sv.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, EndHeaders: true, PadLength: 3,
		BlockFragment: sv.enc.block(":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/app.js")}))
	c.headers(server, 1, false, ":status", "200")
	c.data(server, 1, true, "<html>")
	c.headers(server, 2, false, ":status", "200")
	c.data(server, 2, true, "js()")
	c.flush(client, 1448)
	c.flush(server, 1448)
	c.close()
	c.want(2)
	e := c.byPath("/app.js")
	if e.Response.Status != 200 || string(e.Response.Body) != "js()" || e.Client.String() != "10.0.0.1:40000" || e.Flags != 0 {
		t.Fatalf("pushed: %+v client %v flags %b", e.Response, e.Client, e.Flags)
	}
}

func TestResponseBeforeRequestAcrossQueues(t *testing.T) {
	// The server's direction is captured first (another capture queue).
	c := newConn(t, Config{})
	c.handshake()
	c.prefaces()
	c.headers(client, 1, false, ":method", "POST", ":scheme", "http", ":authority", "h", ":path", "/late")
	c.data(client, 1, true, "req")
	c.headers(server, 1, false, ":status", "202")
	c.data(server, 1, true, "resp")
	c.flush(server, 1448)
	if len(c.got) != 0 {
		t.Fatal("emitted before the request was seen")
	}
	c.flush(client, 1448)
	e := c.want(1)[0]
	if e.Request.Method != "POST" || string(e.Request.Body) != "req" || e.Response.Status != 202 || string(e.Response.Body) != "resp" || e.Flags != 0 {
		t.Fatalf("%+v %+v", e.Request, e.Response)
	}
	if !e.Response.Time.After(e.Request.Time) == false && e.Duration() < 0 {
		t.Fatalf("duration %v", e.Duration())
	}
}

// A server that answers before reading the request body and then resets the stream with
// NO_ERROR (nginx does), seen with the server's direction captured first: the reset must
// not throw the response away before the request arrives.
func TestResponseAndResetBeforeRequest(t *testing.T) {
	c := newConn(t, Config{})
	c.handshake()
	c.prefaces()
	c.headers(client, 1, false, ":method", "POST", ":scheme", "http", ":authority", "h", ":path", "/orders")
	c.data(client, 1, true, `{"sku":"A"}`)
	c.headers(client, 3, false, ":method", "POST", ":scheme", "http", ":authority", "h", ":path", "/refused")
	c.data(client, 3, true, "x")
	c.headers(server, 1, false, ":status", "201")
	c.data(server, 1, true, `{"id":42}`)
	c.check(c.peers[server].fr.WriteRSTStream(1, http2.ErrCodeNo))
	c.check(c.peers[server].fr.WriteRSTStream(3, http2.ErrCodeRefusedStream))
	c.flush(server, 1448)
	if len(c.got) != 0 {
		t.Fatal("emitted before the request was seen")
	}
	c.flush(client, 1448)
	c.close()
	c.want(2)
	if e := c.byPath("/orders"); e.Response.Status != 201 || string(e.Response.Body) != `{"id":42}` || e.Flags&exchange.FlagNoResponse != 0 {
		t.Fatalf("answered, then reset: status %d body %q flags %b", e.Response.Status, e.Response.Body, e.Flags)
	}
	if e := c.byPath("/refused"); e.Flags&exchange.FlagNoResponse == 0 {
		t.Fatalf("refused: status %d flags %b", e.Response.Status, e.Flags)
	}
}

func TestGapInDataKeepsFraming(t *testing.T) {
	c := newConn(t, Config{})
	c.handshake()
	c.prefaces()
	c.headers(client, 1, true, ":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/big")
	c.headers(client, 3, true, ":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/next")
	c.flush(client, 1448)
	c.headers(server, 1, false, ":status", "200")
	c.data(server, 1, true, strings.Repeat("a", 3000))
	c.headers(server, 3, false, ":status", "200")
	c.data(server, 3, true, "fine")
	b := c.pending(server)
	i := bytes.Index(b, []byte("aaaa"))
	c.segment(server, 0, b[:i+1000], 0)
	c.segment(server, 0, nil, 500) // 500 bytes of the DATA payload never captured
	c.segment(server, 0, b[i+1500:], 0)
	c.close()
	c.want(2)
	if e := c.byPath("/big"); e.Response.BodySize != 3000 || len(e.Response.Body) != 2500 || !e.Response.BodyTruncated || e.Flags != exchange.FlagGap {
		t.Fatalf("big: size %d kept %d truncated %v flags %b", e.Response.BodySize, len(e.Response.Body), e.Response.BodyTruncated, e.Flags)
	}
	if e := c.byPath("/next"); string(e.Response.Body) != "fine" || e.Flags != 0 {
		t.Fatalf("next: %q flags %b", e.Response.Body, e.Flags)
	}
}

func TestGapAcrossFramesResynchronises(t *testing.T) {
	c := newConn(t, Config{})
	c.handshake()
	c.prefaces()
	path := func(i int) string { return fmt.Sprintf("/item/%d", i) }
	for i := range 20 {
		c.headers(client, uint32(2*i+1), true, ":method", "GET", ":scheme", "http", ":authority", "h", ":path", path(i), "x-seq", fmt.Sprint(i))
	}
	c.flush(client, 1448)
	for i := range 20 {
		c.headers(server, uint32(2*i+1), false, ":status", "200", "etag", fmt.Sprintf("e%d", i))
		c.data(server, uint32(2*i+1), true, strings.Repeat("x", 100))
	}
	b := c.pending(server)
	// Lose 400 bytes in the middle: whole frames, header blocks included.
	c.segment(server, 0, b[:1000], 0)
	c.segment(server, 0, nil, 400)
	rest := b[1400:]
	for len(rest) > 0 {
		n := min(len(rest), 200)
		c.segment(server, 0, rest[:n], 0)
		rest = rest[n:]
	}
	c.close()
	c.want(20)
	s := c.p.Stats()
	if s.Events[EvFramingLost] != 1 {
		t.Fatalf("events %v", s.Events)
	}
	complete := 0
	for i := range 20 {
		e := c.byPath(path(i))
		if e.Response.Status == 200 && string(e.Response.Body) == strings.Repeat("x", 100) {
			complete++
		}
	}
	// Responses wholly before the gap, and those after it once the framing is found
	// again, are intact; the table was lost so later ones are flagged where they used it.
	if complete < 14 {
		t.Fatalf("only %d of 20 responses recovered; stats %+v", complete, s)
	}
	if c.budget.Used() != 0 {
		t.Fatalf("budget %d", c.budget.Used())
	}
}

func TestJoinedMidConnection(t *testing.T) {
	// The capture starts after the handshake, the prefaces and three exchanges that filled
	// both HPACK tables: those entries are never seen.
	c := newConn(t, Config{})
	c.prefaces()
	for i := range 3 {
		sid := uint32(2*i + 1)
		c.headers(client, sid, true, ":method", "GET", ":scheme", "http", ":authority", "svc.internal", ":path", "/api/orders", "x-tenant", "acme")
		c.headers(server, sid, false, ":status", "200", "content-type", "application/json", "x-served-by", "node-1")
		c.data(server, sid, true, "[]")
	}
	c.pending(client)
	c.pending(server)
	// Now the capture sees: a repeat request (fully indexed: path and tenant unknown), and
	// a new one whose fields are literals.
	c.headers(client, 7, true, ":method", "GET", ":scheme", "http", ":authority", "svc.internal", ":path", "/api/orders", "x-tenant", "acme")
	c.headers(client, 9, true, ":method", "DELETE", ":scheme", "http", ":authority", "svc.internal", ":path", "/api/orders/9", "x-tenant", "globex")
	c.headers(server, 7, false, ":status", "200", "content-type", "application/json", "x-served-by", "node-1")
	c.data(server, 7, true, "[1]")
	c.headers(server, 9, true, ":status", "204", "x-served-by", "node-2")
	// The same request again: DELETE and the path now come from entries seen after the join.
	c.headers(client, 11, true, ":method", "DELETE", ":scheme", "http", ":authority", "svc.internal", ":path", "/api/orders/9", "x-tenant", "globex")
	c.headers(server, 11, true, ":status", "204")
	// Nothing from before the join: decoded in full, not flagged.
	c.headers(client, 13, true, ":method", "PATCH", ":scheme", "http", ":path", "/fresh", "x-new", "1")
	c.headers(server, 13, true, ":status", "200", "x-new", "2")
	c.flush(client, 1448)
	c.flush(server, 1448)
	c.close()
	c.want(4)
	e7 := c.got[0]
	// :authority, :path and x-tenant were indexed before the join: unknown.
	if e7.Request.Method != "GET" || e7.Request.Target != "" || e7.Request.Host != "" || header(e7.Request.Headers, "x-tenant") != "" ||
		e7.Flags != exchange.FlagHeadersUnknown || e7.Response.Status != 200 || string(e7.Response.Body) != "[1]" {
		t.Fatalf("repeat: %+v %+v flags %b", e7.Request, e7.Response, e7.Flags)
	}
	// Literal values are decoded; x-tenant's and x-served-by's names are unknown entries.
	for _, e := range c.got[1:3] {
		if e.Request.Method != "DELETE" || e.Request.Target != "/api/orders/9" || len(e.Request.Headers) != 0 ||
			e.Response.Status != 204 || e.Flags != exchange.FlagHeadersUnknown {
			t.Fatalf("new: %+v %+v flags %b", e.Request, e.Response, e.Flags)
		}
	}
	e13 := c.got[3]
	if e13.Request.Method != "PATCH" || e13.Request.Target != "/fresh" || header(e13.Request.Headers, "x-new") != "1" ||
		header(e13.Response.Headers, "x-new") != "2" || e13.Flags != 0 {
		t.Fatalf("fresh: %+v %+v flags %b", e13.Request, e13.Response, e13.Flags)
	}
	if s := c.p.Stats(); s.Events[EvHPACKUnknown] < 6 || s.Outcomes[OutTruncated] != 3 || s.Outcomes[OutComplete] != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestSlowStreamsWaitOrphansExpire(t *testing.T) {
	c := newConn(t, Config{ResponseTimeout: 5 * time.Second})
	c.handshake()
	c.prefaces()
	c.headers(client, 1, true, ":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/watch")
	c.headers(server, 1, false, ":status", "200")
	c.data(server, 1, false, "event 1\n")
	// A response whose request the capture lost: the client's direction never shows it.
	c.headers(server, 3, true, ":status", "200")
	c.flush(client, 1448)
	c.flush(server, 1448)
	c.ts += int64(time.Minute)
	c.asm.Advance(c.ts)
	// A streaming response is reported when it ends, however long it takes.
	c.want(0)
	if s := c.p.Stats(); s.Outcomes[OutOrphanResponse] != 1 {
		t.Fatalf("orphan not counted: %+v", s)
	}
	c.data(server, 1, true, "event 2\n")
	c.flush(server, 1448)
	e := c.want(1)[0]
	if string(e.Response.Body) != "event 1\nevent 2\n" || e.Flags != 0 || e.Duration() < time.Minute || e.TimeToFirstByte() > time.Second {
		t.Fatalf("watch: %q flags %b duration %v ttfb %v", e.Response.Body, e.Flags, e.Duration(), e.TimeToFirstByte())
	}
	c.close()
	c.want(1)
	if c.budget.Used() != 0 {
		t.Fatalf("budget %d", c.budget.Used())
	}
}

func TestCapsAndBudget(t *testing.T) {
	c := newConn(t, Config{BodyCap: 100, MaxHeaderBytes: 200, MaxStreams: 2})
	c.handshake()
	c.prefaces()
	c.headers(client, 1, false, ":method", "POST", ":scheme", "http", ":authority", "h", ":path", "/up")
	c.data(client, 1, true, strings.Repeat("u", 1000))
	c.headers(server, 1, true, ":status", "200")
	c.flush(client, 1448)
	c.flush(server, 1448)
	// An oversized header block: dropped, the table forgotten.
	c.headers(client, 3, true, ":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/huge", "x-big", strings.Repeat("b", 500))
	// Three open streams with a limit of two: the oldest goes out early.
	for sid := uint32(5); sid <= 9; sid += 2 {
		c.headers(client, sid, true, ":method", "GET", ":scheme", "http", ":authority", "h", ":path", fmt.Sprintf("/open%d", sid))
	}
	c.flush(client, 1448)
	c.flush(server, 1448)
	s := c.p.Stats()
	if s.Drops[DropHeaderTooLarge] != 1 || s.Drops[DropStreamLimit] != 1 {
		t.Fatalf("drops %v", s.Drops)
	}
	c.close()
	up := c.byPath("/up")
	if len(up.Request.Body) != 100 || up.Request.BodySize != 1000 || !up.Request.BodyTruncated {
		t.Fatalf("cap: kept %d of %d truncated %v", len(up.Request.Body), up.Request.BodySize, up.Request.BodyTruncated)
	}
	if c.budget.Used() != 0 {
		t.Fatalf("budget %d", c.budget.Used())
	}
}

func TestContentEncodingDecoded(t *testing.T) {
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write([]byte(`{"compressed":true}`))
	w.Close()
	c := newConn(t, Config{})
	c.handshake()
	c.prefaces()
	c.headers(client, 1, true, ":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/gz", "accept-encoding", "gzip")
	c.headers(server, 1, false, ":status", "200", "content-encoding", "gzip")
	c.data(server, 1, true, gz.String())
	c.flush(client, 1448)
	c.flush(server, 1448)
	c.close()
	if e := c.want(1)[0]; string(e.Response.Body) != `{"compressed":true}` || e.Flags != 0 {
		t.Fatalf("%q flags %b", e.Response.Body, e.Flags)
	}
}

func TestRandomTrafficBudgetAndInvariants(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for round := range 50 {
		c := newConn(t, Config{BodyCap: 300})
		c.handshake()
		c.prefaces()
		n := 1 + r.IntN(20)
		for i := range n {
			sid := uint32(2*i + 1)
			c.headers(client, sid, false, ":method", "POST", ":scheme", "http", ":authority", "h", ":path", fmt.Sprintf("/r/%d", i))
			c.data(client, sid, true, strings.Repeat("q", r.IntN(600)))
			c.headers(server, sid, false, ":status", "200")
			c.data(server, sid, true, strings.Repeat("s", r.IntN(600)))
		}
		cb, sb := c.pending(client), c.pending(server)
		for len(cb)+len(sb) > 0 {
			who, b := client, &cb
			if len(cb) == 0 || len(sb) > 0 && r.IntN(2) == 0 {
				who, b = server, &sb
			}
			k := min(len(*b), 1+r.IntN(700))
			if r.IntN(30) == 0 {
				c.segment(who, 0, nil, k)
			} else {
				c.segment(who, 0, (*b)[:k], 0)
			}
			*b = (*b)[k:]
		}
		c.close()
		for _, e := range c.got {
			if len(e.Request.Body) > 300 || len(e.Response.Body) > 300 {
				t.Fatalf("round %d: body over the cap", round)
			}
		}
		if len(c.got) > n || c.budget.Used() != 0 {
			t.Fatalf("round %d: %d exchanges of %d, budget %d", round, len(c.got), n, c.budget.Used())
		}
	}
}

// TestFramesDoNotAllocate: DATA, WINDOW_UPDATE, PING, SETTINGS and PRIORITY frames of
// an open stream cost no allocation once its body buffer has grown.
func TestFramesDoNotAllocate(t *testing.T) {
	c := newConn(t, Config{BodyCap: 1 << 20})
	c.handshake()
	c.prefaces()
	c.headers(client, 1, true, ":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/stream")
	c.headers(server, 1, false, ":status", "200")
	c.flush(client, 1448)
	c.flush(server, 1448)
	sv := c.peers[server]
	sv.fr.WriteData(1, false, make([]byte, 1000))
	sv.fr.WriteWindowUpdate(0, 5000)
	sv.fr.WritePing(false, [8]byte{})
	sv.fr.WriteSettings()
	sv.fr.WritePriority(1, http2.PriorityParam{Weight: 9})
	frames := c.pending(server)
	k, d := tcp.NewKey(0, c.srv, c.cli)
	seg := tcp.Segment{Key: k, Dir: d, Flags: tcp.FlagACK, Payload: frames}
	seq := sv.seq
	// Grow the body buffer first, then measure.
	for range 200 {
		seg.Seq, seg.Timestamp = seq, c.ts
		c.asm.Segment(&seg)
		seq += uint32(len(frames))
	}
	n := testing.AllocsPerRun(200, func() {
		seg.Seq, seg.Timestamp = seq, c.ts
		c.asm.Segment(&seg)
		seq += uint32(len(frames))
	})
	if n != 0 {
		t.Fatalf("%v allocations per segment of five frames", n)
	}
}
