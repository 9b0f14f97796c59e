package gcp

import (
	"bytes"
	"cloud.google.com/go/compute/apiv1/computepb"
	"context"
	"testing"
	"time"

	"github.com/metlo-labs/metlo-appliance/provision"
	"github.com/metlo-labs/metlo-appliance/provision/gcp/gcpemu"
)

const (
	testProject = "proj-1"
	testRegion  = "us-central1"
	testID      = "metlo-1"
)

// world is one emulated project: the appliance metlo-1 in us-central1-a and some workloads.
type world struct {
	emu *gcpemu.Server
	md  *gcpemu.Metadata
	p   *Provider
}

func newWorld(t *testing.T, mutate ...func(*Config)) *world {
	t.Helper()
	emu := gcpemu.New()
	emu.PendingPolls = 2
	t.Cleanup(emu.Close)
	emu.AddNetwork(testProject, "default")
	emu.AddNetwork(testProject, "other")
	emu.AddSubnetwork(testProject, testRegion, "default-sub", "default", "10.0.0.0/20")
	emu.AddSubnetwork(testProject, testRegion, "app-sub", "default", "10.1.0.0/24")
	emu.AddSubnetwork(testProject, testRegion, "other-sub", "other", "10.9.0.0/24")
	emu.AddSubnetwork(testProject, "us-east1", "east-sub", "default", "10.2.0.0/24")
	add := func(zone, name, network, subnet, ip string, tags ...string) {
		emu.AddInstance(gcpemu.Instance{Project: testProject, Zone: zone, Name: name, Network: network, Subnetwork: subnet, IP: ip, Tags: tags})
	}
	emu.AddInstance(gcpemu.Instance{Project: testProject, Zone: "us-central1-a", Name: "metlo-1", Network: "default", Subnetwork: "default-sub", IP: "10.0.0.2", ServiceAccount: "metlo@proj-1.iam.gserviceaccount.com"})
	add("us-central1-a", "web-1", "default", "default-sub", "10.0.0.3", "web")
	add("us-central1-b", "web-2", "default", "default-sub", "10.0.0.4", "web")
	add("us-central1-a", "api", "default", "app-sub", "10.1.0.3", "api")
	add("us-central1-b", "api", "default", "app-sub", "10.1.0.4", "api")
	add("us-central1-c", "db-1", "other", "other-sub", "10.9.0.3", "db")
	add("us-east1-b", "east-1", "default", "east-sub", "10.2.0.3")
	md := gcpemu.NewMetadata(gcpemu.MetadataInstance{ProjectID: testProject, ProjectNumber: "123456789", Zone: "us-central1-a", Name: "metlo-1", Network: "default", IP: "10.0.0.2", ServiceAccount: "metlo@proj-1.iam.gserviceaccount.com"})
	t.Cleanup(md.Close)
	cfg := Config{Endpoint: emu.URL(), MetadataHost: md.Host(), PollInterval: time.Millisecond}
	for _, m := range mutate {
		m(&cfg)
	}
	p, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return &world{emu: emu, md: md, p: p}
}

// run calls one provider method with opts writing to a buffer, returning the output.
func (w *world) run(t *testing.T, f func(context.Context, provision.Options) error, opts provision.Options) (string, error) {
	t.Helper()
	var out bytes.Buffer
	opts.Out = &out
	err := f(context.Background(), opts)
	t.Logf("output:\n%s", out.String())
	return out.String(), err
}

func (w *world) provision(t *testing.T, sources ...string) string {
	t.Helper()
	out, err := w.run(t, w.p.Reconcile, provision.Options{Sources: sources})
	if err != nil {
		t.Fatalf("reconcile %v: %v", sources, err)
	}
	return out
}

func gcpemuInstance(name string) gcpemu.Instance {
	return gcpemu.Instance{Project: testProject, Zone: "us-central1-f", Name: name, Network: "default", Subnetwork: "default-sub", IP: "10.0.3.1"}
}

func policyFilter(t *testing.T, w *world, key string) []string {
	t.Helper()
	return w.emu.Get(key).(*computepb.PacketMirroring).GetFilter().GetCidrRanges()
}
