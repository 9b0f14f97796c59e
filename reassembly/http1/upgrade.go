package http1

import (
	"bytes"
	"strings"

	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// Upgrader takes over connections that switch from HTTP/1.1 to HTTP/2 with
// "Upgrade: h2c" (RFC 7540 §3.2).
type Upgrader interface {
	// UpgradeH2C returns the stream that consumes the connection from now on. req is the
	// request that asked for the switch (HTTP/2 stream 1, answered in HTTP/2; this parser
	// no longer charges the budget for it: the new stream charges what it keeps); client
	// is the client's direction; switched is true when the server's 101 was seen (its next
	// bytes are HTTP/2), false when the client's preface came first (the 101 is still to
	// come).
	UpgradeH2C(c *tcp.Conn, req *exchange.Exchange, client tcp.Dir, switched bool) tcp.Stream
}

// SetUpgrader makes u take over connections that upgrade to h2c; without one they are
// ignored after the 101, like any other protocol switch.
func (p *Parser) SetUpgrader(u Upgrader) { p.up = u }

// h2Preface is the start of the HTTP/2 client preface.
const h2Preface = "PRI * HTTP/2.0\r\n"

func isH2Preface(b []byte) bool {
	n := min(len(b), len(h2Preface))
	return n >= 4 && string(b[:n]) == h2Preface[:n]
}

// pendingH2C returns the complete request that offered h2c and awaits its response.
func (s *stream) pendingH2C() *exState {
	if n := len(s.pending); n > 0 && s.pending[n-1].h2c && s.pending[n-1].reqDone {
		return s.pending[n-1]
	}
	return nil
}

// upgrade hands the connection to the HTTP/2 stream: the upgrade request goes with it,
// requests still pending before it are emitted unanswered, parsing stops here and the
// bytes after the switch point are forwarded (see feed's stSwitched).
func (s *stream) upgrade(st *exState, client tcp.Dir, switched bool) {
	for len(s.pending) > 0 {
		old := s.popPending()
		if old == st {
			continue
		}
		old.ex.Flags |= exchange.FlagNoResponse
		if old.reqDone {
			s.p.emit(old)
		} else {
			s.p.budget.Release(old.charged)
		}
	}
	for i := range s.side {
		sd := &s.side[i]
		sd.cur, sd.msg = nil, messageBody{}
		sd.state = stSwitched
		sd.dropBuffers()
	}
	// This parser is done with the connection: Close will not reach it.
	s.p.budget.Release(st.charged + streamCost)
	st.charged = 0
	s.pending, s.owed = nil, nil
	st.ex.Response = exchange.Response{}
	s.tc.SetStream(s.p.up.UpgradeH2C(s.tc, &st.ex, client, switched))
}

// listHas reports whether a comma-separated header value lists token (case-insensitive).
func listHas(list, token string) bool {
	for list != "" {
		var t string
		t, list, _ = strings.Cut(list, ",")
		if strings.EqualFold(strings.TrimSpace(t), token) {
			return true
		}
	}
	return false
}

// LooksLikeHTTP1 reports whether b can begin an HTTP/1.x message (a request line's
// method, or "HTTP/1."), or is too short to tell.
func LooksLikeHTTP1(b []byte) bool { return classifyStart(b) != startInvalid }

// FindStartLine returns the offset of the first complete, valid request or status line in
// b that begins at b's start or after a line feed, or -1: where a parser joining a
// connection mid-way could start.
func FindStartLine(b []byte) int {
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		if line := b[i : i+j]; validStartLine(line, true) || validStartLine(line, false) {
			return i
		}
		i += j + 1
	}
	return -1
}
