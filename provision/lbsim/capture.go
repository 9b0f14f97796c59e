// Package lbsim simulates how the clouds' load balancers spread mirrored packets over a
// fleet of appliances, to prove (or disprove) affinity: an HTTP exchange can only be rebuilt
// by an appliance that received every packet of it, both directions. It replays the VXLAN
// packets of a lab capture through a load-balancing model, with members joining and leaving
// mid-flow, and reports the share of exchanges that stay whole, the ones seen whole by two
// appliances (duplicate traces), and the load imbalance across members.
package lbsim

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"sort"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Packet is one mirrored packet as a load balancer sees it (the outer VXLAN headers) and as
// the appliance needs it (the inner TCP flow).
type Packet struct {
	T                time.Duration // since the start of the capture
	OuterSrc         netip.Addr    // the source ENI
	OuterDst         netip.Addr    // the mirror target
	OuterSrcPort     uint16        // a hash of the inner flow, set by the mirroring source
	Src, Dst         netip.Addr    // inner addresses
	SrcPort, DstPort uint16
	Len              int
	Conn             int  // connection index (both directions)
	ToServer         bool // client → server
	ReqStart         bool // the segment starts an HTTP request
}

// Capture is a replayable set of mirrored packets.
type Capture struct {
	Packets []Packet
	Conns   int
}

var httpMethods = [][]byte{[]byte("GET "), []byte("POST "), []byte("PUT "), []byte("DELETE "), []byte("HEAD "), []byte("PATCH "), []byte("OPTIONS ")}

type flowKey struct{ a, b netip.AddrPort }

func canonical(src, dst netip.AddrPort) (netip.AddrPort, netip.AddrPort, bool) {
	if src.Compare(dst) < 0 {
		return src, dst, true
	}
	return dst, src, false
}

// Load reads the VXLAN packets (UDP 4789, outer IPv4) of a pcap file.
func Load(path string) (*Capture, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open capture: %w", err)
	}
	defer f.Close()
	return Read(f)
}

// Read parses a pcap stream; packets that are not VXLAN-in-IPv4 carrying TCP are skipped.
func Read(r io.Reader) (*Capture, error) {
	pr, err := pcapgo.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("read capture: %w", err)
	}
	c := &Capture{}
	conns := map[flowKey]int{}
	clientOf := map[int]netip.AddrPort{}
	var start time.Time
	for {
		data, ci, err := pr.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read capture: %w", err)
		}
		p := gopacket.NewPacket(data, pr.LinkType(), gopacket.NoCopy)
		ip4, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if ip4 == nil || udp == nil || udp.DstPort != 4789 {
			continue
		}
		inner := gopacket.NewPacket(udp.Payload[min(8, len(udp.Payload)):], layers.LayerTypeEthernet, gopacket.NoCopy)
		tcp, _ := inner.Layer(layers.LayerTypeTCP).(*layers.TCP)
		nl := inner.NetworkLayer()
		if tcp == nil || nl == nil {
			continue
		}
		if start.IsZero() {
			start = ci.Timestamp
		}
		isrc, _ := netip.AddrFromSlice(nl.NetworkFlow().Src().Raw())
		idst, _ := netip.AddrFromSlice(nl.NetworkFlow().Dst().Raw())
		osrc, _ := netip.AddrFromSlice(ip4.SrcIP.To4())
		odst, _ := netip.AddrFromSlice(ip4.DstIP.To4())
		s, d := netip.AddrPortFrom(isrc, uint16(tcp.SrcPort)), netip.AddrPortFrom(idst, uint16(tcp.DstPort))
		a, b, _ := canonical(s, d)
		k := flowKey{a: a, b: b}
		id, ok := conns[k]
		if !ok {
			id = len(conns)
			conns[k] = id
		}
		if _, known := clientOf[id]; !known {
			switch {
			case tcp.SYN && !tcp.ACK:
				clientOf[id] = s
			case tcp.SYN && tcp.ACK:
				clientOf[id] = d
			case tcp.SrcPort > tcp.DstPort:
				clientOf[id] = s
			default:
				clientOf[id] = d
			}
		}
		pkt := Packet{T: ci.Timestamp.Sub(start), OuterSrc: osrc, OuterDst: odst, OuterSrcPort: uint16(udp.SrcPort),
			Src: isrc, Dst: idst, SrcPort: uint16(tcp.SrcPort), DstPort: uint16(tcp.DstPort), Len: len(data), Conn: id, ToServer: clientOf[id] == s}
		if pkt.ToServer {
			for _, m := range httpMethods {
				if bytes.HasPrefix(tcp.Payload, m) {
					pkt.ReqStart = true
				}
			}
		}
		c.Packets = append(c.Packets, pkt)
	}
	c.Conns = len(conns)
	if len(c.Packets) == 0 {
		return nil, fmt.Errorf("read capture: no VXLAN-mirrored TCP packet in it")
	}
	return c, nil
}

