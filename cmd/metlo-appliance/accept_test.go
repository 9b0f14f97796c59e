package main

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/metlo-labs/metlo-appliance/test/lab/groundtruth"
	"github.com/metlo-labs/metlo-appliance/test/lab/netlab"
)

// forgedExchange is a whole HTTP exchange (handshake, request, response, FINs) as inner
// Ethernet frames, ready to be wrapped in VXLAN with any VNI by anyone.
func forgedExchange(t *testing.T, path string) [][]byte {
	t.Helper()
	cli, srv := net.IPv4(10, 66, 0, 1), net.IPv4(10, 66, 0, 2)
	var cseq, sseq uint32 = 1000, 5000
	frame := func(fromClient bool, syn, fin bool, payload string) []byte {
		src, dst, sp, dp, seq, ack := cli, srv, 40000, 80, &cseq, sseq
		if !fromClient {
			src, dst, sp, dp, seq, ack = srv, cli, 80, 40000, &sseq, cseq
		}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
		tcp := &layers.TCP{SrcPort: layers.TCPPort(sp), DstPort: layers.TCPPort(dp), Seq: *seq, Ack: ack, SYN: syn, FIN: fin, ACK: !(syn && fromClient), PSH: payload != "", Window: 500}
		_ = tcp.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			&layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4},
			ip, tcp, gopacket.Payload(payload)); err != nil {
			t.Fatal(err)
		}
		*seq += uint32(len(payload))
		if syn || fin {
			*seq++
		}
		return append([]byte(nil), buf.Bytes()...)
	}
	body := `{"forged":true}`
	return [][]byte{
		frame(true, true, false, ""), frame(false, true, false, ""),
		frame(true, false, false, "GET "+path+" HTTP/1.1\r\nHost: victim\r\n\r\n"),
		frame(false, false, false, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body),
		frame(true, false, true, ""), frame(false, false, true, ""),
	}
}

// sendVXLAN sends each inner frame in a VXLAN datagram with vni from local to the collector.
func sendVXLAN(t *testing.T, lab *netlab.Lab, local netip.Addr, vni uint32, frames [][]byte) {
	t.Helper()
	err := lab.InServer(func() error {
		// Unconnected: a collector that reads without consuming (AF_PACKET) lets the kernel
		// answer port unreachable, which a connected socket would report on the next write.
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: local.AsSlice()})
		if err != nil {
			return err
		}
		defer c.Close()
		to := &net.UDPAddr{IP: lab.CollectorIP.AsSlice(), Port: 4789}
		for _, f := range frames {
			hdr := make([]byte, 8)
			hdr[0] = 0x08
			binary.BigEndian.PutUint32(hdr[4:], vni<<8)
			if _, err := c.WriteToUDP(append(hdr, f...), to); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("send forged VXLAN from %s: %v", local, err)
	}
}

// TestLiveTunnelAccept runs the real collector with each capture method behind the accept
// lists (the mirror's source address and VNI) while a stranger in the mirror's subnet, and
// the mirror's own address with another VNI, send complete forged HTTP exchanges in VXLAN.
// Every real exchange must come out as a trace, no forged one may, and /metrics must count
// the forged packets as rejected by reason. Without the lists the same forged exchanges
// come out as traces (checked first), which is the attack.
func TestLiveTunnelAccept(t *testing.T) {
	if testing.Short() {
		t.Skip("live lab skipped in -short mode")
	}
	stranger := netip.MustParseAddr("10.200.2.77")
	for _, capture := range []string{"xdp", "afpacket", "udp"} {
		t.Run(capture, func(t *testing.T) {
			lab := netlab.New(t, netlab.Options{Mode: netlab.VXLAN})
			if err := lab.AddMirrorSideAddr(netip.PrefixFrom(stranger, 24)); err != nil {
				t.Fatal(err)
			}
			args := []string{"--capture", capture}
			if capture != "udp" {
				args = append(args, "-i", lab.CollectorIf)
			}
			if capture == "afpacket" { // without lists first: the forged traffic becomes traces
				open := startLiveCollector(t, lab, args...)
				sendVXLAN(t, lab, stranger, lab.VNI, forgedExchange(t, "/forged/open"))
				traces := open.stop(t, 1)
				if len(traces) != 1 || traces[0].Request.URL.Path != "/forged/open" {
					t.Fatalf("without accept lists: %d traces, want the forged one", len(traces))
				}
			}
			c := startLiveCollector(t, lab, append(args, "--accept-sources", lab.MirrorIP.String()+"/32",
				"--accept-vnis", strconv.Itoa(int(lab.VNI)))...)
			forged := forgedExchange(t, "/forged/stranger")
			sendVXLAN(t, lab, stranger, lab.VNI, forged)
			sendVXLAN(t, lab, lab.MirrorIP, 999, forgedExchange(t, "/forged/vni"))
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			truthPath, err := lab.RunTraffic(ctx)
			if err != nil {
				t.Fatal(err)
			}
			truth, err := groundtruth.Load(truthPath)
			if err != nil {
				t.Fatal(err)
			}
			_, body, err := getInCollector(lab, lab.CollectorIP.String()+":9731", "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			traces := c.stop(t, len(truth))
			checkTraces(t, truth, traces)
			for _, tr := range traces {
				if strings.HasPrefix(tr.Request.URL.Path, "/forged") {
					t.Errorf("a forged exchange became a trace: %s", tr.Request.URL.Path)
				}
			}
			rejected := func(reason string) float64 {
				m := regexp.MustCompile(`metlo_appliance_capture_rejected_total\{reason="` + reason + `"\} ([0-9.e+]+)`).FindSubmatch(body)
				if m == nil {
					return -1
				}
				v, _ := strconv.ParseFloat(string(m[1]), 64)
				return v
			}
			// The stranger's frames are all refused by source; of the other VNI's, every one
			// in XDP and the UDP socket path, and at least the TCP segments elsewhere.
			if got := rejected("source"); got != float64(len(forged)) {
				t.Errorf("rejected by source: %v, want %d\n%s", got, len(forged), grepLines(body, "rejected"))
			}
			if got := rejected("vni"); got < 4 || got > 6 {
				t.Errorf("rejected by vni: %v, want 4-6\n%s", got, grepLines(body, "rejected"))
			}
		})
	}
}

func grepLines(b []byte, sub string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
