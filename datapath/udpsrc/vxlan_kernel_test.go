//go:build linux

package udpsrc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"testing"

	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/metlo-labs/metlo-appliance/test/netnstest"
)

// TestKernelVXLANDevice has a real kernel VXLAN device in a sender namespace tunnel UDP
// traffic over a veth pair to the source listening in a collector namespace.
func TestKernelVXLANDevice(t *testing.T) {
	netnstest.Require(t)
	nsS, nsC := netnstest.Add(t, "musnd"), netnstest.Add(t, "mucol")
	netnstest.Veth(t, nsS, "veth0", nsC, "veth1", 0)
	netnstest.IP(t, "-n", nsS, "addr", "add", "10.99.0.1/24", "dev", "veth0")
	netnstest.IP(t, "-n", nsC, "addr", "add", "10.99.0.2/24", "dev", "veth1")
	netnstest.IP(t, "-n", nsS, "link", "add", "vx0", "type", "vxlan", "id", "4242", "remote", "10.99.0.2", "dstport", "4789", "dev", "veth0")
	netnstest.IP(t, "-n", nsS, "addr", "add", "192.168.77.1/24", "dev", "vx0")
	netnstest.IP(t, "-n", nsS, "link", "set", "vx0", "up")
	innerMAC := "02:00:00:00:77:02"
	netnstest.IP(t, "-n", nsS, "neigh", "add", "192.168.77.2", "lladdr", innerMAC, "dev", "vx0")

	var src *Source
	var err error
	netnstest.Run(t, nsC, func() {
		src, err = New(Config{BindAddr: "10.99.0.2", GENEVEPorts: []int{}})
	})
	if err != nil {
		t.Fatal(err)
	}
	s := newSink()
	stop := start(t, src, s)

	const n = 50
	var sendErr error
	netnstest.Run(t, nsS, func() {
		c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(192, 168, 77, 2), Port: 9999})
		if err != nil {
			sendErr = err
			return
		}
		defer c.Close()
		for i := range n {
			if _, err := fmt.Fprintf(c, "payload %02d", i); err != nil {
				sendErr = err
				return
			}
		}
	})
	if sendErr != nil {
		t.Fatal(sendErr)
	}
	wantMAC, _ := net.ParseMAC(innerMAC)
	// The kernel tunnels its own chatter too (IPv6 MLD/ND from the new vx0 to 33:33:…
	// multicast), whenever it likes: only frames to the neighbour's MAC are this test's.
	ours := func() []received {
		var out []received
		for _, f := range s.frames {
			if len(f.data) >= 8+14 && bytes.Equal(f.data[8:14], wantMAC) {
				out = append(out, f)
			}
		}
		return out
	}
	s.waitFor(t, "the tunnelled datagrams", func() bool { return len(ours()) >= n })
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	seen := map[string]bool{}
	for _, f := range ours() {
		if f.encap != datapath.EncapVXLAN || !f.tunnel {
			t.Fatalf("frame encap %v tunnel %v", f.encap, f.tunnel)
		}
		d := f.data
		if len(d) < 8+14+20+8 || d[0] != 0x08 {
			t.Fatalf("not a VXLAN datagram: % x", d[:min(len(d), 16)])
		}
		if vni := binary.BigEndian.Uint32(d[4:]) >> 8; vni != 4242 {
			t.Errorf("VNI %d, want 4242", vni)
		}
		eth := d[8:]
		if !bytes.Equal(eth[:6], wantMAC) || binary.BigEndian.Uint16(eth[12:]) != 0x0800 {
			t.Fatalf("inner Ethernet dst %x type %x", eth[:6], eth[12:14])
		}
		ipv4 := eth[14:]
		ihl := int(ipv4[0]&0x0f) * 4
		udp := ipv4[ihl:]
		if ipv4[9] != 17 || binary.BigEndian.Uint16(udp[2:]) != 9999 {
			t.Fatalf("inner packet proto %d dport %d", ipv4[9], binary.BigEndian.Uint16(udp[2:]))
		}
		payload := string(udp[8:])
		if seen[payload] {
			t.Errorf("duplicate %q", payload)
		}
		seen[payload] = true
	}
	for i := range n {
		if p := fmt.Sprintf("payload %02d", i); !seen[p] {
			t.Errorf("missing %q", p)
		}
	}
	if len(seen) != n {
		t.Errorf("got %d distinct payloads, want %d", len(seen), n)
	}
}
