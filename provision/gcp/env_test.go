package gcp

import (
	"strings"
	"testing"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// TestFlagsOverrideDiscovery provisions with every discovered value given explicitly and a
// metadata server that does not exist: nothing may depend on it.
func TestFlagsOverrideDiscovery(t *testing.T) {
	w := newWorld(t, func(c *Config) {
		c.Project, c.Zone, c.Instance, c.ID = testProject, "us-central1-a", "metlo-1", "Custom_ID"
		c.MetadataHost = "127.0.0.1:1"
		c.TargetTag = "collector"
		c.FilterCIDRs = []string{"10.0.0.7/8"}
	})
	out := w.provision(t, "tag:web")
	if !strings.Contains(out, "gcp: policy metlo-appliance-custom-id-pm ok") {
		t.Errorf("resources not named from --gcp-id")
	}
	if strings.Contains(out, "fw-mirror6") {
		t.Errorf("IPv6 firewall rule created for an IPv4-only filter")
	}
	pm := w.emu.Keys("packetMirrorings")
	if len(pm) != 1 {
		t.Fatalf("policies: %v", pm)
	}
	if got := strings.Join(policyFilter(t, w, pm[0]), ","); got != "10.0.0.0/8" {
		t.Errorf("filter ranges = %s", got)
	}
}

func TestMetadataDiscovery(t *testing.T) {
	w := newWorld(t)
	e, err := w.p.resolve(t.Context(), provision.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if e.project != testProject || e.zone != "us-central1-a" || e.region != testRegion || e.instance != "projects/proj-1/zones/us-central1-a/instances/metlo-1" ||
		e.network != "projects/proj-1/global/networks/default" || e.subnetwork != "projects/proj-1/regions/us-central1/subnetworks/default-sub" ||
		e.serviceAccount != "metlo@proj-1.iam.gserviceaccount.com" {
		t.Errorf("discovered %+v", e)
	}
	if _, err := w.p.resolve(t.Context(), provision.Options{Region: "europe-west1"}); err == nil || !strings.Contains(err.Error(), "must share the appliance's region") {
		t.Errorf("foreign region: %v", err)
	}
}

func TestSanitizeID(t *testing.T) {
	long := sanitizeID(strings.Repeat("appliance-", 8))
	if len("metlo-appliance-"+long+"-fw-mirror6") > 63 {
		t.Errorf("id %q too long", long)
	}
	if got := sanitizeID("My_Box.1"); got != "my-box-1" {
		t.Errorf("sanitizeID = %q", got)
	}
}
