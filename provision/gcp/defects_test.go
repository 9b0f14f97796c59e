package gcp

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"go.yaml.in/yaml/v3"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// Each test here pins one defect of issue 15 on GCP; the commit that added it says which
// failed on the code before.

// Defect 4: Compute replays the operation of a repeated requestId for about an hour, even
// after the resource was deleted: provisioning right after cleanup (or after removing the
// last source) must still leave real resources behind.
func TestProvisionAfterCleanupAndRemove(t *testing.T) {
	w := newWorld(t)
	w.provision(t, "tag:web")
	if _, err := w.run(t, w.p.Cleanup, provision.Options{Yes: true}); err != nil {
		t.Fatal(err)
	}
	w.provision(t, "tag:web")
	for _, c := range managedCollections {
		if len(w.emu.Keys(c)) != 1 {
			t.Errorf("after cleanup and provision: %s = %v", c, w.emu.Keys(c))
		}
	}
	if _, err := w.run(t, func(ctx context.Context, o provision.Options) error { return w.p.Remove(ctx, o, "tag:web") }, provision.Options{}); err != nil {
		t.Fatal(err)
	}
	if len(w.emu.Keys("packetMirrorings")) != 0 {
		t.Fatal("removing the last source left the policy")
	}
	out := w.provision(t, "tag:web")
	if len(w.emu.Keys("packetMirrorings")) != 1 || !strings.Contains(out, "replayed an earlier operation") {
		t.Fatalf("policy after remove and provision: %v\n%s", w.emu.Keys("packetMirrorings"), out)
	}
}

// Defect 7: a source dropped from the configuration stops being mirrored.
func TestDroppedSourceIsUnmirrored(t *testing.T) {
	w := newWorld(t)
	w.provision(t, "instance:web-1", "tag:web")
	out := w.provision(t, "tag:web")
	got := setOf(testProject, policyOf(t, w))
	if len(got.instances) != 0 || !slices.Equal(got.tags, []string{"web"}) || !strings.Contains(out, "remove instance zones/us-central1-a/instances/web-1: no longer a wanted source") {
		t.Fatalf("policy mirrors %+v\n%s", got, out)
	}
}

// Defect 9: priority 0 is a valid (the highest) priority.
func TestPriorityZero(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.Priority = 0 })
	w.provision(t, "tag:web")
	if p := policyOf(t, w).GetPriority(); p != 0 {
		t.Fatalf("priority %d, want 0", p)
	}
	if _, err := New(context.Background(), Config{Priority: 70000}); err == nil {
		t.Fatal("priority 70000 accepted")
	}
}

// Defect 12: the only firewall rule is the health checkers' to the health port; rules an
// earlier version opened to the world are removed.
func TestFirewallOnlyForHealthChecks(t *testing.T) {
	w := newWorld(t)
	for _, n := range []string{"fw-mirror", "fw-mirror6"} {
		w.emu.Put("projects/proj-1/global/firewalls/metlo-appliance-metlo-1-"+n, &computepb.Firewall{
			Description: ptr("metlo-appliance mirrored traffic [metlo-appliance-id=metlo-1]"), Network: ptr("projects/proj-1/global/networks/default"),
			Allowed: []*computepb.Allowed{{IPProtocol: ptr("tcp")}}, SourceRanges: []string{"0.0.0.0/0"}})
	}
	out := w.provision(t, "tag:web")
	fws := w.emu.Keys("firewalls")
	if len(fws) != 1 || !strings.HasSuffix(fws[0], "-fw-hc") || !strings.Contains(out, "opened every TCP port to everyone") {
		t.Fatalf("firewall rules %v\n%s", fws, out)
	}
	fw := w.emu.Get(fws[0]).(*computepb.Firewall)
	if strings.Join(fw.GetSourceRanges(), ",") != "35.191.0.0/16,130.211.0.0/22" || strings.Join(fw.GetAllowed()[0].GetPorts(), ",") != "9731" ||
		!slices.Equal(fw.GetTargetServiceAccounts(), []string{"metlo@proj-1.iam.gserviceaccount.com"}) {
		t.Fatalf("health-check rule %v", fw)
	}
}

