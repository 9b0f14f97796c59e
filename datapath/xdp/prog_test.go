package xdp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/metlo-labs/metlo-appliance/datapath/localaddr"
	"github.com/metlo-labs/metlo-appliance/test/netnstest"
)

// needBPF skips t unless the process may load BPF programs, and in -short mode.
func needBPF(t testing.TB) {
	t.Helper()
	netnstest.RequireRoot(t, "loads BPF programs")
}

// harness runs a loaded program with BPF_PROG_RUN and collects what it left behind.
type harness struct {
	objs    *Objects
	readers []*ringbuf.Reader
}

func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	needBPF(t)
	if cfg.RingBytes == 0 {
		cfg.RingBytes = 1 << 20 // the automatic 64 MiB per CPU is more than any table test needs
	}
	objs, err := load(cfg, true)
	if errors.Is(err, ErrPermission) || errors.Is(err, ErrKernelTooOld) {
		t.Skipf("needs BPF: %v", err)
	}
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	h := &harness{objs: objs}
	for _, r := range objs.Rings {
		rd, err := ringbuf.NewReader(r)
		if err != nil {
			t.Fatalf("ring reader: %v", err)
		}
		h.readers = append(h.readers, rd)
	}
	t.Cleanup(func() {
		for _, rd := range h.readers {
			rd.Close()
		}
		objs.Close()
	})
	return h
}

// result is what one program run did.
type result struct {
	action  uint32
	records [][]byte
	deltas  map[string]uint64 // non-zero counter deltas, summed over CPUs
}

func (h *harness) run(t testing.TB, prog *ebpf.Program, frame []byte) result {
	t.Helper()
	before := h.counters(t)
	action, err := prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatalf("prog run: %v", err)
	}
	after := h.counters(t)
	res := result{action: action, deltas: map[string]uint64{}, records: h.drain(t)}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			res.deltas[k] = d
		}
	}
	return res
}

func (h *harness) counters(t testing.TB) map[string]uint64 {
	t.Helper()
	c, err := h.objs.CounterValues()
	if err != nil {
		t.Fatalf("counters: %v", err)
	}
	return c
}

// drain returns every record currently in any ring.
func (h *harness) drain(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	var rec ringbuf.Record
	for _, rd := range h.readers {
		rd.SetDeadline(time.Now())
		for {
			err := rd.ReadInto(&rec)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				t.Fatalf("read ring: %v", err)
			}
			out = append(out, bytes.Clone(rec.RawSample))
		}
	}
	return out
}

// want describes one expected record.
type want struct {
	data    []byte
	encap   datapath.Encap
	vni     uint32
	innerIP bool
	whole   bool // the whole frame, for the Go decoder to open (not Decapsulated)
	wire    int  // 0: len(data)
}

const (
	actDrop = 1
	actPass = 2
)

type progCase struct {
	name   string
	cfg    Config
	frame  []byte
	action uint32
	record *want
	deltas map[string]uint64
}

