package datapath

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
)

// conn builds the raw IPv4 packets of one TCP connection between a client and a server.
type conn struct {
	t              testing.TB
	client, server net.IP
	cport          uint16
	cseq, sseq     uint32
	id             uint16
}

func (c *conn) packet(fromClient bool, syn, ack bool, payload string) []byte {
	src, dst, sp, dp, seq, ackn := c.client, c.server, c.cport, uint16(80), c.cseq, c.sseq
	if !fromClient {
		src, dst, sp, dp, seq, ackn = c.server, c.client, 80, c.cport, c.sseq, c.cseq
	}
	c.id++
	ip := &layers.IPv4{Version: 4, TTL: 64, Id: c.id, Protocol: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sp), DstPort: layers.TCPPort(dp), Seq: seq, SYN: syn, ACK: ack, PSH: payload != "", Window: 500}
	if ack {
		tcp.Ack = ackn
	}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	adv := uint32(len(payload))
	if syn {
		adv++
	}
	if fromClient {
		c.cseq += adv
	} else {
		c.sseq += adv
	}
	return serialize(c.t, ip, tcp, gopacket.Payload(payload))
}

// collector gathers exchanges from every worker.
type collector struct {
	mu  sync.Mutex
	got []string
}

func (c *collector) handler() exchange.Handler {
	return exchange.HandlerFunc(func(e *exchange.Exchange) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.got = append(c.got, fmt.Sprintf("%s %s %d %d", e.Request.Method, e.Request.Target, e.Response.Status, len(e.Request.Body)))
	})
}

