package gcp

import (
	"strings"
	"testing"

	"cloud.google.com/go/compute/apiv1/computepb"
)

func policyOf(t *testing.T, w *world) *computepb.PacketMirroring {
	t.Helper()
	m := w.emu.Get("projects/proj-1/regions/us-central1/packetMirrorings/metlo-appliance-metlo-1-pm")
	if m == nil {
		t.Fatal("no packet mirroring policy")
	}
	return m.(*computepb.PacketMirroring)
}

func TestProvisionInstanceFresh(t *testing.T) {
	w := newWorld(t)
	out := w.provision(t, "instance:web-1")
	for _, want := range []string{
		"  + create instance group metlo-appliance-metlo-1-ig",
		"  ~ patch instance group metlo-appliance-metlo-1-ig (add instance zones/us-central1-a/instances/metlo-1)",
		"  + create health check metlo-appliance-metlo-1-hc (HTTP :9731/readyz)",
		"  + create backend service metlo-appliance-metlo-1-bs",
		"  + create forwarding rule metlo-appliance-metlo-1-fr",
		"  + create firewall rule metlo-appliance-metlo-1-fw-hc (allow tcp:9731 from 35.191.0.0/16,130.211.0.0/22)",
		"  + create packet mirroring metlo-appliance-metlo-1-pm (1 instance, 0 subnets, 0 tags)",
		"(PENDING)",
		"gcp: policy metlo-appliance-metlo-1-pm ok: 1 instance, 0 subnets, 0 tags (6 created, 1 changed)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	pm := policyOf(t, w)
	if got := pm.GetMirroredResources().GetInstances(); len(got) != 1 || !strings.HasSuffix(got[0].GetUrl(), "zones/us-central1-a/instances/web-1") {
		t.Errorf("mirrored instances = %v", got)
	}
	if f := pm.GetFilter(); f.GetDirection() != "BOTH" || strings.Join(f.GetCidrRanges(), ",") != "0.0.0.0/0,::/0" || strings.Join(f.GetIPProtocols(), ",") != "tcp" {
		t.Errorf("filter = %v", f)
	}
	fr := w.emu.Get("projects/proj-1/regions/us-central1/forwardingRules/metlo-appliance-metlo-1-fr").(*computepb.ForwardingRule)
	if !fr.GetIsMirroringCollector() || fr.GetLoadBalancingScheme() != "INTERNAL" || !fr.GetAllPorts() {
		t.Errorf("forwarding rule = %v", fr)
	}
	if m := w.emu.Members("projects/proj-1/zones/us-central1-a/instanceGroups/metlo-appliance-metlo-1-ig"); len(m) != 1 || m[0] != "projects/proj-1/zones/us-central1-a/instances/metlo-1" {
		t.Errorf("group members = %v", m)
	}

	// A second run changes nothing.
	w.emu.ResetCalls()
	out = w.provision(t, "instance:web-1")
	if m := w.emu.Mutations(); len(m) != 0 {
		t.Errorf("re-run made mutating calls: %v", m)
	}
	if !strings.Contains(out, "(7 kept)") {
		t.Errorf("re-run summary: %s", out)
	}
}
