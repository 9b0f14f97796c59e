package reassembly

import (
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/http1"
	"github.com/metlo-labs/metlo-appliance/reassembly/http2"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// Protocol is what a connection was recognised as speaking.
type Protocol uint8

// The protocols flows are counted by.
const (
	ProtoHTTP1 Protocol = iota // HTTP/1.x
	ProtoHTTP2                 // HTTP/2: prior knowledge, joined mid-way, or upgraded from HTTP/1.1 (h2c)
	ProtoOther                 // neither (ignored)
	NumProtocols
)

var protocolNames = [NumProtocols]string{"http1", "http2", "other"}

// String is the protocol's metric label.
func (p Protocol) String() string { return protocolNames[p] }

// sniffLimit is how many bytes of a connection joined mid-way are searched for HTTP/2
// frames before it is left to the HTTP/1 parser (whose own resynchronisation costs less
// per byte). HTTP/2 puts a frame header at least every 16 KiB unless a peer raised its
// maximum frame size, so megabytes without one are not HTTP/2.
const sniffLimit = 4 << 20

// sniffBufBytes bounds the bytes held per direction while the protocol is unknown.
const sniffBufBytes = 64 << 10

// protocols picks each connection's parser and takes over connections that switch from
// HTTP/1.1 to HTTP/2.
type protocols struct{ a *Assembler }

// NewStream implements tcp.StreamFactory. A connection captured from its start is decided
// on its first bytes: the client preface or the server's SETTINGS frame mean HTTP/2,
// anything that can begin an HTTP/1 message means HTTP/1, the rest is another protocol
// (the HTTP/1 parser still reads it: it counts and ignores non-HTTP connections). A
// connection joined mid-way (or starting with a gap) is held by a sniffer until its bytes
// prove one protocol or the other.
func (p protocols) NewStream(c *tcp.Conn, d tcp.Dir, first []byte) tcp.Stream {
	if proto, ok := fromStart(c, d, first); ok {
		return p.a.chosen(c, proto)
	}
	return &sniffer{a: p.a, c: c}
}

// fromStart decides the protocol from the first bytes b of direction d, when they are the
// direction's very first bytes and enough to tell.
func fromStart(c *tcp.Conn, d tcp.Dir, b []byte) (Protocol, bool) {
	switch {
	case http2.IsPreface(b):
		return ProtoHTTP2, true
	case len(b) < 4 || !c.HandshakeSeen(d):
		return 0, false // "P" may begin the preface or POST; mid-stream bytes prove nothing alone
	case http2.IsServerPreface(b):
		return ProtoHTTP2, true
	case http1.LooksLikeHTTP1(b):
		return ProtoHTTP1, true
	}
	return ProtoOther, true
}

// chosen counts the connection under proto and returns its parser.
func (a *Assembler) chosen(c *tcp.Conn, proto Protocol) tcp.Stream {
	a.protocols[proto].Add(1)
	if proto == ProtoHTTP2 {
		return a.http2.NewStream(c)
	}
	return a.http1.NewStream(c)
}

// UpgradeH2C implements http1.Upgrader: the connection is counted as HTTP/2 too (it
// carried both) and an HTTP/2 stream takes over from the switch.
func (p protocols) UpgradeH2C(c *tcp.Conn, req *exchange.Exchange, client tcp.Dir, switched bool) tcp.Stream {
	p.a.protocols[ProtoHTTP2].Add(1)
	return p.a.http2.NewUpgradedStream(c, http2.Upgrade{Request: req, Client: client, Switched: switched})
}

// sniffer holds a connection joined mid-way until its bytes prove a protocol: two
// consecutive plausible HTTP/2 frame headers (http2.FindFrames), or a complete HTTP/1
// request or status line (http1.FindStartLine). It then hands the connection to that
// parser, replaying what it held from the proof on (earlier bytes were the tail of a
// message no parser could use), with the bytes before it reported as a gap so the parser
// knows it starts mid-stream.
type sniffer struct {
	a       *Assembler
	c       *tcp.Conn
	dir     [2]sniffDir
	scanned int
}

type sniffDir struct {
	buf      []byte
	seq      uint32 // sequence number of buf[0]
	skipped  int    // bytes dropped before buf[0] (or lost in a gap) since the direction began
	midway   bool   // the direction began before the capture did (no SYN seen)
	started  bool
	ended    bool
	meta     tcp.Meta
	h2Resume int // offsets of buf before these are ruled out
	h1Resume int
}

// Data implements tcp.Stream.
func (s *sniffer) Data(d tcp.Dir, b []byte, m tcp.Meta) {
	sd := &s.dir[d]
	if !sd.started {
		sd.started = true
		sd.midway = !s.c.HandshakeSeen(d)
	}
	if len(sd.buf) == 0 {
		sd.seq = m.Seq
	}
	sd.meta = m
	budget := s.a.budget
	if !budget.Fits(len(b)) {
		s.dropBuf(sd, len(sd.buf)+len(b))
		return
	}
	start := len(sd.buf)
	sd.buf = append(sd.buf, b...)
	budget.Charge(len(b))
	s.scanned += len(b)

	if sd.skipped == 0 && !sd.midway {
		if proto, ok := fromStart(s.c, d, sd.buf); ok {
			s.decide(proto, d, 0)
			return
		}
	}
	if s.scanned <= sniffLimit {
		if http2.IsPreface(b) {
			s.decide(ProtoHTTP2, d, start)
			return
		}
		if at, _ := http2.FindFrames(b, true); at == 0 {
			s.decide(ProtoHTTP2, d, start)
			return
		}
		at, resume := http2.FindFrames(sd.buf[sd.h2Resume:], false)
		if at >= 0 {
			s.decide(ProtoHTTP2, d, sd.h2Resume+at)
			return
		}
		sd.h2Resume += resume
	}
	if at := http1.FindStartLine(sd.buf[sd.h1Resume:]); at >= 0 {
		s.decide(ProtoHTTP1, d, sd.h1Resume+at)
		return
	}
	if s.scanned > sniffLimit {
		s.decide(ProtoHTTP1, d, len(sd.buf))
		return
	}
	if i := lastLineStart(sd.buf); i > sd.h1Resume {
		sd.h1Resume = i
	}
	if len(sd.buf) > sniffBufBytes {
		drop := len(sd.buf) - sniffBufBytes/2
		n := copy(sd.buf, sd.buf[drop:])
		sd.buf = sd.buf[:n]
		sd.seq += uint32(drop)
		sd.skipped += drop
		sd.h2Resume, sd.h1Resume = max(0, sd.h2Resume-drop), max(0, sd.h1Resume-drop)
		budget.Release(drop)
	}
}

func lastLineStart(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			return i + 1
		}
	}
	return 0
}

