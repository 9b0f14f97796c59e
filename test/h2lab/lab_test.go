package h2lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/metlo-labs/metlo-appliance/reassembly"
	"github.com/metlo-labs/metlo-appliance/test/lab/groundtruth"
	"github.com/metlo-labs/metlo-appliance/test/lab/netlab"
)

// Ports the lab's servers listen on, in the server namespace.
const (
	portPrior   = 8080  // h2server: HTTP/1.1 + h2c with prior knowledge
	portUpgrade = 8081  // h2server: Upgrade: h2c
	portGRPC    = 50051 // h2server: gRPC lab.Orders
	portNghttpd = 8090  // nghttpd
)

// target is the share of streams that must be reported exactly (method, path, status,
// request and response bodies).
const target = 0.999

// TestHTTP2Lab drives real HTTP/2 traffic through the kernel's VXLAN mirror and checks
// what the collector makes of it against the servers' own logs: Go's net/http with h2c
// (prior knowledge, many streams per connection), gRPC (unary, streaming, gzip), nghttpd
// under h2load, and Upgrade: h2c from curl and nghttp.
func TestHTTP2Lab(t *testing.T) {
	if testing.Short() {
		t.Skip("kernel lab: skipped with -short")
	}
	for _, tool := range []string{"tcpdump", "nghttpd", "h2load", "nghttp", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian: tcpdump, nghttp2-server, nghttp2-client, curl): %v", tool, err)
		}
	}
	scale := 1.0 // H2LAB_SCALE shrinks the workloads (regen.sh makes the committed captures with it)
	if v := os.Getenv("H2LAB_SCALE"); v != "" {
		var err error
		if scale, err = strconv.ParseFloat(v, 64); err != nil || scale <= 0 {
			t.Fatalf("H2LAB_SCALE=%q: want a positive number", v)
		}
	}
	n := func(x int) string { return strconv.Itoa(max(1, int(float64(x)*scale))) }
	l := netlab.New(t, netlab.Options{Mode: netlab.VXLAN})
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	build(t, dir)
	docroot := makeDocroot(t, filepath.Join(dir, "www"))
	ip := l.Server.Addr().String()
	hostport := func(p int) string { return ip + ":" + strconv.Itoa(p) }

	capture := filepath.Join(dir, "h2.pcap")
	dump := startCapture(t, ctx, l, capture)

	truthPath, ready := filepath.Join(dir, "truth.jsonl"), filepath.Join(dir, "ready")
	srv := l.ServerCommand(ctx, filepath.Join(dir, "h2server"), "-addr", hostport(portPrior), "-upgrade-addr", hostport(portUpgrade),
		"-grpc-addr", hostport(portGRPC), "-truth", truthPath, "-ready", ready)
	var srvLog bytes.Buffer
	srv.Stdout, srv.Stderr = &srvLog, &srvLog
	ngLogPath := filepath.Join(dir, "nghttpd.log")
	ngLog, err := os.Create(ngLogPath)
	if err != nil {
		t.Fatal(err)
	}
	ngd := l.ServerCommand(ctx, "nghttpd", "--no-tls", "-v", "-d", docroot, strconv.Itoa(portNghttpd))
	ngd.Stdout, ngd.Stderr = ngLog, ngLog
	for _, c := range []*exec.Cmd{srv, ngd} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { _, err := os.Stat(ready); return err == nil }, "h2server: "+srvLog.String())
	waitFor(t, func() bool { b, _ := os.ReadFile(ngLogPath); return bytes.Contains(b, []byte("listen")) }, "nghttpd")

	// The workloads, one after another.
	client := filepath.Join(dir, "h2client")
	run(t, l.ClientCommand(ctx, client, "-mode", "http", "-addr", hostport(portPrior), "-conns", "4", "-workers", "8", "-n", n(4096)))
	run(t, l.ClientCommand(ctx, client, "-mode", "grpc", "-addr", hostport(portGRPC), "-conns", "2", "-workers", "8", "-n", n(3072)))
	uris := filepath.Join(dir, "uris.txt")
	var ub strings.Builder
	for i := range 200 {
		fmt.Fprintf(&ub, "http://%s/f/%d.json\n", hostport(portNghttpd), i)
	}
	// No missing files: nghttpd does not log the error page it sends (the Go server covers 404s).
	fmt.Fprintf(&ub, "http://%s/f/big.bin\n", hostport(portNghttpd))
	if err := os.WriteFile(uris, []byte(ub.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, l.ClientCommand(ctx, "h2load", "-n", n(8000), "-c", "8", "-m", "16", "-i", uris))
	t.Logf("h2load: %s", grepLine(out, "requests:"))
	upgrades := 0
	for i := range 12 {
		args := []string{"-sS", "--http2", "-o", "/dev/null", "-H", "X-Lab-Case: curl-upgrade", fmt.Sprintf("http://%s/items/%d?up=%d", hostport(portUpgrade), 3*i, i)}
		if i%3 == 2 { // an upgrade request with a body
			args = append(args, "-H", "Content-Type: application/json", "--data", fmt.Sprintf(`{"upgrade":%d}`, i))
			args[len(args)-5] = fmt.Sprintf("http://%s/items?up=%d", hostport(portUpgrade), i)
		}
		run(t, l.ClientCommand(ctx, "curl", args...))
		upgrades++
	}
	run(t, l.ClientCommand(ctx, "nghttp", "-u", "-n", "-H", "X-Lab-Case: nghttp-upgrade",
		"http://"+hostport(portUpgrade)+"/items/7?ng=1", "http://"+hostport(portUpgrade)+"/trailers?ng=2", "http://"+hostport(portUpgrade)+"/missing?ng=3"))
	upgrades++

	// A capture that starts in the middle of a long-lived gRPC connection: the early calls
	// filled both HPACK tables with entries it never sees.
	joinReady, joinStart, joinCapture := filepath.Join(dir, "join-ready"), filepath.Join(dir, "join-start"), filepath.Join(dir, "join.pcap")
	joiner := l.ClientCommand(ctx, client, "-mode", "grpc-join", "-addr", hostport(portGRPC), "-n", n(300), "-late", n(1000),
		"-ready", joinReady, "-start", joinStart)
	var joinLog bytes.Buffer
	joiner.Stdout, joiner.Stderr = &joinLog, &joinLog
	if err := joiner.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := os.Stat(joinReady); return err == nil }, "grpc-join early calls: "+joinLog.String())
	joinDump := startCapture(t, ctx, l, joinCapture)
	if err := os.WriteFile(joinStart, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := joiner.Wait(); err != nil {
		t.Fatalf("grpc-join: %v\n%s", err, joinLog.String())
	}

	// Let the last mirrored frames arrive, stop the servers (they flush their logs), then
	// the captures.
	time.Sleep(500 * time.Millisecond)
	for _, c := range []*exec.Cmd{srv, ngd} {
		c.Process.Signal(syscall.SIGTERM)
		c.Wait()
	}
	ngLog.Close()
	time.Sleep(time.Second)
	dropped := stopCapture(t, dump)
	joinDropped := stopCapture(t, joinDump)

	if out := os.Getenv("H2LAB_OUT"); out != "" {
		// Keep the captures and logs (test/h2lab/regen.sh makes the committed ones).
		for _, f := range []string{capture, joinCapture, truthPath, ngLogPath} {
			b, err := os.ReadFile(f)
			if err == nil {
				err = os.WriteFile(filepath.Join(out, filepath.Base(f)), b, 0o644)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	goTruth, err := groundtruth.Load(truthPath)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(ngLogPath)
	if err != nil {
		t.Fatal(err)
	}
	ngTruth, err := ParseNghttpdLog(f, docroot)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	byPort, stats, err := Observe(capture)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("capture: %d packets dropped by the kernel; reassembly: %d gaps, flows %v, HTTP/2 events %v", dropped, stats.Gaps, stats.Protocols, stats.HTTP2Events)

	opt := groundtruth.Options{BodyCap: reassembly.DefaultConfig().BodyCap, Unordered: true}
	var goObserved []groundtruth.Observed
	for _, p := range []uint16{portPrior, portUpgrade, portGRPC} {
		goObserved = append(goObserved, byPort[p]...)
	}
	for _, c := range []struct {
		name     string
		truth    []groundtruth.Exchange
		observed []groundtruth.Observed
	}{
		{"h2server (net/http h2c, Upgrade: h2c, gRPC)", goTruth, goObserved},
		{"nghttpd under h2load", ngTruth, byPort[portNghttpd]},
	} {
		problems := groundtruth.Compare(c.truth, c.observed, opt)
		acc := Accuracy(c.truth, problems)
		t.Logf("%s: %d streams served, %d reported, %.4f%% exactly right", c.name, len(c.truth), len(c.observed), 100*acc)
		for i, p := range problems {
			if i == 20 {
				t.Logf("… %d more", len(problems)-20)
				break
			}
			t.Log(p)
		}
		if acc < target || float64(len(c.truth)) < 1000*scale {
			t.Errorf("%s: %.4f%% of %d streams right, want ≥ %.1f%%", c.name, 100*acc, len(c.truth), 100*target)
		}
	}
	checkJoin(t, goTruth, joinCapture, joinDropped, int(900*scale))
	if got := stats.HTTP2Events["h2c_upgrade"]; got != uint64(upgrades) {
		t.Errorf("%d h2c upgrades seen, %d made", got, upgrades)
	}
	if stats.Protocols["http2"] < 4+2+8+uint64(upgrades) || stats.Protocols["other"] != 0 {
		t.Errorf("flows by protocol %v", stats.Protocols)
	}
}

func build(t *testing.T, dir string) {
	t.Helper()
	const pkg = "github.com/metlo-labs/metlo-appliance/test/h2lab/"
	cmd := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), pkg+"h2server", pkg+"h2client")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
}

// makeDocroot writes nghttpd's files: 200 JSON documents of 100 B to 6 KB and one of
// 100 KiB (over the collector's body cap).
func makeDocroot(t *testing.T, root string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, "f"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		doc := fmt.Sprintf(`{"id":%d,"pad":"%s"}`, i, strings.Repeat("p", 100+i*29))
		if err := os.WriteFile(filepath.Join(root, "f", fmt.Sprintf("%d.json", i)), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "f", "big.bin"), bytes.Repeat([]byte("0123456789"), 10240), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

type capture struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
}

func startCapture(t *testing.T, ctx context.Context, l *netlab.Lab, path string) *capture {
	t.Helper()
	c := &capture{stderr: &bytes.Buffer{}}
	c.cmd = l.CollectorCommand(ctx, "tcpdump", "-i", l.CollectorIf, "-w", path, "-U", "-B", "65536", "-s", "0", "udp", "port", "4789")
	c.cmd.Stderr = c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(c.stderr.String(), "listening on") }, "tcpdump: "+c.stderr.String())
	return c
}