func TestProgram(t *testing.T) {
	needBPF(t)
	local := []netip.Addr{applianceV4, applianceV6}
	raw := Config{Raw: true, LocalAddrs: local}
	noRaw := Config{Raw: false, LocalAddrs: local}
	tcpOnly := Config{Raw: true, LocalAddrs: local, TCPOnly: true}
	port80 := Config{Raw: true, LocalAddrs: local, Ports: []uint16{80}}
	// Tunnels only from the mirror sources' networks (mirrorV4 is 10.0.0.1, mirrorV6 fd00::1)
	// and with the sessions' VNIs.
	accept := Config{Raw: true, LocalAddrs: local, AcceptSources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("fd00::/64")},
		AcceptVNIs: []uint32{4242, 77}}
	stranger4, stranger6 := netip.MustParseAddr("192.0.2.66"), netip.MustParseAddr("2001:db8::66")

	get := "GET /api/users/7 HTTP/1.1\r\nHost: api\r\n\r\n"
	inner4 := tcpFrame(t, clientV4, serverV4, 51234, 80, get)
	inner6 := tcpFrame(t, clientV6, serverV6, 51234, 8080, get)
	ip4 := tcpIP(t, clientV4, serverV4, 51234, 80, get)
	ip6 := tcpIP(t, clientV6, serverV6, 51234, 8080, get)

	mplsMC := mplsFrame(ip4)
	mplsMC[13] = 0x48 // EtherType 0x8848

	// Truncated mirror: the inner IP header claims 1500 bytes, 200 arrived.
	long := tcpFrame(t, clientV4, serverV4, 51234, 80, strings.Repeat("x", 1500-40))
	truncated := long[:200]
	// Jumbo inner frame: exercises XDP frags and bpf_xdp_load_bytes across buffers.
	jumbo := tcpFrame(t, clientV4, serverV4, 51234, 80, strings.Repeat("j", 8900))
	// Oversized inner frame: copied up to MaxCapture.
	huge := tcpFrame(t, clientV4, serverV4, 51234, 80, strings.Repeat("h", MaxCapture+100))
	// Inner IPv4 with IHL 3: malformed.
	badIHL := bytes.Clone(inner4)
	badIHL[14] = 0x43
	// Inner IPv4 whose total length is shorter than its header: malformed.
	badLen := bytes.Clone(inner4)
	badLen[16], badLen[17] = 0, 10
	innerUDP := udpFrame(t, clientV4, serverV4, 5353, 53, []byte("dns?"))
	innerARP := append(bytes.Clone(inner4[:12]), 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1)
	vxInGeneve := udpFrame(t, mirrorV4, applianceV4, 40000, 4789, append(vxlanHeader(77, 0x08), inner4...))[14:]

	cases := []progCase{
		{
			name: "vxlan", cfg: raw, action: actDrop,
			frame:  vxlanFrame(t, mirrorV4, applianceV4, 4242, inner4),
			record: &want{data: inner4, encap: datapath.EncapVXLAN, vni: 4242},
			deltas: map[string]uint64{"received": 1, "vxlan": 1},
		},
		{
			name: "vxlan ipv6 outer and inner", cfg: raw, action: actDrop,
			frame:  vxlanFrame(t, mirrorV6, applianceV6, 0xabcdef, inner6),
			record: &want{data: inner6, encap: datapath.EncapVXLAN, vni: 0xabcdef},
			deltas: map[string]uint64{"received": 1, "vxlan": 1},
		},
		{
			name: "vxlan 802.1Q", cfg: raw, action: actDrop,
			frame:  vxlanFrame(t, mirrorV4, applianceV4, 7, inner4, 100),
			record: &want{data: inner4, encap: datapath.EncapVXLAN, vni: 7},
			deltas: map[string]uint64{"received": 1, "vxlan": 1},
		},
		{
			name: "vxlan QinQ", cfg: raw, action: actDrop,
			frame:  vxlanFrame(t, mirrorV4, applianceV4, 7, inner4, 100, 200),
			record: &want{data: inner4, encap: datapath.EncapVXLAN, vni: 7},
			deltas: map[string]uint64{"received": 1, "vxlan": 1},
		},
		{
			name: "vxlan to another address is still a tunnel", cfg: noRaw, action: actDrop,
			frame:  vxlanFrame(t, mirrorV4, netip.MustParseAddr("10.9.9.9"), 1, inner4),
			record: &want{data: inner4, encap: datapath.EncapVXLAN, vni: 1},
			deltas: map[string]uint64{"received": 1, "vxlan": 1},
		},
		{
			name: "vxlan without I flag", cfg: raw, action: actDrop,
			frame:  udpFrame(t, mirrorV4, applianceV4, 49152, 4789, append(vxlanHeader(1, 0x00), inner4...)),
			deltas: map[string]uint64{"received": 1, "malformed": 1},
		},
		{
			name: "vxlan header cut short", cfg: raw, action: actDrop,
			frame:  udpFrame(t, mirrorV4, applianceV4, 49152, 4789, []byte{0x08, 0, 0, 0}),
			deltas: map[string]uint64{"received": 1, "malformed": 1},
		},
		{
			name: "vxlan inner ihl 3", cfg: raw, action: actDrop,
			frame:  vxlanFrame(t, mirrorV4, applianceV4, 1, badIHL),
			deltas: map[string]uint64{"received": 1, "malformed": 1},
		},
		{
			name: "vxlan inner total length below header", cfg: raw, action: actDrop,
			frame:  vxlanFrame(t, mirrorV4, applianceV4, 1, badLen),
			deltas: map[string]uint64{"received": 1, "malformed": 1},
		},
		{
			name: "vxlan truncated mirror", cfg: raw, action: actDrop,
			frame:  vxlanFrame(t, mirrorV4, applianceV4, 9, truncated),
			record: &want{data: truncated, encap: datapath.EncapVXLAN, vni: 9, wire: 14 + 1500},
			deltas: map[string]uint64{"received": 1, "vxlan": 1, "truncated": 1},
		},
		{
			name: "vxlan jumbo (frags)", cfg: raw, action: actDrop,
			frame:  vxlanFrame(t, mirrorV4, applianceV4, 9, jumbo),
			record: &want{data: jumbo, encap: datapath.EncapVXLAN, vni: 9},
			deltas: map[string]uint64{"received": 1, "vxlan": 1},
		},
		{
			name: "vxlan longer than MaxCapture", cfg: raw, action: actDrop,
			frame:  vxlanFrame(t, mirrorV4, applianceV4, 9, huge),
			record: &want{data: huge[:MaxCapture], encap: datapath.EncapVXLAN, vni: 9, wire: len(huge)},
			deltas: map[string]uint64{"received": 1, "vxlan": 1, "truncated": 1},
		},
		{
			name: "vxlan inner udp captured", cfg: raw, action: actDrop,
			frame: vxlanFrame(t, mirrorV4, applianceV4, 3, innerUDP),
			// The inner frame is padded to Ethernet's 60 bytes; the padding is not captured.
			record: &want{data: innerUDP[:ipv4End(innerUDP)], encap: datapath.EncapVXLAN, vni: 3},
			deltas: map[string]uint64{"received": 1, "vxlan": 1},
		},
		{
			name: "vxlan inner arp captured", cfg: raw, action: actDrop,
			frame:  vxlanFrame(t, mirrorV4, applianceV4, 3, innerARP),
			record: &want{data: innerARP, encap: datapath.EncapVXLAN, vni: 3},
			deltas: map[string]uint64{"received": 1, "vxlan": 1},
		},
		{
			name: "tcp only: inner udp", cfg: tcpOnly, action: actDrop,
			frame:  vxlanFrame(t, mirrorV4, applianceV4, 3, innerUDP),
			deltas: map[string]uint64{"received": 1, "non_tcp": 1},
		},
		{
			name: "tcp only: inner arp", cfg: tcpOnly, action: actDrop,
			frame:  vxlanFrame(t, mirrorV4, applianceV4, 3, innerARP),
			deltas: map[string]uint64{"received": 1, "non_tcp": 1},
		},
		{
			name: "port filter keeps port 80", cfg: port80, action: actDrop,
			frame:  vxlanFrame(t, mirrorV4, applianceV4, 5, inner4),
			record: &want{data: inner4, encap: datapath.EncapVXLAN, vni: 5},
			deltas: map[string]uint64{"received": 1, "vxlan": 1},
		},
		{
			name: "port filter drops port 8080", cfg: port80, action: actDrop,
			frame:  vxlanFrame(t, mirrorV6, applianceV6, 5, inner6),
			deltas: map[string]uint64{"received": 1, "filtered": 1},
		},
		{
			name: "accepted source and vni", cfg: accept, action: actDrop,
			frame:  vxlanFrame(t, mirrorV4, applianceV4, 4242, inner4),
			record: &want{data: inner4, encap: datapath.EncapVXLAN, vni: 4242},
			deltas: map[string]uint64{"received": 1, "vxlan": 1},
		},
		{
			name: "accepted ipv6 source", cfg: accept, action: actDrop,
			frame:  vxlanFrame(t, mirrorV6, applianceV6, 4242, inner6),
			record: &want{data: inner6, encap: datapath.EncapVXLAN, vni: 4242},
			deltas: map[string]uint64{"received": 1, "vxlan": 1},
		},
		{
			name: "vxlan from a stranger", cfg: accept, action: actDrop,
			frame:  vxlanFrame(t, stranger4, applianceV4, 4242, inner4),
			deltas: map[string]uint64{"received": 1, "rejected_source": 1},
		},
		{
			name: "geneve from an ipv6 stranger", cfg: accept, action: actDrop,
			frame:  udpFrame(t, stranger6, applianceV6, 50000, 6081, genevePayload(4242, 0x6558, 0, inner4)),
			deltas: map[string]uint64{"received": 1, "rejected_source": 1},
		},
		{
			name: "vxlan with another vni", cfg: accept, action: actDrop,
			frame:  vxlanFrame(t, mirrorV4, applianceV4, 4243, inner4),
			deltas: map[string]uint64{"received": 1, "rejected_vni": 1},
		},
		{
			name: "geneve with another vni", cfg: accept, action: actDrop,
			frame:  udpFrame(t, mirrorV4, applianceV4, 50000, 6081, genevePayload(5, 0x6558, 32, inner4)),
			deltas: map[string]uint64{"received": 1, "rejected_vni": 1},
		},
		{
			name: "vxlan in geneve: the vxlan vni decides", cfg: accept, action: actDrop,
			frame:  udpFrame(t, mirrorV4, applianceV4, 50000, 6081, genevePayload(5, 0x0800, 32, vxInGeneve)),
			record: &want{data: inner4, encap: datapath.EncapGENEVEVXLAN, vni: 77},
			deltas: map[string]uint64{"received": 1, "geneve_vxlan": 1},
		},
		{
			name: "raw tcp is no tunnel: no source or vni filter", cfg: accept, action: actDrop,
			frame:  tcpFrame(t, stranger4, serverV4, 51234, 80, get),
			record: &want{data: tcpFrame(t, stranger4, serverV4, 51234, 80, get), encap: datapath.EncapRaw},
			deltas: map[string]uint64{"received": 1, "raw": 1},
		},
		{
			name: "udp from a stranger to another port is no tunnel", cfg: accept, action: actPass,
			frame:  udpFrame(t, stranger4, applianceV4, 40000, 53, []byte("dns")),
			deltas: map[string]uint64{"received": 1, "passed": 1},
		},
		{
			name: "erspan II over gre: whole, for the go decoder", cfg: raw, action: actDrop,
			frame:  greFrame(t, mirrorV4, applianceV4, 0x88be, erspan2(inner4)),
			record: &want{data: greFrame(t, mirrorV4, applianceV4, 0x88be, erspan2(inner4)), encap: datapath.EncapRaw, whole: true},
			deltas: map[string]uint64{"received": 1, "whole": 1},
		},
		{
			name: "erspan III over gre, raw mode off: whole", cfg: noRaw, action: actDrop,
			frame:  greFrame(t, mirrorV4, applianceV4, 0x22eb, append(make([]byte, 12), inner4...)),
			record: &want{data: greFrame(t, mirrorV4, applianceV4, 0x22eb, append(make([]byte, 12), inner4...)), encap: datapath.EncapRaw, whole: true},
			deltas: map[string]uint64{"received": 1, "whole": 1},
		},
		{
			name: "ethernet over gre: whole", cfg: raw, action: actDrop,
			frame:  greFrame(t, mirrorV4, applianceV4, 0x6558, inner4),
			record: &want{data: greFrame(t, mirrorV4, applianceV4, 0x6558, inner4), encap: datapath.EncapRaw, whole: true},
			deltas: map[string]uint64{"received": 1, "whole": 1},
		},
		{
			name: "ip over gre to the appliance is the host's own tunnel: passed", cfg: raw, action: actPass,
			frame:  greFrame(t, mirrorV4, applianceV4, 0x0800, tcpIP(t, clientV4, applianceV4, 51234, 22, "ssh")),
			deltas: map[string]uint64{"received": 1, "passed": 1},
		},
		{
			name: "ip over gre to another host: whole", cfg: raw, action: actDrop,
			frame:  greFrame(t, mirrorV4, applianceV4, 0x0800, ip4),
			record: &want{data: greFrame(t, mirrorV4, applianceV4, 0x0800, ip4), encap: datapath.EncapRaw, whole: true},
			deltas: map[string]uint64{"received": 1, "whole": 1},
		},
		{
			name: "ipv6 over gre with checksum, key and sequence, to another host: whole", cfg: raw, action: actDrop,
			frame:  greFrameFlags(t, mirrorV4, applianceV4, 0xb000, 0x86dd, ip6),
			record: &want{data: greFrameFlags(t, mirrorV4, applianceV4, 0xb000, 0x86dd, ip6), encap: datapath.EncapRaw, whole: true},
			deltas: map[string]uint64{"received": 1, "whole": 1},
		},
		{
			name: "ipv6 over gre with a key, to the appliance: passed", cfg: raw, action: actPass,
			frame:  greFrameFlags(t, mirrorV4, applianceV4, 0x2000, 0x86dd, tcpIP(t, clientV6, applianceV6, 51234, 22, "ssh")),
			deltas: map[string]uint64{"received": 1, "passed": 1},
		},
		{
			name: "ip over gre with raw mode off: passed", cfg: noRaw, action: actPass,
			frame:  greFrame(t, mirrorV4, applianceV4, 0x0800, ip4),
			deltas: map[string]uint64{"received": 1, "passed": 1},
		},
		{
			name: "ip over gre from a stranger: rejected", cfg: accept, action: actDrop,
			frame:  greFrame(t, stranger4, applianceV4, 0x0800, ip4),
			deltas: map[string]uint64{"received": 1, "rejected_source": 1},
		},
		{
			name: "ip over gre from an accepted source: whole", cfg: accept, action: actDrop,
			frame:  greFrame(t, mirrorV4, applianceV4, 0x0800, ip4),
			record: &want{data: greFrame(t, mirrorV4, applianceV4, 0x0800, ip4), encap: datapath.EncapRaw, whole: true},
			deltas: map[string]uint64{"received": 1, "whole": 1},
		},
		{
			name: "pptp's enhanced gre (version 1): passed", cfg: raw, action: actPass,
			frame:  greFrameFlags(t, mirrorV4, applianceV4, 0x2001, 0x0800, ip4),
			deltas: map[string]uint64{"received": 1, "passed": 1},
		},
		{
			name: "ip over gre, inner header cut short: passed", cfg: raw, action: actPass,
			frame:  greFrame(t, mirrorV4, applianceV4, 0x0800, ip4[:12]),
			deltas: map[string]uint64{"received": 1, "passed": 1},
		},
		{
			name: "mpls over gre in raw mode: whole", cfg: raw, action: actDrop,
			frame:  greFrame(t, mirrorV4, applianceV4, 0x8847, append([]byte{0x00, 0x01, 0x01, 0x40}, ip4...)),
			record: &want{data: greFrame(t, mirrorV4, applianceV4, 0x8847, append([]byte{0x00, 0x01, 0x01, 0x40}, ip4...)), encap: datapath.EncapRaw, whole: true},
			deltas: map[string]uint64{"received": 1, "whole": 1},
		},
		{
			name: "mpls over gre with raw mode off: passed", cfg: noRaw, action: actPass,
			frame:  greFrame(t, mirrorV4, applianceV4, 0x8847, append([]byte{0x00, 0x01, 0x01, 0x40}, ip4...)),
			deltas: map[string]uint64{"received": 1, "passed": 1},
		},
		{
			name: "ip in ip to another host: whole", cfg: raw, action: actDrop,
			frame:  ipipFrame(t, mirrorV4, applianceV4, ip4),
			record: &want{data: ipipFrame(t, mirrorV4, applianceV4, ip4), encap: datapath.EncapRaw, whole: true},
			deltas: map[string]uint64{"received": 1, "whole": 1},
		},
		{
			name: "ipv6 in ipv6 to another host: whole", cfg: raw, action: actDrop,
			frame:  ipipFrame(t, mirrorV6, applianceV6, ip6),
			record: &want{data: ipipFrame(t, mirrorV6, applianceV6, ip6), encap: datapath.EncapRaw, whole: true},
			deltas: map[string]uint64{"received": 1, "whole": 1},
		},
		{
			name: "ipv6 in ipv4 (6in4) to the appliance is the host's own tunnel: passed", cfg: raw, action: actPass,
			frame:  ipipFrame(t, mirrorV4, applianceV4, tcpIP(t, clientV6, applianceV6, 51234, 22, "ssh")),
			deltas: map[string]uint64{"received": 1, "passed": 1},
		},
		{
			name: "ip in ip with raw mode off: passed", cfg: noRaw, action: actPass,
			frame:  ipipFrame(t, mirrorV4, applianceV4, ip4),
			deltas: map[string]uint64{"received": 1, "passed": 1},
		},
		{
			name: "erspan from a stranger", cfg: accept, action: actDrop,
			frame:  greFrame(t, stranger4, applianceV4, 0x88be, erspan2(inner4)),
			deltas: map[string]uint64{"received": 1, "rejected_source": 1},
		},
		{
			name: "mpls in raw mode: whole", cfg: raw, action: actDrop,
			frame:  mplsFrame(ip4),
			record: &want{data: mplsFrame(ip4), encap: datapath.EncapRaw, whole: true},
			deltas: map[string]uint64{"received": 1, "whole": 1},
		},
		{
			name: "mpls with raw mode off: passed", cfg: noRaw, action: actPass,
			frame:  mplsFrame(ip4),
			deltas: map[string]uint64{"received": 1, "passed": 1},
		},
		{
			name: "mpls multicast in raw mode: whole", cfg: raw, action: actDrop,
			frame:  mplsMC,
			record: &want{data: mplsMC, encap: datapath.EncapRaw, whole: true},
			deltas: map[string]uint64{"received": 1, "whole": 1},
		},
		{
			name: "three vlan tags in raw mode: whole", cfg: raw, action: actDrop,
			frame:  tagged(ip4, 0x88a8, 0x8100, 0x8100),
			record: &want{data: tagged(ip4, 0x88a8, 0x8100, 0x8100), encap: datapath.EncapRaw, whole: true},
			deltas: map[string]uint64{"received": 1, "whole": 1},
		},
		{
			name: "old-style s-tag in raw mode: whole", cfg: raw, action: actDrop,
			frame:  tagged(ip4, 0x9100),
			record: &want{data: tagged(ip4, 0x9100), encap: datapath.EncapRaw, whole: true},
			deltas: map[string]uint64{"received": 1, "whole": 1},
		},
		{
			name: "three vlan tags with raw mode off: passed", cfg: noRaw, action: actPass,
			frame:  tagged(ip4, 0x88a8, 0x8100, 0x8100),
			deltas: map[string]uint64{"received": 1, "passed": 1},
		},
		{
			name: "geneve ethernet with options", cfg: raw, action: actDrop,
			frame:  udpFrame(t, mirrorV4, applianceV4, 50000, 6081, genevePayload(0x123456, 0x6558, 32, inner4)),
			record: &want{data: inner4, encap: datapath.EncapGENEVE, vni: 0x123456},
			deltas: map[string]uint64{"received": 1, "geneve": 1},
		},
		{
			name: "geneve ip", cfg: raw, action: actDrop,
			frame:  udpFrame(t, mirrorV4, applianceV4, 50000, 6081, genevePayload(11, 0x0800, 32, ip4)),
			record: &want{data: ip4, encap: datapath.EncapGENEVE, vni: 11, innerIP: true},
			deltas: map[string]uint64{"received": 1, "geneve": 1},
		},
		{
			name: "vxlan in geneve", cfg: raw, action: actDrop,
			frame:  udpFrame(t, mirrorV4, applianceV4, 50000, 6081, genevePayload(11, 0x0800, 32, vxInGeneve)),
			record: &want{data: inner4, encap: datapath.EncapGENEVEVXLAN, vni: 77},
			deltas: map[string]uint64{"received": 1, "geneve_vxlan": 1},
		},
		{
			name: "geneve version 1", cfg: raw, action: actDrop,
			frame:  udpFrame(t, mirrorV4, applianceV4, 50000, 6081, append([]byte{0x40}, genevePayload(11, 0x0800, 0, ip4)[1:]...)),
			deltas: map[string]uint64{"received": 1, "malformed": 1},
		},
		{
			name: "geneve unknown protocol", cfg: raw, action: actDrop,
			frame:  udpFrame(t, mirrorV4, applianceV4, 50000, 6081, genevePayload(11, 0x88cc, 0, ip4)),
			deltas: map[string]uint64{"received": 1, "malformed": 1},
		},
		{
			name: "geneve options longer than packet", cfg: raw, action: actDrop,
			frame:  udpFrame(t, mirrorV4, applianceV4, 50000, 6081, genevePayload(11, 0x6558, 252, nil)),
			deltas: map[string]uint64{"received": 1, "malformed": 1},
		},
		{
			name: "raw mirrored tcp", cfg: raw, action: actDrop,
			frame:  tcpFrame(t, clientV4, serverV4, 51234, 80, get),
			record: &want{data: inner4, encap: datapath.EncapRaw},
			deltas: map[string]uint64{"received": 1, "raw": 1},
		},
		{
			name: "raw mirrored tcp ipv6", cfg: raw, action: actDrop,
			frame:  inner6,
			record: &want{data: inner6, encap: datapath.EncapRaw},
			deltas: map[string]uint64{"received": 1, "raw": 1},
		},
		{
			name: "raw off passes mirrored tcp", cfg: noRaw, action: actPass,
			frame:  inner4,
			deltas: map[string]uint64{"received": 1, "passed": 1},
		},
		{
			name: "ssh to the appliance passes", cfg: raw, action: actPass,
			frame:  tcpFrame(t, clientV4, applianceV4, 50022, 22, "SSH-2.0-OpenSSH_9.6\r\n"),
			deltas: map[string]uint64{"received": 1, "passed": 1},
		},
		{
			name: "metrics scrape over ipv6 to the appliance passes", cfg: raw, action: actPass,
			frame:  tcpFrame(t, clientV6, applianceV6, 50022, 9100, "GET /metrics HTTP/1.1\r\n\r\n"),
			deltas: map[string]uint64{"received": 1, "passed": 1},
		},
		{
			name: "udp to another port passes", cfg: raw, action: actPass,
			frame:  udpFrame(t, mirrorV4, applianceV4, 40000, 53, []byte("dns")),
			deltas: map[string]uint64{"received": 1, "passed": 1},
		},
		{
			name: "arp passes", cfg: raw, action: actPass,
			frame:  innerARP,
			deltas: map[string]uint64{"received": 1, "passed": 1},
		},
		{
			name: "outer ipv4 ihl 3 passes", cfg: raw, action: actPass,
			frame:  badIHL,
			deltas: map[string]uint64{"received": 1, "passed": 1},
		},
	}

	harnesses := map[string]*harness{}
	for _, tc := range cases {
		key := cfgKey(tc.cfg)
		h := harnesses[key]
		if h == nil {
			h = newHarness(t, tc.cfg)
			harnesses[key] = h
		}
		t.Run(tc.name, func(t *testing.T) {
			res := h.run(t, h.objs.Program, tc.frame)
			if res.action != tc.action {
				t.Errorf("action = %d, want %d", res.action, tc.action)
			}
			checkDeltas(t, res.deltas, tc.deltas)
			checkRecords(t, res.records, tc.record)
		})
	}
}

