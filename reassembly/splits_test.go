package reassembly

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
	"strings"
	"testing"
	"time"
)

// splitCase is a conversation whose result must not depend on where TCP cut it.
type splitCase struct {
	name       string
	reqs, resp string
	want       []string // per exchange: "METHOD path status body"
}

func splitCases() []splitCase {
	return []splitCase{
		{"chunked ext trailers",
			"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n0;x\r\nT: 1\r\n\r\n",
			"HTTP/1.1 200 OK\r\nContent-Length: 999\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX: y\r\nZ: w\r\n\r\n",
			[]string{"POST /c 200 ok framing_error"}}, // Content-Length beside Transfer-Encoding: flagged, TE wins
		{"pipelined HEAD in the middle",
			"GET /1 HTTP/1.1\r\n\r\nHEAD /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n",
			"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nc",
			[]string{"GET /1 200 a", "HEAD /2 200 ", "GET /3 200 c"}},
		{"1xx then final",
			"PUT /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
			"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone",
			[]string{"PUT /u 201 done"}},
		{"bare LF",
			"GET /lf HTTP/1.1\nHost: h\n\nGET /lf2 HTTP/1.1\n\n",
			"HTTP/1.1 200 OK\nContent-Length: 2\n\nokHTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nab\n0\n\n",
			[]string{"GET /lf 200 ok", "GET /lf2 200 ab"}},
		{"obs-fold and absolute form",
			"GET http://api.example/v1/x?q=1 HTTP/1.1\r\nX-Long: a\r\n  b\r\n\r\n",
			"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
			[]string{"GET /v1/x 404 "}},
		{"304 and 204 with lengths",
			"GET /a HTTP/1.1\r\n\r\nDELETE /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n",
			"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
			[]string{"GET /a 304 ", "DELETE /b 204 ", "GET /c 200 z"}},
	}
}

func runSplit(t *testing.T, tc splitCase, cutReq, cutResp func(string) []string, serverFirst bool) {
	t.Helper()
	c := newConv(t, Config{})
	c.handshake()
	var rq, rs []tcp.Segment
	for _, p := range cutReq(tc.reqs) {
		rq = append(rq, c.seg(true, 0, p))
	}
	for _, p := range cutResp(tc.resp) {
		rs = append(rs, c.seg(false, 0, p))
	}
	if serverFirst {
		rq, rs = rs, rq
	}
	for _, s := range rq {
		c.send(s)
	}
	for _, s := range rs {
		c.send(s)
	}
	c.close()
	got := c.want(len(tc.want))
	for i, e := range got {
		s := fmt.Sprintf("%s %s %d %s", e.Request.Method, e.Request.Path, e.Response.Status, e.Response.Body)
		if e.Flags == exchange.FlagFramingError {
			s += " framing_error"
		}
		if s != tc.want[i] || e.Flags&^exchange.FlagFramingError != 0 {
			t.Fatalf("exchange %d = %q flags %b, want %q", i, s, e.Flags, tc.want[i])
		}
	}
	if st := c.a.Stats(); st.Exchanges["parse_error"] != 0 || st.Exchanges["orphan_response"] != 0 {
		t.Fatalf("stats %+v", st.Exchanges)
	}
}

func whole(s string) []string { return []string{s} }

func bytewise(s string) []string {
	out := make([]string, len(s))
	for i := range s {
		out[i] = s[i : i+1]
	}
	return out
}

func cutAt(n int) func(string) []string {
	return func(s string) []string { return []string{s[:n], s[n:]} }
}

func TestFramingIndependentOfSegmentation(t *testing.T) {
	for _, tc := range splitCases() {
		t.Run(tc.name, func(t *testing.T) {
			for _, serverFirst := range []bool{false, true} {
				runSplit(t, tc, bytewise, bytewise, serverFirst)
				for i := 1; i < len(tc.reqs); i++ {
					runSplit(t, tc, cutAt(i), whole, serverFirst)
				}
				for i := 1; i < len(tc.resp); i++ {
					runSplit(t, tc, whole, cutAt(i), serverFirst)
				}
			}
		})
	}
}

func TestSequenceWrap(t *testing.T) {
	c := newConv(t, Config{})
	c.cseq, c.sseq = 0xFFFFFFF0, 0xFFFFFFFA
	c.handshake()
	body := strings.Repeat("w", 300)
	c.client("POST /wrap HTTP/1.1\r\nContent-Length: 300\r\n\r\n" + body[:5])
	lost := c.seg(true, 0, body[5:100]) // delivered after the rest: crosses zero out of order
	c.client(body[100:])
	c.send(lost)
	c.send(lost) // and duplicated
	c.server(resp(200, "Content-Length: 2\r\n", "ok"))
	c.close()
	got := c.want(1)
	if string(got[0].Request.Body) != body || got[0].Flags != 0 || string(got[0].Response.Body) != "ok" {
		t.Fatalf("body %d flags %b", len(got[0].Request.Body), got[0].Flags)
	}
}

