package reassembly

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// keepAlive scripts n request/response pairs on one busy keep-alive connection (one
// millisecond apart) and calls lose(i, segment) for each response segment: when it returns
// true, the capture misses that segment. Responses are 3 segments each.
func keepAlive(t *testing.T, n int, lose func(i, seg int) bool) ([]*exchange.Exchange, Stats) {
	c := newConv(t, Config{})
	c.handshake()
	body := strings.Repeat("b", 2000)
	for i := range n {
		c.client(fmt.Sprintf("GET /items/%d HTTP/1.1\r\nHost: api\r\n\r\n", i))
		r := resp(200, "Content-Length: 2000\r\n", body)
		parts := []string{r[:900], r[900:1900], r[1900:]}
		for j, p := range parts {
			s := c.seg(false, 0, p)
			if !lose(i, j) {
				c.send(s)
			}
		}
		c.send(c.seg(true, 0, "")) // the client acknowledges the whole response
	}
	c.close()
	return c.got, c.forgotten()
}

func TestOneLostSegmentCostsOneExchange(t *testing.T) {
	for _, seg := range []int{0, 1, 2} { // the response's head, the middle of its body, its end
		t.Run(fmt.Sprint("segment ", seg), func(t *testing.T) {
			got, s := keepAlive(t, 1000, func(i, j int) bool { return i == 500 && j == seg })
			if len(got) != 1000 {
				t.Fatalf("%d exchanges, want 1000; %+v", len(got), s.Exchanges)
			}
			damaged := 0
			for i, e := range got {
				if e.Request.Path != fmt.Sprintf("/items/%d", i) {
					t.Fatalf("exchange %d is %s", i, e.Request.Path)
				}
				if e.Flags != 0 || e.Response.Status != 200 || len(e.Response.Body) != 2000 {
					damaged++
					if i != 500 || e.Flags&(exchange.FlagGap|exchange.FlagNoResponse) == 0 {
						t.Fatalf("exchange %d damaged: status %d, %d body bytes, flags %b", i, e.Response.Status, len(e.Response.Body), e.Flags)
					}
				}
			}
			if damaged != 1 {
				t.Fatalf("%d damaged exchanges, want 1", damaged)
			}
			if s.Exchanges["orphan_response"] != 0 || s.Drops["pending_full"] != 0 {
				t.Fatalf("stats %+v %+v", s.Exchanges, s.Drops)
			}
		})
	}
}

func TestLossAmplificationAtMostOne(t *testing.T) {
	// Every 37th response segment lost: each lost segment may cost its own exchange, no more.
	lost := 0
	got, s := keepAlive(t, 1000, func(i, j int) bool {
		if (i*3+j)%37 == 0 {
			lost++
			return true
		}
		return false
	})
	damaged := 0
	for _, e := range got {
		if e.Flags != 0 || len(e.Response.Body) != 2000 {
			damaged++
		}
	}
	if len(got) != 1000 || damaged > lost {
		t.Fatalf("%d exchanges, %d damaged by %d lost segments; %+v", len(got), damaged, lost, s.Exchanges)
	}
	t.Logf("%d lost segments damaged %d of 1000 exchanges (%+v)", lost, damaged, s.Exchanges)
}

func TestLostHEADRequestDoesNotShiftPairing(t *testing.T) {
	// The HEAD request was lost: its reply announces a body it never sends. Without the
	// method the parser must notice the next status line instead of eating it as a body.
	c := newConv(t, Config{})
	c.handshake()
	_ = c.seg(true, 0, "HEAD /h HTTP/1.1\r\n\r\n") // never captured
	c.server(resp(200, "Content-Length: 5000\r\n", ""))
	for i := range 3 {
		c.client(fmt.Sprintf("GET /g/%d HTTP/1.1\r\n\r\n", i))
		c.server(resp(200, "Content-Length: 1\r\n", fmt.Sprint(i)))
	}
	c.close()
	c.a.FlushAll() // the client's stream waits behind the lost request until given up
	got := c.want(3)
	for i, e := range got {
		if e.Request.Path != fmt.Sprintf("/g/%d", i) || string(e.Response.Body) != fmt.Sprint(i) {
			t.Fatalf("exchange %d: %s -> %q", i, e.Request.Path, e.Response.Body)
		}
	}
	if s := c.a.Stats(); s.Exchanges["orphan_response"] != 1 || s.Exchanges["parse_error"] != 0 {
		t.Fatalf("stats %+v", s.Exchanges)
	}
}

