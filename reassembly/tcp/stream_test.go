package tcp

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// recorder is a Stream that rebuilds each direction as text: bytes as they are, a gap of
// n bytes as "<gap n>", the end as "<end>". It also notes what the layer told it.
type recorder struct {
	conn    *Conn
	dir     [2]bytes.Buffer
	closed  int
	firstD  Dir
	first   string
	seqs    [2][]uint32 // Meta.Seq of each delivery
	acks    [2][]uint32
	expires int
	waitFor int64 // Expire reports waiting until this packet time
}

func (r *recorder) Data(d Dir, b []byte, m Meta) {
	r.dir[d].Write(b)
	r.seqs[d] = append(r.seqs[d], m.Seq)
	r.acks[d] = append(r.acks[d], m.Ack)
}
func (r *recorder) Gap(d Dir, n int, m Meta) {
	fmt.Fprintf(&r.dir[d], "<gap %d>", n)
	r.seqs[d] = append(r.seqs[d], m.Seq)
}
func (r *recorder) End(d Dir) { r.dir[d].WriteString("<end>") }
func (r *recorder) Close()    { r.closed++ }
func (r *recorder) Expire(now int64) bool {
	r.expires++
	return now < r.waitFor
}

// recorders is the StreamFactory of the tests: one recorder per connection, in order.
type recorders struct{ made []*recorder }

func (f *recorders) NewStream(c *Conn, d Dir, first []byte) Stream {
	r := &recorder{conn: c, firstD: d, first: string(first)}
	f.made = append(f.made, r)
	return r
}

// link scripts one connection: a client and a server with their own sequence numbers.
type link struct {
	t        *testing.T
	a        *Assembler
	f        *recorders
	budget   *Budget
	cli, srv Endpoint
	cseq     uint32
	sseq     uint32
	ts       int64
}

func endpoint(addr string, port uint16) Endpoint {
	return Endpoint{Addr: netip.MustParseAddr(addr).As16(), Port: port}
}

func newLink(t *testing.T, cfg Config, budget int) *link {
	l := &link{t: t, f: &recorders{}, budget: NewBudget(budget), cli: endpoint("10.0.0.1", 40000), srv: endpoint("10.0.0.2", 80),
		cseq: 1000, sseq: 9000, ts: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()}
	l.a = NewAssembler(cfg, l.budget, l.f)
	return l
}

// seg builds a segment without sending it; the sender's sequence number advances.
func (l *link) seg(fromClient bool, flags uint8, payload string) Segment {
	src, dst, seq, ack := l.srv, l.cli, &l.sseq, l.cseq
	if fromClient {
		src, dst, seq, ack = l.cli, l.srv, &l.cseq, l.sseq
	}
	k, d := NewKey(7, src, dst)
	l.ts += int64(time.Millisecond)
	s := Segment{Key: k, Dir: d, Seq: *seq, Ack: ack, Flags: flags | FlagACK, Payload: []byte(payload), Timestamp: l.ts}
	*seq += uint32(len(payload))
	if flags&(FlagSYN|FlagFIN) != 0 {
		*seq++
	}
	return s
}

func (l *link) send(ss ...Segment) {
	for i := range ss {
		l.a.Segment(&ss[i])
	}
}

func (l *link) handshake() {
	syn := l.seg(true, FlagSYN, "")
	syn.Flags = FlagSYN
	l.send(syn, l.seg(false, FlagSYN, ""), l.seg(true, 0, ""))
}

// held is what the budget holds besides the connections' own state: buffered bytes.
func (l *link) held() int { return l.budget.Used() - connCost*int(l.a.Stats().Flows) }

// stream returns the only connection's recorder.
func (l *link) stream() *recorder {
	l.t.Helper()
	if len(l.f.made) != 1 {
		l.t.Fatalf("%d streams made, want 1", len(l.f.made))
	}
	return l.f.made[0]
}