func cfgKey(c Config) string {
	return fmt.Sprintf("raw=%v tcp=%v ports=%v src=%v vni=%v", c.Raw, c.TCPOnly, c.Ports, c.AcceptSources, c.AcceptVNIs)
}

func checkDeltas(t *testing.T, got, want map[string]uint64) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("counter %s delta = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected counter %s delta %d", k, v)
		}
	}
}

func checkRecords(t *testing.T, recs [][]byte, w *want) {
	t.Helper()
	if w == nil {
		if len(recs) != 0 {
			t.Errorf("got %d records, want none", len(recs))
		}
		return
	}
	if len(recs) != 1 {
		t.Fatalf("got %d records, want 1", len(recs))
	}
	var f datapath.Frame
	if !decodeRecord(recs[0], 0, &f) {
		t.Fatalf("record of %d bytes does not decode", len(recs[0]))
	}
	wire := w.wire
	if wire == 0 {
		wire = len(w.data)
	}
	if !bytes.Equal(f.Data, w.data) {
		t.Errorf("data differs: got %d bytes % x…, want %d bytes % x…", len(f.Data), head(f.Data), len(w.data), head(w.data))
	}
	if f.Encap != w.encap || f.Tunnel != w.vni || f.InnerIsIP != w.innerIP || f.WireLen != wire || f.Decapsulated == w.whole {
		t.Errorf("frame = {encap %v vni %d innerIP %v wire %d decap %v}, want {encap %v vni %d innerIP %v wire %d decap %v}",
			f.Encap, f.Tunnel, f.InnerIsIP, f.WireLen, f.Decapsulated, w.encap, w.vni, w.innerIP, wire, !w.whole)
	}
	if f.Timestamp <= 0 {
		t.Errorf("timestamp = %d, want the monotonic clock", f.Timestamp)
	}
}

