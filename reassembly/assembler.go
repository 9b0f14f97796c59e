package reassembly

import (
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/http1"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// Assembler rebuilds the TCP connections of one shard and turns their HTTP into
// exchanges. It is not safe for concurrent use: each worker goroutine owns one.
type Assembler struct {
	*tcp.Assembler // Segment, Advance, FlushAll
	http1          *http1.Parser
	budget         *tcp.Budget
}

// NewAssembler returns an assembler that hands finished exchanges to out.
func NewAssembler(cfg Config, out exchange.Handler) *Assembler {
	cfg = cfg.WithDefaults()
	a := &Assembler{budget: tcp.NewBudget(cfg.BufferBytes)}
	a.http1 = http1.NewParser(cfg.http1(), a.budget, out)
	a.Assembler = tcp.NewAssembler(cfg.tcp(), a.budget, protocols{a})
	return a
}

// protocols picks each connection's parser from its first bytes.
type protocols struct{ a *Assembler }

// NewStream implements tcp.StreamFactory. Only HTTP/1 is parsed; it also recognises (and
// counts) connections that are not HTTP at all.
func (p protocols) NewStream(c *tcp.Conn, _ tcp.Dir, _ []byte) tcp.Stream {
	return p.a.http1.NewStream(c)
}
