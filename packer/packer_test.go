// Package packer holds the image build (Packer templates, systemd units, install script);
// its tests check them with the real tools: packer, systemd-analyze, shellcheck.
package packer

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metlo-labs/metlo-appliance/test/netnstest"
)

// need skips the test when a tool is missing (CI installs packer, shellcheck and systemd).
func need(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("%s not installed (apt-get install %s)", tool, map[string]string{"systemd-analyze": "systemd"}[tool]+tool)
	}
	return p
}

// run runs a command and fails the test with its output when it fails.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPackerFmt(t *testing.T) {
	need(t, "packer")
	for _, dir := range []string{".", "plugins"} {
		run(t, dir, []string{"CHECKPOINT_DISABLE=1"}, "packer", "fmt", "-check", "-diff", ".")
	}
}

// TestPackerValidate validates the templates offline with Debian's Packer 1.6.6 (built-in
// builders) — which also proves the modern plugin block is not among them.
func TestPackerValidate(t *testing.T) {
	need(t, "packer")
	env := []string{"CHECKPOINT_DISABLE=1", "PACKER_CONFIG_DIR=" + t.TempDir()}
	run(t, ".", env, "packer", "validate", "-var", "gcp_project=my-project", ".")
	run(t, ".", env, "packer", "validate", "-var", "gcp_project=my-project", "-var", "arch=arm64", "-var", "image_version=v1.2.3+rc1",
		"-var", "debian_release=12", "-var", "aws_imdsv2_only=false", "-var", `aws_ami_regions=["eu-west-1"]`, ".")
	run(t, ".", env, "packer", "validate", "-only=amazon-ebs.aws", ".") // an AMI needs no GCP project
	fails := func(why string, args ...string) {
		t.Helper()
		cmd := exec.Command("packer", append(append([]string{"validate"}, args...), ".")...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), why) {
			t.Errorf("validate %v: %v, want an error saying %q:\n%s", args, err, why, out)
		}
	}
	fails("no_such_variable", "-var", "gcp_project=p", "-var", "no_such_variable=1")
	fails("project_id must be specified") // the GCE image without a project: no made-up default
}

// TestPluginsPinned: the plugins a modern Packer installs are pinned to their major version.
func TestPluginsPinned(t *testing.T) {
	b, err := os.ReadFile("plugins/required_plugins.pkr.hcl")
	if err != nil {
		t.Fatal(err)
	}
	versions := regexp.MustCompile(`(?m)^\s*version\s*=\s*"([^"]*)"`).FindAllStringSubmatch(string(b), -1)
	if len(versions) != 2 {
		t.Fatalf("%d plugin versions, want amazon and googlecompute", len(versions))
	}
	for _, v := range versions {
		if !regexp.MustCompile(`^~> [1-9][0-9]*\.[0-9]+$`).MatchString(v[1]) {
			t.Errorf("plugin version %q is not pinned to a major version (~> X.Y)", v[1])
		}
	}
}

