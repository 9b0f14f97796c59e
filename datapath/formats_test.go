package datapath_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/metlo-labs/metlo-appliance/test/capturetest"
	"github.com/metlo-labs/metlo-appliance/test/tsharktest"
)

// realCapture is a capture in testdata/formats (README.md there names each one's source and
// license) and what must come out of it.
type realCapture struct {
	file string
	// packets is the decoder's whole (encap/outcome) histogram, checked against tshark's
	// protocol chain for each frame: where tshark reaches TCP, so must the decoder.
	packets string
	// emitted and paired are our exchanges (all / with a response); requests and pairs
	// are tshark's (frames with an HTTP request / with an HTTP response).
	emitted, paired, requests, pairs int
	// served is the nginx access log line count for captures made by test/formats, -1 else.
	served    int
	accessLog string
}

var realCaptures = []realCapture{
	// Made by test/formats/capture.sh: curl and ab against nginx.
	{file: "lab-sll2.pcap", packets: "raw/tcp=227", emitted: 54, paired: 54, requests: 54, pairs: 54, served: 54, accessLog: "lab-anyif.access.log"},
	{file: "lab-sll.pcap", packets: "raw/tcp=227", emitted: 54, paired: 54, requests: 54, pairs: 54, served: 54, accessLog: "lab-anyif.access.log"},
	// NFLOG lost one request's packets on the way to tcpdump (its netlink queue): tshark
	// and the collector both see 53 requests, 52 with a response.
	{file: "lab-nflog.pcap", packets: "raw/tcp=188", emitted: 53, paired: 52, requests: 53, pairs: 52, served: 54, accessLog: "lab-anyif.access.log"},
	{file: "lab-rawip.pcap", packets: "raw/tcp=221", emitted: 52, paired: 52, requests: 52, pairs: 52, served: 52, accessLog: "lab-tun.access.log"},
	{file: "lab-tfo.pcap", packets: "raw/tcp=69", emitted: 8, paired: 8, requests: 8, pairs: 8, served: 8, accessLog: "lab-tfo.access.log"},
	{file: "lab-frag_server.pcap", packets: "raw/tcp=107 raw/fragment=4", emitted: 26, paired: 26, requests: 26, pairs: 26, served: 26, accessLog: "lab-frag.access.log"},
	{file: "lab-frag_client.pcap", packets: "raw/tcp=107 raw/fragment=39", emitted: 26, paired: 26, requests: 26, pairs: 26, served: 26, accessLog: "lab-frag.access.log"},
	{file: "lab-vxlan_frag4.pcap", packets: "raw/fragment=40 vxlan/tcp=215 vxlan/non_tcp=2", emitted: 52, paired: 52, requests: 52, pairs: 52, served: 52, accessLog: "lab-vxlanfrag.access.log"},

	// Zeek's test traces. A vSphere GRE (0x6558) mirror whose outer packets are fragmented:
	// 39 fragments complete 16 GRE packets. tshark pairs 14 responses; 3 more responses
	// whose body crosses a capture gap are paired here too (flagged truncated).
	{file: "zeek-erspan-gre-frag.pcap", packets: "raw/fragment=39 gre/tcp=106 gre/non_tcp=142", emitted: 22, paired: 17, requests: 22, pairs: 14, served: -1},
	{file: "zeek-nflog-http.pcap", packets: "raw/tcp=13", emitted: 1, paired: 1, requests: 1, pairs: 1, served: -1},
	{file: "zeek-http_basic-auth-with-colon.pcap", packets: "raw/tcp=12", emitted: 1, paired: 1, requests: 1, pairs: 1, served: -1}, // LINKTYPE_IPV4 (228)
	{file: "zeek-http_connect-with-header.pcap", packets: "raw/tcp=58", emitted: 1, paired: 1, requests: 1, pairs: 1, served: -1},   // BSD loopback
	{file: "zeek-tcp_payload-syn.pcap", packets: "raw/tcp=6", emitted: 1, paired: 0, requests: 1, pairs: 0, served: -1},             // the request rides in the SYN
	{file: "zeek-http-qinq-0.pcap", packets: "raw/tcp=14", emitted: 1, paired: 1, requests: 1, pairs: 1, served: -1},
	{file: "zeek-vlan-qinqinq.pcap", packets: "raw/tcp=14", emitted: 1, paired: 1, requests: 1, pairs: 1, served: -1}, // three 802.1Q tags
	// Telnet over MPLS, HTTP/1.1 untagged, HTTP/0.9 in a VLAN: the HTTP/0.9 request (no
	// version, no status line back) is a parse error here, a request to tshark.
	{file: "zeek-mixed-vlan-mpls.pcap", packets: "raw/tcp=47", emitted: 1, paired: 1, requests: 2, pairs: 1, served: -1},
	{file: "zeek-mpls-in-vlan.pcap", packets: "raw/tcp=3", emitted: 2, paired: 0, requests: 2, pairs: 0, served: -1},
	{file: "zeek-erspanI.pcap", packets: "erspan1/non_tcp=10", served: -1},
	{file: "zeek-erspanII.pcap", packets: "erspan2/non_tcp=4", served: -1},
	{file: "zeek-erspanIII.pcap", packets: "erspan3/non_tcp=2", served: -1},
	{file: "zeek-tunnels_gre-erspan3-dot1q.pcap", packets: "erspan3/non_tcp=2", served: -1},
	{file: "zeek-tunnels_gre-sample.pcap", packets: "gre/tcp=22 gre/non_tcp=18", served: -1}, // IP in GRE: SSH, NTP, DNS, ICMP
	{file: "zeek-tunnels_gre-pptp.pcap", packets: "ipip/unknown_gre=2", served: -1},          // PPTP's GRE version 1, inside 6in4
	{file: "zeek-tunnels_4in4.pcap", packets: "ipip/non_tcp=1", served: -1},
	{file: "zeek-tunnels_4in6.pcap", packets: "ipip/tcp=1", served: -1},
	{file: "zeek-tunnels_6in4.pcap", packets: "ipip/non_tcp=1", served: -1},
	{file: "zeek-tunnels_6in6.pcap", packets: "ipip/non_tcp=1", served: -1},
	{file: "zeek-linux_dlt_sll2.pcap", packets: "raw/non_tcp=6", served: -1},
	{file: "zeek-linuxsll-arp.pcap", packets: "raw/non_tcp=12", served: -1},
	{file: "zeek-pppoe-over-qinq.pcap", packets: "raw/unknown_ethertype=86", served: -1}, // PPPoE sessions: counted, not opened
	{file: "zeek-vntag.pcap", packets: "raw/unknown_ethertype=3", served: -1},
	{file: "zeek-ipv6-http-atomic-frag.pcap", packets: "raw/tcp=36 raw/non_tcp=2", served: -1}, // 5 atomic fragments among them
	{file: "zeek-ipv6-fragmented-dns.pcap", packets: "raw/non_tcp=7 raw/fragment=1", served: -1},
	{file: "zeek-ipv4_fragmented-syn.pcap", packets: "raw/tcp=1 raw/fragment=1", served: -1}, // a SYN in two fragments
	// Overlapping IPv4 fragments: tshark reassembles them (one more TCP segment than
	// here); the collector drops such a datagram, as Linux receivers do.
	{file: "zeek-ipv4_fragmented-1.pcap", packets: "raw/non_tcp=2 raw/fragment_dropped=1", served: -1},
	{file: "zeek-ipv4_fragmented-2.pcap", packets: "raw/non_tcp=2 raw/fragment=1", served: -1},
	{file: "zeek-ipv4_fragmented-3.pcap", packets: "raw/fragment=5", served: -1},
	{file: "zeek-ipv4_fragmented-4.pcap", packets: "raw/tcp=2 raw/fragment=3 raw/fragment_dropped=1", served: -1},

	// tcpdump's test captures.
	{file: "tcpdump-erspan-type-i-1.pcap", packets: "erspan1/non_tcp=2", served: -1},
	{file: "tcpdump-erspan-type-ii-3.pcap", packets: "erspan2/non_tcp=108", served: -1}, // STP, CDP, ARP in VLANs
	{file: "tcpdump-erspan-type-iii-ft-0.pcap", packets: "erspan3/non_tcp=9", served: -1},
	{file: "tcpdump-erspan-type-iii-ft-7.pcap", packets: "raw/unknown_erspan=58", served: -1},
	{file: "tcpdump-erspan-type-iii-pb-1.pcap", packets: "raw/malformed=1", served: -1},          // a fuzzer's packet, truncated
	{file: "tcpdump-various_gre.pcap", packets: "raw/non_tcp=70 raw/unknown_gre=30", served: -1}, // Cisco metadata, WCCP, keepalives
	{file: "tcpdump-tfo-5c1fa7f9ae91.pcap", packets: "raw/tcp=14", served: -1},
	{file: "tcpdump-nflog.pcap", packets: "raw/non_tcp=4", served: -1},
	{file: "tcpdump-LINKTYPE_RAW_ipv4.pcap", packets: "raw/non_tcp=1", served: -1},
	{file: "tcpdump-LINKTYPE_RAW_ipv6.pcap", packets: "raw/non_tcp=1", served: -1},
	{file: "tcpdump-802.1ad_QinQ.pcap", packets: "raw/non_tcp=2", served: -1},
	{file: "tcpdump-loopback.pcap", packets: "raw/non_tcp=6", served: -1},
	{file: "tcpdump-mpls-over-udp.pcap", packets: "raw/non_tcp=2", served: -1}, // MPLS over UDP 6635 is not a mirror format
}

