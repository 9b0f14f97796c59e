package reassembly

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
)

func resp(status int, headers, body string) string {
	return fmt.Sprintf("HTTP/1.1 %d X\r\n%s\r\n%s", status, headers, body)
}

func TestKeepAliveAndQuery(t *testing.T) {
	c := newConv(t, Config{})
	c.handshake()
	c.client("GET /api/users/7?page=2&q=a%20b HTTP/1.1\r\nHost: api.example\r\n\r\n")
	c.server(resp(200, "Content-Type: application/json\r\nContent-Length: 9\r\n", `{"id":7}`+"\n"))
	c.client("POST /api/users HTTP/1.1\r\nHost: api.example\r\nContent-Length: 11\r\n\r\n{\"n\":\"bob\"}")
	c.server(resp(201, "Content-Length: 0\r\n", ""))
	c.close()
	got := c.want(2)
	e := got[0]
	if e.Request.Method != "GET" || e.Request.Path != "/api/users/7" || e.Request.RawQuery != "page=2&q=a%20b" || e.Request.Host != "api.example" {
		t.Fatalf("request = %+v", e.Request)
	}
	if e.Response.Status != 200 || string(e.Response.Body) != `{"id":7}`+"\n" || e.Flags != 0 {
		t.Fatalf("response = %+v flags %b", e.Response, e.Flags)
	}
	if e.Client.String() != "10.0.0.1:51234" || e.Server.String() != "10.0.0.2:8080" {
		t.Fatalf("addrs %v -> %v", e.Client, e.Server)
	}
	if got[1].Request.Method != "POST" || string(got[1].Request.Body) != `{"n":"bob"}` || got[1].Response.Status != 201 {
		t.Fatalf("second = %+v", got[1])
	}
	c.a.Advance(c.ts + int64(10*time.Second))
	if s := c.a.Stats(); s.Flows != 0 || s.Exchanges["complete"] != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestPipelining(t *testing.T) {
	c := newConv(t, Config{})
	c.handshake()
	var reqs, resps strings.Builder
	for i := range 8 {
		fmt.Fprintf(&reqs, "GET /p/%d HTTP/1.1\r\nHost: h\r\n\r\n", i)
		fmt.Fprintf(&resps, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(fmt.Sprint(i)), fmt.Sprint(i))
	}
	c.client(reqs.String())
	// Responses split at odd places across segments.
	r := resps.String()
	for len(r) > 0 {
		n := min(len(r), 37)
		c.server(r[:n])
		r = r[n:]
	}
	c.close()
	got := c.want(8)
	for i, e := range got {
		if e.Request.Path != fmt.Sprintf("/p/%d", i) || string(e.Response.Body) != fmt.Sprint(i) {
			t.Fatalf("exchange %d: %s -> %q", i, e.Request.Path, e.Response.Body)
		}
	}
}

func TestFraming(t *testing.T) {
	var gz, df, zl, br bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write([]byte("hello gzip"))
	w.Close()
	fw, _ := flate.NewWriter(&df, 5)
	fw.Write([]byte("hello deflate"))
	fw.Close()
	zw := zlib.NewWriter(&zl)
	zw.Write([]byte("hello zlib"))
	zw.Close()
	bw := brotli.NewWriter(&br)
	bw.Write([]byte("hello brotli"))
	bw.Close()

	cases := []struct {
		name     string
		req      string
		resp     string
		wantBody string
		status   int
	}{
		{"chunked+trailers", "GET /c HTTP/1.1\r\n\r\n", resp(200, "Transfer-Encoding: chunked\r\n", "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n"), "hello world", 200},
		{"HEAD has no body", "HEAD /h HTTP/1.1\r\n\r\n", resp(200, "Content-Length: 1234\r\n", ""), "", 200},
		{"204", "DELETE /d HTTP/1.1\r\n\r\n", resp(204, "", ""), "", 204},
		{"304 with length", "GET /e HTTP/1.1\r\nIf-None-Match: \"x\"\r\n\r\n", resp(304, "Content-Length: 99\r\nETag: \"x\"\r\n", ""), "", 304},
		{"100-continue", "PUT /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", "HTTP/1.1 100 Continue\r\n\r\n" + resp(200, "Content-Length: 2\r\n", "ok"), "ok", 200},
		{"gzip", "GET /g HTTP/1.1\r\n\r\n", resp(200, fmt.Sprintf("Content-Encoding: gzip\r\nContent-Length: %d\r\n", gz.Len()), gz.String()), "hello gzip", 200},
		{"raw deflate", "GET /d HTTP/1.1\r\n\r\n", resp(200, fmt.Sprintf("Content-Encoding: deflate\r\nContent-Length: %d\r\n", df.Len()), df.String()), "hello deflate", 200},
		{"zlib deflate", "GET /z HTTP/1.1\r\n\r\n", resp(200, fmt.Sprintf("Content-Encoding: deflate\r\nContent-Length: %d\r\n", zl.Len()), zl.String()), "hello zlib", 200},
		{"br", "GET /b HTTP/1.1\r\n\r\n", resp(200, fmt.Sprintf("Content-Encoding: br\r\nContent-Length: %d\r\n", br.Len()), br.String()), "hello brotli", 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newConv(t, Config{})
			c.handshake()
			c.client(tc.req)
			if strings.HasPrefix(tc.resp, "HTTP/1.1 100") {
				c.server("HTTP/1.1 100 Continue\r\n\r\n")
				c.client("abc")
				c.server(strings.TrimPrefix(tc.resp, "HTTP/1.1 100 Continue\r\n\r\n"))
			} else {
				c.server(tc.resp)
			}
			// A second exchange proves framing left the stream in sync.
			c.client("GET /next HTTP/1.1\r\n\r\n")
			c.server(resp(200, "Content-Length: 4\r\n", "next"))
			c.close()
			got := c.want(2)
			if got[0].Response.Status != tc.status || string(got[0].Response.Body) != tc.wantBody || got[0].Flags != 0 {
				t.Fatalf("got status %d body %q flags %b", got[0].Response.Status, got[0].Response.Body, got[0].Flags)
			}
			if string(got[1].Response.Body) != "next" {
				t.Fatalf("lost sync: second body %q", got[1].Response.Body)
			}
		})
	}
}

