package netlab

import (
	"context"
	"encoding/binary"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/metlo-labs/metlo-appliance/test/lab/groundtruth"
)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// frameCounts tallies what an AF_PACKET socket on the collector veth saw.
type frameCounts struct {
	total, vxlan, rawTCP, wrongVNI, superFrames atomic.Int64
}

func (c *frameCounts) classify(f []byte, vni uint32) {
	c.total.Add(1)
	if len(f) > 1600 {
		c.superFrames.Add(1) // an offload super-frame: no cloud mirror sends these
	}
	if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:14]) != unix.ETH_P_IP {
		return
	}
	ihl := int(f[14]&0x0f) * 4
	switch f[14+9] {
	case unix.IPPROTO_UDP:
		udp := f[14+ihl:]
		if len(udp) >= 16 && binary.BigEndian.Uint16(udp[2:4]) == 4789 {
			c.vxlan.Add(1)
			if binary.BigEndian.Uint32(udp[12:16])>>8 != vni {
				c.wrongVNI.Add(1)
			}
		}
	case unix.IPPROTO_TCP:
		tcp := f[14+ihl:]
		if len(tcp) >= 4 && (binary.BigEndian.Uint16(tcp[0:2]) == serverPort || binary.BigEndian.Uint16(tcp[2:4]) == serverPort) {
			c.rawTCP.Add(1)
		}
	}
}

// countCollectorFrames opens an AF_PACKET socket bound to the collector veth from inside the
// collector namespace and counts frames until stop is closed; the returned channel closes
// when counting has finished.
func countCollectorFrames(t *testing.T, l *Lab, counts *frameCounts, stop <-chan struct{}) <-chan struct{} {
	t.Helper()
	var fd int
	err := l.InCollector(func() error {
		ifi, err := net.InterfaceByName(l.CollectorIf)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatalf("open AF_PACKET socket in collector netns: %v", err)
	}
	// A big buffer so bursts (the 1 MiB transfers) are not dropped by the socket itself.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20); err != nil {
		t.Fatalf("set receive buffer: %v", err)
	}
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatalf("set receive timeout: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer unix.Close(fd)
		buf := make([]byte, 1<<16)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue // timeout: check stop again
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue // the collector's own transmissions
			}
			counts.classify(buf[:n], l.VNI)
		}
	}()
	return done
}

// countUDPDatagrams binds UDP 4789 on the collector address inside its namespace and counts
// VXLAN datagrams until stop is closed.
func countUDPDatagrams(t *testing.T, l *Lab, n *atomic.Int64, stop <-chan struct{}) <-chan struct{} {
	t.Helper()
	var conn *net.UDPConn
	err := l.InCollector(func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: l.CollectorIP.AsSlice(), Port: 4789})
		return err
	})
	if err != nil {
		t.Fatalf("listen UDP 4789 in collector netns: %v", err)
	}
	conn.SetReadBuffer(8 << 20)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1<<16)
		for {
			conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			k, err := conn.Read(buf)
			if err == nil && k >= 8 && buf[0]&0x08 != 0 {
				n.Add(1)
				continue
			}
			select {
			case <-stop:
				// Drain what is queued, then stop.
				if err != nil {
					conn.Close()
					return
				}
			default:
			}
		}
	}()
	return done
}

func TestLabMirrorsTraffic(t *testing.T) {
	for _, mode := range []Mode{VXLAN, Raw} {
		t.Run(mode.String(), func(t *testing.T) {
			l := New(t, Options{Mode: mode, Huge: mode == VXLAN})
			before, err := l.CollectorRxPackets()
			if err != nil {
				t.Fatal(err)
			}
			var counts frameCounts
			stop := make(chan struct{})
			done := countCollectorFrames(t, l, &counts, stop)
			var udpDatagrams atomic.Int64
			if mode == VXLAN { // what a `--capture udp` collector would read
				udpDone := countUDPDatagrams(t, l, &udpDatagrams, stop)
				defer func() { <-udpDone }()
			}

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			truthPath, err := l.RunTraffic(ctx)
			close(stop)
			<-done
			if err != nil {
				t.Fatal(err)
			}
			truth, err := groundtruth.Load(truthPath)
			if err != nil {
				t.Fatal(err)
			}
			after, err := l.CollectorRxPackets()
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond) // let the UDP reader drain its queue
			t.Logf("%s: %d exchanges; collector veth rx_packets +%d; AF_PACKET saw %d frames (%d VXLAN, %d raw TCP); UDP socket read %d",
				mode, len(truth), after-before, counts.total.Load(), counts.vxlan.Load(), counts.rawTCP.Load(), udpDatagrams.Load())
			if len(truth) < 150 {
				t.Errorf("ground truth has %d exchanges, want ≥ 150", len(truth))
			}
			// Each exchange is at least a request and a response segment plus ACKs.
			minFrames := int64(2 * len(truth))
			switch mode {
			case VXLAN:
				if counts.vxlan.Load() < minFrames {
					t.Errorf("VXLAN frames on the collector veth: %d, want ≥ %d", counts.vxlan.Load(), minFrames)
				}
				if udpDatagrams.Load() < minFrames {
					t.Errorf("UDP socket on %s:4789 read %d datagrams, want ≥ %d", l.CollectorIP, udpDatagrams.Load(), minFrames)
				}
				if counts.wrongVNI.Load() != 0 {
					t.Errorf("%d VXLAN frames carry a VNI other than %d", counts.wrongVNI.Load(), l.VNI)
				}
			case Raw:
				if counts.rawTCP.Load() < minFrames {
					t.Errorf("raw TCP frames on the collector veth: %d, want ≥ %d", counts.rawTCP.Load(), minFrames)
				}
			}
			if counts.superFrames.Load() != 0 {
				t.Errorf("%d frames over 1600 bytes: offloads are still on", counts.superFrames.Load())
			}
			if got := int64(after - before); got < counts.total.Load() {
				t.Errorf("rx_packets grew by %d, fewer than the %d frames the socket saw", got, counts.total.Load())
			}
		})
	}
}
