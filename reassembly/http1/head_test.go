package http1

import (
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"strings"
	"testing"
)

func TestParseHeadRequest(t *testing.T) {
	h, err := parseHead([]byte("POST /api/v1/items?x=1 HTTP/1.1\r\nHost: api.example\r\nContent-Length: 12\r\n" +
		"Content-Encoding: GZIP\r\nX-Folded: one\r\n two\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if h.response || h.method != "POST" || h.target != "/api/v1/items?x=1" || h.proto != "HTTP/1.1" || h.host != "api.example" ||
		h.contentLength != 12 || h.chunked || h.encoding != "gzip" {
		t.Fatalf("%+v", h)
	}
	if len(h.headers) != 4 || h.headers[3] != (exchange.Header{Name: "X-Folded", Value: "one two"}) {
		t.Fatalf("headers %q", h.headers)
	}
}

func TestParseHeadResponse(t *testing.T) {
	h, err := parseHead([]byte("HTTP/1.1 404 Not Found\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	// Transfer-Encoding overrides Content-Length (RFC 9112 §6.3).
	if !h.response || h.status != 404 || h.reason != "Not Found" || !h.chunked || h.contentLength != -1 {
		t.Fatalf("%+v", h)
	}
}

func TestParseHeadRejectsStartLines(t *testing.T) {
	for _, block := range []string{
		"GET /\r\n",           // no protocol
		"GET / HTTP/2.0\r\n",  // not HTTP/1
		"HTTP/1.1 20 OK\r\n",  // two-digit status
		"HTTP/1.1 abc OK\r\n", // not a number
	} {
		if _, err := parseHead([]byte(block)); err == nil {
			t.Errorf("accepted %q", block)
		}
	}
}

// Framing a server must refuse is reported with the framing RFC 9112 §6.3 gives a
// recipient, never dropped.
func TestParseHeadFramingErrors(t *testing.T) {
	for _, tc := range []struct {
		block      string
		malformed  bool
		length     int64
		chunked    bool
		untilClose bool
		fields     int
	}{
		{"GET / HTTP/1.1\r\nContent-Length: 42, 42\r\n", false, 42, false, false, 1},
		{"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n", false, 1, false, false, 2},
		{"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n", true, -1, false, true, 2},
		{"GET / HTTP/1.1\r\nContent-Length: -1\r\n", true, -1, false, true, 1},
		{"GET / HTTP/1.1\r\nContent-Length: +1\r\n", true, -1, false, true, 1},
		{"GET / HTTP/1.1\r\nContent-Length:\r\n", true, -1, false, true, 1},
		{"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\nContent-Length: 3\r\n", true, -1, false, true, 2},
		{"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n", true, -1, false, true, 1},
		{"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n", true, -1, true, false, 2},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n", false, -1, false, true, 1},
		{"GET / HTTP/1.1\r\nHost : a\r\nContent-Length : 2\r\n", true, 2, false, false, 2},
		{"GET / HTTP/1.1\r\nBad Name: x\r\nNo colon here\r\n", true, -1, false, false, 0},
		{"GET / HTTP/1.1\r\n folded-first\r\nA: b\r\n", true, -1, false, false, 1},
	} {
		h, err := parseHead([]byte(tc.block))
		if err != nil {
			t.Errorf("%q: %v", tc.block, err)
			continue
		}
		if h.malformed != tc.malformed || h.contentLength != tc.length || h.chunked != tc.chunked || h.untilClose != tc.untilClose || len(h.headers) != tc.fields {
			t.Errorf("%q: malformed %v length %d chunked %v untilClose %v fields %d", tc.block, h.malformed, h.contentLength, h.chunked, h.untilClose, len(h.headers))
		}
	}
}

func TestClassifyStart(t *testing.T) {
	for in, want := range map[string]startKind{
		"":                                  startNeedMore,
		"GE":                                startNeedMore,
		"GET ":                              startRequest,
		"M-SEARCH * HTTP":                   startRequest,
		"HTTP/1.":                           startNeedMore,
		"HTTP/1.1 200":                      startResponse,
		"HTTP/2 200":                        startInvalid,
		"get / HTTP/1.1":                    startInvalid,
		" GET":                              startInvalid,
		"\x16\x03\x01":                      startInvalid,
		strings.Repeat("A", maxMethodLen+1): startInvalid,
	} {
		if got := classifyStart([]byte(in)); got != want {
			t.Errorf("classifyStart(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestFindHeadEnd(t *testing.T) {
	for in, want := range map[string]int{
		"GET / HTTP/1.1\r\n\r\nbody": 18,
		"GET / HTTP/1.1\n\nbody":     16,
		"GET / HTTP/1.1\r\nA: b\r\n": -1,
		"GET / HTTP/1.1\r\n\r":       -1,
	} {
		if got := findHeadEnd([]byte(in), 0); got != want {
			t.Errorf("findHeadEnd(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestParseChunkSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1a": 26, "FF;ext=1": 255, " 10 ": 16} {
		if n, ok := parseChunkSize([]byte(in)); !ok || n != want {
			t.Errorf("parseChunkSize(%q) = %d %v", in, n, ok)
		}
	}
	for _, in := range []string{"", "g", "-1", "1234567890abcdef0"} {
		if _, ok := parseChunkSize([]byte(in)); ok {
			t.Errorf("parseChunkSize(%q) accepted", in)
		}
	}
}

func TestSplitTarget(t *testing.T) {
	host := ""
	if p, q := splitTarget("CONNECT", "db.internal:5432", &host); p != "/" || q != "" || host != "db.internal:5432" {
		t.Errorf("CONNECT authority form: %q %q host %q", p, q, host)
	}
	for _, tc := range []struct{ target, host, path, query, wantHost string }{
		{"/a/b?c=d", "h", "/a/b", "c=d", "h"},
		{"http://api.example:8080/x?y", "", "/x", "y", "api.example:8080"},
		{"http://api.example", "", "/", "", "api.example"},
		{"https://other/x", "kept", "/x", "", "kept"},
		{"http://api.example?q=1", "", "/", "q=1", "api.example"},
		{"*", "h", "/*", "", "h"},
		{"relative/path?x", "h", "/relative/path", "x", "h"},
	} {
		host := tc.host
		p, q := splitTarget("GET", tc.target, &host)
		if p != tc.path || q != tc.query || host != tc.wantHost {
			t.Errorf("splitTarget(%q) = %q %q host %q", tc.target, p, q, host)
		}
	}
}

// FuzzParseHead: any header block either parses into a consistent head or is refused.
func FuzzParseHead(f *testing.F) {
	f.Add([]byte("GET /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"))
	f.Add([]byte("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n"))
	f.Fuzz(func(t *testing.T, block []byte) {
		h, err := parseHead(block)
		if err != nil {
			return
		}
		if h.response && (h.status < 100 || h.status > 999) {
			t.Fatalf("status %d accepted", h.status)
		}
		if !h.response && (h.method == "" || !strings.HasPrefix(h.proto, "HTTP/1.")) {
			t.Fatalf("request line accepted: %q %q", h.method, h.proto)
		}
		if h.chunked && h.contentLength != -1 {
			t.Fatal("chunked with a Content-Length")
		}
	})
}
