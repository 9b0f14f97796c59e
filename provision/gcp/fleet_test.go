package gcp

import (
	"context"
	"strings"
	"testing"

	"cloud.google.com/go/compute/apiv1/computepb"

	"github.com/metlo-labs/metlo-appliance/provision"
)

const migKey = "projects/proj-1/regions/us-central1/instanceGroupManagers/metlo-appliance-metlo-1-mig"

func TestCollectorFleet(t *testing.T) {
	w := newWorld(t, func(c *Config) {
		c.Fleet = FleetConfig{Size: 2, Max: 4, Image: "metlo-appliance", Settings: []string{"METLO_HOST=http://metlo:8081", "METLO_KEY=metlo.secretsecret"}}
	})
	out, err := w.run(t, w.p.Reconcile, provision.Options{Sources: []string{"tag:web"}, DryRun: true, MirroredGBPerMonth: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"would create instance template metlo-appliance-metlo-1-it-", "would create managed instance group metlo-appliance-metlo-1-mig (regional, 2 collectors, autohealing",
		"would create autoscaler metlo-appliance-metlo-1-as (2-4 collectors, average CPU 60%)", "2 collectors (e2-standard-4)", "1460 × 0.134"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q", want)
		}
	}
	if strings.Contains(out, "secretsecret") {
		t.Fatal("the plan shows a setting's value")
	}
	w.provision(t, "tag:web")
	mig := w.emu.Get(migKey).(*computepb.InstanceGroupManager)
	group := "projects/proj-1/regions/us-central1/instanceGroups/metlo-appliance-metlo-1-mig"
	members := w.emu.Members(group)
	if mig.GetTargetSize() != 2 || len(members) != 2 || !strings.Contains(members[0], "us-central1-a") || !strings.Contains(members[1], "us-central1-b") ||
		len(mig.GetAutoHealingPolicies()) != 1 || !strings.HasSuffix(mig.GetAutoHealingPolicies()[0].GetHealthCheck(), "healthChecks/metlo-appliance-metlo-1-hc") {
		t.Fatalf("managed group %v, members %v", mig, members)
	}
	if inst := w.emu.Get(members[0]).(*computepb.Instance); inst.GetMetadata().GetItems()[0].GetKey() != "METLO_HOST" {
		t.Fatalf("member metadata %v", inst.GetMetadata())
	}
	for _, k := range w.emu.Keys("instanceTemplates") {
		if l := w.emu.Get(k).(*computepb.InstanceTemplate).GetProperties().GetLabels(); l["metlo-appliance-fleet"] != "metlo-1" {
			t.Fatalf("template labels %v", l)
		}
	}
	as := w.emu.Get("projects/proj-1/regions/us-central1/autoscalers/metlo-appliance-metlo-1-as").(*computepb.Autoscaler)
	if p := as.GetAutoscalingPolicy(); p.GetMinNumReplicas() != 2 || p.GetMaxNumReplicas() != 4 || p.GetCpuUtilization().GetUtilizationTarget() != 0.6 {
		t.Fatalf("autoscaler %v", as)
	}
	bs := w.emu.Get("projects/proj-1/regions/us-central1/backendServices/metlo-appliance-metlo-1-bs").(*computepb.BackendService)
	if len(bs.GetBackends()) != 1 || !strings.HasSuffix(bs.GetBackends()[0].GetGroup(), "regions/us-central1/instanceGroups/metlo-appliance-metlo-1-mig") {
		t.Fatalf("backend service %v", bs)
	}
	if len(w.emu.Keys("instanceGroups")) != 1 {
		t.Fatalf("an unmanaged group was created too: %v", w.emu.Keys("instanceGroups"))
	}
	// Re-runs change nothing, and leave the size to the autoscaler.
	w.emu.ResetCalls()
	w.provision(t, "tag:web")
	w.emu.Resize(migKey, 3)
	w.provision(t, "tag:web")
	if m := w.emu.Mutations(); len(m) != 0 {
		t.Fatalf("re-runs mutated: %v", m)
	}
	// Doctor sees the collectors through the load balancer.
	rep, err := w.p.Doctor(context.Background(), provision.Options{}, provision.DoctorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rep.Print(&b)
	if rep.Failed() != 0 || !strings.Contains(b.String(), "3 healthy collectors") {
		t.Fatalf("doctor:\n%s", b.String())
	}
	// A new machine type: a new template; the old one goes once the group uses the new one.
	w.p.cfg.Fleet.MachineType = "n2-standard-4"
	out = w.provision(t, "tag:web")
	if ts := w.emu.Keys("instanceTemplates"); len(ts) != 1 || !strings.Contains(out, "~ patch managed instance group metlo-appliance-metlo-1-mig (template") {
		t.Fatalf("templates %v\n%s", ts, out)
	}
	out, err = w.run(t, w.p.List, provision.Options{})
	if err != nil || !strings.Contains(out, "3 collectors, template metlo-appliance-metlo-1-it-") || !strings.Contains(out, "2-4 collectors, CPU target 60%") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	// cleanup keeps a fleet with members unless told to delete it.
	if out, err = w.run(t, w.p.Cleanup, provision.Options{Yes: true}); err != nil || !strings.Contains(out, "has 3 members: nothing deleted") || w.emu.Get(migKey) == nil {
		t.Fatalf("cleanup of a running fleet: %v\n%s", err, out)
	}
	w.p.cfg.Fleet.Delete = true
	if _, err = w.run(t, w.p.Cleanup, provision.Options{Yes: true}); err != nil {
		t.Fatal(err)
	}
	for _, c := range append(managedCollections, "instanceTemplates", "instanceGroupManagers", "autoscalers") {
		if k := w.emu.Keys(c); len(k) != 0 {
			t.Errorf("cleanup left %v", k)
		}
	}
}

// A single appliance that grows into a fleet: the backend moves to the managed group.
func TestSingleApplianceBecomesAFleet(t *testing.T) {
	w := newWorld(t)
	w.provision(t, "tag:web")
	w.p.cfg.Fleet = FleetConfig{Size: 2, Image: "metlo-appliance"}
	out := w.provision(t, "tag:web")
	if !strings.Contains(out, "~ patch backend service metlo-appliance-metlo-1-bs (backend regions/us-central1/instanceGroups/metlo-appliance-metlo-1-mig)") {
		t.Fatalf("backend not moved:\n%s", out)
	}
	w.p.cfg.Fleet.Delete = true
	if _, err := w.run(t, w.p.Cleanup, provision.Options{Yes: true}); err != nil {
		t.Fatal(err)
	}
	if k := w.emu.Keys("instanceGroups"); len(k) != 0 {
		t.Fatalf("cleanup left the old unmanaged group: %v", k)
	}
}
