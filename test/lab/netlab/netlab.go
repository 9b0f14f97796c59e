// Package netlab builds the traffic-mirroring lab of test/lab/run.sh from Go tests: client,
// server and collector network namespaces, the server's veth mirrored by tc (u32 + mirred)
// into a kernel VXLAN device aimed at the collector or straight onto the collector's veth,
// and the lab HTTP server and client to drive real traffic with ground truth.
package netlab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/metlo-labs/metlo-appliance/test/netnstest"
)

// Mode says how mirrored frames reach the collector.
type Mode int

const (
	// VXLAN mirrors into a kernel VXLAN device (UDP 4789 to CollectorIP), like AWS.
	VXLAN Mode = iota
	// Raw mirrors the original frames onto the collector's veth, like GCP Packet Mirroring.
	Raw
)

// String names the mode.
func (m Mode) String() string {
	if m == Raw {
		return "raw"
	}
	return "vxlan"
}

// Options configure a lab.
type Options struct {
	Mode Mode
	VNI  uint32 // VXLAN network identifier; 0 means 4242
	Seed uint64 // labclient seed; 0 means 1
	// Huge adds the uncompressed 1 MiB download and upload to the client's run.
	Huge bool
	// ClientArgs are extra labclient flags (e.g. "-workers", "8").
	ClientArgs []string
	// OneWay mirrors only what the server receives (requests), like a mirror filter with
	// one direction or a load balancer sending a connection's halves to different
	// appliances: the asymmetric capture the appliance must report.
	OneWay bool
	// PathMTU, when set, is the MTU of the mirror's path to the collector (the server's
	// link to it and the collector's veth). The VXLAN device keeps MTU 1550 and sends
	// without DF, so below 1614 the kernel fragments every longer outer IPv4 packet, as a
	// small-MTU path between a mirror source and its target does. 0 keeps 1600: nothing
	// fragments. (In Raw mode, frames longer than the path MTU are lost, not fragmented.)
	PathMTU int
}

// Fixed lab addressing; every lab lives in its own namespaces, so labs never clash.
var (
	clientIP    = netip.MustParseAddr("10.200.1.1")
	serverIP    = netip.MustParseAddr("10.200.1.2")
	tapIP       = netip.MustParseAddr("10.200.2.1")
	collectorIP = netip.MustParseAddr("10.200.2.2")
)

const serverPort = 8080

// Lab is one running mirroring lab; t.Cleanup tears it down.
type Lab struct {
	// Mode and VNI are the mirroring in use.
	Mode Mode
	VNI  uint32
	// CollectorNetns is the collector's namespace name (as in `ip netns exec <name>`).
	CollectorNetns string
	// CollectorIf is the collector's veth, where every mirrored frame arrives.
	CollectorIf string
	// CollectorIP is the collector's address: the VXLAN remote in VXLAN mode.
	CollectorIP netip.Addr
	// MirrorIP is where the mirror comes from: the outer source of the VXLAN packets, on
	// the server namespace's link to the collector.
	MirrorIP netip.Addr
	// Server is the lab HTTP server's address (in the server namespace).
	Server netip.AddrPort
	// Client is the lab client's address.
	Client netip.Addr

	t            testing.TB
	opt          Options
	bin          string
	nsCli, nsSrv string
	cliIf, srvIf string
	tapIf        string
}

// New builds a lab or skips the test when not root, in -short mode or when the kernel lacks
// what it needs.
func New(t testing.TB, opt Options) *Lab {
	t.Helper()
	netnstest.Require(t, "tc")
	if opt.VNI == 0 {
		opt.VNI = 4242
	}
	if opt.Seed == 0 {
		opt.Seed = 1
	}
	ns := netnstest.NewLab(t, "cli", "srv", "col")
	p := ns.Prefix()
	l := &Lab{
		Mode: opt.Mode, VNI: opt.VNI,
		CollectorNetns: ns.NS("col"), CollectorIf: p + "k", CollectorIP: collectorIP, MirrorIP: tapIP,
		Server: netip.AddrPortFrom(serverIP, serverPort), Client: clientIP,
		t: t, opt: opt, bin: t.TempDir(),
		nsCli: ns.NS("cli"), nsSrv: ns.NS("srv"), cliIf: p + "c", srvIf: p + "s", tapIf: p + "t",
	}
	if err := l.build(); err != nil {
		t.Fatalf("netlab: %v", err)
	}
	if err := l.setup(); err != nil {
		if strings.Contains(err.Error(), "Operation not permitted") {
			t.Skipf("needs permission to create devices: %v", err)
		}
		t.Fatalf("netlab: %v", err)
	}
	t.Logf("netlab %s: collector %s in netns %s (%s), server %s", opt.Mode, l.CollectorIf, l.CollectorNetns, l.CollectorIP, l.Server)
	return l
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" { // set by `go test` for the binaries it runs
		return filepath.Join(root, "bin", "go")
	}
	return "/usr/local/go/bin/go"

}