// ScaleOptions turn one lab capture into a fleet's worth of traffic.
type ScaleOptions struct {
	Copies   int           // replicas of the capture, each with its own client and server addresses
	Sources  int           // distinct mirror source ENIs the replicas are spread over
	Span     time.Duration // replicas start at random times within this span
	Stretch  float64       // time dilation of each replica (a 0.7 s lab run ×100 lasts 70 s, like keep-alive clients)
	BothEnds bool          // mirror the client ENI too: every packet arrives twice, from two sources
	BusyENI  float64       // share of the replicas the first source carries (0 = spread evenly)
	Seed     uint64
}

// Scale replicates the capture. Replica i gets inner addresses 10.(i/250).(i%250).1/.2 (so its
// connections are distinct), outer source ENI 172.31.(src).10, and outer source ports
// recomputed from the new inner flow the way the lab's Linux VXLAN does (symmetric).
func (c *Capture) Scale(o ScaleOptions) *Capture {
	rng := rand.New(rand.NewPCG(o.Seed, 0x9e3779b97f4a7c15))
	out := &Capture{}
	stretch := o.Stretch
	if stretch <= 0 {
		stretch = 1
	}
	for i := range o.Copies {
		src := i % o.Sources
		if o.BusyENI > 0 && rng.Float64() < o.BusyENI {
			src = 0
		} else if o.BusyENI > 0 {
			src = 1 + i%max(1, o.Sources-1)
		}
		offset := time.Duration(rng.Int64N(int64(max(o.Span, 1))))
		client := netip.AddrFrom4([4]byte{10, byte(i / 250), byte(i % 250), 1})
		server := netip.AddrFrom4([4]byte{10, byte(i / 250), byte(i % 250), 2})
		serverENI := netip.AddrFrom4([4]byte{172, 31, byte(src), 10})
		clientENI := netip.AddrFrom4([4]byte{172, 31, 200 + byte(i%50), 11})
		for _, p := range c.Packets {
			q := p
			q.T = offset + time.Duration(float64(p.T)*stretch)
			q.Conn = i*c.Conns + p.Conn
			if p.ToServer {
				q.Src, q.Dst = client, server
			} else {
				q.Src, q.Dst = server, client
			}
			q.OuterSrc = serverENI
			q.OuterSrcPort = SymmetricPort(q)
			out.Packets = append(out.Packets, q)
			if o.BothEnds {
				dup := q
				dup.OuterSrc = clientENI
				out.Packets = append(out.Packets, dup)
			}
		}
	}
	sort.SliceStable(out.Packets, func(a, b int) bool { return out.Packets[a].T < out.Packets[b].T })
	out.Conns = o.Copies * c.Conns
	return out
}

func hashFlow(parts ...[]byte) uint32 {
	h := fnv.New32a()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum32()
}

func portBytes(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }

// SymmetricPort is an outer source port that is the same for both directions of a flow.
func SymmetricPort(p Packet) uint16 {
	a, b, _ := canonical(netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort))
	ab, bb := a.Addr().AsSlice(), b.Addr().AsSlice()
	return 49152 + uint16(hashFlow(ab, portBytes(a.Port()), bb, portBytes(b.Port()))%16384)
}

// DirectionalPort is an outer source port computed from the inner tuple in packet order:
// AWS says the port is a hash of the inner flow and does not promise it is symmetric.
func DirectionalPort(p Packet) uint16 {
	return 49152 + uint16(hashFlow(p.Src.AsSlice(), portBytes(p.SrcPort), p.Dst.AsSlice(), portBytes(p.DstPort))%16384)
}
