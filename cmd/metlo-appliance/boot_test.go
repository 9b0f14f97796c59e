package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"go.yaml.in/yaml/v3"

	"github.com/metlo-labs/metlo-appliance/provision/aws/awsemu"
	"github.com/metlo-labs/metlo-appliance/provision/gcp/gcpemu"
)

const testMetloKey = "metlo.0123456789abcdefghijklmnopqrstuvwxyzABCD"

// bootIMDS adds user data and instance tags (IMDS paths the provisioner never reads) in
// front of the awsemu IMDS emulator, which still issues and checks every session token.
type bootIMDS struct {
	upstream string // the awsemu IMDS
	userData string
	tags     map[string]string
	vpcCIDRs string // vpc-ipv4-cidr-blocks of every interface, "" = not served
}

func (b *bootIMDS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	up, _ := url.Parse(b.upstream)
	tagPath, isTag := strings.CutPrefix(r.URL.Path, "/latest/meta-data/tags/instance")
	isCIDRs := b.vpcCIDRs != "" && strings.HasSuffix(r.URL.Path, "/vpc-ipv4-cidr-blocks")
	if r.URL.Path != "/latest/user-data" && !isTag && !isCIDRs {
		httputil.NewSingleHostReverseProxy(up).ServeHTTP(w, r)
		return
	}
	probe, _ := http.NewRequest(http.MethodGet, b.upstream+"/latest/meta-data/instance-id", nil)
	probe.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(probe)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		http.Error(w, "", resp.StatusCode)
		return
	}
	switch {
	case isCIDRs:
		fmt.Fprint(w, b.vpcCIDRs)
	case !isTag:
		fmt.Fprint(w, b.userData)
	case tagPath == "" || tagPath == "/":
		for _, k := range sortedMapKeys(b.tags) {
			fmt.Fprintln(w, k)
		}
	default:
		v, ok := b.tags[strings.TrimPrefix(tagPath, "/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, v)
	}
}

func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// collectorSettings are METLO_* settings that make the collector capture with plain UDP
// sockets on free ports (no root) and write traces to a file.
type collectorSettings struct {
	vxlan, geneve, metrics int
	traces                 string
}

func newCollectorSettings(t *testing.T) collectorSettings {
	return collectorSettings{freePort(t, "udp"), freePort(t, "udp"), freePort(t, "tcp"), filepath.Join(t.TempDir(), "traces.jsonl")}
}

func (c collectorSettings) values() map[string]string {
	return map[string]string{
		"METLO_CAPTURE": "udp", "METLO_VXLAN_PORTS": fmt.Sprint(c.vxlan), "METLO_GENEVE_PORTS": fmt.Sprint(c.geneve),
		"METLO_METRICS_ADDR": fmt.Sprintf("127.0.0.1:%d", c.metrics), "METLO_SINK": "jsonl:" + c.traces,
		"METLO_HOST": "http://metlo.internal:8081", "METLO_KEY": testMetloKey,
	}
}

// bootWorld is one boot command running in the background.
type bootWorld struct {
	dir  string
	out  *syncBuffer
	done chan error
	stop context.CancelFunc
}

func startBoot(t *testing.T, args ...string) *bootWorld {
	t.Helper()
	dir := t.TempDir()
	route := filepath.Join(dir, "route")
	if err := os.WriteFile(route, []byte("Iface\tDestination\tGateway\nens5\t0000000A\t00000000\neth9\t00000000\t0100000A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := &bootWorld{dir: dir, out: &syncBuffer{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	w.stop = cancel
	root := newRootCmd()
	root.SetArgs(append([]string{"boot", "--config-dir", filepath.Join(dir, "etc"), "--base-config", filepath.Join(dir, "none.yaml"),
		"--route-file", route, "--detect-timeout", "2s"}, args...))
	root.SetOut(w.out)
	root.SetErr(w.out)
	go func() { w.done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.done:
		case <-time.After(40 * time.Second):
			t.Error("boot did not stop")
		}
	})
	return w
}

// waitReady polls the collector's /readyz until it answers 200.
func (w *bootWorld) waitReady(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-w.done:
			t.Fatalf("boot ended before the collector was ready: %v\n%s", err, w.out.String())
		default:
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("collector never ready\n%s", w.out.String())
}

// replaySample sends the VXLAN payloads of the bundled mirror capture to the collector's
// UDP port and waits until the JSONL sink holds traces.
func replaySample(t *testing.T, port int, traces string) int {
	t.Helper()
	r, err := pcapgo.NewReader(bytes.NewReader(sampleCapture))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
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
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		if u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok && u.DstPort == 4789 {
			if _, err := conn.Write(u.Payload); err != nil {
				t.Fatal(err)
			}
			if sent++; sent%64 == 0 {
				time.Sleep(time.Millisecond) // stay under the socket buffer
			}
		}
	}
	if sent == 0 {
		t.Fatal("sample capture holds no VXLAN packets")
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(traces)
		if n := bytes.Count(b, []byte(`"request"`)); n > 0 {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no traces exported after replaying %d packets", sent)
	return 0
}

// readRendered loads the rendered files and checks their modes.
func readRendered(t *testing.T, dir string) (cfg map[string]any, prov bootSettings) {
	t.Helper()
	for _, name := range []string{"config.yaml", "provision.yaml"} {
		fi, err := os.Stat(filepath.Join(dir, "etc", name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "etc", "config.yaml"))
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "etc", "provision.yaml"))
	if err := yaml.Unmarshal(b, &prov); err != nil {
		t.Fatal(err)
	}
	return cfg, prov
}

// TestBootAWS boots against the EC2 and IMDS emulators: settings from user data and tags,
// config rendered, mirroring provisioned, collector started and exporting traces.
func TestBootAWS(t *testing.T) {
	w := newAWSWorld(t)
	web := w.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000001", Tags: map[string]string{"Name": "web"}})
	md := &bootIMDS{upstream: w.imdsURL}
	cs := newCollectorSettings(t)
	var ud strings.Builder
	ud.WriteString("#!/bin/sh\n# launched by the quick start\n")
	for k, v := range cs.values() {
		fmt.Fprintf(&ud, "export %s=%q\n", k, v)
	}
	fmt.Fprintf(&ud, "METLO_AWS_ENDPOINT=%s\nMETLO_AWS_MAX_ATTEMPTS=2\nMETLO_TARGET=eni\n", w.api)
	// The sessions get the sample capture's VNI, and the emulated VPC is loopback, where
	// the replay comes from: the tunnel accept lists boot derives must let it in.
	ud.WriteString("METLO_AWS_VNI=4242\n")
	md.userData = ud.String()
	md.vpcCIDRs = "127.0.0.0/8\n10.99.0.0/16"
	md.tags = map[string]string{"Name": "metlo", "METLO_SOURCES": "instance:i-0web000000000001", "METLO_TARGET": "nlb"}
	srv := httptest.NewServer(md)
	defer srv.Close()

	b := startBoot(t, "--aws-imds-endpoint", srv.URL, "--gcp-metadata-host", "127.0.0.1:1")
	b.waitReady(t, cs.metrics)

	cfg, prov := readRendered(t, b.dir)
	want := map[string]any{"capture": "udp", "interface": "eth9", "metlo-key": testMetloKey, "metlo-host": "http://metlo.internal:8081",
		"vxlan-ports": []any{cs.vxlan}, "sink": []any{"jsonl:" + cs.traces},
		"accept-vnis": []any{4242}, "accept-sources": []any{"127.0.0.0/8", "10.99.0.0/16"}}
	for k, v := range want {
		if fmt.Sprint(cfg[k]) != fmt.Sprint(v) {
			t.Errorf("config %s = %v, want %v", k, cfg[k], v)
		}
	}
	if prov.Cloud != "aws" || fmt.Sprint(prov.Provision["target"]) != "[nlb]" || fmt.Sprint(prov.Provision["health-port"]) != fmt.Sprintf("[%d]", cs.metrics) {
		t.Errorf("provision settings: %+v (tags must win over user data)", prov)
	}
	s := w.emu.Snapshot()
	if len(s.Sessions) != 1 || s.Sessions[0].ENI != web || len(s.TGs) != 1 || s.TGs[0].HealthPort != fmt.Sprint(cs.metrics) {
		t.Fatalf("emulator after boot: %+v\n%s", s, b.out.String())
	}
	n := replaySample(t, cs.vxlan, cs.traces)
	t.Logf("%d traces exported from the replayed sample", n)
	if strings.Contains(b.out.String(), testMetloKey) || strings.Contains(b.out.String(), testMetloKey[10:]) {
		t.Errorf("boot output leaks the API key:\n%s", b.out.String())
	}
	b.stop()
	if err := <-b.done; err != nil {
		t.Fatalf("boot: %v\n%s", err, b.out.String())
	}
	b.done <- nil // for the cleanup
}

// TestBootGCP boots against the Compute and metadata emulators: project and instance
// attributes, packet mirroring provisioned, collector started.
func TestBootGCP(t *testing.T) {
	emu := gcpemu.New()
	defer emu.Close()
	emu.AddNetwork("proj-1", "default")
	emu.AddSubnetwork("proj-1", "us-central1", "default-sub", "default", "10.0.0.0/20")
	emu.AddInstance(gcpemu.Instance{Project: "proj-1", Zone: "us-central1-a", Name: "metlo-1", Network: "default", Subnetwork: "default-sub", IP: "10.0.0.2", ServiceAccount: "metlo@proj-1.iam.gserviceaccount.com"})
	emu.AddInstance(gcpemu.Instance{Project: "proj-1", Zone: "us-central1-b", Name: "web-1", Network: "default", Subnetwork: "default-sub", IP: "10.0.0.3", Tags: []string{"web"}})
	md := gcpemu.NewMetadata(gcpemu.MetadataInstance{ProjectID: "proj-1", ProjectNumber: "42", Zone: "us-central1-a", Name: "metlo-1", Network: "default", IP: "10.0.0.2", ServiceAccount: "metlo@proj-1.iam.gserviceaccount.com"})
	defer md.Close()
	cs := newCollectorSettings(t)
	attrs := cs.values()
	attrs["METLO_SOURCES"] = "instance:web-1,tag:web"
	attrs["METLO_TARGET"] = "ilb"
	attrs["METLO_GCP_ENDPOINT"] = emu.URL()
	attrs["METLO_GCP_POLL_INTERVAL"] = "1ms"
	attrs["METLO_AWS_VNI"] = "7" // another cloud's flag: ignored
	attrs["METLO_LOG_LEVEL"] = "debug"
	var names []string
	for k, v := range attrs {
		md.Set("instance/attributes/"+k, v)
		names = append(names, k)
	}
	md.Set("instance/attributes", strings.Join(names, "\n")+"\nstartup-script\n")
	md.Set("project/attributes", "METLO_ENVIRONMENT\nMETLO_LOG_LEVEL\nssh-keys")
	md.Set("project/attributes/METLO_ENVIRONMENT", "staging")
	md.Set("project/attributes/METLO_LOG_LEVEL", "warn")

	b := startBoot(t, "--aws-imds-endpoint", "http://127.0.0.1:1", "--gcp-metadata-host", md.Host())
	b.waitReady(t, cs.metrics)
	cfg, prov := readRendered(t, b.dir)
	if cfg["environment"] != "staging" || cfg["log-level"] != "debug" || cfg["metlo-key"] != testMetloKey {
		t.Errorf("config: %v (project attributes apply, instance attributes win)", cfg)
	}
	if prov.Cloud != "gcp" || fmt.Sprint(prov.Provision["source"]) != "[instance:web-1 tag:web]" || prov.Provision["aws-vni"] != nil {
		t.Errorf("provision settings: %+v", prov)
	}
	if len(emu.Keys("packetMirrorings")) != 1 || len(emu.Keys("forwardingRules")) != 1 {
		t.Fatalf("emulator after boot: mirrorings %v, forwarding rules %v\n%s", emu.Keys("packetMirrorings"), emu.Keys("forwardingRules"), b.out.String())
	}
	if !strings.Contains(b.out.String(), fmt.Sprintf("HTTP :%d/readyz", cs.metrics)) {
		t.Errorf("health check not on the metrics port:\n%s", b.out.String())
	}
	if strings.Contains(b.out.String(), testMetloKey) {
		t.Errorf("boot output leaks the API key")
	}
	replaySample(t, cs.vxlan, cs.traces)
}

// TestBootProvisionRetries fails the first EC2 calls (the provision round errors), then
// lets them through: boot provision retries until it succeeds, and gives up in time when
// the API never answers.
func TestBootProvisionRetries(t *testing.T) {
	w := newAWSWorld(t)
	w.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000001"})
	target, _ := url.Parse(w.api)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var calls atomic.Int32
	flaky := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 3 {
			http.Error(rw, "", http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(rw, r)
	}))
	defer flaky.Close()
	dir := t.TempDir()
	writeProv := func(endpoint string) {
		st := bootSettings{Cloud: "aws", Provision: map[string][]string{"source": {"instance:i-0web000000000001"},
			"aws-endpoint": {endpoint}, "aws-max-attempts": {"1"}, "aws-imds-endpoint": {w.imdsURL}}}
		b, _ := yaml.Marshal(st)
		if err := os.WriteFile(filepath.Join(dir, "provision.yaml"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) (string, error) {
		var out syncBuffer
		root := newRootCmd()
		root.SetArgs(append([]string{"boot", "provision", "--config-dir", dir, "--retry-min", "10ms", "--retry-max", "40ms"}, args...))
		root.SetOut(&out)
		root.SetErr(&out)
		err := root.ExecuteContext(context.Background())
		return out.String(), err
	}

	writeProv(flaky.URL)
	out, err := run("--max-time", "30s")
	if err != nil || len(w.emu.Sessions()) != 1 || !strings.Contains(out, "provisioning failed; retrying") {
		t.Fatalf("retry to success: %v, %d sessions\n%s", err, len(w.emu.Sessions()), out)
	}

	writeProv("http://127.0.0.1:1")
	start := time.Now()
	out, err = run("--max-time", "300ms")
	if err == nil || !strings.Contains(err.Error(), "gave up after") || time.Since(start) > 10*time.Second {
		t.Fatalf("unreachable API: %v after %s\n%s", err, time.Since(start), out)
	}
	if _, err := run("--once"); err == nil {
		t.Fatal("--once against an unreachable API succeeded")
	}
}

// TestBootRender covers the render step's edges: no cloud leaves files alone, a bad
// setting is skipped by name only, an invalid result keeps the previous config.
func TestBootRender(t *testing.T) {
	md := gcpemu.NewMetadata(gcpemu.MetadataInstance{ProjectID: "p", ProjectNumber: "1", Zone: "z", Name: "n", Network: "default"})
	defer md.Close()
	dir := t.TempDir()
	o := &bootOptions{cloud: "auto", configDir: dir, baseConfig: filepath.Join(dir, "base.yaml"), imdsEndpoint: "http://127.0.0.1:1",
		gcpMetaHost: "127.0.0.1:1", detectTimeout: time.Second, routeFile: filepath.Join(dir, "none")}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	// No cloud, no config: the image defaults are rendered; a second run leaves it alone.
	if err := os.WriteFile(o.baseConfig, []byte("capture: udp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if st, err := o.render(context.Background(), log); err != nil || st == nil || st.Cloud != "none" || st.config["capture"] != "udp" {
		t.Fatalf("no cloud, no config: %+v %v", st, err)
	}
	if err := os.WriteFile(o.configPath(), []byte("capture: afpacket\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, err := o.render(context.Background(), log); err != nil || st != nil {
		t.Fatalf("no cloud, hand-written config: %v %v", st, err)
	}
	if b, _ := os.ReadFile(o.configPath()); string(b) != "capture: afpacket\n" {
		t.Fatalf("no cloud replaced a hand-written config: %q", b)
	}
	if err := o.provision(context.Background(), log, &logs); err != nil || !strings.Contains(logs.String(), "skipping provisioning") {
		t.Fatalf("provision without a cloud: %v", err)
	}

	if err := os.WriteFile(o.baseConfig, []byte("capture: afpacket\nworkers: 2\nbogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o.gcpMetaHost = md.Host()
	md.Set("instance/attributes", "METLO_WORKERS\nMETLO_BODY_CAP\nMETLO_FROB\nMETLO_KEY")
	md.Set("instance/attributes/METLO_WORKERS", "4")
	md.Set("instance/attributes/METLO_BODY_CAP", "lots-secret-value")
	md.Set("instance/attributes/METLO_FROB", "x")
	md.Set("instance/attributes/METLO_KEY", testMetloKey)
	st, err := o.render(context.Background(), log)
	if err != nil {
		t.Fatal(err)
	}
	if st.config["workers"] != 4 || st.config["capture"] != "afpacket" || st.config["body-max-bytes"] != nil || st.config["bogus"] != nil {
		t.Errorf("settings: %v", st.config)
	}
	for _, want := range []string{"setting=METLO_BODY_CAP", "setting=METLO_FROB", "key=bogus"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), "lots-secret-value") || strings.Contains(logs.String(), testMetloKey) {
		t.Errorf("log shows a value:\n%s", logs.String())
	}

	// A metlo sink without a key is invalid: the previous config stays.
	before, _ := os.ReadFile(o.configPath())
	md.Set("instance/attributes", "METLO_SINK")
	md.Set("instance/attributes/METLO_SINK", "metlo:http://metlo:8081")
	t.Setenv("METLO_KEY", "")
	if _, err := o.render(context.Background(), log); err == nil || !strings.Contains(err.Error(), "invalid") {
		t.Fatalf("invalid render: %v", err)
	}
	after, _ := os.ReadFile(o.configPath())
	if !bytes.Equal(before, after) {
		t.Error("an invalid render replaced the config")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

func TestDefaultRouteInterfaceMissingFile(t *testing.T) {
	if ifc := defaultRouteInterface("/nonexistent"); ifc != "" {
		t.Errorf("route from a missing file: %q", ifc)
	}
}

// TestBootProvisionStopsOnPermanentGaps: a source AWS can never mirror (a T2 instance) makes
// boot provision fail at once instead of retrying for --max-time, and never log "done".
func TestBootProvisionStopsOnPermanentGaps(t *testing.T) {
	w := newAWSWorld(t)
	w.emu.AddInstance(awsemu.Instance{ID: "i-0old000000000001", Type: "t2.micro"})
	dir := t.TempDir()
	st := bootSettings{Cloud: "aws", Provision: map[string][]string{"source": {"instance:i-0old000000000001"},
		"aws-endpoint": {w.api}, "aws-imds-endpoint": {w.imdsURL}}}
	b, _ := yaml.Marshal(st)
	if err := os.WriteFile(filepath.Join(dir, "provision.yaml"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	root := newRootCmd()
	root.SetArgs([]string{"boot", "provision", "--config-dir", dir, "--retry-min", "10ms", "--max-time", "30s"})
	root.SetOut(&out)
	root.SetErr(&out)
	start := time.Now()
	err := root.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), "t2.micro") || strings.Contains(out.String(), "provisioning done") ||
		strings.Contains(out.String(), "provisioning failed; retrying") || time.Since(start) > 10*time.Second {
		t.Fatalf("err = %v after %s\n%s", err, time.Since(start), out.String())
	}
}