func TestFourGigabyteBody(t *testing.T) {
	const size = 4<<30 + 123
	c := newConv(t, Config{BodyCap: 100})
	c.cseq = 0x80000000
	c.handshake()
	c.client(fmt.Sprintf("PUT /huge HTTP/1.1\r\nContent-Length: %d\r\n\r\n", int64(size)))
	seg := strings.Repeat("u", 60000)
	for sent := int64(0); sent < size; {
		n := min(int64(len(seg)), size-sent)
		c.client(seg[:n])
		sent += n
	}
	c.server(resp(200, "Content-Length: 0\r\n", ""))
	c.client("GET /after HTTP/1.1\r\n\r\n")
	c.server(resp(200, "Content-Length: 1\r\n", "a"))
	c.close()
	got := c.want(2)
	r := got[0].Request
	if r.BodySize != size || !r.BodyTruncated || len(r.Body) != 100 || got[0].Response.Status != 200 {
		t.Fatalf("size %d truncated %v len %d status %d", r.BodySize, r.BodyTruncated, len(r.Body), got[0].Response.Status)
	}
	if got[1].Request.Path != "/after" {
		t.Fatalf("lost sync: %s", got[1].Request.Path)
	}
}

func TestKeepaliveProbeIgnored(t *testing.T) {
	c := newConv(t, Config{})
	c.handshake()
	c.client("GET /k HTTP/1.1\r\n\r\n")
	c.server(resp(200, "Content-Length: 1\r\n", "k"))
	for range 3 { // keepalive: one garbage byte at nextSeq-1, both ways
		p := c.seg(true, 0, "\x00")
		p.Seq--
		c.cseq--
		c.send(p)
		q := c.seg(false, 0, "\x00")
		q.Seq--
		c.sseq--
		c.send(q)
	}
	c.client("GET /k2 HTTP/1.1\r\n\r\n")
	c.server(resp(200, "Content-Length: 2\r\n", "k2"))
	c.close()
	got := c.want(2)
	if string(got[1].Response.Body) != "k2" || got[1].Flags != 0 {
		t.Fatalf("second %q flags %b", got[1].Response.Body, got[1].Flags)
	}
}