func head(b []byte) []byte { return b[:min(len(b), 24)] }

// TestCopyEverySize checks the ring copy byte for byte for every inner frame size from a bare
// TCP header up past the largest bucket copied with plain stores, at every alignment the
// outer headers produce (VXLAN over IPv4 with 0–2 VLAN tags, over IPv6, GENEVE, raw). The
// copy is hand-unrolled in 32-byte blocks, words and an overlapping last word, so each size
// class and alignment takes a different path.
func TestCopyEverySize(t *testing.T) {
	needBPF(t)
	h := newHarness(t, Config{Raw: true, LocalAddrs: []netip.Addr{applianceV4}})
	payload := make([]byte, 2200)
	for i := range payload {
		payload[i] = byte(i*7 + i>>8)
	}
	wraps := []struct {
		name string
		wrap func(inner []byte) []byte
	}{
		{"raw", func(inner []byte) []byte { return inner }},
		{"vxlan", func(inner []byte) []byte { return vxlanFrame(t, mirrorV4, applianceV4, 1, inner) }},
		{"vxlan-vlan", func(inner []byte) []byte { return vxlanFrame(t, mirrorV4, applianceV4, 1, inner, 10) }},
		{"vxlan-qinq", func(inner []byte) []byte { return vxlanFrame(t, mirrorV4, applianceV4, 1, inner, 10, 20) }},
		{"vxlan-v6", func(inner []byte) []byte { return vxlanFrame(t, mirrorV6, applianceV6, 1, inner) }},
		{"geneve-opts", func(inner []byte) []byte {
			return udpFrame(t, mirrorV4, applianceV4, 1, 6081, genevePayload(1, 0x6558, 12, inner))
		}},
	}
	for size := 0; size <= len(payload); size++ {
		if size > 300 && size%29 != 0 && size < 2040 {
			continue // every size around the small buckets and the 2 KiB edge, a sample between
		}
		inner := tcpFrame(t, clientV4, serverV4, 40000, 80, string(payload[:size]))
		for _, w := range wraps {
			res := h.run(t, h.objs.Program, w.wrap(inner))
			if len(res.records) != 1 {
				t.Fatalf("%s/%d: %d records, deltas %v", w.name, size, len(res.records), res.deltas)
			}
			var fr datapath.Frame
			if !decodeRecord(res.records[0], 0, &fr) {
				t.Fatalf("%s/%d: record does not decode", w.name, size)
			}
			// Short frames carry Ethernet padding, which is not captured.
			if want := inner[:ipv4End(inner)]; !bytes.Equal(fr.Data, want) {
				t.Fatalf("%s/%d: captured %d bytes that differ from the %d-byte inner frame", w.name, size, len(fr.Data), len(want))
			}
		}
	}
}

