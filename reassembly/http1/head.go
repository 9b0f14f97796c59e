package http1

import (
	"bytes"
	"errors"
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"strconv"
	"strings"
)

// head is a parsed HTTP start line plus the header fields that decide framing.
type head struct {
	response bool
	method   string
	target   string
	proto    string
	status   int
	reason   string
	headers  []exchange.Header

	contentLength int64 // -1 when absent
	chunked       bool
	transferCoded bool   // a Transfer-Encoding header is present (chunked or not)
	encoding      string // lower-cased Content-Encoding
	host          string
	upgradeH2C    bool // Upgrade lists h2c: the client asks to switch to HTTP/2

	// Framing the sender got wrong: fields a server must refuse (RFC 9112 §5.1, §6.3).
	// The message is still reported, flagged, with the framing a recipient must apply.
	malformed   bool
	badLength   bool // Content-Length values invalid or in conflict
	lengthFound bool // a Content-Length field was present
	untilClose  bool // the body length cannot be determined: it runs to the connection's close
}

var errBadStartLine = errors.New("malformed start line")

// startKind classifies the first bytes of a message.
type startKind uint8

const (
	startNeedMore startKind = iota
	startRequest
	startResponse
	startInvalid
)

// maxMethodLen bounds method tokens; real ones are short, and a limit lets binary data be
// rejected within the first few bytes.
const maxMethodLen = 24

// classifyStart looks at the first bytes of a message and says whether they begin a
// request line ("METHOD SP"), a status line ("HTTP/1.x SP"), or neither.
func classifyStart(b []byte) startKind {
	const httpPrefix = "HTTP/1."
	if len(b) > 0 && b[0] == 'H' {
		n := min(len(b), len(httpPrefix))
		if string(b[:n]) == httpPrefix[:n] {
			if len(b) < len(httpPrefix)+2 {
				return startNeedMore
			}
			if b[7] >= '0' && b[7] <= '9' && b[8] == ' ' {
				return startResponse
			}
			return startInvalid
		}
	}
	for i, c := range b {
		if c == ' ' {
			if i == 0 {
				return startInvalid
			}
			return startRequest
		}
		if i >= maxMethodLen || !isMethodChar(c) {
			return startInvalid
		}
	}
	return startNeedMore
}

func isMethodChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c == '-' || c == '_'
}