// The fragments of one request reach two source goroutines (as AF_PACKET fanout or XDP
// rings may deliver them); the shared defragmenter still rebuilds every request.
func TestFragmentsAcrossHandlers(t *testing.T) {
	const conns, bodyLen = 60, 2800
	var col collector
	d := NewDispatcher(DispatcherConfig{Workers: 2, Decoder: DecoderConfig{Raw: true}}, col.handler())
	var streams [2][][]byte // what each source goroutine delivers, in order
	for i := range conns {
		c := &conn{t: t, client: net.IPv4(10, 9, byte(i>>8), byte(i)), server: net.IPv4(10, 8, 0, 1), cport: uint16(30000 + i), cseq: 1000, sseq: 5000}
		hs := [][]byte{c.packet(true, true, false, ""), c.packet(false, true, true, ""), c.packet(true, false, true, "")}
		req := c.packet(true, false, true, fmt.Sprintf("POST /c/%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", i, bodyLen, body(bodyLen)))
		resp := c.packet(false, false, true, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
		own := i % 2
		streams[own] = append(streams[own], hs...)
		streams[own] = append(streams[own], frag4(req, 0, 1480))
		streams[1-own] = append(streams[1-own], frag4(req, 1480, 1<<20))
		streams[own] = append(streams[own], resp)
	}
	var wg sync.WaitGroup
	for _, s := range streams {
		h := d.NewHandler()
		wg.Go(func() {
			for i, f := range s {
				h.HandleFrame(&Frame{Data: f, Link: LinkRawIP, Timestamp: int64(i+1) * 1000})
			}
			h.Flush()
		})
	}
	wg.Wait()
	d.Close()
	s := d.Snapshot()
	if s.Defrag.Reassembled != conns || s.Defrag.HeldBytes != 0 {
		t.Fatalf("defrag %+v", s.Defrag)
	}
	if len(col.got) != conns {
		t.Fatalf("%d exchanges, want %d: %v", len(col.got), conns, col.got)
	}
	sort.Strings(col.got)
	for _, g := range col.got {
		var n, status, blen int
		if _, err := fmt.Sscanf(g, "POST /c/%d %d %d", &n, &status, &blen); err != nil || status != 201 || blen != bodyLen {
			t.Fatalf("exchange %q", g)
		}
	}
}

// TCP Fast Open: the request travels in the SYN; the decoder hands the SYN's data on and
// reassembly takes it from the sequence number after the SYN's own.
func TestFastOpenRequestInSYN(t *testing.T) {
	var col collector
	d := NewDispatcher(DispatcherConfig{Workers: 2, Decoder: DecoderConfig{Raw: true}}, col.handler())
	h := d.NewHandler()
	c := &conn{t: t, client: net.IPv4(10, 9, 0, 1), server: net.IPv4(10, 8, 0, 1), cport: 40000, cseq: 1000, sseq: 5000}
	frames := [][]byte{
		c.packet(true, true, false, "GET /tfo HTTP/1.1\r\nHost: x\r\n\r\n"), // SYN + request
		c.packet(false, true, true, ""),                                     // SYN-ACK acknowledges the data
		c.packet(true, false, true, ""),
		c.packet(false, false, true, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
	}
	for i, f := range frames {
		h.HandleFrame(&Frame{Data: f, Link: LinkRawIP, Timestamp: int64(i+1) * 1000})
	}
	h.Flush()
	d.Close()
	if len(col.got) != 1 || col.got[0] != "GET /tfo 200 0" {
		t.Fatalf("exchanges %q, want the one carried in the SYN", col.got)
	}
}

// A flood of fragments that never complete (distinct sources and identifications, from
// two goroutines) keeps the defragmenter within its budget; the oldest are evicted.
func TestFragmentFloodStaysInBudget(t *testing.T) {
	const budget, perSource = 1 << 20, 100000
	var col collector
	d := NewDispatcher(DispatcherConfig{Workers: 2, Decoder: DecoderConfig{Raw: true, Defrag: DefragConfig{MaxBytes: budget}}}, col.handler())
	limit := int64(budget + defragShards*maxDatagram) // one growth per shard may race past it
	var wg sync.WaitGroup
	var mu sync.Mutex
	var peak int64
	for g := range 2 {
		h := d.NewHandler()
		base := frag4(tcp4(t, 0, 3000), 0, 1480)
		wg.Go(func() {
			f := append([]byte(nil), base...)
			for i := range perSource {
				f[4], f[5] = byte(i>>8), byte(i) // identification
				f[12], f[13], f[14] = byte(g), byte(i>>16), byte(i>>8)
				h.HandleFrame(&Frame{Data: f, Link: LinkRawIP, Timestamp: int64(i+1) * 1000})
				if i%5000 == 0 {
					held := d.Snapshot().Defrag.HeldBytes
					mu.Lock()
					peak = max(peak, held)
					mu.Unlock()
				}
			}
			h.Flush()
		})
	}
	wg.Wait()
	s := d.Snapshot()
	d.Close()
	if peak > limit || s.Defrag.HeldBytes > limit {
		t.Fatalf("held %d bytes at peak, %d at the end; budget %d", peak, s.Defrag.HeldBytes, budget)
	}
	if s.Defrag.Evicted < 2*perSource-2000 || s.Defrag.Reassembled != 0 || len(col.got) != 0 {
		t.Fatalf("defrag %+v, %d exchanges", s.Defrag, len(col.got))
	}
	if s.Packets[EncapRaw][OutcomeFragment] != 2*perSource {
		t.Fatalf("%d frames counted as held fragments", s.Packets[EncapRaw][OutcomeFragment])
	}
	if after := d.Snapshot().Defrag; after.HeldBytes != 0 {
		t.Fatalf("%d bytes held after Close", after.HeldBytes)
	}
	t.Logf("peak %d bytes, %d datagrams evicted", peak, s.Defrag.Evicted)
}

// The outer-source accept list applies to capture files of every link type: a stranger's
// VXLAN packet is refused behind an SLL2, raw IP, loopback or NFLOG header too.
func TestTunnelAcceptOtherLinkTypes(t *testing.T) {
	inner := innerTCP(t, "10.1.0.5", "10.1.0.9", 40000, 80, 7, "GET / HTTP/1.1\r\n\r\n")
	accept := TunnelAccept{Sources: []netip.Prefix{netip.MustParsePrefix("172.31.0.0/16")}}
	for _, from := range []string{"172.31.0.10", "192.0.2.66"} {
		ip := outerUDP(t, from, "172.31.0.99", 4789, vxlanHdr(42, inner))[14:]
		frames := map[string]Frame{
			"sll2":  {Data: append(sll2Header(1, 0x0800), ip...), Link: LinkSLL2},
			"sll":   {Data: append(sllHeader(1, 0x0800), ip...), Link: LinkSLL},
			"raw":   {Data: ip, Link: LinkRawIP},
			"null":  {Data: append([]byte{2, 0, 0, 0}, ip...), Link: LinkNull},
			"nflog": {Data: nflogRecord(binary.LittleEndian, 2, ip), Link: LinkNFLOG},
		}
		for name, f := range frames {
			d := NewDispatcher(DispatcherConfig{Workers: 1, Accept: accept}, exchange.HandlerFunc(func(*exchange.Exchange) {}))
			h := d.NewHandler()
			f.Timestamp = 1
			h.HandleFrame(&f)
			h.Flush()
			d.Close()
			s := d.Snapshot()
			taken := s.Packets[EncapVXLAN][OutcomeTCP] == 1 && s.Rejected[RejectSource] == 0
			rejected := s.Packets[EncapVXLAN][OutcomeTCP] == 0 && s.Rejected[RejectSource] == 1
			if from == "172.31.0.10" && !taken || from == "192.0.2.66" && !rejected {
				t.Errorf("%s from %s: tcp %d, rejected %v", name, from, s.Packets[EncapVXLAN][OutcomeTCP], s.Rejected)
			}
		}
	}
}