// TestClockChoice checks which records carry a precise timestamp: segments that can start an
// HTTP message (payload beginning with an upper-case letter), SYN/FIN/RST and non-TCP frames;
// body segments and bare ACKs get the coarse clock and say so in their flags. Both are
// CLOCK_MONOTONIC: each must lie within a few ticks of the monotonic clock around the run.
func TestClockChoice(t *testing.T) {
	needBPF(t)
	h := newHarness(t, Config{Raw: true, LocalAddrs: []netip.Addr{applianceV4}})
	segment := func(payload string, mod func(*layers.TCP)) []byte {
		ip, et := ipLayer(clientV4, serverV4, layers.IPProtocolTCP)
		tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: 1000, Ack: 1, ACK: true, Window: 512}
		if mod != nil {
			mod(tcp)
		}
		setNet(tcp, ip)
		return serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: et}, ip, tcp, gopacket.Payload(payload))
	}
	cases := []struct {
		name   string
		inner  []byte
		coarse bool
	}{
		{"request", segment("GET /x HTTP/1.1\r\n\r\n", nil), false},
		{"response", segment("HTTP/1.1 200 OK\r\n\r\n", nil), false},
		{"body", segment(`{"id":7,"name":"x"}`, nil), true},
		{"lower-case body", segment("abc", nil), true},
		{"bare ack", segment("", nil), true},
		{"syn", segment("", func(t *layers.TCP) { t.SYN, t.ACK = true, false }), false},
		{"fin", segment("", func(t *layers.TCP) { t.FIN = true }), false},
		{"rst", segment("", func(t *layers.TCP) { t.RST = true }), false},
		{"udp", udpFrame(t, clientV4, serverV4, 5353, 53, []byte("dns?")), false},
	}
	tick := 50 * time.Millisecond // generous: a tick is at most 10 ms (HZ=100)
	for _, c := range cases {
		frames := [][]byte{vxlanFrame(t, mirrorV4, applianceV4, 1, c.inner)}
		if c.name != "udp" { // raw mode captures TCP only
			frames = append(frames, c.inner)
		}
		for _, frame := range frames {
			before := monotonicNow(t)
			res := h.run(t, h.objs.Program, frame)
			after := monotonicNow(t)
			if len(res.records) != 1 {
				t.Fatalf("%s: %d records, deltas %v", c.name, len(res.records), res.deltas)
			}
			rec := res.records[0]
			coarse := rec[21]&flagCoarseTime != 0
			if coarse != c.coarse {
				t.Errorf("%s: coarse clock %v, want %v", c.name, coarse, c.coarse)
			}
			ts := int64(binary.LittleEndian.Uint64(rec[0:]))
			lo := before
			if coarse {
				lo -= tick.Nanoseconds()
			}
			if ts < lo || ts > after {
				t.Errorf("%s: timestamp %d outside [%d, %d]", c.name, ts, lo, after)
			}
		}
	}
}

