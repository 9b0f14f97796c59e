package http2

import (
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// Parser turns HTTP/2 connections into exchanges for one assembler: it makes their
// streams and holds what they share (limits, the memory budget, the counters, the
// output). Like the assembler it is used from one goroutine.
type Parser struct {
	cfg    Config
	budget *tcp.Budget
	out    exchange.Handler
	c      counters
}

// NewParser returns a parser that charges unemitted bodies and buffered bytes to budget
// and hands finished exchanges to out.
func NewParser(cfg Config, budget *tcp.Budget, out exchange.Handler) *Parser {
	return &Parser{cfg: cfg.WithDefaults(), budget: budget, out: out}
}

// Stats returns a snapshot of the counters; safe to call from any goroutine.
func (p *Parser) Stats() Stats { return p.c.snapshot() }

// NewStream returns the consumer of a connection that speaks HTTP/2 from its first bytes
// (the client preface, or the server's SETTINGS), or one joined mid-way: a direction whose
// handshake the capture missed hunts for frame boundaries first.
func (p *Parser) NewStream(c *tcp.Conn) tcp.Stream {
	return p.newStream(c)
}

// Upgrade describes an HTTP/1.1 connection that switched to HTTP/2 with "Upgrade: h2c".
type Upgrade struct {
	// Request is the HTTP/1.1 request that asked for the switch, with its endpoints set.
	// It becomes HTTP/2 stream 1, whose response arrives as HTTP/2; the HTTP/2 stream
	// charges the budget for what it keeps of it.
	Request *exchange.Exchange
	// Client is the client's direction.
	Client tcp.Dir
	// Switched is true when the server's 101 response was seen (its next bytes are
	// frames), false when the client's preface came first and the 101 is still to come.
	Switched bool
}

// NewUpgradedStream returns the consumer of a connection from the point it switched from
// HTTP/1.1 to HTTP/2.
func (p *Parser) NewUpgradedStream(c *tcp.Conn, u Upgrade) tcp.Stream {
	p.c.events[EvUpgrade].Add(1)
	s := p.newStream(c)
	s.clientDir = int8(u.Client)
	cli, srv := &s.side[u.Client], &s.side[1-u.Client]
	cli.began, cli.state = true, stPreface
	srv.began, srv.state = true, stFrameHeader
	if !u.Switched {
		srv.state = stSkip101
	}
	st := s.newH2Stream(1, c.Now())
	st.ex = *u.Request
	st.ex.Response = exchange.Response{}
	st.role[u.Client] = roleRequest
	st.charge(p, headersCost(st.ex.Request.Headers)+cap(st.ex.Request.Body))
	st.msg[roleRequest].started, st.msg[roleRequest].ended = true, true
	st.reqSeen = true
	s.maxRequestID = 1
	return s
}

// emit hands a finished exchange on and counts its outcome.
func (p *Parser) emit(ex *exchange.Exchange) {
	switch {
	case ex.Flags&exchange.FlagNoResponse != 0:
		p.c.outcomes[OutNoResponse].Add(1)
	case ex.Request.BodyTruncated || ex.Response.BodyTruncated ||
		ex.Flags&(exchange.FlagGap|exchange.FlagIncomplete|exchange.FlagHeadersUnknown) != 0:
		p.c.outcomes[OutTruncated].Add(1)
	default:
		p.c.outcomes[OutComplete].Add(1)
	}
	p.out.HandleExchange(ex)
}
