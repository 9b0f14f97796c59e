// Package formats holds the script that makes real captures of every capture format and
// packet shape the collector reads beyond the lab's Ethernet/VXLAN (capture.sh), and a test
// that runs it live and checks the collector against nginx's access log and tshark.
package formats

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/metlo-labs/metlo-appliance/test/capturetest"
	"github.com/metlo-labs/metlo-appliance/test/tsharktest"
)

// captures are the files capture.sh writes and the access log each one's requests are in.
var captures = []struct {
	file, log string
	// lossy: the capture path may lose packets (NFLOG's netlink queue): compare with
	// tshark only, not with nginx's log.
	lossy bool
	// fragments: the capture holds IP fragments that must all be reassembled.
	fragments bool
}{
	{file: "sll2.pcap", log: "anyif.access.log"},
	{file: "sll.pcap", log: "anyif.access.log"},
	{file: "nflog.pcap", log: "anyif.access.log", lossy: true},
	{file: "tfo.pcap", log: "tfo.access.log"},
	{file: "frag_server.pcap", log: "frag.access.log", fragments: true},
	{file: "frag_client.pcap", log: "frag.access.log", fragments: true},
	{file: "vxlan_frag4.pcap", log: "vxlanfrag.access.log", fragments: true},
	{file: "rawip.pcap", log: "tun.access.log"},
}

// TestLiveCaptures runs capture.sh (curl and ab against nginx in network namespaces, captured
// as SLL, SLL2, NFLOG, raw IP from a tun interface, TCP Fast Open, router- and
// VXLAN-fragmented IPv4) and checks every exchange nginx logged comes out of each capture.
func TestLiveCaptures(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: live captures skipped")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, tcpdump)")
	}
	for _, tool := range []string{"ip", "tcpdump", "nginx", "curl", "ab", "nft", "socat", "ethtool"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	out := t.TempDir()
	cmd := exec.Command("./capture.sh", "-o", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("capture.sh: %v\n%s", err, b)
	}
	_, tsharkErr := exec.LookPath("tshark")
	for _, c := range captures {
		t.Run(c.file, func(t *testing.T) {
			path := filepath.Join(out, c.file)
			emitted, paired, s := capturetest.Exchanges(t, path)
			served := lines(t, filepath.Join(out, c.log))
			if served < 8 {
				t.Fatalf("nginx served only %d requests", served)
			}
			if !c.lossy && (emitted != served || paired != served) {
				t.Errorf("%d exchanges, %d with a response; nginx served %d", emitted, paired, served)
			}
			for e := range s.Packets {
				for o, n := range s.Packets[e] {
					switch datapath.Outcome(o) {
					case datapath.OutcomeTCP, datapath.OutcomeFragment, datapath.OutcomeNonTCP:
					default:
						if n > 0 {
							t.Errorf("%d packets %s/%s", n, datapath.Encap(e), datapath.Outcome(o))
						}
					}
				}
			}
			if c.fragments && (s.Defrag.Reassembled == 0 || s.Defrag.Unfinished+s.Defrag.Expired+s.Defrag.Evicted+s.Defrag.Overlapping+s.Defrag.Invalid != 0) {
				t.Errorf("fragments: %+v", s.Defrag)
			}
			if tsharkErr != nil {
				return
			}
			if c.file == "tfo.pcap" { // Fast Open did happen: requests rode in SYNs
				if n := tsharkCount(t, path, "tcp.flags.syn == 1 && tcp.flags.ack == 0 && tcp.len > 0"); n < 4 {
					t.Errorf("%d SYNs carry data, want the 6 requests sent with a cookie", n)
				}
			}
			// nginx's log is the ground truth; tshark is the peer the collector must never
			// fall behind. tshark itself now and then misses a response in a fragmented
			// capture (seen once in CI: 25 of nginx's 26), so more than tshark is logged, not
			// failed.
			req, resp := tsharktest.HTTP(t, path)
			if emitted < req || paired < resp {
				t.Errorf("tshark: %d requests, %d responses; collector: %d, %d", req, resp, emitted, paired)
			} else if emitted > req || paired > resp {
				t.Logf("collector ahead of tshark: tshark %d/%d, collector %d/%d, nginx %d", req, resp, emitted, paired, served)
			}
			t.Logf("%d exchanges (nginx %d, tshark %d/%d); defrag %+v", paired, served, req, resp, s.Defrag)
		})
	}
}

func lines(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for sc := bufio.NewScanner(f); sc.Scan(); {
		n++
	}
	return n
}

// tsharkCount counts the frames matching filter.
func tsharkCount(t *testing.T, path, filter string) int {
	t.Helper()
	out, err := exec.Command("tshark", "-r", path, "-Y", filter, "-T", "fields", "-e", "frame.number").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	return strings.Count(string(out), "\n")
}
