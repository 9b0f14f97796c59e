package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSystemdNotify runs the collector as systemd would run a Type=notify service with a
// watchdog: NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID set. It must say READY=1 (with a
// status line) once its capture is open, ping WATCHDOG=1 while it runs, say STOPPING=1 when
// told to stop, and keep pinging while it flushes queued traces.
func TestSystemdNotify(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conf := filepath.Join(dir, "config.yaml")
	os.WriteFile(conf, nil, 0o600)
	// Traces for a backend that is down wait in memory: shutdown then spends flush-timeout
	// trying to deliver them, and the watchdog must keep being pinged meanwhile.
	vxlan := freeUDPPort(t)
	cmd := exec.Command(bin, "collect", "--capture", "udp", "--udp-bind", "127.0.0.1",
		"--vxlan-ports", strconv.Itoa(vxlan), "--geneve-ports", strconv.Itoa(freeUDPPort(t)),
		"--metrics-addr", "", "--sink", "metlo:http://"+freeTCPAddr(t), "--spool-dir", "", "--flush-timeout", "2s",
		"--config", conf, "--credentials-file", "")
	var logs strings.Builder
	cmd.Stderr = &logs
	// WATCHDOG_PID must be the collector's own pid, known only once it starts: a shell
	// sets it and execs the collector in its place.
	cmd.Path, cmd.Args = "/bin/sh", append([]string{"sh", "-c", `WATCHDOG_PID=$$ exec "$@"`, "sh", bin}, cmd.Args[1:]...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=400000", "METLO_KEY="+fullKey)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	var got []string
	read := func(until string, within time.Duration) {
		t.Helper()
		buf := make([]byte, 4096)
		deadline := time.Now().Add(within)
		for {
			conn.SetReadDeadline(deadline)
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("no %s from the collector within %v (got %q): %v\n%s", until, within, got, err, logs.String())
			}
			got = append(got, string(buf[:n]))
			if strings.Contains(string(buf[:n]), until) {
				return
			}
		}
	}
	read("READY=1", 20*time.Second)
	if last := got[len(got)-1]; !strings.Contains(last, "STATUS=capturing with udp") {
		t.Errorf("ready message %q has no status line", last)
	}
	start, pings := time.Now(), 0
	for pings < 3 {
		read("WATCHDOG=1", 2*time.Second)
		pings++
	}
	if el := time.Since(start); el > 1500*time.Millisecond {
		t.Errorf("3 watchdog pings took %v; WatchdogSec=400ms wants one every 200ms", el)
	}
	sendSampleVXLAN(t, vxlan)
	time.Sleep(500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	read("STOPPING=1", 20*time.Second)
	stopping := time.Now()
	for range 3 { // within the 2 s flush
		read("WATCHDOG=1", 2*time.Second)
	}
	if el := time.Since(stopping); el > 1900*time.Millisecond {
		t.Errorf("3 pings during the shutdown flush took %v", el)
	}
	cmd.Wait() // exits 0 or, with traces dropped at shutdown, not: either is fine here
	if !strings.Contains(logs.String(), "dropped_shutdown") {
		t.Errorf("no traces were waiting at shutdown, so the flush was not exercised:\n%s", logs.String())
	}
}