// want checks both directions' rebuilt text; the client is LoToHi in these tests. Streams
// are made when the first bytes are delivered: none yet reads as two empty directions.
func (l *link) want(client, server string) {
	l.t.Helper()
	r := &recorder{}
	if len(l.f.made) > 0 {
		r = l.stream()
	}
	if got := r.dir[LoToHi].String(); got != client {
		l.t.Errorf("client stream\n got %q\nwant %q", got, client)
	}
	if got := r.dir[HiToLo].String(); got != server {
		l.t.Errorf("server stream\n got %q\nwant %q", got, server)
	}
}

func TestInOrder(t *testing.T) {
	l := newLink(t, Config{}, 1<<20)
	l.handshake()
	l.send(l.seg(true, 0, "hello "), l.seg(true, 0, "world"), l.seg(false, 0, "hi"), l.seg(true, FlagFIN, ""), l.seg(false, FlagFIN, ""))
	l.want("hello world<end>", "hi<end>")
	r := l.stream()
	if r.closed != 1 || r.firstD != LoToHi || r.first != "hello " {
		t.Fatalf("closed %d, first %v %q", r.closed, r.firstD, r.first)
	}
	if fmt.Sprint(r.seqs[LoToHi]) != "[1001 1007]" || fmt.Sprint(r.acks[LoToHi]) != "[9001 9001]" {
		t.Fatalf("client deliveries at %v acking %v", r.seqs[LoToHi], r.acks[LoToHi])
	}
	if !r.conn.HandshakeSeen(LoToHi) || !r.conn.HandshakeSeen(HiToLo) {
		t.Fatal("handshake not noted")
	}
	if d, ok := r.conn.ClientDir(); !ok || d != LoToHi {
		t.Fatalf("client dir %v %v", d, ok)
	}
	if s := l.a.Stats(); s.OutOfOrderSegments != 0 || s.Gaps != 0 || s.Drops != [NumDrops]uint64{} {
		t.Fatalf("stats %+v", s)
	}
}

func TestReorderedAndDuplicated(t *testing.T) {
	l := newLink(t, Config{}, 1<<20)
	l.handshake()
	text := "abcdefghijklmnopqrstuvwxyz0123456789"
	var segs []Segment
	for i := 0; i < len(text); i += 5 {
		segs = append(segs, l.seg(true, 0, text[i:min(i+5, len(text))]))
	}
	for _, i := range []int{4, 2, 0, 2, 6, 1, 3, 5, 7, 0} {
		l.send(segs[i])
	}
	l.send(segs...) // a second copy of everything (both ENIs mirrored)
	l.want(text, "")
	s := l.a.Stats()
	if s.OutOfOrderSegments != 4 || s.Drops[DropDuplicate] != uint64(2+len(segs)) || l.held() != 0 {
		t.Fatalf("stats %+v, budget %d", s, l.held())
	}
}

func TestOverlapsAreTrimmed(t *testing.T) {
	// Retransmissions that re-cut the stream: each byte is delivered once, the first copy wins.
	l := newLink(t, Config{}, 1<<20)
	l.handshake()
	base := l.cseq
	at := func(off int, p string) Segment {
		k, d := NewKey(7, l.cli, l.srv)
		l.ts += 1000
		return Segment{Key: k, Dir: d, Seq: base + uint32(off), Ack: l.sseq, Flags: FlagACK, Payload: []byte(p), Timestamp: l.ts}
	}
	l.send(at(0, "0123"), at(2, "23456"), at(8, "89ab"), at(5, "5678"), at(1, "1234567"), at(10, "abcdef"))
	l.want("0123456789abcdef", "")
}

func TestSequenceWrap(t *testing.T) {
	l := newLink(t, Config{}, 1<<20)
	l.cseq = 0xFFFFFFF0
	l.handshake()
	a, b, c := l.seg(true, 0, "0123456789"), l.seg(true, 0, "abcdefghij"), l.seg(true, 0, "KLMNO")
	if int32(c.Seq) < 0 || int32(a.Seq) > 0 {
		t.Fatalf("the test does not wrap: %#x .. %#x", a.Seq, c.Seq)
	}
	l.send(c, a, b)
	l.want("0123456789abcdefghijKLMNO", "")
}