func TestLostResponseWithLaggingClientQueue(t *testing.T) {
	// The two directions travel different capture queues and the client's lags. Response 1
	// was lost; response 2 is seen before request 2. It acknowledges request 2's bytes, so
	// it must wait for request 2 instead of pairing with request 1.
	c := newConv(t, Config{ReorderTimeout: 100 * time.Millisecond})
	c.handshake()
	c.client("GET /one HTTP/1.1\r\n\r\n")
	_ = c.seg(false, 0, resp(200, "Content-Length: 3\r\n", "one")) // lost by the mirror
	req2 := c.seg(true, 0, "GET /two HTTP/1.1\r\n\r\n")
	resp2 := c.seg(false, 0, resp(200, "Content-Length: 3\r\n", "two"))
	c.ts += int64(time.Second)
	resp2.Timestamp = c.ts
	c.send(resp2) // the server's queue runs ahead: its hole is given up after the reorder timeout
	c.a.Advance(c.ts + int64(200*time.Millisecond))
	c.send(req2)
	c.close()
	c.a.FlushAll()
	got := c.want(2)
	if got[0].Request.Path != "/one" || got[0].Flags&exchange.FlagNoResponse == 0 {
		t.Fatalf("first: %s status %d %q flags %b", got[0].Request.Path, got[0].Response.Status, got[0].Response.Body, got[0].Flags)
	}
	if got[1].Request.Path != "/two" || string(got[1].Response.Body) != "two" {
		t.Fatalf("second: %s %q", got[1].Request.Path, got[1].Response.Body)
	}
}

func TestClientQueueLagsPastTheHoldCap(t *testing.T) {
	// The client's direction is on a capture ring that lags the server's by more responses
	// than the hold cap takes: 24 keep-alive exchanges with 4 KiB responses, a 64 KiB cap.
	// Only the oldest responses that did not fit may be lost; the old code gave up all it
	// held each time the cap was passed (16 of 24 here).
	const n, capBytes = 24, 64 << 10
	c := newConv(t, Config{FlowBufferBytes: capBytes})
	c.handshake()
	var reqs, resps []tcp.Segment
	for i := range n {
		reqs = append(reqs, c.seg(true, 0, fmt.Sprintf("GET /g/%d HTTP/1.1\r\nHost: h\r\n\r\n", i)))
		body := fmt.Sprintf("%04d", i) + strings.Repeat("x", 4092)
		r := resp(200, "Content-Length: 4096\r\n", body)
		for len(r) > 0 { // in segments of at most 1448 bytes
			k := min(len(r), 1448)
			resps = append(resps, c.seg(false, 0, r[:k]))
			r = r[k:]
		}
	}
	for _, s := range resps {
		c.send(s)
	}
	for _, s := range reqs {
		c.send(s)
	}
	c.close()
	c.a.FlushAll()
	got := c.want(n)
	paired := 0
	for i, e := range got {
		if e.Request.Path != fmt.Sprintf("/g/%d", i) {
			t.Fatalf("exchange %d: %s", i, e.Request.Path)
		}
		if e.Response.Status == 0 {
			continue
		}
		if want := fmt.Sprintf("%04d", i); !strings.HasPrefix(string(e.Response.Body), want) {
			t.Fatalf("exchange %d paired with the response %.4s", i, e.Response.Body)
		}
		paired++
	}
	// At least what three quarters of the cap holds is kept: about 11 responses of ~4.3 KiB.
	if keepable := capBytes / 4 * 3 / (4096 + 100 + 3*48); paired < keepable {
		t.Fatalf("%d of %d responses paired, want at least %d", paired, n, keepable)
	}
	t.Logf("%d of %d paired; stats %+v", paired, n, c.a.Stats().Exchanges)
}
