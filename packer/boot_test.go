package packer

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metlo-labs/metlo-appliance/test/netnstest"
)

// TestImageBootsUnderSystemd boots a real systemd (systemd-nspawn) on a root made by the
// image's install script — this machine's /usr below it, the units and binary on top —
// in a network namespace with a veth, and checks the units do what the docs say with all
// their sandboxing on: the MTU unit sets the MTU as the metlo user with CAP_NET_ADMIN
// alone; the collector (SystemCallFilter, MemoryDenyWriteExecute, PrivateDevices,
// ProtectProc, ProcSubset, NoNewPrivileges, ambient capabilities) loads and attaches native
// XDP, reports READY=1 and a status, pings the watchdog, exports the mirrored traffic
// replayed into the veth; a hung collector is killed by the watchdog and restarted; a
// configuration error (exit 78) is not restarted.
func TestImageBootsUnderSystemd(t *testing.T) {
	netnstest.Require(t, "systemd-nspawn", "nsenter", "tcpreplay", "curl", "systemctl")
	if _, err := os.Stat("/usr/lib/systemd/systemd"); err != nil {
		t.Skip("no systemd on this machine to boot")
	}
	bin := buildBinary(t)
	root := t.TempDir()
	for _, d := range []string{"etc", "proc", "sys", "dev", "run", "tmp", "var/log", "root"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"passwd", "group", "shadow", "gshadow", "os-release"} {
		run(t, ".", nil, "cp", "-pL", "/etc/"+f, filepath.Join(root, "etc", f))
	}
	run(t, ".", nil, "cp", "-a", "/etc/alternatives", filepath.Join(root, "etc")) // awk, …
	for _, l := range []string{"bin", "sbin", "lib", "lib64"} {
		if err := os.Symlink("usr/"+l, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(root, "etc/machine-id"), nil, 0o444)
	run(t, ".", []string{"DESTDIR=" + root, "BIN=" + bin}, "sh", "scripts/install.sh")
	os.Symlink("/usr/lib/systemd/system/multi-user.target", filepath.Join(root, "etc/systemd/system/default.target"))

	// The appliance's own settings, as an operator leaves them beside the rendered config.
	etc := filepath.Join(root, "etc/metlo-appliance")
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(etc, "config.local.yaml"), "capture: xdp\ninterface: v0\nmetrics-addr: 127.0.0.1:9731\nsink:\n  - jsonl:/var/lib/metlo-appliance/traces.jsonl\n")
	write(filepath.Join(etc, "mtu"), "1400\n")
	uid := strings.TrimSpace(run(t, ".", nil, "awk", "-F:", `$1 == "metlo" { print $3 ":" $4 }`, filepath.Join(root, "etc/passwd")))
	run(t, ".", nil, "chown", "-R", uid, etc)
	// Only the watchdog's timing is changed, so a hang is noticed within seconds.
	write(filepath.Join(root, "etc/systemd/system/metlo-appliance.service.d/test.conf"), "[Service]\nWatchdogSec=5s\nTimeoutAbortSec=2s\n")

	ns := netnstest.Add(t, "mboot")
	netnstest.Veth(t, ns, "v0", ns, "v1", 0)
	netnstest.IP(t, "-n", ns, "addr", "add", "10.201.0.1/24", "dev", "v0")
	netnstest.IP(t, "-n", ns, "route", "add", "default", "via", "10.201.0.2")

	ctx, cancel := context.WithCancel(context.Background())
	nspawn := exec.CommandContext(ctx, "systemd-nspawn", "-D", root, "--overlay-ro=/usr:"+filepath.Join(root, "usr")+":/usr",
		"--register=no", "--keep-unit", "--network-namespace-path=/run/netns/"+ns,
		"--capability=CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN,CAP_NET_RAW", "--system-call-filter=bpf", "-b", "--console=pipe")
	var console bytes.Buffer
	nspawn.Stdout, nspawn.Stderr = &console, &console
	if err := nspawn.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		nspawn.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { nspawn.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cancel()
			<-done
		}
		cancel()
	})

	// The container's PID 1 is nspawn's child; systemctl reaches it through its mounts.
	var pid1 string
	waitFor(t, 20*time.Second, "the container's systemd", &console, func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", nspawn.Process.Pid, nspawn.Process.Pid))
		pid1 = strings.TrimSpace(string(b))
		return pid1 != ""
	})
	inside := func(args ...string) (string, error) {
		out, err := exec.Command("nsenter", append([]string{"-t", pid1, "-m", "-p", "--"}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	show := func(unit, prop string) string {
		out, _ := inside("systemctl", "show", unit, "-p", prop, "--value")
		return out
	}
	journal := func() string {
		out, _ := inside("journalctl", "--no-pager", "-b", "-u", "metlo-appliance*")
		return out
	}
	var log bytes.Buffer
	waitFor(t, 60*time.Second, "metlo-appliance.service active", &log, func() bool {
		log.Reset()
		log.WriteString(journal())
		return show("metlo-appliance.service", "ActiveState") == "active"
	})

	for unit, want := range map[string]string{"metlo-appliance-config.service": "active", "metlo-appliance-mtu.service": "active",
		"metlo-appliance-provision.service": "active", "metlo-appliance-reconcile.timer": "active"} {
		if got := show(unit, "ActiveState"); got != want {
			t.Errorf("%s is %s, want %s\n%s", unit, got, want, journal())
		}
	}
	if out := netnstest.IP(t, "-n", ns, "link", "show", "v0"); !strings.Contains(out, "mtu 1400") {
		t.Errorf("the MTU unit did not set v0's MTU to 1400: %s\n%s", out, journal())
	}
	// Type=notify: active only after READY=1; the status line and the watchdog pings arrive.
	if st := show("metlo-appliance.service", "StatusText"); st != "capturing with xdp (native) on v0" {
		t.Errorf("StatusText %q", st)
	}
	if !strings.Contains(journal(), `msg="xdp capture attached" interface=v0 mode=native`) {
		t.Errorf("native XDP did not attach in the sandbox:\n%s", journal())
	}
	main := show("metlo-appliance.service", "MainPID")
	status, _ := inside("cat", "/proc/"+main+"/status")
	for _, want := range []string{"NoNewPrivs:\t1", "Seccomp:\t2", "CapEff:\t000000c000003000"} { // bpf, perfmon, net_admin, net_raw
		if !strings.Contains(status, want) {
			t.Errorf("the collector's /proc status lacks %q:\n%s", want, status)
		}
	}
	if uidLine := "Uid:\t" + strings.Split(uid, ":")[0]; !strings.Contains(status, uidLine) {
		t.Errorf("the collector does not run as metlo (%s):\n%s", uidLine, status)
	}
	time.Sleep(6 * time.Second) // longer than WatchdogSec: the pings keep it running
	if n := show("metlo-appliance.service", "NRestarts"); n != "0" || show("metlo-appliance.service", "WatchdogTimestampMonotonic") == "0" {
		t.Errorf("watchdog: %s restarts, last ping %s\n%s", n, show("metlo-appliance.service", "WatchdogTimestampMonotonic"), journal())
	}

	// Mirrored traffic replayed into the veth becomes traces.
	netnstest.Exec(t, ns, "tcpreplay", "-q", "-i", "v1", "../cmd/metlo-appliance/sample.pcap")
	traces := filepath.Join(root, "var/lib/metlo-appliance/traces.jsonl")
	waitFor(t, 20*time.Second, "traces from the replayed capture", &log, func() bool {
		b, _ := os.ReadFile(traces)
		return bytes.Count(b, []byte("\n")) >= 150 // the sample's 157, less connections still open
	})
	metrics := netnstest.Exec(t, ns, "curl", "-s", "http://127.0.0.1:9731/metrics")
	if !strings.Contains(metrics, "metlo_appliance_capture_up 1") || !strings.Contains(metrics, "metlo_appliance_build_info{") {
		t.Errorf("metrics from the sandboxed collector:\n%s", metrics)
	}

	// A hung collector misses its pings: systemd kills and restarts it.
	inside("kill", "-STOP", main)
	waitFor(t, 30*time.Second, "a restart after the watchdog fired", &log, func() bool {
		log.Reset()
		log.WriteString(journal())
		return show("metlo-appliance.service", "NRestarts") == "1" && show("metlo-appliance.service", "ActiveState") == "active"
	})
	if !strings.Contains(journal(), "Watchdog timeout") {
		t.Errorf("no watchdog timeout in the journal:\n%s", journal())
	}

	// A configuration error exits 78 and is not restarted (RestartPreventExitStatus=).
	inside("systemctl", "set-environment", "METLO_WORKERS=lots")
	inside("systemctl", "restart", "metlo-appliance.service")
	time.Sleep(7 * time.Second) // past RestartSec=5s
	if st, code, n := show("metlo-appliance.service", "ActiveState"), show("metlo-appliance.service", "ExecMainStatus"), show("metlo-appliance.service", "NRestarts"); st != "failed" || code != "78" || n != "0" {
		t.Errorf("after a configuration error: %s, exit %s, %s restarts; want failed, 78, 0\n%s", st, code, n, journal())
	}
	if !strings.Contains(journal(), `config: workers from environment variable METLO_WORKERS: "lots" is not a whole number`) {
		t.Errorf("the journal does not say what is wrong:\n%s", journal())
	}
}

// waitFor polls cond until it holds or the time is up, then fails with what log holds.
func waitFor(t *testing.T, within time.Duration, what string, log *bytes.Buffer, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v\n%s", what, within, tail(log.String(), 40))
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
