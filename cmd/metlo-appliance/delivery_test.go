package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/metlo-labs/metlo-appliance/exporter/metlotest"
)

const sampleExchanges = 157 // exchanges in the bundled sample capture

// offlineRun runs `collect --sample` to the Metlo backend at url with a spool in dir and
// returns collect's error and its stderr.
func offlineRun(t *testing.T, url, dir string, extra ...string) (string, error) {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(conf, nil, 0o600)
	t.Setenv("METLO_KEY", fullKey)
	root := newRootCmd()
	root.SetArgs(append([]string{"collect", "--sample", "--sink", "metlo:" + url, "--config", conf,
		"--credentials-file", "", "--spool-dir", dir, "--rate-limit", "0"}, extra...))
	var stderr strings.Builder
	root.SetErr(&stderr)
	err := root.ExecuteContext(context.Background())
	return stderr.String(), err
}

// Rows "backend down during an offline run" and "live, backend down, then restarted", at
// the command level over real HTTP: a run that cannot deliver keeps its traces in the
// spool and says so (exit 4); the next run delivers them with its own, exactly once.
func TestOfflineRunSpoolsAndNextRunDelivers(t *testing.T) {
	b := metlotest.New(fullKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	dir := t.TempDir()

	stderr, err := offlineRun(t, "http://"+addr, dir, "--offline-flush-timeout", "2s")
	if exitCode(err) != exitSpooled || !strings.Contains(stderr, "still_spooled=157") {
		t.Fatalf("run with the backend down: %v (exit %d)\n%s", err, exitCode(err), stderr)
	}

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: b}
	go srv.Serve(ln)
	defer srv.Close()
	stderr, err = offlineRun(t, "http://"+addr, dir)
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, stderr)
	}
	if st := b.Stats(); st.Stored+st.Skipped != 2*sampleExchanges {
		t.Fatalf("backend stored %d (+%d skipped), want both runs' %d", st.Stored, st.Skipped, 2*sampleExchanges)
	}
	if !strings.Contains(stderr, "replayed from the spool: 157") || !strings.Contains(stderr, "sent=314") {
		t.Fatalf("summary does not account for the replay:\n%s", stderr)
	}
}

// Row "backend down 30 s during an offline run" over real sockets (a shorter outage:
// the synctest version in exporter covers 30 s and 120 s).
func TestOfflineRunWaitsForTheBackend(t *testing.T) {
	b := metlotest.New(fullKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	go func() {
		time.Sleep(2 * time.Second)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("re-listen: %v", err)
			return
		}
		srv := &http.Server{Handler: b}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}()
	stderr, err := offlineRun(t, "http://"+addr, t.TempDir())
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if st := b.Stats(); st.Stored != sampleExchanges {
		t.Fatalf("stored %d of %d", st.Stored, sampleExchanges)
	}
}

// Row "every trace rejected (413 always)": the offline run exits 3, not 0.
func TestOfflineRunThatDropsExitsNonZero(t *testing.T) {
	b := metlotest.New(fullKey)
	b.MaxBody = 50
	srv := httptest.NewServer(b)
	defer srv.Close()
	stderr, err := offlineRun(t, srv.URL, t.TempDir())
	if exitCode(err) != exitDropped || !strings.Contains(stderr, "dropped_too_large=157") {
		t.Fatalf("exit %d (%v), want %d\n%s", exitCode(err), err, exitDropped, stderr)
	}
}

// Row "live, backend down, then the service is restarted" with a real kill: a live
// collector (the real binary, UDP capture, no root needed) receives the sample's VXLAN
// traffic while its backend is down and is SIGKILLed; the next run delivers what the
// killed one had spooled.
func TestKilledCollectorsSpoolIsDelivered(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "config.yaml")
	os.WriteFile(conf, nil, 0o600)
	vxlan, geneve := freeUDPPort(t), freeUDPPort(t)
	metricsAddr, backendAddr := freeTCPAddr(t), freeTCPAddr(t) // nothing listens on the backend's yet
	spoolDir := filepath.Join(dir, "spool")
	cmd := exec.Command(bin, "collect", "--capture", "udp", "--vxlan-ports", strconv.Itoa(vxlan), "--geneve-ports", strconv.Itoa(geneve),
		"--sink", "metlo:http://"+backendAddr, "--spool-dir", spoolDir, "--metrics-addr", metricsAddr, "--rate-limit", "0",
		"--config", conf, "--credentials-file", "")
	cmd.Env = append(os.Environ(), "METLO_KEY="+fullKey)
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// Metrics are served before the UDP sockets are bound: wait for the capture itself, or
	// the first datagrams meet a closed port (seen once under load).
	waitUntil(t, 20*time.Second, func() bool { return metricValue(t, metricsAddr, "metlo_appliance_capture_up") == 1 }, "capture up", &logs)
	sendSampleVXLAN(t, vxlan)
	sink := `metlo_appliance_exporter_queue_traces{sink="metlo:http://` + backendAddr + `"}`
	var spooled int
	waitUntil(t, 30*time.Second, func() bool {
		spooled = metricValue(t, metricsAddr, sink)
		return spooled >= sampleExchanges-5 // a few may wait for their flow to close
	}, "traces in the spool", &logs)
	time.Sleep(time.Second) // past the spool's 200 ms flush interval
	spooled = metricValue(t, metricsAddr, sink)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	b := metlotest.New(fullKey)
	ln, err := net.Listen("tcp", backendAddr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: b}
	go srv.Serve(ln)
	defer srv.Close()
	stderr, err := offlineRun(t, "http://"+backendAddr, spoolDir)
	if err != nil {
		t.Fatalf("next run: %v\n%s", err, stderr)
	}
	if st := b.Stats(); st.Stored != spooled+sampleExchanges {
		t.Fatalf("backend stored %d, want the killed run's %d plus this run's %d\n%s", st.Stored, spooled, sampleExchanges, stderr)
	}
	t.Logf("killed with %d traces spooled; all delivered by the next run", spooled)
}

func freeUDPPort(t *testing.T) int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func freeTCPAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitUntil(t *testing.T, d time.Duration, ok func() bool, what string, logs *strings.Builder) {
	t.Helper()
	for deadline := time.Now().Add(d); !ok(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v\n%s", what, d, logs.String())
		}
	}
}

// metricValue reads one sample from /metrics (0 when absent).
func metricValue(t *testing.T, addr, series string) int {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	return 0
}

// sendSampleVXLAN replays the bundled capture's VXLAN datagrams to port on loopback.
func sendSampleVXLAN(t *testing.T, port int) {
	r, err := pcapgo.NewReader(bytes.NewReader(sampleCapture))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sent := 0
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		p := gopacket.NewPacket(data, r.LinkType(), gopacket.Default)
		udp, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if !ok || udp.DstPort != 4789 {
			continue
		}
		conn.Write(udp.Payload)
		sent++
		if sent%50 == 0 {
			time.Sleep(5 * time.Millisecond) // stay within the socket buffer
		}
	}
	if sent == 0 {
		t.Fatal("no VXLAN datagrams in the sample")
	}
}
