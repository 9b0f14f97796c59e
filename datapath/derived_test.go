package datapath_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/metlo-labs/metlo-appliance/datapath/pcapsrc"
	"github.com/metlo-labs/metlo-appliance/reassembly"
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/test/lab/groundtruth"
	"github.com/metlo-labs/metlo-appliance/test/tsharktest"
)

// The lab's real VXLAN capture (nginx-free: labserver/labclient, with the server's own
// record of every exchange) re-encapsulated in what the kernel here cannot produce: GRE,
// ERSPAN II and III, MPLS, stacked VLAN tags, IP in IP, other link types, IPv6 fragments.
// Every variant must give every exchange exactly; tshark, when installed, must find in
// each variant the same HTTP it finds in the original, which shows the variants are
// well-formed for an independent decoder.

const labDir = "../testdata/lab"

// labNonTCP is how many inner frames of the lab capture are not TCP (two ICMPv6 messages).
const labNonTCP = 2

// labFrame is one mirrored frame of the lab capture: the inner Ethernet frame and when it
// was captured.
type labFrame struct {
	ts    time.Time
	inner []byte
}

func readLabFrames(t *testing.T) []labFrame {
	t.Helper()
	f, err := os.Open(filepath.Join(labDir, "vxlan.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []labFrame
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		if vx, ok := p.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN); ok {
			out = append(out, labFrame{ts: ci.Timestamp, inner: append([]byte(nil), vx.Payload...)})
		}
	}
	if len(out) < 1000 {
		t.Fatalf("only %d VXLAN frames in the lab capture", len(out))
	}
	return out
}

// variant turns one inner Ethernet frame (the i-th) into the frames a capture holds.
type variant struct {
	name string
	link layers.LinkType
	wrap func(t testing.TB, i int, inner []byte) [][]byte
}

var (
	outerSrc, outerDst = net.ParseIP("192.0.2.10"), net.ParseIP("192.0.2.20")
	macOuterA          = net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 1}
	macOuterB          = net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 2}
)

func ser(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func outerEth(et layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macOuterA, DstMAC: macOuterB, EthernetType: et}
}

func outerIPv4(proto layers.IPProtocol, id int) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Id: uint16(id), Protocol: proto, SrcIP: outerSrc, DstIP: outerDst}
}

// innerIP strips the inner Ethernet header.
func innerIP(inner []byte) []byte { return inner[14:] }

// innerIsV6 tells an inner IPv6 frame (the lab capture's two ICMPv6 messages) from IPv4.
func innerIsV6(inner []byte) bool { return binary.BigEndian.Uint16(inner[12:14]) == 0x86dd }

// fromClient tells the direction of an inner frame (the lab's client is 10.200.1.1).
func fromClient(inner []byte) bool { return bytes.Equal(inner[14+12:14+16], []byte{10, 200, 1, 1}) }

func viaGRE(t testing.TB, id int, g *layers.GRE, payload []byte) []byte {
	return ser(t, outerEth(layers.EthernetTypeIPv4), outerIPv4(layers.IPProtocolGRE, id), g, gopacket.Payload(payload))
}

// erspan3Header is an ERSPAN type III header with the platform subheader.
func erspan3Header(session uint16) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:2], 2<<12)
	binary.BigEndian.PutUint16(h[2:4], session)
	h[11] = 0x01 // O: platform-specific subheader follows
	h[12] = 0x0c // platform id 3
	return h
}