// ipv4End is where the IPv4 packet in an untagged Ethernet frame ends: Ethernet padding
// after it is not part of it.
func ipv4End(frame []byte) int {
	return 14 + int(binary.BigEndian.Uint16(frame[16:18]))
}

func monotonicNow(t *testing.T) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano()
}

// TestLocalFilter checks the raw-mode pre-filter against its Go twin and the hash map behind
// it: TCP to a local address passes, TCP to an address whose filter bit collides with a
// local one (so the map decides) and to one whose bit is clear is captured.
func TestLocalFilter(t *testing.T) {
	needBPF(t)
	h := newHarness(t, Config{Raw: true, LocalAddrs: []netip.Addr{applianceV4, applianceV6}})
	localBit := localFilterBit(addrKey(applianceV4))
	var collide, clear netip.Addr
	for i := 1; !collide.IsValid() || !clear.IsValid(); i++ {
		a := netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)})
		switch bit := localFilterBit(addrKey(a)); {
		case bit == localBit && !collide.IsValid():
			collide = a
		case bit != localBit && bit != localFilterBit(addrKey(applianceV6)) && !clear.IsValid():
			clear = a
		}
	}
	for _, c := range []struct {
		dst    netip.Addr
		action uint32
	}{{applianceV4, actPass}, {applianceV6, actPass}, {collide, actDrop}, {clear, actDrop}} {
		src := clientV4
		if c.dst.Is6() {
			src = clientV6
		}
		res := h.run(t, h.objs.Program, tcpFrame(t, src, c.dst, 40000, 22, "x"))
		if res.action != c.action {
			t.Errorf("tcp to %s: action %d, want %d (deltas %v)", c.dst, res.action, c.action, res.deltas)
		}
		if captured := res.deltas["raw"] == 1; captured != (c.action == actDrop) {
			t.Errorf("tcp to %s: raw delta %d", c.dst, res.deltas["raw"])
		}
	}
}

