package datapath

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
)

// tcp4 is a raw IPv4/TCP packet (no Ethernet) with n payload bytes; id is its IP
// identification.
func tcp4(t testing.TB, id uint16, n int) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Id: id, Protocol: layers.IPProtocolTCP, SrcIP: net.ParseIP("10.1.0.5"), DstIP: net.ParseIP("10.1.0.9")}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: 7, ACK: true, PSH: true, Window: 500}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	return serialize(t, ip, tcp, gopacket.Payload(body(n)))
}

// tcp6 is tcp4 over IPv6.
func tcp6(t testing.TB, n int) []byte {
	t.Helper()
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: net.ParseIP("fd00::5"), DstIP: net.ParseIP("fd00::9")}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: 7, ACK: true, Window: 500}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	return serialize(t, ip, tcp, gopacket.Payload(body(n)))
}

// body is n bytes that differ from offset to offset, so a misplaced fragment shows.
func body(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "%07d,", i)
	}
	return b.String()[:n]
}

// frag4 cuts the IPv4 packet p into the fragment carrying payload bytes [off, end) (end
// past the payload: to its end); the MF flag is set unless the fragment reaches the end.
func frag4(p []byte, off, end int) []byte {
	ihl := int(p[0]&0x0f) * 4
	payload := p[ihl:binary.BigEndian.Uint16(p[2:4])]
	end = min(end, len(payload))
	h := append([]byte(nil), p[:ihl]...)
	binary.BigEndian.PutUint16(h[2:4], uint16(ihl+end-off))
	ff := uint16(off / 8)
	if end < len(payload) {
		ff |= 0x2000
	}
	binary.BigEndian.PutUint16(h[6:8], ff)
	binary.BigEndian.PutUint16(h[10:12], 0)
	binary.BigEndian.PutUint16(h[10:12], ^ipChecksum(h))
	return append(h, payload[off:end]...)
}

func ipChecksum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// frag6 cuts the IPv6 packet p (no extension headers) into the fragment carrying payload
// bytes [off, end), adding a fragment header with identification id.
func frag6(p []byte, id uint32, off, end int) []byte {
	payload := p[40:]
	end = min(end, len(payload))
	h := append([]byte(nil), p[:40]...)
	binary.BigEndian.PutUint16(h[4:6], uint16(8+end-off))
	fh := []byte{h[6], 0, 0, 0, 0, 0, 0, 0}
	h[6] = 44
	fo := uint16(off)
	if end < len(payload) {
		fo |= 1
	}
	binary.BigEndian.PutUint16(fh[2:4], fo)
	binary.BigEndian.PutUint32(fh[4:8], id)
	return append(append(h, fh...), payload[off:end]...)
}

// feed decodes frames in order as raw IP and returns the outcomes and the last segment.
func feed(d *Decoder, ts int64, frames ...[]byte) ([]Outcome, tcp.Segment) {
	var outs []Outcome
	var seg tcp.Segment
	for _, f := range frames {
		seg = tcp.Segment{}
		_, out := d.Decode(&Frame{Data: f, Link: LinkRawIP, Timestamp: ts}, &seg)
		outs = append(outs, out)
	}
	return outs, seg
}

func wantOutcomes(t *testing.T, got []Outcome, want ...Outcome) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("outcomes %v, want %v", got, want)
	}
}

// checkSegment checks that seg carries the whole payload of the unfragmented packet.
func checkSegment(t *testing.T, seg tcp.Segment, n int) {
	t.Helper()
	if string(seg.Payload) != body(n) || seg.Seq != 7 || seg.Missing != 0 || seg.Key.Lo.Port == 0 || seg.Hash == 0 {
		t.Fatalf("segment: %d payload bytes (want %d), seq %d, missing %d, key %+v", len(seg.Payload), n, seg.Seq, seg.Missing, seg.Key)
	}
}

// checkReleased closes the defragmenter, checks no memory stays charged and returns the
// counters (datagrams still incomplete now count as unfinished).
func checkReleased(t *testing.T, d *Decoder) DefragStats {
	t.Helper()
	d.defrag.Close()
	s := d.defrag.Stats()
	if s.HeldBytes != 0 || s.Datagrams != 0 {
		t.Fatalf("after Close: %d bytes, %d datagrams held", s.HeldBytes, s.Datagrams)
	}
	return s
}