// validStartLine checks a complete first line more strictly than classifyStart, for
// resynchronisation inside arbitrary bytes.
func validStartLine(line []byte, wantResponse bool) bool {
	line = bytes.TrimSuffix(line, []byte("\r"))
	if wantResponse {
		return len(line) >= 12 && string(line[:7]) == "HTTP/1." && line[8] == ' ' &&
			isDigit(line[9]) && isDigit(line[10]) && isDigit(line[11]) && (len(line) == 12 || line[12] == ' ')
	}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || sp > maxMethodLen {
		return false
	}
	for _, c := range line[:sp] {
		if !isMethodChar(c) {
			return false
		}
	}
	return bytes.HasSuffix(line, []byte(" HTTP/1.1")) || bytes.HasSuffix(line, []byte(" HTTP/1.0"))
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// parseHead parses a header block (start line and fields, without the blank line that ends
// it). All strings share one allocation: the block copied into a string once.
func parseHead(block []byte) (head, error) {
	h := head{contentLength: -1}
	s := string(block)
	line, rest, _ := strings.Cut(s, "\n")
	line = strings.TrimSuffix(line, "\r")
	if strings.HasPrefix(line, "HTTP/") {
		h.response = true
		proto, after, ok := strings.Cut(line, " ")
		if !ok || len(after) < 3 {
			return h, errBadStartLine
		}
		code, reason, _ := strings.Cut(after, " ")
		st, err := strconv.Atoi(code)
		if err != nil || len(code) != 3 || st < 100 {
			return h, errBadStartLine
		}
		h.proto, h.status, h.reason = proto, st, reason
	} else {
		m, after, ok := strings.Cut(line, " ")
		if !ok || m == "" {
			return h, errBadStartLine
		}
		i := strings.LastIndexByte(after, ' ')
		if i <= 0 {
			return h, errBadStartLine
		}
		h.method, h.target, h.proto = m, after[:i], after[i+1:]
		if !strings.HasPrefix(h.proto, "HTTP/1.") {
			return h, errBadStartLine
		}
	}
	if rest != "" {
		h.headers = make([]exchange.Header, 0, strings.Count(rest, "\n")+1)
	}
	for rest != "" {
		line, rest, _ = strings.Cut(rest, "\n")
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' { // obsolete line folding: continue the previous value
			if len(h.headers) == 0 {
				h.malformed = true
				continue
			}
			last := &h.headers[len(h.headers)-1]
			last.Value += " " + strings.TrimSpace(line)
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if n := len(name); ok && n > 0 && (name[n-1] == ' ' || name[n-1] == '\t') {
			// Whitespace before the colon: a server must refuse the request, a proxy strips
			// it from a response. Either way the field is what it says, minus the space.
			h.malformed, name = true, strings.TrimRight(name, " \t")
		}
		if !ok || name == "" || hasSpace(name) {
			h.malformed = true // not a field at all: skipped
			continue
		}
		value = strings.TrimSpace(value)
		h.headers = append(h.headers, exchange.Header{Name: name, Value: value})
		h.noteFraming(name, value)
	}
	h.decideFraming()
	return h, nil
}

// decideFraming applies RFC 9112 §6.3 to the framing fields seen.
func (h *head) decideFraming() {
	switch {
	case h.transferCoded:
		// Transfer-Encoding overrides Content-Length, but a message with both is how
		// requests are smuggled: flag it. A response whose last coding is not chunked is
		// delimited by close (a legitimate form); a request like that cannot be framed and
		// the server must answer 400 and close, so its body runs to the close.
		h.malformed = h.malformed || h.lengthFound
		h.contentLength = -1
		if !h.chunked {
			h.untilClose = true
			h.malformed = h.malformed || !h.response
		}
	case h.badLength:
		// Invalid or conflicting Content-Length: an unrecoverable framing error that ends
		// the connection; what follows until the close is this message's.
		h.malformed, h.untilClose, h.contentLength = true, true, -1
	}
}

// noteFraming records the header fields that decide how the body is delimited.
func (h *head) noteFraming(name, value string) {
	switch len(name) {
	case 4:
		if strings.EqualFold(name, "Host") {
			h.host = value
		}
	case 14:
		if strings.EqualFold(name, "Content-Length") {
			h.noteLength(value)
		}
	case 7:
		if strings.EqualFold(name, "Upgrade") {
			h.upgradeH2C = h.upgradeH2C || listHas(value, "h2c")
		}
	case 16:
		if strings.EqualFold(name, "Content-Encoding") {
			h.encoding = strings.ToLower(value)
		}
	case 17:
		if strings.EqualFold(name, "Transfer-Encoding") {
			h.transferCoded = true
			h.chunked = strings.EqualFold(lastToken(value), "chunked")
			if !h.chunked && containsTokenFold(value, "chunked") {
				h.malformed = true // chunked, but not last: "chunked, identity"
			}
		}
	}
}

// noteLength takes a Content-Length field. A list of identical values ("42, 42", as some
// proxies fold repeated fields) is that value; anything else that is not one
// non-negative decimal, or that differs from an earlier field, is a framing error.
func (h *head) noteLength(value string) {
	h.lengthFound = true
	if n, err := strconv.ParseUint(value, 10, 63); err == nil && (h.contentLength < 0 || h.contentLength == int64(n)) {
		h.contentLength = int64(n) // the common case: one plain number
		return
	}
	if strings.TrimSpace(value) == "" {
		h.badLength = true
		return
	}
	for value != "" {
		var v string
		v, value, _ = strings.Cut(value, ",")
		v = strings.TrimSpace(v)
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || v[0] == '+' || (h.contentLength >= 0 && h.contentLength != n) {
			h.badLength = true
			return
		}
		h.contentLength = n
	}
}

func containsTokenFold(list, token string) bool {
	for list != "" {
		var t string
		t, list, _ = strings.Cut(list, ",")
		if strings.EqualFold(strings.TrimSpace(t), token) {
			return true
		}
	}
	return false
}

// lastToken returns the last element of a comma-separated list, trimmed.
func lastToken(list string) string {
	if i := strings.LastIndexByte(list, ','); i >= 0 {
		list = list[i+1:]
	}
	return strings.TrimSpace(list)
}

func hasSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' || s[i] == '\t' {
			return true
		}
	}
	return false
}

// findHeadEnd returns the index just past the blank line ending a header block in b
// ("\r\n\r\n" or a bare "\n\n"), searching from from, or -1.
func findHeadEnd(b []byte, from int) int {
	for i := from; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		if i < len(b) && b[i] == '\n' {
			return i + 1
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2
		}
	}
	return -1
}