// TestAMIIMDSv2Script runs the post-processor script against a stand-in AWS CLI: it finds
// the AMI by name in every region and makes each IMDSv2-only; it fails when an AMI is
// missing or the CLI is not there, and does nothing when told not to.
func TestAMIIMDSv2Script(t *testing.T) {
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	fake := filepath.Join(dir, "aws")
	// describe-images answers an id per region, None for "nowhere-1".
	script := "#!/bin/sh\necho \"$*\" >> " + calls + "\ncase \"$*\" in\n*describe-images*nowhere-1*|*nowhere-1*describe-images*) echo None;;\n" +
		"*describe-images*--region\\ us-east-1*) echo ami-0aaa;;\n*describe-images*--region\\ eu-west-1*) echo ami-0bbb;;\nesac\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	sh := func(env ...string) (string, error) {
		cmd := exec.Command("sh", "scripts/ami-imdsv2.sh")
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := sh("AWS="+fake, "AMI_NAME=metlo-appliance-v1-amd64-1", "REGIONS=us-east-1 eu-west-1")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got, _ := os.ReadFile(calls)
	for _, want := range []string{
		"ec2 describe-images --region us-east-1 --owners self --filters Name=name,Values=metlo-appliance-v1-amd64-1 --query Images[0].ImageId --output text",
		"ec2 modify-image-attribute --region us-east-1 --image-id ami-0aaa --imds-support v2.0",
		"ec2 modify-image-attribute --region eu-west-1 --image-id ami-0bbb --imds-support v2.0",
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("no call %q in:\n%s", want, got)
		}
	}
	if out, err := sh("AWS="+fake, "AMI_NAME=x", "REGIONS=us-east-1 nowhere-1"); err == nil || !strings.Contains(out, "no AMI named x in nowhere-1") {
		t.Errorf("a missing AMI: %v\n%s", err, out)
	}
	if out, err := sh("AWS="+filepath.Join(dir, "no-such-aws"), "AMI_NAME=x", "REGIONS=us-east-1"); err == nil || !strings.Contains(out, "aws_imdsv2_only=false") {
		t.Errorf("no AWS CLI: %v\n%s", err, out)
	}
	os.Remove(calls)
	if out, err := sh("AWS="+fake, "AMI_NAME=x", "REGIONS=us-east-1", "IMDSV2_ONLY=false"); err != nil || !strings.Contains(out, "skipped") {
		t.Errorf("IMDSV2_ONLY=false: %v\n%s", err, out)
	}
	if out, err := sh("AWS="+fake, "AMI_NAME=x", "REGIONS=us-east-1", "PACKER_BUILDER_TYPE=googlecompute"); err != nil {
		t.Errorf("a GCE build: %v\n%s", err, out)
	}
	if _, err := os.Stat(calls); err == nil {
		t.Error("IMDSV2_ONLY=false or a GCE build still called the AWS CLI")
	}
}

func TestShellcheck(t *testing.T) {
	need(t, "shellcheck")
	scripts, _ := filepath.Glob("scripts/*.sh")
	more, _ := filepath.Glob("files/*.sh")
	scripts = append(scripts, more...)
	if len(scripts) < 2 {
		t.Fatalf("scripts not found: %v", scripts)
	}
	run(t, ".", nil, "shellcheck", append([]string{"--severity=style"}, scripts...)...)
}

// rootWithHostUnits makes a scratch root holding the host's own units (sysinit.target & co,
// which verify resolves dependencies against) and executables at the paths our units run.
func rootWithHostUnits(t *testing.T, root string) string {
	t.Helper()
	unitDir := filepath.Join(root, "usr/lib/systemd/system")
	if err := os.MkdirAll(unitDir, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, ".", nil, "cp", "-an", "/usr/lib/systemd/system/.", unitDir)
	for _, exe := range []string{"usr/bin/metlo-appliance", "usr/lib/metlo-appliance/set-mtu"} {
		p := filepath.Join(root, exe)
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return unitDir
}

// verifyUnits runs systemd-analyze verify; any output (unknown keys are only warnings) fails.
func verifyUnits(t *testing.T, root string, units []string) {
	t.Helper()
	args := append([]string{"verify", "--root=" + root}, units...)
	out := run(t, ".", []string{"SYSTEMD_LOG_COLOR=0"}, "systemd-analyze", args...)
	if strings.TrimSpace(out) != "" {
		t.Fatalf("systemd-analyze verify complained:\n%s", out)
	}
}

func TestSystemdVerify(t *testing.T) {
	need(t, "systemd-analyze")
	if _, err := os.Stat("/usr/lib/systemd/system/sysinit.target"); err != nil {
		t.Skip("host has no systemd units to verify against")
	}
	root := t.TempDir()
	unitDir := rootWithHostUnits(t, root)
	ours, _ := filepath.Glob("files/systemd/*")
	if len(ours) < 5 {
		t.Fatalf("units not found: %v", ours)
	}
	var units []string
	for _, u := range ours {
		dst := filepath.Join(unitDir, filepath.Base(u))
		run(t, ".", nil, "cp", u, dst)
		units = append(units, dst)
	}
	verifyUnits(t, root, units)

	// The checker itself must catch a misspelt directive and a missing binary.
	bad := filepath.Join(unitDir, "metlo-appliance-bad.service")
	b, _ := os.ReadFile("files/systemd/metlo-appliance.service")
	os.WriteFile(bad, bytes.Replace(b, []byte("NoNewPrivileges="), []byte("NoNewPrivilege="), 1), 0o644)
	cmd := exec.Command("systemd-analyze", "verify", "--root="+root, bad)
	if out, _ := cmd.CombinedOutput(); !strings.Contains(string(out), "NoNewPrivilege") {
		t.Errorf("verify missed a misspelt key: %s", out)
	}
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// buildBinary builds the real binary once per test run, with the environment `go test`
// used, so the build cache is warm.
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: builds the binary")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "metlo-appliance-bin-")
		if buildErr != nil {
			return
		}
		build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(buildDir, "metlo-appliance"), "../cmd/metlo-appliance")
		build.Env = append(os.Environ(), "CGO_ENABLED=0") // static, as make build makes it for the image
		out, err := build.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "metlo-appliance")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// TestInstallIntoFreshRoot runs the image's install script into a scratch root seeded with
