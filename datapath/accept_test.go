package datapath

import (
	"net/netip"
	"testing"

	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
)

// TestTunnelAccept feeds a dispatcher with an accept list tunnel packets from mirror
// sources and from strangers, with the sessions' VNI and others, in every form a source
// delivers (whole frames, tagged, over IPv6, decapsulated by XDP, tunnel payloads from a
// UDP socket), and checks which are taken and which are counted as rejected, by reason.
func TestTunnelAccept(t *testing.T) {
	const payload = "GET / HTTP/1.1\r\n\r\n"
	inner := innerTCP(t, "10.1.0.5", "10.1.0.9", 40000, 80, 7, payload)
	cases := []struct {
		name   string
		frame  Frame
		reject string // "", RejectSource or RejectVNI
	}{
		{"mirror source, session vni", Frame{Data: outerUDP(t, "172.31.0.10", "172.31.0.99", 4789, vxlanHdr(42, inner))}, ""},
		{"mirror source over ipv6", Frame{Data: outerUDP(t, "fd00:31::10", "fd00:31::99", 4789, vxlanHdr(42, inner))}, ""},
		{"mirror source, vlan-tagged", Frame{Data: outerUDP(t, "172.31.0.10", "172.31.0.99", 4789, vxlanHdr(42, inner), 100, 200)}, ""},
		{"stranger", Frame{Data: outerUDP(t, "192.0.2.66", "172.31.0.99", 4789, vxlanHdr(42, inner))}, RejectSource},
		{"ipv6 stranger, geneve", Frame{Data: outerUDP(t, "2001:db8::66", "fd00:31::99", 6081, geneveHdr(42, 0x6558, 8, inner))}, RejectSource},
		{"stranger, vlan-tagged", Frame{Data: outerUDP(t, "192.0.2.66", "172.31.0.99", 4789, vxlanHdr(42, inner), 100)}, RejectSource},
		{"mirror source, another vni", Frame{Data: outerUDP(t, "172.31.0.10", "172.31.0.99", 4789, vxlanHdr(43, inner))}, RejectVNI},
		{"vxlan in geneve: the vxlan vni counts", Frame{Data: outerUDP(t, "172.31.0.10", "172.31.0.99", 6081,
			geneveHdr(7, 0x6558, 32, outerUDP(t, "10.9.0.1", "10.9.0.2", 4789, vxlanHdr(42, inner))))}, ""},
		{"decapsulated by xdp, another vni", Frame{Data: inner, Decapsulated: true, Encap: EncapVXLAN, Tunnel: 9}, RejectVNI},
		{"udp socket payload, session vni", Frame{Data: vxlanHdr(42, inner), TunnelPayload: true, Encap: EncapVXLAN}, ""},
		{"udp socket payload, another vni", Frame{Data: vxlanHdr(5, inner), TunnelPayload: true, Encap: EncapVXLAN}, RejectVNI},
		{"raw tcp is no tunnel", Frame{Data: innerTCP(t, "192.0.2.66", "10.1.0.9", 40000, 80, 7, payload)}, ""},
	}
	accept := TunnelAccept{
		Sources: []netip.Prefix{netip.MustParsePrefix("172.31.0.0/16"), netip.MustParsePrefix("fd00:31::/64")},
		VNIs:    []uint32{42},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDispatcher(DispatcherConfig{Workers: 1, Decoder: DecoderConfig{Raw: true}, Accept: accept}, exchange.HandlerFunc(func(*exchange.Exchange) {}))
			h := d.NewHandler()
			f := tc.frame
			h.HandleFrame(&f)
			h.Flush()
			d.Close()
			s := d.Snapshot()
			var tcpSegs uint64
			for e := range s.Packets {
				tcpSegs += s.Packets[e][OutcomeTCP]
			}
			switch tc.reject {
			case "":
				if tcpSegs != 1 || s.Rejected[RejectSource]+s.Rejected[RejectVNI] != 0 {
					t.Errorf("want taken: tcp %d, rejected %v", tcpSegs, s.Rejected)
				}
			default:
				if tcpSegs != 0 || s.Rejected[tc.reject] != 1 {
					t.Errorf("want rejected (%s): tcp %d, rejected %v", tc.reject, tcpSegs, s.Rejected)
				}
			}
		})
	}
	// Without a list every tunnel packet is taken.
	d := NewDispatcher(DispatcherConfig{Workers: 1}, exchange.HandlerFunc(func(*exchange.Exchange) {}))
	h := d.NewHandler()
	h.HandleFrame(&Frame{Data: outerUDP(t, "192.0.2.66", "172.31.0.99", 4789, vxlanHdr(5, inner))})
	h.Flush()
	d.Close()
	if s := d.Snapshot(); s.Packets[EncapVXLAN][OutcomeTCP] != 1 {
		t.Errorf("no accept list: %v", s.Packets[EncapVXLAN])
	}
}

func TestSourceAccepted(t *testing.T) {
	a := TunnelAccept{Sources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	if !a.SourceAccepted(netip.MustParseAddr("::ffff:10.1.2.3")) || a.SourceAccepted(netip.MustParseAddr("11.0.0.1")) {
		t.Error("SourceAccepted")
	}
	if !(TunnelAccept{}).SourceAccepted(netip.MustParseAddr("11.0.0.1")) {
		t.Error("an empty list must accept everyone")
	}
}