const formatsDir = "testdata/formats"

// TestRealCaptures runs every capture in testdata/formats through the pipeline collect
// uses and compares with tshark (run live when installed) and, for captures of our own,
// with nginx's access log.
func TestRealCaptures(t *testing.T) {
	_, tsharkErr := exec.LookPath("tshark")
	for _, c := range realCaptures {
		t.Run(c.file, func(t *testing.T) {
			packets, emitted, paired := runCapture(t, filepath.Join(formatsDir, c.file))
			if packets != c.packets {
				t.Errorf("packets %s, want %s", packets, c.packets)
			}
			if emitted != c.emitted || paired != c.paired {
				t.Errorf("%d exchanges, %d with a response; want %d, %d", emitted, paired, c.emitted, c.paired)
			}
			if c.served >= 0 {
				if n := countLines(t, filepath.Join(formatsDir, c.accessLog)); n != c.served {
					t.Errorf("%s has %d requests, want %d", c.accessLog, n, c.served)
				}
			}
			if tsharkErr != nil || testing.Short() || c.requests == 0 {
				return // a capture without HTTP: the histogram above is the check
			}
			req, pairs := tsharktest.HTTP(t, filepath.Join(formatsDir, c.file))
			if req != c.requests || pairs != c.pairs {
				t.Errorf("tshark: %d requests, %d pairs; recorded %d, %d", req, pairs, c.requests, c.pairs)
			}
		})
	}
	// Every capture in the folder is in the table.
	files, _ := filepath.Glob(filepath.Join(formatsDir, "*.pcap"))
	listed := map[string]bool{}
	for _, c := range realCaptures {
		listed[c.file] = true
	}
	for _, f := range files {
		if !listed[filepath.Base(f)] {
			t.Errorf("%s is not in realCaptures", f)
		}
	}
}