// build compiles labserver and labclient into the test's temp dir.
func (l *Lab) build() error {
	const pkg = "github.com/metlo-labs/metlo-appliance/test/lab/"
	cmd := exec.Command(goTool(), "build", "-o", l.bin+string(os.PathSeparator), pkg+"labserver", pkg+"labclient")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build lab binaries: %w: %s", err, out)
	}
	return nil
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func (l *Lab) setup() error {
	pathMTU := "1600"
	if l.opt.PathMTU > 0 {
		pathMTU = strconv.Itoa(l.opt.PathMTU)
	}
	cmds := [][]string{
		{"ip", "link", "add", l.cliIf, "netns", l.nsCli, "type", "veth", "peer", "name", l.srvIf, "netns", l.nsSrv},
		{"ip", "link", "add", l.tapIf, "netns", l.nsSrv, "type", "veth", "peer", "name", l.CollectorIf, "netns", l.CollectorNetns},
		{"ip", "-n", l.nsCli, "addr", "add", clientIP.String() + "/24", "dev", l.cliIf},
		{"ip", "-n", l.nsSrv, "addr", "add", serverIP.String() + "/24", "dev", l.srvIf},
		{"ip", "-n", l.nsSrv, "addr", "add", tapIP.String() + "/24", "dev", l.tapIf},
		{"ip", "-n", l.CollectorNetns, "addr", "add", collectorIP.String() + "/24", "dev", l.CollectorIf},
		// 1600 by default: room for a 1514-byte frame plus VXLAN overhead, outer packets
		// never fragment.
		{"ip", "-n", l.nsSrv, "link", "set", l.tapIf, "mtu", pathMTU},
		{"ip", "-n", l.CollectorNetns, "link", "set", l.CollectorIf, "mtu", pathMTU},
	}
	for _, c := range cmds {
		if err := run(c...); err != nil {
			return err
		}
	}
	for _, d := range [][2]string{{l.nsCli, l.cliIf}, {l.nsSrv, l.srvIf}, {l.nsSrv, l.tapIf}, {l.CollectorNetns, l.CollectorIf}} {
		// No TSO/GSO/GRO: mirror wire-sized frames, not 64 KB super-frames. ethtool may be
		// missing; veths then keep their defaults, which the test below would notice.
		netnstest.NoOffloads(l.t, d[0], d[1])
		if err := run("ip", "-n", d[0], "link", "set", d[1], "up"); err != nil {
			return err
		}
	}
	target := l.tapIf
	if l.Mode == VXLAN {
		target = "vx0"
		args := []string{"ip", "-n", l.nsSrv, "link", "add", "vx0", "type", "vxlan", "id", strconv.FormatUint(uint64(l.VNI), 10),
			"local", tapIP.String(), "remote", collectorIP.String(), "dstport", "4789"}
		// Bound to its lower device, a VXLAN device's MTU may not exceed that device's MTU
		// less the overhead; with a small PathMTU it is left unbound (the route to the
		// collector still leaves through tapIf) so it keeps 1550 and fragments.
		if l.opt.PathMTU == 0 {
			args = append(args, "dev", l.tapIf)
		}
		if err := run(args...); err != nil {
			return err
		}
		if err := run("ip", "-n", l.nsSrv, "link", "set", "vx0", "mtu", "1550", "up"); err != nil {
			return err
		}
	}
	if err := run("ip", "netns", "exec", l.nsSrv, "tc", "qdisc", "add", "dev", l.srvIf, "clsact"); err != nil {
		return err
	}
	dirs := []string{"ingress", "egress"}
	if l.opt.OneWay {
		dirs = dirs[:1]
	}
	for _, dir := range dirs {
		if err := run("ip", "netns", "exec", l.nsSrv, "tc", "filter", "add", "dev", l.srvIf, dir, "protocol", "ip",
			"u32", "match", "ip", "protocol", "6", "0xff", "action", "mirred", "egress", "mirror", "dev", target); err != nil {
			return err
		}
	}
	// Pin the collector's MAC so the first mirrored frames never wait behind ARP.
	mac, err := l.collectorMAC()
	if err != nil {
		return err
	}
	return run("ip", "-n", l.nsSrv, "neigh", "replace", collectorIP.String(), "lladdr", mac, "dev", l.tapIf, "nud", "permanent")
}