// this machine's account databases and checks the files, user and enabled units it leaves.
func TestInstallIntoFreshRoot(t *testing.T) {
	netnstest.RequireRoot(t, "install sets file owners for the metlo user")
	need(t, "systemctl")
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"passwd", "group", "shadow", "gshadow"} {
		run(t, ".", nil, "cp", "-p", "/etc/"+f, filepath.Join(root, "etc", f))
	}
	bin := buildBinary(t)
	env := []string{"DESTDIR=" + root, "BIN=" + bin}
	run(t, ".", env, "sh", "scripts/install.sh")
	run(t, ".", env, "sh", "scripts/install.sh") // a second run changes nothing

	modes := map[string]os.FileMode{
		"usr/bin/metlo-appliance":                                  0o755,
		"usr/lib/metlo-appliance/set-mtu":                          0o755,
		"usr/share/metlo-appliance/config.yaml":                    0o644,
		"usr/lib/sysctl.d/60-metlo-appliance.conf":                 0o644,
		"usr/lib/sysusers.d/metlo-appliance.conf":                  0o644,
		"usr/lib/systemd/system/metlo-appliance.service":           0o644,
		"usr/lib/systemd/system/metlo-appliance-config.service":    0o644,
		"usr/lib/systemd/system/metlo-appliance-provision.service": 0o644,
		"usr/lib/systemd/system/metlo-appliance-reconcile.service": 0o644,
		"usr/lib/systemd/system/metlo-appliance-reconcile.timer":   0o644,
		"usr/lib/systemd/system/metlo-appliance-mtu.service":       0o644,
		"etc/metlo-appliance":                                      os.ModeDir | 0o750,
		"var/lib/metlo-appliance":                                  os.ModeDir | 0o750,
	}
	for p, want := range modes {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			t.Errorf("missing %s: %v", p, err)
			continue
		}
		if fi.Mode()&(os.ModeDir|os.ModePerm) != want {
			t.Errorf("%s mode %v, want %v", p, fi.Mode(), want)
		}
	}

	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	var uid string
	n := 0
	for _, line := range strings.Split(string(passwd), "\n") {
		f := strings.Split(line, ":")
		if len(f) == 7 && f[0] == "metlo" {
			n++
			uid = f[2]
			if f[5] != "/var/lib/metlo-appliance" || f[6] != "/usr/sbin/nologin" {
				t.Errorf("metlo user: %q", line)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d metlo users in passwd", n)
	}
	group, _ := os.ReadFile(filepath.Join(root, "etc/group"))
	if !strings.Contains("\n"+string(group), "\nmetlo:x:") {
		t.Error("no metlo group")
	}
	for _, d := range []string{"etc/metlo-appliance", "var/lib/metlo-appliance"} {
		out := run(t, ".", nil, "stat", "-c", "%u:%g", filepath.Join(root, d))
		if strings.TrimSpace(out) != uid+":"+uid {
			t.Errorf("%s owned by %s, want metlo (%s)", d, out, uid)
		}
	}
	for _, l := range []string{
		"multi-user.target.wants/metlo-appliance.service", "multi-user.target.wants/metlo-appliance-config.service",
		"multi-user.target.wants/metlo-appliance-provision.service", "multi-user.target.wants/metlo-appliance-mtu.service",
		"timers.target.wants/metlo-appliance-reconcile.timer",
	} {
		target, err := os.Readlink(filepath.Join(root, "etc/systemd/system", l))
		if err != nil || target != "/usr/lib/systemd/system/"+filepath.Base(l) {
			t.Errorf("%s not enabled: %q %v", l, target, err)
		}
	}
	if out := run(t, ".", nil, filepath.Join(root, "usr/bin/metlo-appliance"), "boot", "--help"); !strings.Contains(out, "render-config") {
		t.Errorf("installed binary has no boot command:\n%s", out)
	}

	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		rootWithHostUnits(t, root)
		units, _ := filepath.Glob(filepath.Join(root, "usr/lib/systemd/system/metlo-appliance*"))
		verifyUnits(t, root, units)
	}
}