func TestReadUntilClose(t *testing.T) {
	c := newConv(t, Config{})
	c.handshake()
	c.client("GET /stream HTTP/1.0\r\n\r\n")
	c.server("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\npart one ")
	c.server("part two")
	c.close()
	got := c.want(1)
	if string(got[0].Response.Body) != "part one part two" || got[0].Flags != 0 {
		t.Fatalf("body %q flags %b", got[0].Response.Body, got[0].Flags)
	}
}

func TestBodyCapTruncates(t *testing.T) {
	c := newConv(t, Config{BodyCap: 1000})
	c.handshake()
	body := strings.Repeat("x", 5000)
	c.client("GET /big HTTP/1.1\r\n\r\n")
	c.server(resp(200, "Content-Length: 5000\r\n", body[:2000]))
	c.server(body[2000:])
	c.client("GET /after HTTP/1.1\r\n\r\n")
	c.server(resp(200, "Content-Length: 1\r\n", "z"))
	c.close()
	got := c.want(2)
	r := got[0].Response
	if len(r.Body) != 1000 || !r.BodyTruncated || r.BodySize != 5000 {
		t.Fatalf("len %d truncated %v size %d", len(r.Body), r.BodyTruncated, r.BodySize)
	}
	if string(got[1].Response.Body) != "z" {
		t.Fatal("lost sync after a truncated body")
	}
}

