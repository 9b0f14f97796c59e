package http2

import (
	"strings"
	"time"

	"github.com/metlo-labs/metlo-appliance/reassembly/content"
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// Roles of a stream's two directions.
const (
	roleNone     int8 = -1
	roleRequest  int8 = 0
	roleResponse int8 = 1
)

// message is one side of an HTTP/2 stream.
type message struct {
	started, ended bool
	encoding       string // Content-Encoding, lower-cased
	grpc           bool   // Content-Type application/grpc…: length-prefixed messages
	grpcJSON       bool   // application/grpc+json: the messages are JSON already
	grpcEncoding   string // grpc-encoding: how compressed messages are compressed
}

// h2stream is one HTTP/2 stream: a request and its response becoming one exchange.
type h2stream struct {
	id      uint32
	ex      exchange.Exchange
	role    [2]int8    // by direction: which message that direction sends
	msg     [2]message // by role
	created int64      // packet time it was first seen, for the response timeout
	reqSeen bool       // the request's headers were seen: the stream can be emitted
	reset   bool       // RST_STREAM came before the request's headers (another capture queue)
	charged int        // bytes charged to the budget until emitted: this state, header fields, body capacity
}

// charge adds n bytes the stream cannot do without (state, header fields) to the budget.
func (st *h2stream) charge(p *Parser, n int) {
	p.budget.Require(n)
	st.charged += n
}

// headersCost is what header fields hold in memory.
func headersCost(hs []exchange.Header) int {
	n := cap(hs) * headerCost
	for i := range hs {
		n += len(hs[i].Name) + len(hs[i].Value)
	}
	return n
}

// flagUnfinished marks what a stream ended early lacks.
func (st *h2stream) flagUnfinished() {
	req, resp := &st.msg[roleRequest], &st.msg[roleResponse]
	switch {
	case !resp.started:
		st.ex.Flags |= exchange.FlagNoResponse
	case !resp.ended:
		st.ex.Flags |= exchange.FlagIncomplete
	}
	if req.started && !req.ended {
		st.ex.Flags |= exchange.FlagIncomplete
	}
}

// setAddrs fills the exchange's endpoints; client is the client's direction.
func (st *h2stream) setAddrs(s *stream, client tcp.Dir) {
	k := s.tc.Key()
	c, srv := k.Lo, k.Hi
	if client == tcp.HiToLo {
		c, srv = k.Hi, k.Lo
	}
	st.ex.Tunnel, st.ex.Client, st.ex.Server = k.Tunnel, c.AddrPort(), srv.AddrPort()
}

// kind is what a header block is.
type kind uint8

const (
	kindOther    kind = iota // no pseudo-header: trailers, or a block whose pseudo-headers are unknown
	kindRequest              // :method
	kindResponse             // :status
	kindTrailers
)

func classify(fields []field) kind {
	for i := range fields {
		switch fields[i].name {
		case ":method":
			return kindRequest
		case ":status":
			return kindResponse
		}
	}
	return kindOther
}

// informational reports a 1xx response head (its final response follows).
func informational(fields []field) bool {
	for i := range fields {
		if f := &fields[i]; f.name == ":status" {
			return len(f.value) == 3 && f.value[0] == '1'
		}
	}
	return false
}

// regular converts the block's regular (non-pseudo) fields we could decode.
func regular(fields []field, into []exchange.Header) []exchange.Header {
	n := 0
	for i := range fields {
		if f := &fields[i]; !f.unknown && (f.name == "" || f.name[0] != ':') {
			n++
		}
	}
	if n == 0 {
		return into
	}
	if into == nil {
		into = make([]exchange.Header, 0, n)
	}
	for i := range fields {
		if f := &fields[i]; !f.unknown && (f.name == "" || f.name[0] != ':') {
			into = append(into, exchange.Header{Name: f.name, Value: f.value})
		}
	}
	return into
}

// noteField records what the message's fields say about its body.
func (m *message) noteField(f *field) {
	switch f.name {
	case "content-encoding":
		m.encoding = strings.ToLower(strings.TrimSpace(f.value))
	case "content-type":
		if hasPrefixFold(f.value, "application/grpc") {
			m.grpc = true
			m.grpcJSON = hasPrefixFold(f.value, "application/grpc+json")
		}
	case "grpc-encoding":
		m.grpcEncoding = strings.ToLower(strings.TrimSpace(f.value))
	}
}

// setRequest fills the request from its header block; client is the client's direction
// (the block's for a request, the other one for a server push promise).
func (st *h2stream) setRequest(s *stream, h *side, fields []field, client tcp.Dir) {
	req := &st.ex.Request
	m := &st.msg[roleRequest]
	for i := range fields {
		f := &fields[i]
		if f.unknown {
			continue
		}
		switch f.name {
		case ":method":
			req.Method = f.value
		case ":scheme":
			req.Scheme = f.value
		case ":authority":
			req.Host = f.value
		case ":path":
			req.Target = f.value
		case "host":
			if req.Host == "" {
				req.Host = f.value
			}
		default:
			m.noteField(f)
		}
	}
	req.Headers = regular(fields, nil)
	st.charge(s.p, headersCost(req.Headers))
	switch {
	case strings.HasPrefix(req.Target, "/"):
		req.Path, req.RawQuery, _ = strings.Cut(req.Target, "?")
	case req.Target == "*": // OPTIONS *
		req.Path = "/*"
	case req.Target == "": // CONNECT names only the authority (or :path was unknown)
		req.Path = "/"
		if req.Method == "CONNECT" {
			req.Target = req.Host
		}
	default:
		req.Path, req.RawQuery, _ = strings.Cut("/"+req.Target, "?")
	}
	req.Proto = "HTTP/2.0"
	req.Time = time.Unix(0, h.blockTS)
	st.role[client], st.role[1-client] = roleRequest, roleResponse
	st.setAddrs(s, client)
	m.started, st.reqSeen = true, true
}

// setResponse fills the response from its (final) header block.
func (st *h2stream) setResponse(s *stream, h *side, fields []field) {
	resp := &st.ex.Response
	m := &st.msg[roleResponse]
	for i := range fields {
		f := &fields[i]
		if f.unknown {
			continue
		}
		if f.name == ":status" {
			resp.Status = parseStatus(f.value)
		} else {
			m.noteField(f)
		}
	}
	resp.Headers = regular(fields, nil)
	st.charge(s.p, headersCost(resp.Headers))
	resp.Proto = "HTTP/2.0"
	resp.Time = time.Unix(0, h.blockTS)
	st.role[h.dir] = roleResponse
	if st.role[1-h.dir] == roleNone {
		st.role[1-h.dir] = roleRequest
	}
	m.started = true
}

// addTrailers appends a trailer block to the headers of the message it ends: Metlo traces
// have no separate trailers, and gRPC's status lives there.
func (st *h2stream) addTrailers(h *side, fields []field) {
	hs := &st.ex.Response.Headers
	switch st.role[h.dir] {
	case roleRequest:
		hs = &st.ex.Request.Headers
	case roleNone:
		return
	}
	before := headersCost(*hs)
	*hs = regular(fields, *hs)
	st.charge(h.s.p, headersCost(*hs)-before)
}

func parseStatus(v string) int {
	if len(v) != 3 {
		return 0
	}
	n := 0
	for i := 0; i < 3; i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// bodyOf returns the exchange fields of role's body.
func (st *h2stream) bodyOf(role int8) (body *[]byte, size *int64, truncated *bool) {
	if role == roleRequest {
		r := &st.ex.Request
		return &r.Body, &r.BodySize, &r.BodyTruncated
	}
	r := &st.ex.Response
	return &r.Body, &r.BodySize, &r.BodyTruncated
}

// decodedOf returns the exchange field naming the encoding undone on role's body.
func (st *h2stream) decodedOf(role int8) *string {
	if role == roleRequest {
		return &st.ex.Request.BodyDecoded
	}
	return &st.ex.Response.BodyDecoded
}

// appendBody keeps DATA bytes up to the cap. Bodies of streams not yet emitted share the
// memory budget, charged by capacity (what the heap holds); past it bodies are cut.
func (st *h2stream) appendBody(h *side, b []byte) {
	role := st.role[h.dir]
	if role == roleNone {
		return
	}
	bodyp, size, truncated := st.bodyOf(role)
	p := h.s.p
	*size += int64(len(b))
	body := *bodyp
	if room := p.cfg.BodyCap - len(body); len(b) > room {
		b = b[:max(room, 0)]
		*truncated = true
	}
	if need := len(body) + len(b); need > cap(body) {
		// Grow as append would (doubling, bounded by the cap), or exactly when that does
		// not fit, or as far as the budget allows.
		size := min(max(need, 2*cap(body), 512), p.cfg.BodyCap)
		if !p.budget.Fits(size - cap(body)) {
			size = need
		}
		if spare := p.budget.Room(); size-cap(body) > spare {
			size = cap(body) + spare
			b = b[:max(size-len(body), 0)]
			*truncated = true
			p.c.drops[DropBodyMemory].Add(1)
		}
		if size > cap(body) {
			grown := make([]byte, len(body), size)
			copy(grown, body)
			p.budget.Charge(size - cap(body))
			st.charged += size - cap(body)
			body = grown
		}
	}
	*bodyp = append(body, b...)
}

// lostBody notes n DATA bytes lost in a gap.
func (st *h2stream) lostBody(h *side, n int) {
	role := st.role[h.dir]
	if role == roleNone {
		return
	}
	_, size, truncated := st.bodyOf(role)
	*size += int64(n)
	*truncated = true
	st.ex.Flags |= exchange.FlagGap
}

// finishBodies decodes both bodies: Content-Encoding, then gRPC messages rendered as JSON.
func (st *h2stream) finishBodies(p *Parser) {
	for role := roleRequest; role <= roleResponse; role++ {
		m := &st.msg[role]
		body, _, truncated := st.bodyOf(role)
		if len(*body) == 0 {
			continue
		}
		before := cap(*body)
		if m.encoding != "" && m.encoding != "identity" {
			dec, cut, err := content.Decode(*body, m.encoding, p.cfg.BodyCap, *truncated)
			if err != nil {
				st.ex.Flags |= exchange.FlagDecodeError
				continue
			}
			*body, *truncated = dec, cut
			*st.decodedOf(role) = m.encoding
		}
		if !m.grpc && st.ex.Flags&exchange.FlagHeadersUnknown != 0 && looksLikeGRPC(*body, *truncated) {
			// Content-Type was among the fields the capture could not decode (it joined
			// mid-connection), and the body is framed exactly as gRPC messages are.
			m.grpc = true
		}
		if m.grpc {
			out, cut, n, bad := renderGRPC(*body, m, p.cfg.BodyCap, *truncated)
			*body, *truncated = out, cut
			p.c.events[EvGRPCMessages].Add(uint64(n))
			if bad {
				st.ex.Flags |= exchange.FlagDecodeError
			}
		}
		p.budget.Charge(cap(*body) - before) // the decoded body replaces the wire bytes
		st.charged += cap(*body) - before
	}
}

// mapGRPCStatus gives a gRPC call the HTTP status of its grpc-status (see grpcHTTPStatus)
// when the HTTP status itself is 200, as it is for every call a gRPC server answers.
func (st *h2stream) mapGRPCStatus() {
	if !st.msg[roleResponse].grpc && !st.msg[roleRequest].grpc {
		return
	}
	resp := &st.ex.Response
	code := -1
	for i := len(resp.Headers) - 1; i >= 0; i-- {
		if resp.Headers[i].Name == "grpc-status" {
			code = parseCode(resp.Headers[i].Value)
			break
		}
	}
	if code < 0 {
		return
	}
	resp.Reason = grpcCodeName(code)
	if resp.Status == 200 {
		resp.Status = grpcHTTPStatus(code)
	}
}

func parseCode(v string) int {
	if v == "" || len(v) > 4 {
		return -1
	}
	n := 0
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return -1
		}
		n = n*10 + int(v[i]-'0')
	}
	return n
}
