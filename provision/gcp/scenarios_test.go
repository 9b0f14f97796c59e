package gcp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"cloud.google.com/go/compute/apiv1/computepb"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// managedCollections are the collections the provisioner creates resources in.
var managedCollections = []string{"instanceGroups", "healthChecks", "backendServices", "forwardingRules", "firewalls", "packetMirrorings"}

// inventory is every managed resource key plus the instance group members.
func (w *world) inventory() []string {
	var out []string
	for _, c := range managedCollections {
		out = append(out, w.emu.Keys(c)...)
	}
	for _, g := range w.emu.Keys("instanceGroups") {
		for _, m := range w.emu.Members(g) {
			out = append(out, g+" ∋ "+m)
		}
	}
	return out
}

func TestProvisionEachSourceKind(t *testing.T) {
	for _, tc := range []struct {
		source             string
		instances, subnets []string
		tags               []string
		summary            string
	}{
		{source: "instance:us-central1-b/web-2", instances: []string{"projects/proj-1/zones/us-central1-b/instances/web-2"}, summary: "1 instance, 0 subnets, 0 tags"},
		{source: "subnet:app-sub", subnets: []string{"projects/proj-1/regions/us-central1/subnetworks/app-sub"}, summary: "0 instances, 1 subnet, 0 tags"},
		{source: "tag:web", tags: []string{"web"}, summary: "0 instances, 0 subnets, 1 tag"},
	} {
		t.Run(tc.source, func(t *testing.T) {
			w := newWorld(t)
			out := w.provision(t, tc.source)
			if !strings.Contains(out, "gcp: policy metlo-appliance-metlo-1-pm ok: "+tc.summary) {
				t.Errorf("summary missing %q", tc.summary)
			}
			got := setOf(testProject, policyOf(t, w))
			if !slices.Equal(got.instances, tc.instances) || !slices.Equal(got.subnets, tc.subnets) || !slices.Equal(got.tags, tc.tags) {
				t.Errorf("policy mirrors %+v", got)
			}
		})
	}
}

func TestAddingSourcePatchesPolicy(t *testing.T) {
	w := newWorld(t)
	w.provision(t, "instance:web-1")
	w.emu.ResetCalls()
	out := w.provision(t, "instance:web-1", "subnet:app-sub", "tag:web")
	if !strings.Contains(out, "  ~ patch packet mirroring metlo-appliance-metlo-1-pm (add subnet regions/us-central1/subnetworks/app-sub, add tag web)") {
		t.Errorf("no patch line")
	}
	if m := w.emu.Mutations(); !slices.Equal(m, []string{"compute.packetMirrorings.patch"}) {
		t.Errorf("mutations = %v, want one patch", m)
	}
	got := setOf(testProject, policyOf(t, w))
	if len(got.instances) != 1 || len(got.subnets) != 1 || len(got.tags) != 1 {
		t.Errorf("policy mirrors %+v, want the instance kept and the subnet and tag added", got)
	}
}