func TestResponseBeforeRequest(t *testing.T) {
	// The two directions were captured on different queues: the reply is seen first.
	c := newConv(t, Config{})
	c.handshake()
	req := c.seg(true, 0, "GET /late HTTP/1.1\r\n\r\n")
	c.cseq = req.Seq + uint32(len(req.Payload)) // server acks the request
	r := c.seg(false, 0, resp(200, "Content-Length: 2\r\n", "hi"))
	c.send(r)
	c.send(req)
	c.close()
	got := c.want(1)
	if got[0].Request.Path != "/late" || string(got[0].Response.Body) != "hi" {
		t.Fatalf("got %+v", got[0])
	}
}

func TestMidstreamJoin(t *testing.T) {
	c := newConv(t, Config{})
	// No handshake: capture starts inside a response body whose request we never saw.
	c.server("tail of an earlier body\r\n")
	c.server(resp(200, "Content-Length: 3\r\n", "old"))
	c.client("GET /fresh HTTP/1.1\r\n\r\n")
	c.server(resp(200, "Content-Length: 5\r\n", "fresh"))
	c.a.FlushAll()
	got := c.want(1)
	if got[0].Request.Path != "/fresh" || string(got[0].Response.Body) != "fresh" {
		t.Fatalf("got %s %q", got[0].Request.Path, got[0].Response.Body)
	}
	if s := c.a.Stats(); s.Exchanges["orphan_response"] != 1 {
		t.Fatalf("orphans = %d", s.Exchanges["orphan_response"])
	}
}