func TestPureACKsCreateNothing(t *testing.T) {
	c := newConv(t, Config{})
	for range 1000 {
		c.send(c.seg(true, 0, ""))
		c.send(c.seg(false, tcp.FlagFIN, ""))
	}
	if s := c.a.Stats(); s.Flows != 0 || s.FlowsCreated != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestIdleEvictionEmitsPending(t *testing.T) {
	c := newConv(t, Config{IdleTimeout: 10 * time.Second, ResponseTimeout: time.Hour})
	c.handshake()
	c.client("GET /idle HTTP/1.1\r\n\r\n")
	c.server("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
	c.client("GET /never HTTP/1.1\r\n\r\n")
	c.a.Advance(c.ts + int64(11*time.Second))
	got := c.want(2)
	if got[0].Flags&exchange.FlagIncomplete == 0 || string(got[0].Response.Body) != "abc" || got[1].Flags&exchange.FlagNoResponse == 0 {
		t.Fatalf("flags %b %b", got[0].Flags, got[1].Flags)
	}
	if s := c.a.Stats(); s.Flows != 0 || s.FlowsEvicted != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestMaxPendingOverflow(t *testing.T) {
	// Five pipelined requests with room for three: the two oldest are emitted without a
	// response, their responses are recognised as theirs when they come (and counted),
	// and the three after them still pair with their own.
	c := newConv(t, Config{MaxPending: 3})
	c.handshake()
	for i := range 5 {
		c.client(fmt.Sprintf("GET /%d HTTP/1.1\r\n\r\n", i))
	}
	for i := range 5 {
		c.server(resp(200, "Content-Length: 1\r\n", fmt.Sprint(i)))
	}
	c.close()
	got := c.want(5)
	for i, e := range got {
		if i < 2 && e.Flags&exchange.FlagNoResponse == 0 || i >= 2 && string(e.Response.Body) != fmt.Sprint(i) {
			t.Fatalf("exchange %d %s: %q flags %b", i, e.Request.Path, e.Response.Body, e.Flags)
		}
	}
	if s := c.a.Stats(); s.Drops["pending_full"] != 2 || s.Exchanges["late_response"] != 2 || s.Exchanges["orphan_response"] != 0 {
		t.Fatalf("stats %+v %+v", s.Drops, s.Exchanges)
	}
}

func TestGzipCutByBodyCap(t *testing.T) {
	var plain bytes.Buffer
	for i := range 20000 {
		fmt.Fprintf(&plain, "line %d %x\n", i, i*7919)
	}
	var gz bytes.Buffer
	w, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	w.Write(plain.Bytes())
	w.Close()
	for _, tc := range []struct {
		name string
		body []byte
		cap  int
	}{{"raw over cap", gz.Bytes(), 4096}, {"decoded over cap", gz.Bytes(), gz.Len() + 10}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newConv(t, Config{BodyCap: tc.cap})
			c.handshake()
			c.client("GET /gz HTTP/1.1\r\n\r\n")
			c.server(resp(200, fmt.Sprintf("Content-Encoding: gzip\r\nContent-Length: %d\r\n", len(tc.body)), string(tc.body)))
			c.close()
			r := c.want(1)[0].Response
			if !r.BodyTruncated || len(r.Body) == 0 || len(r.Body) > tc.cap || !bytes.HasPrefix(plain.Bytes(), r.Body) || c.got[0].Flags&exchange.FlagDecodeError != 0 {
				t.Fatalf("len %d truncated %v flags %b prefix %v", len(r.Body), r.BodyTruncated, c.got[0].Flags, bytes.HasPrefix(plain.Bytes(), r.Body))
			}
		})
	}
}

func TestInvalidGzipKeepsRawBody(t *testing.T) {
	c := newConv(t, Config{})
	c.handshake()
	c.client("GET /bad HTTP/1.1\r\n\r\n")
	c.server(resp(200, "Content-Encoding: gzip\r\nContent-Length: 9\r\n", "not gzip!"))
	c.client("GET /bad2 HTTP/1.1\r\n\r\n")
	c.server(resp(200, "Content-Encoding: gzip\r\nContent-Length: 14\r\n", "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xffgarb"))
	c.close()
	for _, e := range c.want(2) {
		if e.Flags&exchange.FlagDecodeError == 0 || int64(len(e.Response.Body)) != e.Response.BodySize {
			t.Fatalf("%s: body %q flags %b", e.Request.Path, e.Response.Body, e.Flags)
		}
	}
}

func TestHeaderNameWithSpaceIsReportedFlagged(t *testing.T) {
	// A request a server must refuse is still an API call on the wire: reported, flagged,
	// and the connection stays in step.
	c := newConv(t, Config{})
	c.handshake()
	c.client("GET /bad HTTP/1.1\r\nBad Name: x\r\n\r\n")
	c.server(resp(400, "Content-Length: 0\r\n", ""))
	c.client("GET /good HTTP/1.1\r\n\r\n")
	c.server(resp(200, "Content-Length: 1\r\n", "g"))
	c.close()
	got := c.want(2)
	if got[0].Request.Path != "/bad" || got[0].Response.Status != 400 || got[0].Flags != exchange.FlagFramingError {
		t.Fatalf("first %s %d flags %b", got[0].Request.Path, got[0].Response.Status, got[0].Flags)
	}
	if got[1].Request.Path != "/good" || string(got[1].Response.Body) != "g" || got[1].Flags != 0 {
		t.Fatalf("second %s %q flags %b", got[1].Request.Path, got[1].Response.Body, got[1].Flags)
	}
}

func TestCloseDelimitedThenFIN(t *testing.T) {
	c := newConv(t, Config{})
	c.handshake()
	c.client("GET /c HTTP/1.1\r\n\r\n")
	c.server("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of")
	c.server(" it")
	c.send(c.seg(false, tcp.FlagFIN, ""))
	got := c.want(1)
	if string(got[0].Response.Body) != "all of it" || got[0].Flags != 0 {
		t.Fatalf("%q %b", got[0].Response.Body, got[0].Flags)
	}
}

func TestResponsesBeforeRequestsWithFINs(t *testing.T) {
	// Ten short connections on one reused 5-tuple; each reply and FIN overtakes its request.
	c := newConv(t, Config{})
	for i := range 10 {
		c.cseq, c.sseq = uint32(i)*100000+1, uint32(i)*300000+7
		syn := c.seg(true, tcp.FlagSYN, "")
		syn.Flags = tcp.FlagSYN
		synAck := c.seg(false, tcp.FlagSYN, "")
		ack := c.seg(true, 0, "")
		req := c.seg(true, 0, fmt.Sprintf("GET /%d HTTP/1.0\r\n\r\n", i))
		c.cseq = req.Seq + uint32(len(req.Payload))
		rsp := c.seg(false, 0, "HTTP/1.0 200 OK\r\n\r\nbody"+fmt.Sprint(i))
		sfin := c.seg(false, tcp.FlagFIN, "")
		cfin := c.seg(true, tcp.FlagFIN, "")
		for _, s := range []tcp.Segment{syn, synAck, rsp, sfin, ack, req, cfin} {
			c.send(s)
		}
	}
	got := c.want(10)
	for i, e := range got {
		if e.Request.Path != fmt.Sprintf("/%d", i) || string(e.Response.Body) != "body"+fmt.Sprint(i) || e.Flags != 0 {
			t.Fatalf("exchange %d: %s %q flags %b", i, e.Request.Path, e.Response.Body, e.Flags)
		}
	}
}