// Defect 13: the shipped custom role holds exactly the permissions the code needs.
func TestCustomRoleMatchesTheCalls(t *testing.T) {
	var role struct {
		Title               string   `yaml:"title"`
		IncludedPermissions []string `yaml:"includedPermissions"`
		Stage               string   `yaml:"stage"`
	}
	if err := yaml.Unmarshal([]byte(CustomRole), &role); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, perms := range MethodPermissions {
		for _, p := range perms {
			want[p] = true
		}
	}
	for p := range want {
		if !slices.Contains(role.IncludedPermissions, p) {
			t.Errorf("iam-role.yaml lacks %s", p)
		}
	}
	for _, p := range role.IncludedPermissions {
		if !want[p] {
			t.Errorf("iam-role.yaml grants %s, which no call needs", p)
		}
	}
	if role.Title == "" || role.Stage != "GA" {
		t.Errorf("role header: %+v", role)
	}
}

// Design: a metadata server that never answers costs at most MetadataTimeout, and the error
// names the host that was asked.
func TestHangingMetadataServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	w := newWorld(t, func(c *Config) { c.MetadataHost, c.MetadataTimeout = l.Addr().String(), 300*time.Millisecond })
	start := time.Now()
	_, err = w.p.resolve(context.Background(), provision.Options{})
	if err == nil || !strings.Contains(err.Error(), l.Addr().String()) || strings.Contains(err.Error(), "169.254.169.254") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("a hanging metadata server cost %s", d)
	}
}

// metricsServer serves a /metrics page whose raw packet counter grows by step per scrape.
func metricsServer(t *testing.T, step float64) string {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := float64(n.Add(1)) * step
		fmt.Fprintf(w, "# TYPE metlo_appliance_datapath_packets_total counter\nmetlo_appliance_datapath_packets_total{encap=\"raw\",outcome=\"ok\"} %g\nmetlo_appliance_datapath_packets_total{encap=\"vxlan\",outcome=\"ok\"} 7\n", v)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// Promise 15: doctor finds a missing health-check rule and unhealthy collectors, and reads
// the collector's counters.
func TestDoctorGCP(t *testing.T) {
	w := newWorld(t)
	w.provision(t, "tag:web")
	doctor := func(url string) (*provision.Report, string) {
		rep, err := w.p.Doctor(context.Background(), provision.Options{}, provision.DoctorOptions{MetricsURL: url, Sample: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		rep.Print(&b)
		return rep, b.String()
	}
	rep, out := doctor(metricsServer(t, 100))
	if rep.Failed() != 0 || !strings.Contains(out, "1 healthy collectors") || !strings.Contains(out, "raw ") {
		t.Fatalf("healthy setup:\n%s", out)
	}
	rep, out = doctor(metricsServer(t, 0))
	if rep.Failed() != 1 || !strings.Contains(out, "FAIL packets arriving at the collector") {
		t.Fatalf("no packets:\n%s", out)
	}
	w.emu.Delete("projects/proj-1/global/firewalls/metlo-appliance-metlo-1-fw-hc")
	rep, out = doctor("")
	if rep.Failed() != 2 || !strings.Contains(out, "FAIL health-check firewall rule") || !strings.Contains(out, "no healthy collector") {
		t.Fatalf("missing firewall rule:\n%s", out)
	}
	w.provision(t, "tag:web")
	w.emu.SetUnhealthy("projects/proj-1/zones/us-central1-a/instances/metlo-1", true)
	if rep, out = doctor(""); rep.Failed() != 1 || !strings.Contains(out, "metlo-1 UNHEALTHY") {
		t.Fatalf("collector down:\n%s", out)
	}
	w.emu.Delete("projects/proj-1/regions/us-central1/packetMirrorings/metlo-appliance-metlo-1-pm")
	if rep, out = doctor(""); !strings.Contains(out, "FAIL packet mirroring policy") || rep.Err() == nil {
		t.Fatalf("policy gone:\n%s", out)
	}
}

// Promise 16 on GCP: the dry run prices the collector and the mirrored data.
func TestGCPDryRunEstimate(t *testing.T) {
	w := newWorld(t)
	out, err := w.run(t, w.p.Reconcile, provision.Options{Sources: []string{"tag:web"}, DryRun: true, MirroredGBPerMonth: 500})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"collector forwarding rule metlo-appliance-metlo-1-fr", "730 × 0.025", "Packet Mirroring data processed", "500 × 0.01", "internal load balancer data processed", "total"} {
		if !strings.Contains(out, want) {
			t.Errorf("estimate lacks %q", want)
		}
	}
}