// runCapture decodes a capture with two reassembly workers and returns the packet
// histogram ("encap/outcome=n", sorted), the exchanges emitted and those with a response.
func runCapture(t *testing.T, path string) (packets string, emitted, paired int) {
	t.Helper()
	emitted, paired, s := capturetest.Exchanges(t, path)
	if s.Defrag.HeldBytes != 0 {
		t.Errorf("%d bytes of fragments still held after Close", s.Defrag.HeldBytes)
	}
	var hist []string
	for e := range s.Packets {
		for o, n := range s.Packets[e] {
			if n > 0 {
				hist = append(hist, fmt.Sprintf("%s/%s=%d", datapath.Encap(e), datapath.Outcome(o), n))
			}
		}
	}
	sort.Slice(hist, func(i, j int) bool { return order(hist[i]) < order(hist[j]) })
	return strings.Join(hist, " "), emitted, paired
}

// order sorts histogram entries by encap, then outcome, in declaration order.
func order(entry string) int {
	encap, outcome, _ := strings.Cut(strings.Split(entry, "=")[0], "/")
	e, o := 0, 0
	for i := range datapath.NumEncaps {
		if datapath.Encap(i).String() == encap {
			e = i
		}
	}
	for i := range datapath.NumOutcomes {
		if i.String() == outcome {
			o = int(i)
		}
	}
	return e*100 + o
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for s := bufio.NewScanner(f); s.Scan(); {
		n++
	}
	return n
}
