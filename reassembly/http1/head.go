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
}

var (
	errBadStartLine = errors.New("malformed start line")
	errBadHeader    = errors.New("malformed header field")
	errBadLength    = errors.New("invalid Content-Length")
)

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
				return h, errBadHeader
			}
			last := &h.headers[len(h.headers)-1]
			last.Value += " " + strings.TrimSpace(line)
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || hasSpace(name) {
			return h, errBadHeader
		}
		value = strings.TrimSpace(value)
		h.headers = append(h.headers, exchange.Header{Name: name, Value: value})
		if err := h.noteFraming(name, value); err != nil {
			return h, err
		}
	}
	if h.transferCoded {
		// RFC 9112 §6.3: Transfer-Encoding overrides Content-Length; a response whose last
		// coding is not chunked is delimited by close, a request like that cannot be framed.
		h.contentLength = -1
		if !h.chunked && !h.response {
			return h, errBadLength
		}
	}
	return h, nil
}

// noteFraming records the header fields that decide how the body is delimited.
func (h *head) noteFraming(name, value string) error {
	switch len(name) {
	case 4:
		if strings.EqualFold(name, "Host") {
			h.host = value
		}
	case 14:
		if strings.EqualFold(name, "Content-Length") {
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 || (h.contentLength >= 0 && h.contentLength != n) {
				return errBadLength
			}
			h.contentLength = n
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
		}
	}
	return nil
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
