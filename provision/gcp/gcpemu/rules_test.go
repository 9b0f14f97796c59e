package gcpemu

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/proto"
)

// seeded returns an emulator with a network, subnet, instances and an INTERNAL backend
// service, plus real REST clients pointed at it.
func seeded(t *testing.T) (*Server, *compute.ForwardingRulesClient, *compute.PacketMirroringsClient, *compute.RegionHealthChecksClient) {
	t.Helper()
	s := New()
	s.PendingPolls = 0
	t.Cleanup(s.Close)
	s.AddNetwork("p", "net")
	s.AddNetwork("p", "other")
	s.AddSubnetwork("p", "r1", "sub", "net", "10.0.0.0/24")
	s.AddInstance(Instance{Project: "p", Zone: "r1-a", Name: "vm", Network: "net", Subnetwork: "sub"})
	s.AddInstance(Instance{Project: "p", Zone: "r1-a", Name: "stranger", Network: "other", Subnetwork: "sub"})
	s.Put("projects/p/regions/r1/healthChecks/hc", &computepb.HealthCheck{Type: proto.String("TCP"), TcpHealthCheck: &computepb.TCPHealthCheck{Port: proto.Int32(80)}})
	s.Put("projects/p/regions/r1/backendServices/bs", &computepb.BackendService{LoadBalancingScheme: proto.String("INTERNAL"), HealthChecks: []string{"regions/r1/healthChecks/hc"}})
	opts := []option.ClientOption{option.WithEndpoint(s.URL()), option.WithoutAuthentication()}
	ctx := context.Background()
	frs, err := compute.NewForwardingRulesRESTClient(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	pms, err := compute.NewPacketMirroringsRESTClient(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	hcs, err := compute.NewRegionHealthChecksRESTClient(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s, frs, pms, hcs
}

func code(err error) int {
	var ae *apierror.APIError
	if errors.As(err, &ae) {
		return ae.HTTPCode()
	}
	return 0
}

func collector(scheme string) *computepb.ForwardingRule {
	return &computepb.ForwardingRule{Name: proto.String("fr"), LoadBalancingScheme: proto.String(scheme), IsMirroringCollector: proto.Bool(true),
		AllPorts: proto.Bool(true), BackendService: proto.String("regions/r1/backendServices/bs"), Network: proto.String("global/networks/net"), Subnetwork: proto.String("regions/r1/subnetworks/sub")}
}

func TestEmulatorEnforcesCollectorAndPolicyRules(t *testing.T) {
	s, frs, pms, hcs := seeded(t)
	ctx := context.Background()
	_, err := frs.Insert(ctx, &computepb.InsertForwardingRuleRequest{Project: "p", Region: "r1", ForwardingRuleResource: collector("EXTERNAL")})
	if code(err) != 400 || !strings.Contains(err.Error(), "isMirroringCollector can only be set") {
		t.Errorf("EXTERNAL collector: %v", err)
	}
	op, err := frs.Insert(ctx, &computepb.InsertForwardingRuleRequest{Project: "p", Region: "r1", ForwardingRuleResource: collector("INTERNAL")})
	if err != nil {
		t.Fatal(err)
	}
	if err := op.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = frs.Insert(ctx, &computepb.InsertForwardingRuleRequest{Project: "p", Region: "r1", ForwardingRuleResource: collector("INTERNAL")})
	if code(err) != 409 {
		t.Errorf("duplicate name: %v, want 409", err)
	}

	policy := func(instances ...string) *computepb.PacketMirroring {
		mr := &computepb.PacketMirroringMirroredResourceInfo{}
		for _, in := range instances {
			mr.Instances = append(mr.Instances, &computepb.PacketMirroringMirroredResourceInfoInstanceInfo{Url: proto.String(in)})
		}
		return &computepb.PacketMirroring{Name: proto.String("pm"), Network: &computepb.PacketMirroringNetworkInfo{Url: proto.String("global/networks/net")},
			CollectorIlb: &computepb.PacketMirroringForwardingRuleInfo{Url: proto.String("regions/r1/forwardingRules/fr")}, MirroredResources: mr}
	}
	for name, tc := range map[string]struct {
		pm   *computepb.PacketMirroring
		want string
	}{
		"other network": {policy("zones/r1-a/instances/stranger"), "not in network"},
		"no sources":    {policy(), "at least one"},
		"over limit": {func() *computepb.PacketMirroring {
			var ins []string
			for i := range 51 {
				s.AddInstance(Instance{Project: "p", Zone: "r1-a", Name: fmt.Sprintf("bulk-%d", i), Network: "net", Subnetwork: "sub"})
				ins = append(ins, fmt.Sprintf("zones/r1-a/instances/bulk-%d", i))
			}
			return policy(ins...)
		}(), "at most 50 instances"},
	} {
		_, err := pms.Insert(ctx, &computepb.InsertPacketMirroringRequest{Project: "p", Region: "r1", PacketMirroringResource: tc.pm})
		if code(err) != 400 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want 400 %q", name, err, tc.want)
		}
	}

	// A request id replays its operation instead of acting twice.
	rid := "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	op1, err := pms.Insert(ctx, &computepb.InsertPacketMirroringRequest{Project: "p", Region: "r1", PacketMirroringResource: policy("zones/r1-a/instances/vm"), RequestId: &rid})
	if err != nil {
		t.Fatal(err)
	}
	op2, err := pms.Insert(ctx, &computepb.InsertPacketMirroringRequest{Project: "p", Region: "r1", PacketMirroringResource: policy("zones/r1-a/instances/vm"), RequestId: &rid})
	if err != nil || op1.Name() != op2.Name() {
		t.Errorf("request id replay: %v, ops %s / %s", err, op1.Name(), op2.Name())
	}

	// Deleting what is in use fails in the operation, not the call.
	op, err = hcs.Delete(ctx, &computepb.DeleteRegionHealthCheckRequest{Project: "p", Region: "r1", HealthCheck: "hc"})
	if err != nil {
		t.Fatal(err)
	}
	if err := op.Wait(ctx); err == nil || !strings.Contains(err.Error(), "resourceInUseByAnotherResource") {
		t.Errorf("delete in-use health check: %v", err)
	}
	op, err = frs.Delete(ctx, &computepb.DeleteForwardingRuleRequest{Project: "p", Region: "r1", ForwardingRule: "fr"})
	if err != nil {
		t.Fatal(err)
	}
	if err := op.Wait(ctx); err == nil {
		t.Error("deleted a collector a policy still uses")
	}
}

func TestMergePatchKeepsAbsentLists(t *testing.T) {
	cur := &computepb.PacketMirroring{Name: proto.String("pm"), MirroredResources: &computepb.PacketMirroringMirroredResourceInfo{Tags: []string{"a"}, Instances: []*computepb.PacketMirroringMirroredResourceInfoInstanceInfo{{Url: proto.String("x")}}}}
	next, err := mergePatch(cur, []byte(`{"mirroredResources":{"tags":["b"]}}`), &computepb.PacketMirroring{})
	if err != nil {
		t.Fatal(err)
	}
	mr := next.(*computepb.PacketMirroring).GetMirroredResources()
	if len(mr.GetInstances()) != 1 || strings.Join(mr.GetTags(), ",") != "b" {
		t.Errorf("merge patch gave %v", mr)
	}
}
