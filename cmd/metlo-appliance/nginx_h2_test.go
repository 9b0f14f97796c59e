package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metlo-labs/metlo-appliance/test/lab/netlab"
)

// TestNginxHTTP2ThroughTheMirror is the live run of HTTP/2 cleartext: nginx speaking h2c
// (prior knowledge) to h2load, nghttp and curl — many streams multiplexed on each
// connection — through real kernel VXLAN mirroring into the collector attached with XDP.
// Every request in nginx's access log must come out as an HTTP/2.0 trace with its method,
// path, status and body.
func TestNginxHTTP2ThroughTheMirror(t *testing.T) {
	for _, tool := range []string{"nginx", "h2load", "nghttp", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian: nginx nghttp2-client curl)", tool)
		}
	}
	lab := netlab.New(t, netlab.Options{Mode: netlab.VXLAN})
	conf := strings.Replace(nginxConf, "listen %[2]s;", "listen %[2]s http2;", 1)
	accessLog := startNginxWith(t, lab, conf, "curl", "-sf", "--http2-prior-knowledge", "-o", "/dev/null")
	col := startLiveCollector(t, lab, "--capture", "xdp", "-i", lab.CollectorIf)
	probes := len(readAccessLog(t, accessLog))
	base := "http://" + lab.Server.String()
	body := filepath.Join(t.TempDir(), "order.json")
	if err := os.WriteFile(body, []byte(`{"sku":"H-2","qty":1,"note":"from h2load"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, args := range [][]string{
		// 4 connections, up to 16 streams in flight on each.
		{"h2load", "-n", "2000", "-c", "4", "-m", "16", base + "/api/items?page=2"},
		{"h2load", "-n", "400", "-c", "2", "-m", "8", "-d", body, base + "/api/orders"},
		// Responses over many DATA frames, interleaved on one connection.
		{"h2load", "-n", "100", "-c", "1", "-m", "10", base + "/static/doc.txt"},
		{"nghttp", "-n", base + "/api/missing", base + "/api/items?q=a%20b", base + "/static/doc.txt"},
		{"curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", base + "/static/doc.txt"},
		// nginx answers this POST before reading its body, then resets the stream with
		// NO_ERROR (RFC 9113 §8.1); curl 7.88 calls that error 92, the exchange is complete.
		{"curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", "-d", "@" + body, base + "/api/orders"},
	} {
		out, err := lab.ClientCommand(ctx, args[0], args[1:]...).CombinedOutput()
		var exit *exec.ExitError
		if errors.As(err, &exit) && args[0] == "curl" && exit.ExitCode() == 92 {
			err = nil
		}
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if args[0] == "h2load" && !strings.Contains(string(out), " 0 failed, 0 errored") {
			t.Fatalf("%s did not succeed:\n%s", strings.Join(args, " "), out)
		}
	}
	truth := readAccessLog(t, accessLog)[probes:]
	traces := col.stop(t, len(truth))
	if len(truth) < 2500 {
		t.Fatalf("only %d requests served: the load tools did not run", len(truth))
	}
	want := map[string]int{}
	for _, r := range truth {
		want[r.key()]++
	}
	exact, notH2, notLogged := 0, 0, 0
	for _, tr := range traces {
		if tr.Meta["protocol"] != "HTTP/2.0" {
			notH2++
		}
		k := fmt.Sprintf("%s %s %d %d", tr.Request.Method, tr.Request.URL.Path, tr.Response.Status, len(tr.Response.Body))
		if want[k] > 0 {
			want[k]--
			exact++
		} else if notLogged < 10 {
			notLogged++
			t.Logf("not in nginx's log: %s %v", k, tr.Meta)
		}
	}
	lost := summaryCount(col.stderr.String(), "kernel_drops") + summaryCount(col.stderr.String(), "ringbuf_full")
	t.Logf("nginx served %d HTTP/2 requests; %d traces, %d exact, %d not HTTP/2.0; %d packets lost by the capture",
		len(truth), len(traces), exact, notH2, lost)
	if notH2 > 0 {
		t.Errorf("%d traces not marked HTTP/2.0", notH2)
	}
	// The target: ≥ 99.9% of streams exact. A capture that lost packets under load
	// on this shared machine may cost the streams those packets carried, no more.
	if missing := len(truth) - exact; missing*1000 > len(truth) && missing > lost {
		t.Errorf("%d of %d streams not reported exactly (%d packets lost by the capture)", missing, len(truth), lost)
		for k, n := range want {
			if n > 0 {
				t.Logf("missing %d× %s", n, k)
			}
		}
	}
}
