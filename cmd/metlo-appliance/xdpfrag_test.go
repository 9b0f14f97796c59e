package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/metlo-labs/metlo-appliance/test/lab/groundtruth"
	"github.com/metlo-labs/metlo-appliance/test/lab/netlab"
)

// TestLiveFragmentedVXLAN mirrors the lab through the kernel's VXLAN device over a 1280-byte
// path, so the kernel fragments every outer IPv4 packet longer than that (the first fragment
// carries the UDP and VXLAN headers, the later ones only data), and runs the real collector
// with XDP and with AF_PACKET on it: each must report every exchange the server logged.
// Under XDP the fragments must have reached Go's defragmenter whole (counted "fragment" by
// the program, none shared with the kernel: a veth delivers them in order, so every later
// fragment finds its first fragment's verdict). Before the XDP program handed fragments on,
// the kernel got them and every exchange with a fragmented packet was lost.
func TestLiveFragmentedVXLAN(t *testing.T) {
	if testing.Short() {
		t.Skip("live lab skipped in -short mode")
	}
	for _, capture := range []string{"xdp", "afpacket"} {
		t.Run(capture, func(t *testing.T) {
			lab := netlab.New(t, netlab.Options{Mode: netlab.VXLAN, PathMTU: 1280, Huge: true})
			c := startLiveCollector(t, lab, "--capture", capture, "-i", lab.CollectorIf)
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
			// Scrape after the last exchange is complete in the collector, before SIGTERM.
			for deadline := time.Now().Add(20 * time.Second); countLines(c.out) < len(truth) && time.Now().Before(deadline); {
				time.Sleep(200 * time.Millisecond)
			}
			_, body, err := getInCollector(lab, lab.CollectorIP.String()+":9731", "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			traces := c.stop(t, len(truth))
			t.Logf("%d traces for %d exchanges served\n%s\n%s", len(traces), len(truth),
				grepLines(body, "ip_datagrams_total"), grepLines(body, "xdp_packets_total"))
			checkTraces(t, truth, traces)
			metric := func(series string) float64 { return seriesValue(t, body, series) }
			if n := metric(`metlo_appliance_datapath_ip_datagrams_total{result="reassembled"}`); n < 100 {
				t.Errorf("%v datagrams reassembled: the path did not fragment the mirror", n)
			}
			if capture == "xdp" {
				if n := metric(`metlo_appliance_xdp_packets_total{reason="fragment"}`); n < 200 {
					t.Errorf("xdp handed on %v fragments", n)
				}
				for _, reason := range []string{"fragment_shared", "ringbuf_full", "malformed"} {
					if n := metric(`metlo_appliance_xdp_packets_total{reason="` + reason + `"}`); n != 0 {
						t.Errorf("xdp counted %v packets %s", n, reason)
					}
				}
			}
		})
	}
}

// seriesValue reads one series (name and labels, as exposed) from a /metrics body.
func seriesValue(t *testing.T, body []byte, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` ([0-9.e+]+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in /metrics", series)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// TestNginxFragmentedMirror runs nginx, curl and ab — none of them ours — through the
// kernel's VXLAN device over a 1280-byte path, so every mirrored packet with more than
// ~1230 bytes of inner frame (nginx's document segments, the uploads' body segments) reaches
// the collector as two IPv4 fragments, and captures with --capture xdp. Every request in
// nginx's access log must come out as a trace with its method, path, status and response
// body size, and every upload with its whole body: nothing the XDP program saw fragmented is
// lost. (Before the program handed fragments on, it passed them to the kernel, which
// reassembled them for a UDP port nobody listens on: every exchange with a full-sized
// segment was lost.)
func TestNginxFragmentedMirror(t *testing.T) {
	if testing.Short() {
		t.Skip("live lab skipped in -short mode")
	}
	for _, tool := range []string{"nginx", "curl", "ab"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian: nginx curl apache2-utils)", tool)
		}
	}
	lab := netlab.New(t, netlab.Options{Mode: netlab.VXLAN, PathMTU: 1280})
	accessLog := startNginx(t, lab)
	col := startLiveCollector(t, lab, "--capture", "xdp", "-i", lab.CollectorIf)
	probes := len(readAccessLog(t, accessLog)) // served before the collector ran

	upload := filepath.Join(t.TempDir(), "upload.json")
	uploadBody := `{"sku":"A-1","note":"` + strings.Repeat("fragmented upload ", 500) + `"}`
	if err := os.WriteFile(upload, []byte(uploadBody), 0o644); err != nil {
		t.Fatal(err)
	}
	base := "http://" + lab.Server.String()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"curl", "-s", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null", base + "/static/doc.txt", base + "/api/items?page=1", base + "/api/missing"},
		{"curl", "-s", "-o", "/dev/null", "-H", "Content-Type: application/json", "--data-binary", "@" + upload, base + "/api/orders"},
		{"ab", "-q", "-k", "-n", "200", "-c", "4", base + "/static/doc.txt"},
		{"ab", "-q", "-k", "-n", "200", "-c", "4", "-p", upload, "-T", "application/json", base + "/api/orders"},
		{"ab", "-q", "-n", "100", "-c", "2", base + "/api/items?page=2"},
	} {
		if out, err := lab.ClientCommand(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	truth := readAccessLog(t, accessLog)[probes:]
	if len(truth) < 500 {
		t.Fatalf("only %d requests served: the clients did not run", len(truth))
	}
	for deadline := time.Now().Add(20 * time.Second); countLines(col.out) < len(truth) && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
	}
	_, metrics, err := getInCollector(lab, lab.CollectorIP.String()+":9731", "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	traces := col.stop(t, len(truth))
	t.Logf("nginx served %d requests; %d traces\n%s\n%s", len(truth), len(traces),
		grepLines(metrics, "ip_datagrams_total"), grepLines(metrics, "xdp_packets_total"))

	want := map[string]int{}
	for _, r := range truth {
		want[r.key()]++
	}
	for _, tr := range traces {
		k := fmt.Sprintf("%s %s %d %d", tr.Request.Method, tr.Request.URL.Path, tr.Response.Status, len(tr.Response.Body))
		want[k]--
		if tr.Request.Method == "POST" && tr.Request.Body != uploadBody {
			t.Errorf("POST %s: request body of %d bytes, want the %d-byte upload", tr.Request.URL.Path, len(tr.Request.Body), len(uploadBody))
		}
	}
	for k, n := range want {
		if n > 0 {
			t.Errorf("missing %d× %s", n, k)
		} else if n < 0 {
			t.Errorf("%d× %s more than nginx served", -n, k)
		}
	}
	if n := seriesValue(t, metrics, `metlo_appliance_xdp_packets_total{reason="fragment"}`); n < 1000 {
		t.Errorf("xdp handed on %v fragments: the path did not fragment the mirror", n)
	}
	if n := seriesValue(t, metrics, `metlo_appliance_datapath_ip_datagrams_total{result="reassembled"}`); n < 500 {
		t.Errorf("%v datagrams reassembled", n)
	}
	// ("passed" is not zero: the server namespace's IPv6 neighbour discovery and MLD reach
	// the collector's veth too, and belong to the kernel.)
	for _, reason := range []string{"fragment_shared", "ringbuf_full", "malformed"} {
		if n := seriesValue(t, metrics, `metlo_appliance_xdp_packets_total{reason="`+reason+`"}`); n != 0 {
			t.Errorf("xdp counted %v packets %s", n, reason)
		}
	}
}
