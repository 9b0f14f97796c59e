package reassembly

import (
	"sync/atomic"

	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/http1"
	"github.com/metlo-labs/metlo-appliance/reassembly/http2"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// Assembler rebuilds the TCP connections of one shard and turns their HTTP into
// exchanges. It is not safe for concurrent use: each worker goroutine owns one.
type Assembler struct {
	*tcp.Assembler // Segment, Advance, FlushAll
	http1          *http1.Parser
	http2          *http2.Parser
	budget         *tcp.Budget
	protocols      [NumProtocols]atomic.Uint64 // connections by the protocol they were recognised as
}

// NewAssembler returns an assembler that hands finished exchanges to out.
func NewAssembler(cfg Config, out exchange.Handler) *Assembler {
	cfg = cfg.WithDefaults()
	a := &Assembler{budget: tcp.NewBudget(cfg.BufferBytes)}
	a.http1 = http1.NewParser(cfg.http1(), a.budget, out)
	a.http2 = http2.NewParser(cfg.http2(), a.budget, out)
	a.http1.SetUpgrader(protocols{a})
	a.Assembler = tcp.NewAssembler(cfg.tcp(), a.budget, protocols{a})
	return a
}