// TestSetLocalWhileLoaded changes the local set of a loaded program as the address watcher
// does and checks raw TCP to each address after each change: an address added later passes
// at once, a removed one is captured again, local routes wider than one address (IPv4 and
// IPv6) pass, and an address whose filter bit it shared with a removed one keeps passing.
func TestSetLocalWhileLoaded(t *testing.T) {
	needBPF(t)
	h := newHarness(t, Config{Raw: true, LocalAddrs: []netip.Addr{applianceV4}})
	added4 := netip.MustParseAddr("10.0.0.77")
	added6 := netip.MustParseAddr("fd00::77")
	anyIP := netip.MustParsePrefix("10.60.0.0/24")
	anyIP6 := netip.MustParsePrefix("fd60::/64")
	// sibling shares its filter bit with added4: removing added4 must not clear the bit.
	var sibling netip.Addr
	for i := 1; !sibling.IsValid(); i++ {
		a := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		if localFilterBit(addrKey(a)) == localFilterBit(addrKey(added4)) {
			sibling = a
		}
	}
	check := func(stage string, dst netip.Addr, local bool) {
		t.Helper()
		src := clientV4
		if dst.Is6() {
			src = clientV6
		}
		res := h.run(t, h.objs.Program, tcpFrame(t, src, dst, 40000, 22, "SSH-2.0-x\r\n"))
		want := uint32(actDrop)
		if local {
			want = actPass
		}
		if res.action != want || (res.deltas["raw"] == 1) == local {
			t.Errorf("%s: tcp to %s: action %d deltas %v, local=%v", stage, dst, res.action, res.deltas, local)
		}
	}
	check("before", added4, false)
	check("before", added6, false)
	check("before", anyIP.Addr().Next(), false)

	set := localaddr.Set{
		Addrs:    []netip.Addr{applianceV4, added4, sibling, added6},
		Prefixes: []netip.Prefix{anyIP, anyIP6},
	}
	slices.SortFunc(set.Addrs, netip.Addr.Compare)
	if err := h.objs.SetLocal(set); err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{applianceV4, added4, sibling, added6, netip.MustParseAddr("10.60.0.200"), netip.MustParseAddr("fd60::1234")} {
		check("after adding", a, true)
	}
	check("after adding", netip.MustParseAddr("10.60.1.1"), false)
	check("after adding", netip.MustParseAddr("fd61::1"), false)

	set = localaddr.Set{Addrs: []netip.Addr{applianceV4, sibling}}
	slices.SortFunc(set.Addrs, netip.Addr.Compare)
	if err := h.objs.SetLocal(set); err != nil {
		t.Fatal(err)
	}
	check("after removing", applianceV4, true)
	check("after removing", sibling, true)
	check("after removing", added4, false)
	check("after removing", added6, false)
	check("after removing", netip.MustParseAddr("10.60.0.200"), false)
	if got := h.objs.Local(); !got.Equal(set) {
		t.Errorf("Local() = %v, want %v", got, set)
	}
}