// TestSetMTU runs set-mtu against fake sysfs trees with a stand-in for ip(8).
func TestSetMTU(t *testing.T) {
	gce := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" || r.URL.Path != "/computeMetadata/v1/instance/network-interfaces/0/mtu" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, "8896")
	}))
	defer gce.Close()
	_, curlErr := exec.LookPath("curl")
	cases := []struct {
		name, vendor, override, current, want string
	}{
		{"aws", "Amazon EC2", "", "1500", "link set dev ens5 mtu 9001"},
		{"aws already", "Amazon EC2", "", "9001", ""},
		{"gcp", "Google", "", "1460", "link set dev ens5 mtu 8896"},
		{"override", "Amazon EC2", "3498\n", "9001", "link set dev ens5 mtu 3498"},
		{"elsewhere", "QEMU", "", "1500", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.vendor == "Google" && curlErr != nil {
				t.Skip("curl not installed")
			}
			dir := t.TempDir()
			files := map[string]string{
				"sys/class/dmi/id/sys_vendor": c.vendor, "sys/class/net/ens5/mtu": c.current,
				"route": "Iface\tDestination\tGateway\nens5\t00000000\t0100000A\n",
				"ip":    "#!/bin/sh\necho \"$@\" >> " + filepath.Join(dir, "ip.log") + "\n",
			}
			if c.override != "" {
				files["etc/mtu"] = c.override
			}
			for p, v := range files {
				os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
				if err := os.WriteFile(filepath.Join(dir, p), []byte(v), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			run(t, ".", []string{"SYSFS=" + dir + "/sys", "ETC=" + dir + "/etc", "ROUTES=" + dir + "/route",
				"IP=" + dir + "/ip", "METADATA=" + gce.URL}, "sh", "files/set-mtu.sh")
			got, _ := os.ReadFile(filepath.Join(dir, "ip.log"))
			if strings.TrimSpace(string(got)) != c.want {
				t.Errorf("ip called with %q, want %q", got, c.want)
			}
		})
	}
}

// TestSysctls checks every fixed key in the sysctl file exists on this kernel.
func TestSysctls(t *testing.T) {
	b, err := os.ReadFile("files/sysctl.d/60-metlo-appliance.conf")
	if err != nil {
		t.Fatal(err)
	}
	keys := 0
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") || strings.Contains(k, "*") {
			continue
		}
		keys++
		p := "/proc/sys/" + strings.ReplaceAll(strings.TrimSpace(k), ".", "/")
		if _, err := os.Stat(p); err != nil {
			t.Errorf("sysctl %s (= %s) does not exist here: %v", strings.TrimSpace(k), strings.TrimSpace(v), err)
		}
	}
	if keys < 4 || !strings.Contains(string(b), "net.ipv4.conf.all.rp_filter = 0") {
		t.Errorf("sysctl file lacks the rp_filter settings (%d keys)", keys)
	}
}

// unitCaps reads the collector unit's AmbientCapabilities as setpriv names (bpf, net_admin…).
func unitCaps(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("files/systemd/metlo-appliance.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "AmbientCapabilities="); ok {
			var caps []string
			for _, c := range strings.Fields(v) {
				caps = append(caps, strings.ToLower(strings.TrimPrefix(c, "CAP_")))
			}
			return caps
		}
	}
	t.Fatal("collector unit has no AmbientCapabilities")
	return nil
}