var droppedRE = regexp.MustCompile(`(\d+) packets dropped by kernel`)

// stopCapture ends tcpdump and returns how many packets the kernel dropped on it.
func stopCapture(t *testing.T, c *capture) int {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGINT)
	c.cmd.Wait()
	m := droppedRE.FindStringSubmatch(c.stderr.String())
	if m == nil {
		t.Fatalf("tcpdump: %s", c.stderr.String())
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func run(t *testing.T, c *exec.Cmd) string {
	t.Helper()
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(c.Args, " "), err, out)
	}
	return string(out)
}

func waitFor(t *testing.T, ok func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func grepLine(s, prefix string) string {
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}

// checkJoin compares the calls made after the capture joined a gRPC connection with the
// server's log. Every call must be reported with its status and both bodies; what HPACK
// entries from before the join hid (gRPC's :path among them: its encoder indexes it) is
// measured, logged and must be flagged.
func checkJoin(t *testing.T, truth []groundtruth.Exchange, capture string, dropped, minLate int) {
	t.Helper()
	byPort, stats, err := Observe(capture)
	if err != nil {
		t.Fatal(err)
	}
	observed := byPort[portGRPC]
	byReq := map[string][]int{}
	for i, o := range observed {
		byReq[string(o.ReqBody)] = append(byReq[string(o.ReqBody)], i)
	}
	late, reported, bodies, ok200, n200, statusRight, withPath := 0, 0, 0, 0, 0, 0, 0
	for _, e := range truth {
		if !strings.Contains(e.ReqBody, "late-") {
			continue
		}
		late++
		if e.Status == 200 {
			n200++
		}
		cands := byReq[e.ReqBody]
		if len(cands) == 0 {
			t.Logf("late call %s %s not reported", e.Target, e.ReqBody)
			continue
		}
		o := observed[cands[0]]
		byReq[e.ReqBody] = cands[1:]
		reported++
		if string(o.RespBody) == e.RespBody {
			bodies++
		} else {
			t.Logf("late call %s %s: body %q, want %q", e.Target, e.ReqBody, o.RespBody, e.RespBody)
		}
		if o.Status == e.Status {
			statusRight++
			if e.Status == 200 {
				ok200++
			}
		}
		if o.Path == e.Path {
			withPath++
		}
	}
	unknown := stats.HTTP2Events["hpack_unknown_field"]
	t.Logf("joined mid-connection (%d packets dropped): %d late calls; %d reported, %d with both bodies right, %d with the right status "+
		"(%d of %d OK calls), %d with their path; %d header fields referenced unseen HPACK entries; flows %v",
		dropped, late, reported, bodies, statusRight, ok200, n200, withPath, unknown, stats.Protocols)
	// What a join costs (docs/architecture.md): fields indexed before it — here :path,
	// content-type, grpc-status — stay unknown while the encoder keeps reusing them. The
	// call, its bodies (recognised by their gRPC framing) and HTTP status are reported.
	if late < minLate || float64(reported) < target*float64(late) || float64(bodies) < target*float64(late) || float64(ok200) < target*float64(n200) {
		t.Errorf("joined mid-connection: of %d late calls %d reported, %d bodies right, %d of %d OK calls with status 200", late, reported, bodies, ok200, n200)
	}
	if withPath < late && unknown == 0 {
		t.Error("paths lost to unseen HPACK entries but nothing counted")
	}
	if stats.Protocols["http2"] != 1 {
		t.Errorf("the joined connection was not recognised as HTTP/2: %v", stats.Protocols)
	}
}
