package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/metlo-labs/metlo-appliance/test/lab/groundtruth"
	"github.com/metlo-labs/metlo-appliance/test/lab/netlab"
)

// liveCollector is the real binary running in the lab's collector namespace.
type liveCollector struct {
	cmd    *exec.Cmd
	out    string
	stderr *bytes.Buffer
	lab    *netlab.Lab
}

var builtBinary string

// buildBinary compiles metlo-appliance once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	if builtBinary != "" {
		return builtBinary
	}
	dir, err := os.MkdirTemp("", "metlo-appliance-bin")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "metlo-appliance")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	builtBinary = bin
	return bin
}

func startLiveCollector(t *testing.T, lab *netlab.Lab, args ...string) *liveCollector {
	t.Helper()
	bin := buildBinary(t)
	dir := t.TempDir()
	c := &liveCollector{out: filepath.Join(dir, "traces.jsonl"), stderr: &bytes.Buffer{}, lab: lab}
	conf := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	metrics := lab.CollectorIP.String() + ":9731"
	full := append([]string{"collect", "--sink", "jsonl:" + c.out, "--metrics-addr", metrics,
		"--config", conf, "--credentials-file", "", "--log-level", "debug",
		"--redact=false"}, args...) // bodies are compared with what the server sent, tokens included
	c.cmd = lab.CollectorCommand(context.Background(), bin, full...)
	c.cmd.Stderr = c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Wait()
		}
	})
	// Ready means capture attached and sinks accepting: the same check a load balancer makes.
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, _, err := getInCollector(lab, metrics, "/readyz")
		if err == nil && status == http.StatusOK {
			return c
		}
		if time.Now().After(deadline) || c.cmd.ProcessState != nil {
			t.Fatalf("collector never became ready (last: %v, status %d)\n%s", err, status, c.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// getInCollector makes an HTTP GET from inside the collector's namespace. It dials on the
// thread that is in the namespace; http.Transport would dial from another goroutine,
// outside it.
func getInCollector(lab *netlab.Lab, addr, path string) (int, []byte, error) {
	var status int
	var body []byte
	err := lab.InCollector(func() error {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		status = resp.StatusCode
		body, err = io.ReadAll(resp.Body)
		return err
	})
	return status, body, err
}

// stop waits until want traces were written (or a deadline), then sends SIGTERM as systemd
// would and returns the traces.
func (c *liveCollector) stop(t *testing.T, want int) []trace {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if countLines(c.out) >= want {
			break
		}
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("collector exited with %v\n%s", err, c.stderr.String())
		}
	case <-time.After(40 * time.Second):
		_ = c.cmd.Process.Kill()
		t.Fatalf("collector did not exit after SIGTERM\n%s", c.stderr.String())
	}
	if !strings.Contains(c.stderr.String(), "summary") {
		t.Errorf("no summary after SIGTERM:\n%s", c.stderr.String())
	}
	return readTraces(t, c.out)
}

func countLines(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		n++
	}
	return n
}

// checkTraces demands every ground-truth exchange as a trace: method, path, decoded
// parameters, status, and the response body wherever the ground truth holds it inline.
func checkTraces(t *testing.T, truth []groundtruth.Exchange, traces []trace) {
	t.Helper()
	want, got := truthKeys(truth), traceKeys(traces)
	if strings.Join(want, "\n") != strings.Join(got, "\n") {
		t.Fatalf("traces differ from the server's log: want %d, got %d\n%s", len(want), len(got), diffLines(want, got))
	}
	bodies := map[string]int{}
	for _, tr := range traces {
		bodies[tr.Request.Method+" "+tr.Request.URL.Path+" "+tr.Response.Body]++
	}
	for _, e := range truth {
		if e.RespBody == "" {
			continue
		}
		k := e.Method + " " + e.Path + " " + e.RespBody
		if bodies[k] == 0 {
			t.Errorf("seq %d %s %s: response body not found in any trace", e.Seq, e.Method, e.Target)
		}
		bodies[k]--
	}
}

func diffLines(want, got []string) string {
	count := map[string]int{}
	for _, w := range want {
		count[w]++
	}
	for _, g := range got {
		count[g]--
	}
	var b strings.Builder
	for k, n := range count {
		if n > 0 {
			fmt.Fprintf(&b, "missing %dx %s\n", n, k)
		} else if n < 0 {
			fmt.Fprintf(&b, "extra   %dx %s\n", -n, k)
		}
	}
	return b.String()
}

// TestLiveCapture runs the lab live — a real client and server in namespaces, mirrored by
// the kernel — with each capture method of the real binary, and demands every exchange.
func TestLiveCapture(t *testing.T) {
	if testing.Short() {
		t.Skip("live lab skipped in -short mode")
	}
	cases := []struct {
		name string
		mode netlab.Mode
		args func(lab *netlab.Lab) []string
	}{
		{"afpacket vxlan", netlab.VXLAN, func(l *netlab.Lab) []string { return []string{"--capture", "afpacket", "-i", l.CollectorIf} }},
		{"afpacket raw", netlab.Raw, func(l *netlab.Lab) []string { return []string{"--capture", "afpacket", "-i", l.CollectorIf} }},
		{"udp vxlan", netlab.VXLAN, func(l *netlab.Lab) []string { return []string{"--capture", "udp"} }},
		{"xdp vxlan", netlab.VXLAN, func(l *netlab.Lab) []string { return []string{"--capture", "xdp", "-i", l.CollectorIf} }},
		{"xdp raw", netlab.Raw, func(l *netlab.Lab) []string { return []string{"--capture", "xdp", "-i", l.CollectorIf} }},
		{"auto vxlan", netlab.VXLAN, func(l *netlab.Lab) []string { return []string{"--capture", "auto", "-i", l.CollectorIf} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lab := netlab.New(t, netlab.Options{Mode: tc.mode, Huge: true})
			c := startLiveCollector(t, lab, tc.args(lab)...)
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
			traces := c.stop(t, len(truth))
			t.Logf("%d traces for %d exchanges served; collector said:\n%s", len(traces), len(truth), tail(c.stderr.String(), 8))
			checkTraces(t, truth, traces)
		})
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