// fragment6 splits the IPv6 packet p (no extension headers) into fragments of at most mtu
// bytes, the last one first when reverse is set.
func fragment6(p []byte, id uint32, mtu int, reverse bool) [][]byte {
	payload := p[40:]
	step := (mtu - 48) &^ 7
	var out [][]byte
	for off := 0; off < len(payload); off += step {
		end := min(off+step, len(payload))
		h := append([]byte(nil), p[:40]...)
		binary.BigEndian.PutUint16(h[4:6], uint16(8+end-off))
		h[6] = 44
		fh := []byte{p[6], 0, 0, 0, 0, 0, 0, 0}
		fo := uint16(off)
		if end < len(payload) {
			fo |= 1
		}
		binary.BigEndian.PutUint16(fh[2:4], fo)
		binary.BigEndian.PutUint32(fh[4:8], id)
		out = append(out, append(append(h, fh...), payload[off:end]...))
	}
	if reverse {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out
}

// fragment4 splits the IPv4 packet p into fragments of at most mtu bytes.
func fragment4(p []byte, mtu int) [][]byte {
	ihl := int(p[0]&0x0f) * 4
	payload := p[ihl:binary.BigEndian.Uint16(p[2:4])]
	step := (mtu - ihl) &^ 7
	var out [][]byte
	for off := 0; off < len(payload); off += step {
		end := min(off+step, len(payload))
		h := append([]byte(nil), p[:ihl]...)
		binary.BigEndian.PutUint16(h[2:4], uint16(ihl+end-off))
		ff := uint16(off / 8)
		if end < len(payload) {
			ff |= 0x2000
		}
		binary.BigEndian.PutUint16(h[6:8], ff)
		h[10], h[11] = 0, 0
		var s uint32
		for i := 0; i < ihl; i += 2 {
			s += uint32(binary.BigEndian.Uint16(h[i:]))
		}
		for s > 0xffff {
			s = s>>16 + s&0xffff
		}
		binary.BigEndian.PutUint16(h[10:12], ^uint16(s))
		out = append(out, append(h, payload[off:end]...))
	}
	return out
}

var variants = []variant{
	{"gre_teb_keyed", layers.LinkTypeEthernet, func(t testing.TB, i int, inner []byte) [][]byte {
		key := uint32(0) // per-direction keys, as the vSphere mirror in testdata/formats sends
		if !fromClient(inner) {
			key = 0x02000000
		}
		return [][]byte{viaGRE(t, i, &layers.GRE{KeyPresent: true, SeqPresent: true, Key: key, Seq: uint32(i), Protocol: layers.EthernetTypeTransparentEthernetBridging}, inner)}
	}},
	{"gre_ip_checksum", layers.LinkTypeEthernet, func(t testing.TB, i int, inner []byte) [][]byte {
		et := layers.EthernetTypeIPv4
		if innerIsV6(inner) {
			et = layers.EthernetTypeIPv6
		}
		return [][]byte{viaGRE(t, i, &layers.GRE{ChecksumPresent: true, Protocol: et}, innerIP(inner))}
	}},
	{"erspan2", layers.LinkTypeEthernet, func(t testing.TB, i int, inner []byte) [][]byte {
		e := ser(t, &layers.ERSPANII{Version: 1, SessionID: 100, Index: 7}, gopacket.Payload(inner))
		return [][]byte{viaGRE(t, i, &layers.GRE{SeqPresent: true, Seq: uint32(i), Protocol: layers.EthernetTypeERSPAN}, e)}
	}},
	{"erspan3_platform", layers.LinkTypeEthernet, func(t testing.TB, i int, inner []byte) [][]byte {
		return [][]byte{viaGRE(t, i, &layers.GRE{SeqPresent: true, Seq: uint32(i), Protocol: 0x22eb}, append(erspan3Header(200), inner...))}
	}},
	{"mpls_two_labels", layers.LinkTypeEthernet, func(t testing.TB, i int, inner []byte) [][]byte {
		return [][]byte{ser(t, outerEth(layers.EthernetTypeMPLSUnicast), &layers.MPLS{Label: 1000, TTL: 64},
			&layers.MPLS{Label: 2000, StackBottom: true, TTL: 64}, gopacket.Payload(innerIP(inner)))}
	}},
	{"mpls_pseudowire", layers.LinkTypeEthernet, func(t testing.TB, i int, inner []byte) [][]byte {
		cw := []byte{0, 0, byte(i >> 8), byte(i)} // RFC 4385 control word with a sequence number
		return [][]byte{ser(t, outerEth(layers.EthernetTypeMPLSUnicast), &layers.MPLS{Label: 3000, StackBottom: true, TTL: 64}, gopacket.Payload(append(cw, inner...)))}
	}},
	{"vlan_three_tags", layers.LinkTypeEthernet, func(t testing.TB, i int, inner []byte) [][]byte {
		eth := &layers.Ethernet{SrcMAC: inner[6:12], DstMAC: inner[0:6], EthernetType: layers.EthernetTypeQinQ}
		return [][]byte{ser(t, eth, &layers.Dot1Q{VLANIdentifier: 10, Type: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{VLANIdentifier: 20, Type: layers.EthernetTypeDot1Q}, &layers.Dot1Q{VLANIdentifier: 30, Type: layers.EthernetType(binary.BigEndian.Uint16(inner[12:14]))},
			gopacket.Payload(innerIP(inner)))}
	}},
	{"ipip_raw", layers.LinkTypeRaw, func(t testing.TB, i int, inner []byte) [][]byte {
		proto := layers.IPProtocolIPv4
		if innerIsV6(inner) {
			proto = layers.IPProtocolIPv6
		}
		return [][]byte{ser(t, outerIPv4(proto, i), gopacket.Payload(innerIP(inner)))}
	}},
	{"null_loopback", layers.LinkTypeNull, func(t testing.TB, i int, inner []byte) [][]byte {
		family := layers.ProtocolFamilyIPv4
		if innerIsV6(inner) {
			family = layers.ProtocolFamilyIPv6Darwin
		}
		return [][]byte{ser(t, &layers.Loopback{Family: family}, gopacket.Payload(innerIP(inner)))}
	}},
	{"sll2", layers.LinkTypeLinuxSLL2, func(t testing.TB, i int, inner []byte) [][]byte {
		h := make([]byte, 20)
		copy(h[0:2], inner[12:14]) // the inner EtherType
		binary.BigEndian.PutUint32(h[4:8], 2)
		binary.BigEndian.PutUint16(h[8:10], 1)
		h[11] = 6
		copy(h[12:], inner[6:12])
		return [][]byte{append(h, innerIP(inner)...)}
	}},
	{"vxlan_ipv6_outer_fragments", layers.LinkTypeRaw, func(t testing.TB, i int, inner []byte) [][]byte {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: net.ParseIP("fd00:200::1"), DstIP: net.ParseIP("fd00:200::2")}
		udp := &layers.UDP{SrcPort: layers.UDPPort(49152 + i%512), DstPort: 4789}
		_ = udp.SetNetworkLayerForChecksum(ip)
		p := ser(t, ip, udp, &layers.VXLAN{ValidIDFlag: true, VNI: 4242}, gopacket.Payload(inner))
		return fragment6(p, uint32(i), 1280, i%2 == 1)
	}},
	{"inner_ipv4_fragments_dual_copies", layers.LinkTypeRaw, func(t testing.TB, i int, inner []byte) [][]byte {
		if binary.BigEndian.Uint16(inner[12:14]) != 0x0800 {
			return [][]byte{innerIP(inner)} // the lab's two ICMPv6 frames
		}
		frags := fragment4(innerIP(inner), 576)
		if i%3 == 0 { // both ENIs mirrored: every fragment twice, interleaved
			var two [][]byte
			for _, f := range frags {
				two = append(two, f, f)
			}
			return two
		}
		return frags
	}},
}

// TestDerivedEncapsulations writes each variant of the lab capture, runs it through the
// pipeline against the server's ground truth and, with tshark, compares what tshark finds
// in the variant with what it finds in the original. DERIVED_OUT=dir keeps the variants.
func TestDerivedEncapsulations(t *testing.T) {
	frames := readLabFrames(t)
	truth, err := groundtruth.Load(filepath.Join(labDir, "groundtruth.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	_, tsharkErr := exec.LookPath("tshark")
	useTshark := tsharkErr == nil && !testing.Short()
	var origReq, origResp int
	if useTshark {
		origReq, origResp = tsharktest.HTTP(t, filepath.Join(labDir, "vxlan.pcap"))
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := pcapgo.NewWriterNanos(&buf)
			if err := w.WriteFileHeader(65535, v.link); err != nil {
				t.Fatal(err)
			}
			for i, f := range frames {
				for _, out := range v.wrap(t, i, f.inner) {
					if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: f.ts, CaptureLength: len(out), Length: len(out)}, out); err != nil {
						t.Fatal(err)
					}
				}
			}
			var mu sync.Mutex
			var observed []groundtruth.Observed
			d := datapath.NewDispatcher(datapath.DispatcherConfig{Workers: 2, Decoder: datapath.DecoderConfig{Raw: true}},
				exchange.HandlerFunc(func(e *exchange.Exchange) {
					mu.Lock()
					observed = append(observed, groundtruth.FromExchange(e))
					mu.Unlock()
				}))
			if err := pcapsrc.New(pcapsrc.Config{Path: "-", Stdin: bytes.NewReader(buf.Bytes())}).Run(context.Background(), d.NewHandler); err != nil {
				t.Fatal(err)
			}
			d.Close()
			for _, p := range groundtruth.Compare(truth, observed, groundtruth.Options{BodyCap: reassembly.DefaultConfig().BodyCap}) {
				t.Error(p)
			}
			s := d.Snapshot()
			var nonTCP uint64
			for e := range s.Packets {
				for o, n := range s.Packets[e] {
					switch datapath.Outcome(o) {
					case datapath.OutcomeTCP, datapath.OutcomeFragment:
					case datapath.OutcomeNonTCP:
						nonTCP += n
					default:
						if n > 0 {
							t.Errorf("%d packets %s/%s", n, datapath.Encap(e), datapath.Outcome(o))
						}
					}
				}
			}
			if nonTCP != labNonTCP {
				t.Errorf("%d packets non_tcp, the lab capture has %d", nonTCP, labNonTCP)
			}
			if s.Reassembly.Exchanges["parse_error"] != 0 || s.Reassembly.Exchanges["orphan_response"] != 0 {
				t.Errorf("parse errors %d, orphan responses %d", s.Reassembly.Exchanges["parse_error"], s.Reassembly.Exchanges["orphan_response"])
			}
			t.Logf("%d exchanges match; defrag %+v", len(observed), s.Defrag)
			if dir := os.Getenv("DERIVED_OUT"); dir != "" { // keep the variants to look at them
				if err := os.WriteFile(filepath.Join(dir, v.name+".pcap"), buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if !useTshark {
				return
			}
			path := filepath.Join(t.TempDir(), v.name+".pcap")
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			if req, resp := tsharktest.HTTP(t, path); req != origReq || resp != origResp {
				t.Errorf("tshark finds %d requests, %d responses; %d, %d in the original", req, resp, origReq, origResp)
			}
		})
	}
}