func TestBadSourcesAreSkippedWithReasons(t *testing.T) {
	w := newWorld(t)
	out, err := w.run(t, w.p.Reconcile, provision.Options{Sources: []string{
		"instance:web-1", "instance:api", "instance:db-1", "instance:us-east1-b/east-1", "instance:nope", "subnet:other-sub", "instance:metlo-1", "tag:Bad_Tag",
	}})
	var inc *provision.IncompleteError
	if !errors.As(err, &inc) || len(inc.Missing) != 7 || !inc.Permanent() {
		t.Fatalf("err = %v, want 7 sources reported", err)
	}
	for _, want := range []string{
		"  ! skip instance:api: found in zones us-central1-a, us-central1-b: write instance:ZONE/api",
		"  ! skip instance:db-1: in network other, not the collector's network default",
		"  ! skip instance:us-east1-b/east-1: in zone us-east1-b, outside the collector's region us-central1",
		"  ! skip instance:nope: not found in us-central1",
		"  ! skip subnet:other-sub: in network other, not the collector's network default",
		"  ! skip instance:metlo-1: this appliance is the collector",
		"  ! skip tag:Bad_Tag: not a valid network tag",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if got := setOf(testProject, policyOf(t, w)); !slices.Equal(got.instances, []string{"projects/proj-1/zones/us-central1-a/instances/web-1"}) {
		t.Errorf("the valid source was not mirrored: %+v", got)
	}
}

func TestLimitsCheckedBeforeCalling(t *testing.T) {
	w := newWorld(t)
	var sources []string
	for i := range 51 {
		name := fmt.Sprintf("bulk-%02d", i)
		w.emu.AddInstance(gcpemuInstance(name))
		sources = append(sources, "instance:"+name)
	}
	_, err := w.run(t, w.p.Reconcile, provision.Options{Sources: sources})
	if err == nil || !strings.Contains(err.Error(), "at most 50 instances, this would be 51") {
		t.Fatalf("err = %v", err)
	}
	if m := w.emu.Mutations(); len(m) != 0 {
		t.Errorf("limit error after mutating calls %v", m)
	}
	for i := range 6 {
		w.emu.AddSubnetwork(testProject, testRegion, fmt.Sprintf("s%d", i), "default", fmt.Sprintf("10.50.%d.0/24", i))
	}
	_, err = w.run(t, w.p.Reconcile, provision.Options{Sources: []string{"subnet:s0", "subnet:s1", "subnet:s2", "subnet:s3", "subnet:s4", "subnet:s5"}})
	if err == nil || !strings.Contains(err.Error(), "at most 5 subnets, this would be 6") {
		t.Fatalf("err = %v", err)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	w := newWorld(t)
	out, err := w.run(t, w.p.Reconcile, provision.Options{Sources: []string{"tag:web"}, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "  + would create packet mirroring metlo-appliance-metlo-1-pm (0 instances, 0 subnets, 1 tag)") || !strings.Contains(out, "gcp: dry run, nothing changed (7 resources to change)") {
		t.Errorf("unexpected plan")
	}
	if m := w.emu.Mutations(); len(m) != 0 {
		t.Errorf("dry run mutated: %v", m)
	}
}

// TestInterruptedRunsConverge cuts a run off right after each mutating call in turn, then
// re-runs: the end state must equal an uninterrupted run's, with nothing duplicated.
func TestInterruptedRunsConverge(t *testing.T) {
	ref := newWorld(t)
	ref.provision(t, "instance:web-1", "tag:web")
	want := ref.inventory()
	total := len(ref.emu.Mutations())
	for k := 1; k <= total; k++ {
		t.Run(fmt.Sprint("after-", k), func(t *testing.T) {
			w := newWorld(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			n := 0
			w.emu.AfterMutation = func(string) {
				if n++; n == k {
					cancel()
				}
			}
			opts := provision.Options{Sources: []string{"instance:web-1", "tag:web"}, Out: &strings.Builder{}}
			if err := w.p.Reconcile(ctx, opts); err == nil {
				t.Fatalf("interrupted run reported success")
			}
			w.emu.AfterMutation = nil
			w.provision(t, "instance:web-1", "tag:web")
			if got := w.inventory(); !slices.Equal(got, want) {
				t.Errorf("state after interruption + re-run:\n%v\nwant\n%v", got, want)
			}
			w.emu.ResetCalls()
			w.provision(t, "instance:web-1", "tag:web")
			if m := w.emu.Mutations(); len(m) != 0 {
				t.Errorf("third run still mutating: %v", m)
			}
		})
	}
}

func TestOperationErrorSurfacedThenRecovered(t *testing.T) {
	w := newWorld(t)
	w.emu.FailNextOperation("compute.forwardingRules.insert", 403, "QUOTA_EXCEEDED", "Quota 'INTERNAL_FORWARDING_RULES_PER_NETWORK' exceeded. Limit: 0.0")
	_, err := w.run(t, w.p.Reconcile, provision.Options{Sources: []string{"tag:web"}})
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"create forwarding rule metlo-appliance-metlo-1-fr", "failed (HTTP 403)", "QUOTA_EXCEEDED", "INTERNAL_FORWARDING_RULES_PER_NETWORK"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if len(w.emu.Keys("packetMirrorings")) != 0 {
		t.Error("policy created after its collector failed")
	}
	// The re-run sends the same request id; the API replays the failed operation, and the
	// provisioner must retry with a fresh id rather than fail forever.
	w.provision(t, "tag:web")
	if len(w.emu.Keys("forwardingRules")) != 1 || len(w.emu.Keys("packetMirrorings")) != 1 {
		t.Errorf("re-run did not recover: %v", w.inventory())
	}
}

func TestForeignResourceIsNotAdopted(t *testing.T) {
	w := newWorld(t)
	w.emu.Put("projects/proj-1/regions/us-central1/healthChecks/metlo-appliance-metlo-1-hc", &computepb.HealthCheck{Description: ptr("someone else's"), Type: ptr("TCP")})
	_, err := w.run(t, w.p.Reconcile, provision.Options{Sources: []string{"tag:web"}})
	if err == nil || !strings.Contains(err.Error(), "health check metlo-appliance-metlo-1-hc exists but was not created by metlo-appliance") {
		t.Fatalf("err = %v", err)
	}
	if m := w.emu.Mutations(); len(m) != 0 {
		t.Errorf("mutated despite the conflict: %v", m)
	}
}

func TestVanishedInstanceIsUnmirrored(t *testing.T) {
	w := newWorld(t)
	w.provision(t, "instance:web-1", "instance:web-2")
	w.emu.Delete("projects/proj-1/zones/us-central1-b/instances/web-2")
	out := w.provision(t, "instance:web-1")
	if !strings.Contains(out, "remove instance zones/us-central1-b/instances/web-2: it no longer exists") {
		t.Errorf("vanished instance not reported")
	}
	if got := setOf(testProject, policyOf(t, w)); len(got.instances) != 1 {
		t.Errorf("policy still mirrors %v", got.instances)
	}
}

func TestRemoveAndCleanupLeaveNothing(t *testing.T) {
	w := newWorld(t)
	w.provision(t, "instance:web-1", "subnet:app-sub")
	out, err := w.run(t, func(ctx context.Context, o provision.Options) error { return w.p.Remove(ctx, o, "instance:web-1") }, provision.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Emptying the instance list cannot be expressed as a merge patch: the policy is re-created.
	if !strings.Contains(out, "  ~ replace packet mirroring metlo-appliance-metlo-1-pm (remove instance zones/us-central1-a/instances/web-1") {
		t.Errorf("no replace line")
	}
	if got := setOf(testProject, policyOf(t, w)); len(got.instances) != 0 || len(got.subnets) != 1 {
		t.Errorf("after remove the policy mirrors %+v", got)
	}
	out, err = w.run(t, func(ctx context.Context, o provision.Options) error { return w.p.Remove(ctx, o, "subnet:app-sub") }, provision.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "  - delete packet mirroring metlo-appliance-metlo-1-pm (no sources left)") || len(w.emu.Keys("packetMirrorings")) != 0 {
		t.Errorf("policy not deleted when its last source went")
	}
	out, err = w.run(t, func(ctx context.Context, o provision.Options) error { return w.p.Remove(ctx, o, "tag:web") }, provision.Options{})
	if err != nil || !strings.Contains(out, "gcp: packet mirroring metlo-appliance-metlo-1-pm not found, nothing to remove") {
		t.Errorf("remove without a policy: %v", err)
	}

	w.provision(t, "tag:web")
	if _, err := w.run(t, w.p.Cleanup, provision.Options{}); err == nil || !strings.Contains(err.Error(), "pass --yes") {
		t.Fatalf("cleanup off a terminal without --yes: %v", err)
	}
	out, err = w.run(t, w.p.Cleanup, provision.Options{Yes: true})
	if err != nil {
		t.Fatal(err)
	}
	order := []string{"delete packet mirroring", "delete forwarding rule", "delete backend service", "delete instance group", "delete health check", "delete firewall rule"}
	last := -1
	for _, o := range order {
		i := strings.Index(out, o)
		if i < last {
			t.Errorf("%q out of dependency order", o)
		}
		last = i
	}
	if inv := w.inventory(); len(inv) != 0 {
		t.Errorf("cleanup left %v", inv)
	}
	w.emu.ResetCalls()
	out, err = w.run(t, w.p.Cleanup, provision.Options{Yes: true})
	if err != nil || !strings.Contains(out, "0 deleted, 8 already gone") || len(w.emu.Mutations()) != 0 {
		t.Errorf("second cleanup: err %v, mutations %v", err, w.emu.Mutations())
	}
}

func TestListShowsPolicyAndCollector(t *testing.T) {
	w := newWorld(t)
	w.provision(t, "instance:web-1", "tag:web")
	out, err := w.run(t, w.p.List, provision.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"packet mirroring", "1 instance, 0 subnets, 1 tag; filter tcp BOTH 0.0.0.0/0,::/0", "zones/us-central1-a/instances/web-1", "isMirroringCollector=true", "1 member", "HTTP :9731/readyz"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q", want)
		}
	}
}

func ptr(s string) *string { return &s }