func TestHoleBecomesGapAfterReorderTimeout(t *testing.T) {
	l := newLink(t, Config{ReorderTimeout: time.Second}, 1<<20)
	l.handshake()
	l.send(l.seg(true, 0, "before "))
	_ = l.seg(true, 0, "LOST") // never captured
	l.send(l.seg(true, 0, " after"))
	l.want("before ", "")
	l.a.Advance(l.ts + int64(500*time.Millisecond))
	l.want("before ", "")
	l.a.Advance(l.ts + int64(3*time.Second))
	l.want("before <gap 4> after", "")
	if s := l.a.Stats(); s.Gaps != 1 || l.held() != 0 {
		t.Fatalf("stats %+v budget %d", s, l.held())
	}
}

func TestPerDirectionCapDeclaresTheGap(t *testing.T) {
	l := newLink(t, Config{FlowBufferBytes: 25}, 1<<20)
	l.handshake()
	_ = l.seg(true, 0, "LOST")
	l.send(l.seg(true, 0, "0123456789"), l.seg(true, 0, "abcdefghij"))
	l.want("", "")
	l.send(l.seg(true, 0, "ABCDEFGHIJ")) // 30 bytes would wait: over the cap
	l.want("<gap 4>0123456789abcdefghijABCDEFGHIJ", "")
	if s := l.a.Stats(); s.Drops[DropFlowBufferFull] != 1 || l.held() != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestBudgetDeclaresTheGap(t *testing.T) {
	l := newLink(t, Config{}, connCost+15)
	l.handshake()
	_ = l.seg(true, 0, "LOST")
	l.send(l.seg(true, 0, "0123456789"))
	if l.held() != 10 {
		t.Fatalf("budget %d", l.held())
	}
	l.send(l.seg(true, 0, "abcdefghij"))
	l.want("<gap 4>0123456789abcdefghij", "")
	if s := l.a.Stats(); s.Drops[DropBufferFull] != 1 || l.held() != 0 {
		t.Fatalf("stats %+v budget %d", s, l.held())
	}
}

func TestTruncatedSegmentsAreGaps(t *testing.T) {
	// Cloud mirrors cut packets at the target MTU: the lengths promise bytes the capture lacks.
	l := newLink(t, Config{}, 1<<20)
	l.handshake()
	s := l.seg(true, 0, "head")
	s.Missing = 96
	l.cseq += 96
	l.send(s, l.seg(true, 0, "next"))
	l.want("head<gap 96>next", "")
}

func TestGapsAtClose(t *testing.T) {
	l := newLink(t, Config{}, 1<<20)
	l.handshake()
	_ = l.seg(true, 0, "LOST")
	l.send(l.seg(true, 0, "tail"), l.seg(true, FlagFIN, ""), l.seg(false, 0, "reply"))
	l.a.FlushAll()
	l.want("<gap 4>tail<end>", "reply")
	if r := l.stream(); r.closed != 1 {
		t.Fatalf("closed %d times", r.closed)
	}
	if s := l.a.Stats(); s.Flows != 0 || l.held() != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestMidstreamStartsAtLowestByte(t *testing.T) {
	// No handshake: the capture started mid-connection and the first copies came out of order.
	l := newLink(t, Config{}, 1<<20)
	a, b, c := l.seg(true, 0, "aaa"), l.seg(true, 0, "bbb"), l.seg(true, 0, "ccc")
	l.send(b, c, a)
	l.want("", "")
	l.a.Advance(l.ts + int64(2*time.Second))
	l.want("aaabbbccc", "")
	r := l.stream()
	if r.conn.HandshakeSeen(LoToHi) {
		t.Fatal("handshake reported although none was seen")
	}
	if _, ok := r.conn.ClientDir(); ok {
		t.Fatal("client direction reported without a handshake")
	}
}

func TestPureACKsCreateNothing(t *testing.T) {
	l := newLink(t, Config{}, 1<<20)
	l.send(l.seg(true, 0, ""), l.seg(false, 0, ""), l.seg(true, FlagFIN, ""))
	if s := l.a.Stats(); s.Flows != 0 || len(l.f.made) != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRSTFinishesAfterReorderTimeout(t *testing.T) {
	l := newLink(t, Config{ReorderTimeout: time.Second}, 1<<20)
	l.handshake()
	l.send(l.seg(true, 0, "request"))
	rst := l.seg(false, FlagRST, "")
	l.send(rst)
	l.send(l.seg(false, 0, "late reply from another queue"))
	if l.stream().closed != 0 {
		t.Fatal("closed at the RST")
	}
	l.a.Advance(l.ts + int64(2*time.Second))
	l.want("request", "late reply from another queue")
	if l.stream().closed != 1 {
		t.Fatal("not closed after the reorder timeout")
	}
}

func TestNewISNStartsANewConnection(t *testing.T) {
	l := newLink(t, Config{}, 1<<20)
	l.handshake()
	l.send(l.seg(true, 0, "old"))
	l.cseq, l.sseq = 5_000_000, 7_000_000
	l.handshake()
	l.send(l.seg(true, 0, "new"))
	if len(l.f.made) != 2 || l.f.made[0].dir[LoToHi].String() != "old" || l.f.made[0].closed != 1 || l.f.made[1].dir[LoToHi].String() != "new" {
		t.Fatalf("streams %d: %q closed %d", len(l.f.made), l.f.made[0].dir[LoToHi].String(), l.f.made[0].closed)
	}
}

func TestLateCopiesOfAClosedConnection(t *testing.T) {
	l := newLink(t, Config{}, 1<<20)
	syn := l.seg(true, FlagSYN, "")
	syn.Flags = FlagSYN
	segs := []Segment{syn, l.seg(false, FlagSYN, ""), l.seg(true, 0, "data"), l.seg(true, FlagFIN, ""), l.seg(false, FlagFIN, "")}
	l.send(segs...)
	l.send(segs...) // the other ENI's copy, a whole connection behind
	l.want("data<end>", "<end>")
	if s := l.a.Stats(); s.Drops[DropClosedFlow] != 1 {
		t.Fatalf("stats %+v", s)
	}
	l.a.Advance(l.ts + int64(closeLinger) + int64(2*time.Second))
	if s := l.a.Stats(); s.Flows != 0 {
		t.Fatalf("closed flow not forgotten after its linger: %+v", s)
	}
}

func TestIgnoreStopsDeliveryButNotSequencing(t *testing.T) {
	l := newLink(t, Config{}, 1<<20)
	l.handshake()
	l.send(l.seg(true, 0, "first"))
	r := l.stream()
	_ = l.seg(true, 0, "LOST")
	l.send(l.seg(true, 0, "buffered"))
	if l.held() != 8 {
		t.Fatalf("budget %d", l.held())
	}
	r.conn.Ignore()
	if l.held() != 0 {
		t.Fatalf("ignored connection still holds %d bytes", l.held())
	}
	l.send(l.seg(true, 0, "more"), l.seg(true, FlagFIN, ""), l.seg(false, FlagFIN, ""))
	l.a.Advance(l.ts + int64(2*time.Second)) // the hole is given up; both FINs are then in order
	l.want("first", "")
	if r.closed != 1 {
		t.Fatal("an ignored connection must still close")
	}
}

func TestIdleEvictionAndFlowTableBound(t *testing.T) {
	l := newLink(t, Config{MaxFlows: 3, IdleTimeout: time.Minute}, 1<<20)
	for i := range 5 {
		l.cli.Port = uint16(50000 + i)
		l.handshake()
		l.send(l.seg(true, 0, "x"))
	}
	s := l.a.Stats()
	if s.Flows != 3 || s.Drops[DropFlowTableFull] != 2 || l.f.made[0].closed != 1 || l.f.made[1].closed != 1 || l.f.made[2].closed != 0 {
		t.Fatalf("stats %+v", s)
	}
	l.a.Advance(l.ts + int64(2*time.Minute))
	if s := l.a.Stats(); s.Flows != 0 || s.FlowsEvicted != 5 {
		t.Fatalf("after idle: %+v", s)
	}
}

func TestStreamTimersRunUntilDone(t *testing.T) {
	l := newLink(t, Config{}, 1<<20)
	l.handshake()
	l.send(l.seg(true, 0, "x"))
	r := l.stream()
	r.waitFor = l.ts + int64(3*time.Second)
	r.conn.Wake()
	for i := 1; i <= 6; i++ {
		l.a.Advance(l.ts + int64(i)*int64(time.Second))
	}
	if r.expires != 3 { // at 1 s and 2 s it waits; at 3 s it is done and leaves the list
		t.Fatalf("Expire called %d times", r.expires)
	}
}

func TestInOrderSegmentsDoNotAllocate(t *testing.T) {
	l := newLink(t, Config{}, 1<<20)
	l.handshake()
	l.send(l.seg(true, 0, "start"))
	s := l.seg(true, 0, strings.Repeat("b", 1448))
	r := l.stream()
	allocs := testing.AllocsPerRun(1000, func() {
		r.dir[LoToHi].Reset()
		r.seqs[LoToHi], r.acks[LoToHi] = r.seqs[LoToHi][:0], r.acks[LoToHi][:0]
		l.a.Segment(&s)
		s.Seq += uint32(len(s.Payload))
		s.Timestamp++
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per in-order segment", allocs)
	}
}

func TestOverflowingRetransmissionIsTrimmed(t *testing.T) {
	// A segment over the cap that also covers bytes delivered meanwhile (a retransmission
	// re-cut larger) must not deliver those bytes a second time. Found by FuzzStream.
	l := newLink(t, Config{FlowBufferBytes: 8}, 1<<20)
	base := l.cseq
	at := func(off int, p string) Segment {
		k, d := NewKey(7, l.cli, l.srv)
		l.ts += 1000
		return Segment{Key: k, Dir: d, Seq: base + uint32(off), Ack: l.sseq, Flags: FlagACK, Payload: []byte(p), Timestamp: l.ts}
	}
	l.send(at(0, "0123"), at(0, "0123456789ab")) // no handshake: both wait, the second overflows
	l.want("0123456789ab", "")
}

func TestAcknowledgedHoleIsGivenUpWithoutWaiting(t *testing.T) {
	// The server sent a segment the mirror lost; the client acknowledged it (so it will
	// never be resent) and the server kept sending. No reorder timeout passes.
	l := newLink(t, Config{ReorderTimeout: 10 * time.Second}, 1<<20)
	l.handshake()
	l.send(l.seg(false, 0, "head "))
	_ = l.seg(false, 0, "LOST")
	var later []Segment
	for range ackedHoleSegments {
		later = append(later, l.seg(false, 0, "."))
	}
	l.send(later[:ackedHoleSegments-1]...)
	l.send(l.seg(true, 0, "")) // the client's ACK covers everything sent so far
	l.want("", "head ")
	l.send(later[ackedHoleSegments-1])
	l.want("", "head ") // enough evidence, but the hole has not waited a quarter of the reorder timeout
	l.ts += int64(3 * time.Second)
	l.send(l.seg(true, 0, ""))
	l.want("", "head <gap 4>"+strings.Repeat(".", ackedHoleSegments))
	if s := l.a.Stats(); s.Gaps != 1 || s.GapsAcked != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestAckAloneDoesNotGiveUpAHole(t *testing.T) {
	// The ACK overtook the data it acknowledges (the directions travel different queues):
	// the missing bytes are still on their way.
	l := newLink(t, Config{}, 1<<20)
	l.handshake()
	missing := l.seg(false, 0, "late")
	l.send(l.seg(false, 0, "after"), l.seg(true, 0, ""), missing)
	l.want("", "lateafter")
	if s := l.a.Stats(); s.Gaps != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestFastOpenDataInSYN(t *testing.T) {
	l := newLink(t, Config{}, 1<<20)
	syn := l.seg(true, FlagSYN, "GET / HTTP/1.1\r\n\r\n")
	syn.Flags = FlagSYN
	l.send(syn, l.seg(false, FlagSYN, ""), l.seg(true, 0, "more"))
	l.want("GET / HTTP/1.1\r\n\r\nmore", "")
	if r := l.stream(); r.seqs[LoToHi][0] != 1001 {
		t.Fatalf("SYN data delivered at %d", r.seqs[LoToHi][0])
	}
}

func TestMemoryPressureEvictsLeastRecentlySeen(t *testing.T) {
	// Room for three connections' state: a fourth evicts the least recently seen one
	// (closing its stream first), never the one being worked on.
	l := newLink(t, Config{}, 3*connCost+100)
	for i := range 3 {
		l.cli.Port = uint16(50000 + i)
		l.handshake()
		l.send(l.seg(true, 0, "x"))
	}
	l.cli.Port = 50000
	l.send(l.seg(true, 0, "y")) // 50000 is now the most recently seen
	l.cli.Port = 50003
	l.handshake()
	s := l.a.Stats()
	if s.Flows != 3 || s.Drops[DropMemoryFull] != 1 || l.f.made[1].closed != 1 || l.f.made[0].closed != 0 {
		t.Fatalf("stats %+v; closed %d %d", s, l.f.made[0].closed, l.f.made[1].closed)
	}
	if l.budget.Used() > 3*connCost+100 {
		t.Fatalf("budget %d over its limit", l.budget.Used())
	}
}

// TestOverlapPolicy pins what happens when copies of a range carry different bytes:
// delivered bytes are never replaced; an in-order segment wins over buffered copies of its
// range; among buffered segments the one starting lower wins.
func TestOverlapPolicy(t *testing.T) {
	l := newLink(t, Config{}, 1<<20)
	l.handshake()
	base := l.cseq
	at := func(off int, p string) Segment {
		k, d := NewKey(7, l.cli, l.srv)
		l.ts += 1000
		return Segment{Key: k, Dir: d, Seq: base + uint32(off), Ack: l.sseq, Flags: FlagACK, Payload: []byte(p), Timestamp: l.ts}
	}
	l.send(
		at(0, "AAAA"),     // delivered: 0-3
		at(2, "bbbbbb"),   // 2-3 already delivered: only 4-7 are new
		at(12, "XXXX"),    // buffered: 12-15
		at(10, "yyyyyy"),  // buffered, starts lower: wins 12-15 over XXXX
		at(8, "cccccccc"), // in order: 8-15, wins over both buffered copies
		at(16, "D"),
		at(22, "XXXX"),   // buffered: 22-25
		at(20, "yyyyyy"), // buffered, starts lower: wins 22-25
		at(17, "eee"),    // in order: 17-19, then the buffered ones drain
	)
	l.want("AAAAbbbbccccccccDeeeyyyyyy", "")
}

func TestSegmentAfterADrainKeepsItsOwnACK(t *testing.T) {
	// The reorder timeout is noticed while a segment is being processed: the buffered
	// segments are delivered first with their ACKs, then this one with its own.
	l := newLink(t, Config{ReorderTimeout: time.Second}, 1<<20)
	l.handshake()
	_ = l.seg(false, 0, "LOST")
	l.send(l.seg(false, 0, "buffered"))
	l.cseq += 100 // the client sent more meanwhile: the next server segment acks further
	l.ts += int64(2 * time.Second)
	last := l.seg(false, 0, "next")
	l.send(last)
	l.want("", "<gap 4>bufferednext")
	r := l.stream()
	if acks := r.acks[HiToLo]; len(acks) != 2 || acks[0] != 1001 || acks[1] != last.Ack {
		t.Fatalf("acks delivered %v, want [1001 %d]", acks, last.Ack)
	}
}
