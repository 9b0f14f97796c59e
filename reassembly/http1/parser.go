package http1

import (
	"unsafe"

	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// Parser turns connections into exchanges for one assembler: it makes their streams and
// holds what they share (limits, the memory budget, the counters, the output). Like the
// assembler it is used from one goroutine.
type Parser struct {
	cfg    Config
	budget *tcp.Budget
	out    exchange.Handler
	c      counters
	up     Upgrader // takes over connections that switch to HTTP/2; nil: they are ignored
}

// NewParser returns a parser that charges held responses and unemitted bodies to budget
// and hands finished exchanges to out.
func NewParser(cfg Config, budget *tcp.Budget, out exchange.Handler) *Parser {
	return &Parser{cfg: cfg.WithDefaults(), budget: budget, out: out}
}

// The memory a connection's parser state and a waiting exchange cost the budget, besides
// the buffers and bodies charged as they grow.
const (
	streamCost  = int(unsafe.Sizeof(stream{}))
	exStateCost = int(unsafe.Sizeof(exState{}))
)

// NewStream returns the consumer of one connection's bytes.
func (p *Parser) NewStream(c *tcp.Conn) tcp.Stream {
	p.budget.Require(streamCost)
	s := &stream{p: p, tc: c, inferredClient: dirUnknown}
	s.side[0] = side{s: s, dir: tcp.LoToHi}
	s.side[1] = side{s: s, dir: tcp.HiToLo}
	return s
}

// Stats returns a snapshot of the counters; safe to call from any goroutine.
func (p *Parser) Stats() Stats { return p.c.snapshot() }

// emit hands a finished exchange on and counts its outcome; its bodies leave the budget.
func (p *Parser) emit(st *exState) {
	ex := &st.ex
	p.budget.Release(st.charged)
	switch {
	case ex.Flags&exchange.FlagNoResponse != 0:
		p.c.outcomes[OutNoResponse].Add(1)
	case ex.Request.BodyTruncated || ex.Response.BodyTruncated || ex.Flags&(exchange.FlagGap|exchange.FlagIncomplete) != 0:
		p.c.outcomes[OutTruncated].Add(1)
	default:
		p.c.outcomes[OutComplete].Add(1)
	}
	p.out.HandleExchange(ex)
}