func TestOutOfOrderAndDuplicates(t *testing.T) {
	c := newConv(t, Config{})
	c.handshake()
	req := "POST /o HTTP/1.1\r\nContent-Length: 26\r\n\r\nabcdefghijklmnopqrstuvwxyz"
	var segs []tcp.Segment
	for i := 0; i < len(req); i += 7 {
		segs = append(segs, c.seg(true, 0, req[i:min(i+7, len(req))]))
	}
	order := []int{3, 0, 2, 0, 1, 5, 4, 6, 2, 7, 8}
	for _, i := range order {
		if i < len(segs) {
			c.send(segs[i])
		}
	}
	for _, s := range segs { // a second copy of everything (both ENIs mirrored)
		c.send(s)
	}
	c.server(resp(200, "Content-Length: 0\r\n", ""))
	c.close()
	got := c.want(1)
	if string(got[0].Request.Body) != "abcdefghijklmnopqrstuvwxyz" {
		t.Fatalf("body %q", got[0].Request.Body)
	}
	s := c.forgotten()
	if s.OutOfOrderSegments == 0 || s.Drops["duplicate"] == 0 || s.BufferedBytes != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestTruncatedCaptureKeepsFraming(t *testing.T) {
	c := newConv(t, Config{})
	c.handshake()
	c.client("GET /t HTTP/1.1\r\n\r\n")
	s := c.seg(false, 0, resp(200, "Content-Length: 3000\r\n", strings.Repeat("a", 1000)))
	// Cloud truncation: the packet promised 2000 more bytes than were captured.
	s.Missing = 2000
	c.sseq += 2000
	c.send(s)
	c.client("GET /u HTTP/1.1\r\n\r\n")
	c.server(resp(200, "Content-Length: 1\r\n", "u"))
	c.close()
	got := c.want(2)
	r := got[0].Response
	if !r.BodyTruncated || len(r.Body) != 1000 || r.BodySize != 3000 || got[0].Flags&exchange.FlagGap == 0 {
		t.Fatalf("truncated body: len %d size %d trunc %v flags %b", len(r.Body), r.BodySize, r.BodyTruncated, got[0].Flags)
	}
	if got[1].Request.Path != "/u" || string(got[1].Response.Body) != "u" {
		t.Fatalf("second %+v", got[1])
	}
}

func TestSlowResponseIsNotLost(t *testing.T) {
	// A long poll answered after 35 s (past every timeout), and a 40 s event stream: both
	// paired, and the duration runs to the end of the response.
	c := newConv(t, Config{ResponseTimeout: 5 * time.Second})
	c.handshake()
	c.client("GET /poll HTTP/1.1\r\n\r\n")
	c.a.Advance(c.ts + int64(35*time.Second))
	c.ts += int64(35 * time.Second)
	c.want(0)
	c.server(resp(200, "Content-Length: 4\r\n", "news"))
	got := c.want(1)
	if got[0].Response.Status != 200 || string(got[0].Response.Body) != "news" || got[0].Flags != 0 {
		t.Fatalf("got %d %q flags %b", got[0].Response.Status, got[0].Response.Body, got[0].Flags)
	}
	if d := got[0].Duration(); d < 35*time.Second || d > 36*time.Second {
		t.Fatalf("duration %v", d)
	}

	c.client("GET /events HTTP/1.1\r\n\r\n")
	c.server("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
	for range 4 {
		c.ts += int64(10 * time.Second)
		c.a.Advance(c.ts)
		c.server("6\r\ndata:1\r\n")
	}
	c.server("0\r\n\r\n")
	got = c.want(2)
	if d, ttfb := got[1].Duration(), got[1].TimeToFirstByte(); d < 40*time.Second || ttfb > time.Second {
		t.Fatalf("event stream: duration %v, time to first byte %v", d, ttfb)
	}
}

func TestUnansweredRequestEmittedAtClose(t *testing.T) {
	c := newConv(t, Config{})
	c.handshake()
	c.client("GET /void HTTP/1.1\r\n\r\n")
	c.a.Advance(c.ts + int64(time.Minute))
	c.want(0)
	c.close()
	got := c.want(1)
	if got[0].Response.Status != 0 || got[0].Flags&exchange.FlagNoResponse == 0 {
		t.Fatalf("got %+v", got[0])
	}
}

func TestNonHTTPIgnored(t *testing.T) {
	c := newConv(t, Config{})
	c.handshake()
	c.client("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 tls hello")
	c.server("\x16\x03\x03 server hello")
	c.client("GET / HTTP/1.1\r\n\r\n") // inside the TLS stream this is just bytes
	c.close()
	c.want(0)
	if s := c.a.Stats(); s.Exchanges["non_http"] != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestHugeHeaderBounded(t *testing.T) {
	c := newConv(t, Config{MaxHeaderBytes: 8 << 10})
	c.handshake()
	c.client("GET /x HTTP/1.1\r\nX-Big: ")
	chunk := strings.Repeat("A", 64<<10)
	for range 16 { // 1 MiB header line
		c.client(chunk)
	}
	c.client("\r\n\r\n")
	c.client("GET /ok HTTP/1.1\r\n\r\n")
	c.server(resp(200, "Content-Length: 2\r\n", "ok"))
	c.close()
	got := c.want(1)
	if got[0].Request.Path != "/ok" {
		t.Fatalf("got %s", got[0].Request.Path)
	}
	if s := c.a.Stats(); s.Drops["header_too_large"] != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestFlowTableBounded(t *testing.T) {
	a := NewAssembler(Config{MaxFlows: 100}, exchange.HandlerFunc(func(*exchange.Exchange) {}))
	for i := range 10000 {
		k, d := tcp.NewKey(0, tcp.Endpoint{Port: uint16(i), Addr: [16]byte{15: byte(i >> 8)}}, ep("10.0.0.2", 80))
		a.Segment(&tcp.Segment{Key: k, Dir: d, Flags: tcp.FlagACK, Seq: 1, Payload: []byte("GET / HTTP/1.1\r\n"), Timestamp: int64(i + 1)})
	}
	s := a.Stats()
	if s.Flows != 100 || s.Drops["flow_table_full"] != 9900 {
		t.Fatalf("stats %+v", s)
	}
}

func TestLostResponseRealigns(t *testing.T) {
	c := newConv(t, Config{})
	c.handshake()
	c.client("GET /one HTTP/1.1\r\n\r\n")
	lost := c.seg(false, 0, resp(200, "Content-Length: 3\r\n", "one"))
	_ = lost // the capture lost this whole response
	c.client("GET /two HTTP/1.1\r\n\r\n")
	c.server(resp(200, "Content-Length: 3\r\n", "two"))
	c.close()
	c.a.Advance(c.ts + int64(2*time.Second)) // the reorder timeout declares the gap
	got := c.want(2)
	if got[0].Request.Path != "/one" || got[0].Flags&exchange.FlagNoResponse == 0 {
		t.Fatalf("first: %s status %d flags %b", got[0].Request.Path, got[0].Response.Status, got[0].Flags)
	}
	if got[1].Request.Path != "/two" || string(got[1].Response.Body) != "two" {
		t.Fatalf("second: %s %q", got[1].Request.Path, got[1].Response.Body)
	}
}

func TestResponsesLongBeforeRequests(t *testing.T) {
	// Each direction was captured on its own queue and flushed late: three keep-alive
	// responses reach the assembler before any of their requests.
	c := newConv(t, Config{})
	c.handshake()
	var reqs, resps []tcp.Segment
	for i := range 3 {
		q := c.seg(true, 0, fmt.Sprintf("GET /r/%d HTTP/1.1\r\n\r\n", i))
		reqs = append(reqs, q)
		resps = append(resps, c.seg(false, 0, resp(200, "Content-Length: 1\r\n", fmt.Sprint(i))))
	}
	for _, s := range resps {
		c.send(s)
	}
	for _, s := range reqs {
		c.send(s)
	}
	c.close()
	got := c.want(3)
	for i, e := range got {
		if e.Request.Path != fmt.Sprintf("/r/%d", i) || string(e.Response.Body) != fmt.Sprint(i) {
			t.Fatalf("exchange %d: %s -> %q", i, e.Request.Path, e.Response.Body)
		}
	}
	if s := c.a.Stats(); s.Exchanges["orphan_response"] != 0 {
		t.Fatalf("orphans: %+v", s.Exchanges)
	}
}

func TestReadUntilCloseResponseBeforeRequest(t *testing.T) {
	// The server's reply and its FIN are captured before the request they answer.
	c := newConv(t, Config{})
	c.handshake()
	req := c.seg(true, 0, "GET /legacy HTTP/1.0\r\n\r\n")
	r := c.seg(false, 0, "HTTP/1.0 200 OK\r\n\r\nuntil close")
	fin := c.seg(false, tcp.FlagFIN, "")
	c.send(r)
	c.send(fin)
	c.send(req)
	c.send(c.seg(true, tcp.FlagFIN, ""))
	got := c.want(1)
	if got[0].Request.Path != "/legacy" || string(got[0].Response.Body) != "until close" || got[0].Flags != 0 {
		t.Fatalf("got %s %q flags %b", got[0].Request.Path, got[0].Response.Body, got[0].Flags)
	}
}

func TestInOrderBodySegmentsDoNotAllocate(t *testing.T) {
	c := newConv(t, Config{})
	c.handshake()
	c.client("GET /big HTTP/1.1\r\n\r\n")
	c.server(resp(200, "Content-Length: 100000000\r\n", ""))
	s := c.seg(false, 0, strings.Repeat("b", 1448)) // the segment's bytes, built once
	allocs := testing.AllocsPerRun(2000, func() {
		c.a.Segment(&s)
		s.Seq += uint32(len(s.Payload))
		s.Timestamp++
	})
	if st := c.a.Stats(); st.OutOfOrderSegments != 0 || st.Drops["duplicate"] != 0 {
		t.Fatalf("segments were not in order: %+v", st)
	}
	if allocs != 0 {
		t.Fatalf("%v allocations per in-order segment", allocs)
	}
}

func TestOutOfOrderCapSkipsTheGap(t *testing.T) {
	c := newConv(t, Config{FlowBufferBytes: 3000})
	c.handshake()
	c.client("GET /cap HTTP/1.1\r\n\r\n")
	c.server(resp(200, "Content-Length: 10000\r\n", ""))
	lost := c.seg(false, 0, strings.Repeat("l", 1000)) // never captured
	_ = lost
	for range 9 { // 9000 bytes wait behind the hole: over the 3000-byte cap
		c.server(strings.Repeat("x", 1000))
	}
	c.client("GET /next HTTP/1.1\r\n\r\n")
	c.server(resp(200, "Content-Length: 1\r\n", "n"))
	c.close()
	got := c.want(2)
	r := got[0].Response
	if !r.BodyTruncated || got[0].Flags&exchange.FlagGap == 0 || r.BodySize != 10000 {
		t.Fatalf("first: size %d truncated %v flags %b", r.BodySize, r.BodyTruncated, got[0].Flags)
	}
	if string(got[1].Response.Body) != "n" {
		t.Fatalf("lost sync: %q", got[1].Response.Body)
	}
	s := c.forgotten()
	if s.Drops["flow_buffer_full"] == 0 || s.Gaps == 0 || s.BufferedBytes != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestHeldResponsesCountAgainstTheCaps(t *testing.T) {
	// A server streaming tiny segments whose request never shows up: the held bytes and
	// their per-segment marks are bounded by the flow cap, then given up as orphans.
	c := newConv(t, Config{FlowBufferBytes: 4096})
	c.handshake()
	c.server("HTTP/1.1 200 OK\r\n\r\n")
	for range 500 {
		c.server("x")
	}
	s := c.a.Stats()
	if s.BufferedBytes > 4096+64 { // the cap, plus one held segment's bookkeeping
		t.Fatalf("%d bytes buffered over a 4096-byte cap", s.BufferedBytes)
	}
	if s.Exchanges["orphan_response"] != 1 {
		t.Fatalf("stats %+v", s.Exchanges)
	}
	c.close()
	if s := c.forgotten(); s.BufferedBytes != 0 {
		t.Fatalf("%d bytes still buffered after close", s.BufferedBytes)
	}
}

func TestUnansweredBodiesShareOneBudget(t *testing.T) {
	// Many connections each send a large request that is never answered: the bodies held
	// for them stop growing at the budget, and are released once emitted.
	var got []*exchange.Exchange
	a := NewAssembler(Config{BufferBytes: 100 << 10}, exchange.HandlerFunc(func(e *exchange.Exchange) { got = append(got, e) }))
	body := strings.Repeat("p", 30<<10)
	for i := range 10 {
		c := &conv{t: t, a: a, cli: ep("10.0.0.1", uint16(2000+i)), srv: ep("10.0.0.2", 80), cseq: 1, sseq: 1, ts: int64(i + 1)}
		c.handshake()
		c.client(fmt.Sprintf("POST /up HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	}
	if a.budget.Used() > 100<<10 {
		t.Fatalf("%d body bytes held over a 100 KiB budget", a.budget.Used())
	}
	if s := a.Stats(); s.Drops["body_memory"] == 0 {
		t.Fatalf("no body_memory drops: %+v", s.Drops)
	}
	a.FlushAll()
	if len(got) != 10 || a.budget.Used() != 0 {
		t.Fatalf("%d exchanges emitted, %d body bytes still held", len(got), a.budget.Used())
	}
	truncated := 0
	for _, e := range got {
		if e.Request.BodyTruncated {
			truncated++
		}
	}
	if truncated == 0 {
		t.Fatal("no body was flagged truncated")
	}
}

func TestTransferEncodingWithoutChunkedIsCloseDelimited(t *testing.T) {
	c := newConv(t, Config{})
	c.handshake()
	c.client("GET /te HTTP/1.1\r\n\r\n")
	c.server("HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 2\r\n\r\nmore than two bytes")
	c.close()
	got := c.want(1)
	if string(got[0].Response.Body) != "more than two bytes" {
		t.Fatalf("body %q", got[0].Response.Body)
	}
}