func (l *Lab) collectorMAC() (string, error) {
	out, err := exec.Command("ip", "-n", l.CollectorNetns, "-j", "link", "show", "dev", l.CollectorIf).Output()
	if err != nil {
		return "", fmt.Errorf("show collector link: %w", err)
	}
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return "", fmt.Errorf("parse collector link: %v", err)
	}
	return links[0].Address, nil
}

// InCollector runs fn on a thread switched into the collector's namespace. Sockets fn opens
// belong to that namespace for their whole life, so open them inside fn; goroutines fn
// starts run elsewhere and stay in the test's own namespace.
func (l *Lab) InCollector(fn func() error) error {
	return netnstest.Do(l.CollectorNetns, fn)
}

// InServer runs fn on a thread switched into the server's namespace, which also holds the
// mirror's link to the collector (MirrorIP): sockets fn opens there reach the collector
// directly, as another host in the mirror's subnet would.
func (l *Lab) InServer(fn func() error) error {
	return netnstest.Do(l.nsSrv, fn)
}

// AddMirrorSideAddr gives the server namespace's link to the collector one more address,
// a stranger in the mirror's subnet.
func (l *Lab) AddMirrorSideAddr(prefix netip.Prefix) error {
	return run("ip", "-n", l.nsSrv, "addr", "add", prefix.String(), "dev", l.tapIf)
}

// CollectorCommand returns a command that runs inside the collector's namespace.
func (l *Lab) CollectorCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.CollectorNetns, name}, args...)...)
}

// ServerCommand returns a command that runs inside the server's namespace (any server
// listening on the Server address's IP is mirrored to the collector).
func (l *Lab) ServerCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.nsSrv, name}, args...)...)
}

// ClientCommand returns a command that runs inside the client's namespace.
func (l *Lab) ClientCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.nsCli, name}, args...)...)
}

// CollectorRxPackets returns the collector veth's received-packet counter.
func (l *Lab) CollectorRxPackets() (uint64, error) {
	out, err := exec.Command("ip", "-n", l.CollectorNetns, "-s", "-j", "link", "show", "dev", l.CollectorIf).Output()
	if err != nil {
		return 0, fmt.Errorf("show collector stats: %w", err)
	}
	var links []struct {
		Stats struct {
			RX struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return 0, fmt.Errorf("parse collector stats: %v", err)
	}
	return links[0].Stats.RX.Packets, nil
}

// RunTraffic starts the lab server, runs the client to completion, waits for the last
// mirrored frames, stops the server and returns the path of its ground truth (JSONL, see
// test/lab/groundtruth).
func (l *Lab) RunTraffic(ctx context.Context) (string, error) {
	dir := l.t.TempDir()
	truth := filepath.Join(dir, "groundtruth.jsonl")
	ready := filepath.Join(dir, "ready")
	var srvLog, cliLog bytes.Buffer
	srv := exec.Command("ip", "netns", "exec", l.nsSrv, filepath.Join(l.bin, "labserver"),
		"-addr", l.Server.String(), "-truth", truth, "-ready", ready)
	srv.Stdout, srv.Stderr = &srvLog, &srvLog
	if err := srv.Start(); err != nil {
		return "", fmt.Errorf("start labserver: %w", err)
	}
	stopServer := func() error {
		_ = srv.Process.Signal(unix.SIGTERM)
		return srv.Wait()
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return "", errors.Join(errors.New("labserver did not start: "+srvLog.String()), stopServer())
		}
	}
	args := append([]string{"netns", "exec", l.nsCli, filepath.Join(l.bin, "labclient"),
		"-addr", l.Server.String(), "-seed", strconv.FormatUint(l.opt.Seed, 10), "-huge=" + strconv.FormatBool(l.opt.Huge)},
		l.opt.ClientArgs...)
	cli := exec.CommandContext(ctx, "ip", args...)
	cli.Stdout, cli.Stderr = &cliLog, &cliLog
	cliErr := cli.Run()
	time.Sleep(500 * time.Millisecond) // the last mirrored frames (FINs) are still in flight
	srvErr := stopServer()
	if cliErr != nil {
		return "", fmt.Errorf("labclient: %w: %s", cliErr, cliLog.String())
	}
	if srvErr != nil {
		return "", fmt.Errorf("labserver: %w: %s", srvErr, srvLog.String())
	}
	return truth, nil
}