// TestCollectorCapabilities runs the real collector as an unprivileged user holding only
// the unit's capabilities (as systemd grants them: ambient, bounding set, no new privileges)
// on a veth in a fresh network namespace: native XDP attaches with them, AF_PACKET needs only
// CAP_NET_RAW, and XDP without CAP_BPF fails — so the set is both sufficient and needed.
func TestCollectorCapabilities(t *testing.T) {
	netnstest.Require(t, "setpriv", "curl")
	bin := buildBinary(t)
	ns := netnstest.Add(t, "mcaps")
	netnstest.Veth(t, ns, "v0", ns, "v1", 0)

	caps := unitCaps(t)
	start := func(capture string, caps []string) (ready bool, log string) {
		set := "-all"
		for _, c := range caps {
			set += ",+" + c
		}
		port := 9700 + len(caps)*10 + len(capture)
		cmd := exec.Command("ip", "netns", "exec", ns, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
			"--inh-caps="+set, "--ambient-caps="+set, "--bounding-set="+set, "--no-new-privs",
			bin, "collect", "--capture", capture, "-i", "v0", "--metrics-addr", "127.0.0.1:"+strconv.Itoa(port),
			"--sink", "jsonl:-", "--credentials-file", "", "--config", "/dev/null")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		defer func() { cmd.Process.Signal(os.Interrupt); <-exited }()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			select {
			case <-exited:
				return false, out.String()
			default:
			}
			code, _ := exec.Command("ip", "netns", "exec", ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
				"http://127.0.0.1:"+strconv.Itoa(port)+"/readyz").Output()
			if string(code) == "200" {
				return true, out.String()
			}
		}
		return false, out.String()
	}

	if ok, log := start("xdp", caps); !ok || !strings.Contains(log, "mode=native") {
		t.Errorf("xdp with %v: ready=%v\n%s", caps, ok, log)
	}
	if ok, log := start("afpacket", []string{"net_raw"}); !ok {
		t.Errorf("afpacket with CAP_NET_RAW only: not ready\n%s", log)
	}
	var noBPF []string
	for _, c := range caps {
		if c != "bpf" {
			noBPF = append(noBPF, c)
		}
	}
	if ok, log := start("xdp", noBPF); ok {
		t.Errorf("xdp started without CAP_BPF:\n%s", log)
	}
}

// TestUnitCommandLinesParse runs each unit's metlo-appliance command line with --help: a
// flag the binary does not take, or a value it cannot parse (--max-time 8min), fails here
// instead of at boot.
func TestUnitCommandLinesParse(t *testing.T) {
	bin := buildBinary(t)
	units, _ := filepath.Glob("files/systemd/*.service")
	n := 0
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			args, ok := strings.CutPrefix(line, "ExecStart=/usr/bin/metlo-appliance ")
			if !ok {
				continue
			}
			n++
			out, err := exec.Command(bin, append(strings.Fields(args), "--help")...).CombinedOutput()
			if err != nil {
				t.Errorf("%s: metlo-appliance %s: %v\n%s", filepath.Base(u), args, err, out)
			}
		}
	}
	if n < 4 {
		t.Fatalf("only %d metlo-appliance command lines found in the units", n)
	}
}

// TestUnitsAreHardened scores every unit with systemd-analyze security: each must stay
// well inside "OK" (the collector, which needs capabilities and BPF, included).
func TestUnitsAreHardened(t *testing.T) {
	need(t, "systemd-analyze")
	units, _ := filepath.Glob("files/systemd/*.service")
	if len(units) < 5 {
		t.Fatalf("units not found: %v", units)
	}
	for _, u := range units {
		out := run(t, ".", []string{"SYSTEMD_LOG_COLOR=0"}, "systemd-analyze", "security", "--offline=true", "--no-pager", u)
		i := strings.LastIndex(out, "Overall exposure level for ")
		if i < 0 {
			t.Fatalf("%s: no exposure level in:\n%s", u, out)
		}
		f := strings.Fields(strings.SplitN(out[i:], ":", 2)[1])
		score, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			t.Fatalf("%s: %q", u, out[i:])
		}
		if score > 2.0 {
			t.Errorf("%s: exposure %.1f, want at most 2.0:\n%s", filepath.Base(u), score, out)
		}
		t.Logf("%s: exposure %.1f", filepath.Base(u), score)
	}
}
