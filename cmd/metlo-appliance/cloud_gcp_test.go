package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/metlo-labs/metlo-appliance/provision/gcp/gcpemu"
)

// TestGCPCommandsEndToEnd runs the real cobra commands against the Compute and metadata
// emulators: provision, dry run, list, remove, cleanup.
func TestGCPCommandsEndToEnd(t *testing.T) {
	emu := gcpemu.New()
	defer emu.Close()
	emu.AddNetwork("proj-1", "default")
	emu.AddSubnetwork("proj-1", "us-central1", "default-sub", "default", "10.0.0.0/20")
	emu.AddSubnetwork("proj-1", "us-central1", "app-sub", "default", "10.1.0.0/24")
	emu.AddInstance(gcpemu.Instance{Project: "proj-1", Zone: "us-central1-a", Name: "metlo-1", Network: "default", Subnetwork: "default-sub", IP: "10.0.0.2", ServiceAccount: "metlo@proj-1.iam.gserviceaccount.com"})
	emu.AddInstance(gcpemu.Instance{Project: "proj-1", Zone: "us-central1-b", Name: "web-1", Network: "default", Subnetwork: "default-sub", IP: "10.0.0.3", Tags: []string{"web"}})
	md := gcpemu.NewMetadata(gcpemu.MetadataInstance{ProjectID: "proj-1", ProjectNumber: "42", Zone: "us-central1-a", Name: "metlo-1", Network: "default", IP: "10.0.0.2", ServiceAccount: "metlo@proj-1.iam.gserviceaccount.com"})
	defer md.Close()

	run := func(args ...string) string {
		t.Helper()
		root := newRootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetIn(strings.NewReader(""))
		root.SetArgs(append(args, "--cloud", "gcp", "--gcp-endpoint", emu.URL(), "--gcp-metadata-host", md.Host(), "--gcp-poll-interval", "1ms"))
		if err := root.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out.String())
		}
		t.Logf("%v:\n%s", args, out.String())
		return out.String()
	}
	mustContain := func(out string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q", w)
			}
		}
	}

	out := run("provision", "--source", "instance:web-1", "--source", "tag:web", "--health-port", "9800")
	mustContain(out, "  + create health check metlo-appliance-metlo-1-hc (HTTP :9800/readyz)",
		"gcp: policy metlo-appliance-metlo-1-pm ok: 1 instance, 0 subnets, 1 tag (6 created, 1 changed)")

	out = run("provision", "--dry-run", "--source", "instance:web-1", "--source", "tag:web", "--source", "subnet:app-sub", "--health-port", "9800")
	mustContain(out, "  ~ would patch packet mirroring metlo-appliance-metlo-1-pm (add subnet regions/us-central1/subnetworks/app-sub)",
		"gcp: dry run, nothing changed (1 resource to change)")

	out = run("list")
	mustContain(out, "zones/us-central1-b/instances/web-1", "isMirroringCollector=true", "HTTP :9800/readyz")

	out = run("remove", "tag:web")
	mustContain(out, "gcp: policy metlo-appliance-metlo-1-pm ok: 1 instance, 0 subnets, 0 tags (1 changed)")

	out = run("cleanup", "--yes")
	mustContain(out, "gcp: cleanup of metlo-appliance-metlo-1 ok: 6 deleted, 2 already gone")
	for _, c := range []string{"instanceGroups", "healthChecks", "backendServices", "forwardingRules", "firewalls", "packetMirrorings"} {
		if keys := emu.Keys(c); len(keys) != 0 {
			t.Errorf("cleanup left %v", keys)
		}
	}
}