func TestDefragAnyOrder(t *testing.T) {
	const n = 3000
	for _, v6 := range []bool{false, true} {
		var fr [][]byte
		if v6 {
			p := tcp6(t, n)
			fr = [][]byte{frag6(p, 9, 0, 1232), frag6(p, 9, 1232, 2464), frag6(p, 9, 2464, 1<<20)}
		} else {
			p := tcp4(t, 9, n)
			fr = [][]byte{frag4(p, 0, 1480), frag4(p, 1480, 2960), frag4(p, 2960, 1<<20)}
		}
		for _, order := range [][3]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}} {
			t.Run(fmt.Sprintf("v6=%v/%v", v6, order), func(t *testing.T) {
				d := NewDecoder(DecoderConfig{Raw: true})
				outs, seg := feed(d, 1, fr[order[0]], fr[order[1]], fr[order[2]])
				wantOutcomes(t, outs, OutcomeFragment, OutcomeFragment, OutcomeTCP)
				checkSegment(t, seg, n)
				if s := checkReleased(t, d); s.Reassembled != 1 || s.Unfinished != 0 {
					t.Fatalf("stats %+v", s)
				}
			})
		}
	}
}

// Mirroring both ends of a connection sends every fragment twice: the copies are ignored
// while the datagram is incomplete; copies after it completed form a second datagram
// (whose segment reassembly drops as a duplicate).
func TestDefragDuplicates(t *testing.T) {
	p := tcp4(t, 77, 3000)
	a, b, c := frag4(p, 0, 1480), frag4(p, 1480, 2960), frag4(p, 2960, 1<<20)
	d := NewDecoder(DecoderConfig{Raw: true})
	outs, seg := feed(d, 1, a, a, b, b, c)
	wantOutcomes(t, outs, OutcomeFragment, OutcomeFragment, OutcomeFragment, OutcomeFragment, OutcomeTCP)
	checkSegment(t, seg, 3000)
	outs, seg = feed(d, 1, c, b, a) // the second copy, late and out of order
	wantOutcomes(t, outs, OutcomeFragment, OutcomeFragment, OutcomeTCP)
	checkSegment(t, seg, 3000)
	// A fragment whose bytes two held fragments cover together is a duplicate too.
	p2 := tcp4(t, 78, 3000)
	outs, _ = feed(d, 1, frag4(p2, 0, 1000), frag4(p2, 1000, 2000), frag4(p2, 800, 1600))
	wantOutcomes(t, outs, OutcomeFragment, OutcomeFragment, OutcomeFragment)
	if s := checkReleased(t, d); s.Duplicates != 3 || s.Reassembled != 2 || s.Overlapping != 0 || s.Unfinished != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// Overlapping fragments drop the whole datagram, IPv6 (RFC 5722) and IPv4 alike.
func TestDefragOverlapDropsTheDatagram(t *testing.T) {
	p4, p6 := tcp4(t, 5, 3000), tcp6(t, 3000)
	cases := map[string][][]byte{
		"v4 overlap at the end":   {frag4(p4, 0, 1480), frag4(p4, 1400, 2960)},
		"v4 overlap at the start": {frag4(p4, 1480, 2960), frag4(p4, 1000, 1488)},
		"v4 covering two":         {frag4(p4, 8, 16), frag4(p4, 24, 32), frag4(p4, 0, 40)},
		"v6 overlap":              {frag6(p6, 5, 0, 1232), frag6(p6, 5, 1224, 2464)},
		"v6 overlap at the start": {frag6(p6, 5, 1232, 2464), frag6(p6, 5, 0, 1240)},
	}
	for name, frames := range cases {
		t.Run(name, func(t *testing.T) {
			d := NewDecoder(DecoderConfig{Raw: true})
			outs, _ := feed(d, 1, frames...)
			if outs[len(outs)-1] != OutcomeFragmentDropped {
				t.Fatalf("outcomes %v", outs)
			}
			if s := checkReleased(t, d); s.Overlapping != 1 || s.Datagrams != 0 || s.Reassembled != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
	// A fragment inside bytes already held is a duplicate whatever it says: the first copy
	// wins, as on a Linux receiver (a later fragment cannot rewrite the TCP header).
	d := NewDecoder(DecoderConfig{Raw: true})
	evil := frag6(p6, 5, 8, 16)
	copy(evil[len(evil)-8:], "EVILEVIL")
	outs, seg := feed(d, 1, frag6(p6, 5, 0, 1232), evil, frag6(p6, 5, 1232, 2464), frag6(p6, 5, 2464, 1<<20))
	wantOutcomes(t, outs, OutcomeFragment, OutcomeFragment, OutcomeFragment, OutcomeTCP)
	checkSegment(t, seg, 3000)
	if s := checkReleased(t, d); s.Duplicates != 1 || s.Overlapping != 0 {
		t.Fatalf("stats %+v", s)
	}
	// The fragments that follow an overlap start over and can never complete.
	d = NewDecoder(DecoderConfig{Raw: true})
	outs, _ = feed(d, 1, frag4(p4, 0, 1480), frag4(p4, 1400, 2960), frag4(p4, 2960, 1<<20), frag4(p4, 1480, 2960))
	wantOutcomes(t, outs, OutcomeFragment, OutcomeFragmentDropped, OutcomeFragment, OutcomeFragment)
	if s := checkReleased(t, d); s.Unfinished != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestDefragInconsistent(t *testing.T) {
	p4, p6 := tcp4(t, 6, 3000), tcp6(t, 3000)
	last := frag4(p4, 2960, 1<<20)
	beyond := frag4(p4, 2000, 2960)
	binary.BigEndian.PutUint16(beyond[6:8], 0x2000|uint16(3024/8)) // a middle fragment past the end (3020)
	otherEnd := frag4(p4, 2000, 2960)                              // a second, different last fragment
	binary.BigEndian.PutUint16(otherEnd[6:8], uint16(2000/8))
	huge := frag4(p4, 0, 1480)
	binary.BigEndian.PutUint16(huge[6:8], 0x2000|uint16(65000/8)) // ends past 64 KiB
	empty := frag4(p4, 0, 0)
	binary.BigEndian.PutUint16(empty[6:8], 0x2000)
	unaligned6 := frag6(p6, 6, 0, 1230) // a non-final IPv6 fragment must hold whole 8-byte units
	early := frag4(p4, 8, 1000)         // a last fragment ending before data already held
	binary.BigEndian.PutUint16(early[6:8], 1)
	cases := map[string][][]byte{
		"fragment past the last":    {last, beyond},
		"two different ends":        {last, otherEnd},
		"past 64 KiB":               {huge},
		"empty fragment":            {empty},
		"unaligned ipv6 fragment":   {frag6(p6, 6, 1232, 2464), unaligned6},
		"end before data held":      {frag4(p4, 1480, 2960), early},
		"last fragment then beyond": {otherEnd, last},
	}
	for name, frames := range cases {
		t.Run(name, func(t *testing.T) {
			d := NewDecoder(DecoderConfig{Raw: true})
			outs, _ := feed(d, 1, frames...)
			if outs[len(outs)-1] != OutcomeFragmentDropped {
				t.Fatalf("outcomes %v", outs)
			}
			if s := checkReleased(t, d); s.Invalid != 1 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

// A non-final IPv4 fragment counts in whole 8-byte units, as Linux counts it.
func TestDefragIPv4TrimsNonFinalFragments(t *testing.T) {
	p := tcp4(t, 8, 3000)
	first := frag4(p, 0, 1480)
	first = append(first, 0xee, 0xee, 0xee) // 3 stray bytes beyond the last whole unit
	binary.BigEndian.PutUint16(first[2:4], uint16(len(first)))
	d := NewDecoder(DecoderConfig{Raw: true})
	outs, seg := feed(d, 1, first, frag4(p, 1480, 1<<20))
	wantOutcomes(t, outs, OutcomeFragment, OutcomeTCP)
	checkSegment(t, seg, 3000)
	checkReleased(t, d)
}

func TestDefragTimeout(t *testing.T) {
	d := NewDecoder(DecoderConfig{Raw: true, Defrag: DefragConfig{Timeout: 5 * time.Second}})
	p := tcp4(t, 100, 3000)
	key := fragKey{src: addr16("10.1.0.5"), dst: addr16("10.1.0.9"), id: 100, proto: ipProtoTCP}
	outs, _ := feed(d, int64(time.Second), frag4(p, 0, 1480))
	wantOutcomes(t, outs, OutcomeFragment)
	// Another datagram in the same shard, 5 s later: not yet expired; 6 s later: expired.
	other := sameShard(t, key)
	q := tcp4(t, uint16(other), 3000)
	feed(d, int64(6*time.Second), frag4(q, 0, 1480))
	if s := d.defrag.Stats(); s.Expired != 0 || s.Datagrams != 2 {
		t.Fatalf("at 5 s: %+v", s)
	}
	feed(d, int64(6*time.Second+1), frag4(q, 1480, 2960))
	if s := d.defrag.Stats(); s.Expired != 1 || s.Datagrams != 1 {
		t.Fatalf("after 5 s: %+v", s)
	}
	// The rest of the expired datagram starts a new one that cannot complete either.
	outs, _ = feed(d, int64(7*time.Second), frag4(p, 2960, 1<<20))
	wantOutcomes(t, outs, OutcomeFragment)
	outs, seg := feed(d, int64(7*time.Second), frag4(q, 2960, 1<<20))
	wantOutcomes(t, outs, OutcomeTCP)
	checkSegment(t, seg, 3000)
	if s := checkReleased(t, d); s.Unfinished != 1 || s.Reassembled != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func addr16(s string) [16]byte { return netipAddr(s).As16() }

// sameShard finds an IPv4 identification whose datagram shares k's shard.
func sameShard(t *testing.T, k fragKey) uint32 {
	for id := k.id + 1; id < k.id+10000; id++ {
		o := k
		o.id = id
		if o.shard() == k.shard() {
			return id
		}
	}
	t.Fatal("no identification shares the shard")
	return 0
}

// Memory stays within the budget however many datagrams are started; the oldest go first.
func TestDefragMemoryBound(t *testing.T) {
	const budget = 64 << 10
	d := NewDecoder(DecoderConfig{Raw: true, Defrag: DefragConfig{MaxBytes: budget}})
	var maxHeld int64
	for id := range 2000 {
		p := tcp4(t, uint16(id), 3000)
		feed(d, 1, frag4(p, 0, 1480), frag4(p, 1480, 2960))
		maxHeld = max(maxHeld, d.defrag.Stats().HeldBytes)
	}
	// Shards reserve concurrently, so the budget may be passed by one growth per shard; one
	// goroutine here, so not even that.
	if maxHeld > budget {
		t.Fatalf("held %d bytes, budget %d", maxHeld, budget)
	}
	s := d.defrag.Stats()
	if s.Evicted < 1900 || s.Datagrams == 0 {
		t.Fatalf("stats %+v", s)
	}
	// The newest datagram survived and completes.
	p := tcp4(t, 1999, 3000)
	outs, seg := feed(d, 1, frag4(p, 2960, 1<<20))
	wantOutcomes(t, outs, OutcomeTCP)
	checkSegment(t, seg, 3000)
	checkReleased(t, d)
}

func TestDefragTooManyFragments(t *testing.T) {
	p := tcp4(t, 3, 4000)
	d := NewDecoder(DecoderConfig{Raw: true})
	var outs []Outcome
	for off := 0; off < 8*(maxFragments+1); off += 8 {
		o, _ := feed(d, 1, frag4(p, off, off+8))
		outs = append(outs, o...)
	}
	if outs[maxFragments-1] != OutcomeFragment || outs[maxFragments] != OutcomeFragmentDropped {
		t.Fatalf("fragment %d: %v, fragment %d: %v", maxFragments, outs[maxFragments-1], maxFragments+1, outs[maxFragments])
	}
	if s := checkReleased(t, d); s.Invalid != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// A fragment captured shorter than its IP length (cloud truncation) still completes the
// datagram, which is handed on up to the first missing byte with the rest marked missing.
func TestDefragTruncatedCapture(t *testing.T) {
	p := tcp4(t, 4, 3000)
	mid := frag4(p, 1480, 2960)
	d := NewDecoder(DecoderConfig{Raw: true})
	outs, seg := feed(d, 1, frag4(p, 0, 1480), mid[:200], frag4(p, 2960, 1<<20))
	wantOutcomes(t, outs, OutcomeFragment, OutcomeFragment, OutcomeTruncated)
	got := 1480 - 20 + 180 // the first fragment's TCP payload, then 180 bytes of the second
	if len(seg.Payload) != got || seg.Missing != 3000-got || !bytes.Equal(seg.Payload, []byte(body(3000))[:got]) {
		t.Fatalf("%d bytes, %d missing", len(seg.Payload), seg.Missing)
	}
	checkReleased(t, d)
}

// Fragments that cannot matter are not held: UDP to a port that is no tunnel (known from
// the first fragment), ICMP, raw TCP with raw capture off.
func TestDefragSkipsWhatDoesNotMatter(t *testing.T) {
	dnsIP := &layers.IPv4{Version: 4, TTL: 9, Id: 50, Protocol: layers.IPProtocolUDP, SrcIP: []byte{10, 0, 0, 1}, DstIP: []byte{10, 0, 0, 2}}
	dnsUDP := &layers.UDP{SrcPort: 53, DstPort: 53}
	_ = dnsUDP.SetNetworkLayerForChecksum(dnsIP)
	dns := serialize(t, dnsIP, dnsUDP, gopacket.Payload(body(3000)))
	d := NewDecoder(DecoderConfig{Raw: true})
	outs, _ := feed(d, 1, frag4(dns, 1480, 2960), frag4(dns, 0, 1480), frag4(dns, 2960, 1<<20))
	wantOutcomes(t, outs, OutcomeFragment, OutcomeNonTCP, OutcomeNonTCP)
	if s := d.defrag.Stats(); s.Ignored != 1 || s.Datagrams != 0 {
		t.Fatalf("stats %+v", s)
	}
	ping := serialize(t, &layers.IPv4{Version: 4, TTL: 9, Id: 51, Protocol: layers.IPProtocolICMPv4, SrcIP: []byte{10, 0, 0, 1}, DstIP: []byte{10, 0, 0, 2}},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0)}, gopacket.Payload(body(3000)))
	outs, _ = feed(d, 1, frag4(ping, 0, 1480), frag4(ping, 1480, 1<<20))
	wantOutcomes(t, outs, OutcomeNonTCP, OutcomeNonTCP)
	off := NewDecoder(DecoderConfig{Raw: false})
	outs, _ = feed(off, 1, frag4(tcp4(t, 1, 3000), 0, 1480))
	wantOutcomes(t, outs, OutcomeNotMirrored)
	for _, dd := range []*Decoder{d, off} {
		if s := checkReleased(t, dd); s.Datagrams != 0 || s.Reassembled != 0 {
			t.Fatalf("stats %+v", s)
		}
	}
}

// An atomic fragment (offset 0, no more fragments; RFC 6946) is the whole packet.
func TestDefragAtomicFragment(t *testing.T) {
	p := tcp6(t, 500)
	d := NewDecoder(DecoderConfig{Raw: true})
	outs, seg := feed(d, 1, frag6(p, 1, 0, 1<<20))
	wantOutcomes(t, outs, OutcomeTCP)
	checkSegment(t, seg, 500)
	if s := checkReleased(t, d); s.Reassembled != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// The outer packet of a tunnel is fragmented (a VXLAN frame longer than the path MTU): the
// reassembled UDP datagram is decapsulated like any other.
func TestDefragOuterTunnelPacket(t *testing.T) {
	inner := innerTCP(t, "10.1.0.5", "10.1.0.9", 40000, 80, 7, body(1448))
	vx := outerUDP(t, "172.31.0.10", "172.31.0.99", 4789, vxlanHdr(42, inner))[14:]
	d := NewDecoder(DecoderConfig{})
	outs, seg := feed(d, 1, frag4(vx, 1256, 1<<20), frag4(vx, 0, 1256))
	wantOutcomes(t, outs, OutcomeFragment, OutcomeTCP)
	checkSegment(t, seg, 1448)
	if seg.Key.Tunnel != 42 {
		t.Fatalf("tunnel %d", seg.Key.Tunnel)
	}
	checkReleased(t, d)
}

// The fragment path allocates nothing per packet once its buffers exist.
func TestDefragAllocs(t *testing.T) {
	p := tcp4(t, 9, 3000)
	fr := [][]byte{frag4(p, 0, 1480), frag4(p, 1480, 2960), frag4(p, 2960, 1<<20)}
	d := NewDecoder(DecoderConfig{Raw: true})
	var seg tcp.Segment
	run := func() {
		for _, f := range fr {
			d.Decode(&Frame{Data: f, Link: LinkRawIP, Timestamp: 1}, &seg)
		}
	}
	run()
	if n := testing.AllocsPerRun(1000, run); n != 0 {
		t.Fatalf("%v allocations per datagram", n)
	}
}

func netipAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// patternByte is byte i of every fuzzed datagram, so any reassembly that misplaces a
// fragment shows.
func patternByte(i int) byte { return byte(i*7 + i>>8) }

// FuzzDefrag applies arbitrary fragment sequences (6 bytes each: offset, length, flags,
// id) to one defragmenter: a completed datagram must be exactly the pattern, memory must
// stay within the budget and be returned in full by Close.
func FuzzDefrag(f *testing.F) {
	f.Add([]byte{0, 0, 5, 0xc8, 1, 1, 5, 0xc8, 0, 100, 0, 1})                      // [0,1480) MF, [1480,1580)
	f.Add([]byte{5, 0xc8, 0, 100, 0, 1, 0, 0, 5, 0xc8, 1, 1, 0, 0, 5, 0xc8, 1, 1}) // reversed, with a duplicate
	f.Add([]byte{0, 0, 0, 16, 3, 2, 0, 8, 0, 16, 2, 2})                            // IPv6, overlapping
	f.Add([]byte{0, 0, 2, 0, 5, 3, 2, 0, 0, 40, 4, 3})                             // truncated capture
	f.Fuzz(defragOps)
}

// fuzzOut receives reassembled datagrams; a fuzz worker runs one input at a time.
var fuzzOut [maxDatagram]byte

// defragOps is FuzzDefrag's body.
func defragOps(t *testing.T, ops []byte) {
	const budget = 32 << 10
	if len(ops) > 6*64 { // 64 fragments: room for every interplay, short to minimize
		ops = ops[:6*64]
	}
	{
		df := NewDefragmenter(DefragConfig{MaxBytes: budget, Timeout: time.Second})
		out := fuzzOut[:]
		for ; len(ops) >= 6; ops = ops[6:] {
			off := int(binary.BigEndian.Uint16(ops[0:2])) &^ 7
			n := int(binary.BigEndian.Uint16(ops[2:4])) % 4097
			flags := ops[4]
			data := make([]byte, n)
			for i := range data {
				data[i] = patternByte(off + i)
			}
			if flags&4 != 0 {
				data = data[:n/2] // captured truncated
			}
			fr := fragment{key: fragKey{id: uint32(ops[5] & 7), proto: ipProtoTCP, v6: flags&2 != 0},
				off: off, length: n, data: data, proto: ipProtoTCP, more: flags&1 != 0, v6: flags&2 != 0}
			res, payload, proto, missing := df.add(&fr, int64(flags>>3)*int64(time.Second/4), out)
			if res == fragComplete {
				if proto != ipProtoTCP || missing < 0 || len(payload)+missing > maxDatagram {
					t.Fatalf("proto %d, %d bytes + %d missing", proto, len(payload), missing)
				}
				for i, b := range payload {
					if b != patternByte(i) {
						t.Fatalf("byte %d of a reassembled datagram is wrong", i)
					}
				}
			}
			if s := df.Stats(); s.HeldBytes < 0 || s.HeldBytes > budget+defragShards*maxDatagram {
				t.Fatalf("holds %d bytes", s.HeldBytes)
			}
		}
		df.Close()
		if s := df.Stats(); s.HeldBytes != 0 || s.Datagrams != 0 {
			t.Fatalf("after Close: %+v", s)
		}
	}
}

func TestDefragCollector(t *testing.T) {
	d := NewDecoder(DecoderConfig{Raw: true})
	p := tcp4(t, 9, 3000)
	feed(d, 1, frag4(p, 0, 1480), frag4(p, 0, 1480), frag4(p, 1480, 2960), frag4(p, 2960, 1<<20)) // one duplicate, one datagram
	q := tcp4(t, 10, 3000)
	feed(d, 1, frag4(q, 0, 1480)) // still incomplete
	want := `
# HELP metlo_appliance_datapath_ip_datagrams_total Fragmented IP datagrams by what became of them: reassembled, expired, overlapping, invalid, evicted (memory budget), ignored (nothing to decode), unfinished (at shutdown).
# TYPE metlo_appliance_datapath_ip_datagrams_total counter
metlo_appliance_datapath_ip_datagrams_total{result="evicted"} 0
metlo_appliance_datapath_ip_datagrams_total{result="expired"} 0
metlo_appliance_datapath_ip_datagrams_total{result="ignored"} 0
metlo_appliance_datapath_ip_datagrams_total{result="invalid"} 0
metlo_appliance_datapath_ip_datagrams_total{result="overlapping"} 0
metlo_appliance_datapath_ip_datagrams_total{result="reassembled"} 1
metlo_appliance_datapath_ip_datagrams_total{result="unfinished"} 0
# HELP metlo_appliance_datapath_ip_fragment_duplicates_total IP fragments ignored because every byte of them was held already (mirrored twice).
# TYPE metlo_appliance_datapath_ip_fragment_duplicates_total counter
metlo_appliance_datapath_ip_fragment_duplicates_total 1
# HELP metlo_appliance_datapath_ip_reassembly_datagrams IP datagrams being reassembled.
# TYPE metlo_appliance_datapath_ip_reassembly_datagrams gauge
metlo_appliance_datapath_ip_reassembly_datagrams 1
`
	c := NewDefragCollector(d.defrag)
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"metlo_appliance_datapath_ip_datagrams_total", "metlo_appliance_datapath_ip_fragment_duplicates_total", "metlo_appliance_datapath_ip_reassembly_datagrams"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(c, "metlo_appliance_datapath_ip_reassembly_bytes"); n != 1 || d.defrag.Stats().HeldBytes <= 1480 {
		t.Fatalf("%d reassembly_bytes series; %d bytes held, want more than the fragment", n, d.defrag.Stats().HeldBytes)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
}

// Datagrams piled up in one shard (an attacker can aim at one: the shard function is no
// secret) cannot starve another shard: its new datagram evicts from the full one.
func TestDefragOneShardCannotStarveOthers(t *testing.T) {
	const budget = 64 << 10
	d := NewDecoder(DecoderConfig{Raw: true, Defrag: DefragConfig{MaxBytes: budget}})
	key := fragKey{src: addr16("10.1.0.5"), dst: addr16("10.1.0.9"), id: 1, proto: ipProtoTCP}
	id := key.id
	for range 200 { // fill the budget from one shard
		feed(d, 1, frag4(tcp4(t, uint16(id), 3000), 0, 1480))
		key.id = id
		id = sameShard(t, key)
	}
	if s := d.defrag.Stats(); s.HeldBytes < budget-8<<10 {
		t.Fatalf("only %d bytes held", s.HeldBytes)
	}
	other := uint16(1)
	for ; other < 1000; other++ {
		k := key
		k.id = uint32(other)
		if k.shard() != key.shard() {
			break
		}
	}
	p := tcp4(t, other, 3000)
	outs, seg := feed(d, 1, frag4(p, 0, 1480), frag4(p, 1480, 2960), frag4(p, 2960, 1<<20))
	wantOutcomes(t, outs, OutcomeFragment, OutcomeFragment, OutcomeTCP)
	checkSegment(t, seg, 3000)
	checkReleased(t, d)
}