// TestControlTrafficPasses: raw mode takes only TCP; neighbour discovery, ARP, ICMP and
// IPv6 packets whose next header is not TCP reach the kernel untouched.
func TestControlTrafficPasses(t *testing.T) {
	needBPF(t)
	h := newHarness(t, Config{Raw: true, LocalAddrs: []netip.Addr{applianceV4, applianceV6}})
	eth := func(src, dst netip.Addr, ls ...gopacket.SerializableLayer) []byte {
		et := layers.EthernetTypeIPv4
		if src.Is6() {
			et = layers.EthernetTypeIPv6
		}
		return serialize(t, append([]gopacket.SerializableLayer{&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: et}}, ls...)...)
	}
	ip6 := func(src, dst netip.Addr, next layers.IPProtocol) *layers.IPv6 {
		return &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: next, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	}
	solicited := netip.MustParseAddr("ff02::1:ff00:99")
	ns := ip6(clientV6, solicited, layers.IPProtocolICMPv6)
	nsICMP := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 0)}
	_ = nsICMP.SetNetworkLayerForChecksum(ns)
	na := ip6(clientV6, applianceV6, layers.IPProtocolICMPv6)
	naICMP := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborAdvertisement, 0)}
	_ = naICMP.SetNetworkLayerForChecksum(na)
	ping4 := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: clientV4.AsSlice(), DstIP: serverV4.AsSlice()}
	hbh := ip6(clientV6, serverV6, layers.IPProtocolIPv6HopByHop)
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: macA, SourceProtAddress: clientV4.AsSlice(),
		DstHwAddress: make([]byte, 6), DstProtAddress: netip.MustParseAddr("10.0.0.99").AsSlice()}
	frames := map[string][]byte{
		"ndp neighbour solicitation for a new address": eth(clientV6, solicited, ns, nsICMP,
			gopacket.Payload(append(make([]byte, 4), netip.MustParseAddr("fd00::99").AsSlice()...))),
		"ndp neighbour advertisement": eth(clientV6, applianceV6, na, naICMP, gopacket.Payload(make([]byte, 20))),
		"icmp echo to another host":   eth(clientV4, serverV4, ping4, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0)}),
		"ipv6 hop-by-hop":             eth(clientV6, serverV6, hbh, gopacket.Payload([]byte{6, 0, 1, 4, 0, 0, 0, 0})),
		"arp for an address not yet added": serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: layers.EthernetBroadcast,
			EthernetType: layers.EthernetTypeARP}, arp),
	}
	for name, f := range frames {
		res := h.run(t, h.objs.Program, f)
		if res.action != actPass || res.deltas["passed"] != 1 || len(res.records) != 0 {
			t.Errorf("%s: action %d deltas %v records %d; want pass", name, res.action, res.deltas, len(res.records))
		}
	}
}