// dropBuf forgets what a direction holds: n bytes are now lost to the parser.
func (s *sniffer) dropBuf(sd *sniffDir, n int) {
	s.a.budget.Release(len(sd.buf))
	sd.buf, sd.h1Resume, sd.h2Resume = nil, 0, 0
	sd.skipped += n
}

// decide hands the connection to proto's parser: direction d's bytes from offset at, the
// other direction's held bytes, each after a gap standing for what was skipped (a
// direction joined mid-way needs none: the parser sees its handshake was missed).
func (s *sniffer) decide(proto Protocol, d tcp.Dir, at int) {
	next := s.a.chosen(s.c, proto)
	s.c.SetStream(next)
	for _, dir := range [2]tcp.Dir{1 - d, d} {
		sd := &s.dir[dir]
		from := 0
		if dir == d {
			from = at
		}
		if !sd.started {
			continue
		}
		m := sd.meta
		if lost := sd.skipped + from; lost > 0 {
			m.Seq = sd.seq + uint32(from) - uint32(lost)
			next.Gap(dir, lost, m)
		}
		if rest := sd.buf[from:]; len(rest) > 0 {
			m.Seq = sd.seq + uint32(from)
			next.Data(dir, rest, m)
		}
		if sd.ended {
			next.End(dir)
		}
		s.a.budget.Release(len(sd.buf))
		sd.buf = nil
	}
}

// Gap implements tcp.Stream.
func (s *sniffer) Gap(d tcp.Dir, n int, _ tcp.Meta) {
	sd := &s.dir[d]
	sd.started = true
	s.dropBuf(sd, len(sd.buf)+n)
}

// End implements tcp.Stream.
func (s *sniffer) End(d tcp.Dir) { s.dir[d].ended = true }

// Close implements tcp.Stream: a connection whose bytes never proved a protocol is
// counted as another protocol (one that carried no bytes at all is not counted).
func (s *sniffer) Close() {
	if s.scanned > 0 {
		s.a.protocols[ProtoOther].Add(1)
	}
	for i := range s.dir {
		s.a.budget.Release(len(s.dir[i].buf))
		s.dir[i].buf = nil
	}
}

// Expire implements tcp.Stream; a sniffer waits for nothing but bytes.
func (s *sniffer) Expire(int64) bool { return false }
