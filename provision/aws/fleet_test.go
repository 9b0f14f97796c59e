package aws

import (
	"context"
	"strings"
	"testing"

	"github.com/metlo-labs/metlo-appliance/provision/aws/awsemu"
)

// fleetFixture is a controller appliance provisioning a fleet named "edge" for two sources.
func fleetFixture(t *testing.T) *fixture {
	f := newFixture(t, func(c *Config) {
		c.NLBName = "edge"
		c.Fleet = FleetConfig{Size: 2, Max: 4, ImageID: "ami-0metlo", InstanceType: "c6i.xlarge", Settings: []string{"METLO_HOST=http://metlo:8081", "METLO_KEY=metlo.secretsecret"}}
	})
	f.opts.Target = "nlb"
	f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000001"})
	f.emu.AddTask("prod", "web", "EC2")
	return f
}

var fleetSources = []string{"instance:i-0web000000000001", "ecs:prod/web"}

func TestFleetLifecycle(t *testing.T) {
	f := fleetFixture(t)
	f.opts.DryRun, f.opts.MirroredGBPerMonth = true, 100
	out := f.mustReconcile(fleetSources...)
	for _, want := range []string{"would create launch template metlo-fleet-edge", "would create auto scaling group metlo-fleet-edge (2 members (2-4)",
		"would create scaling policy metlo-cpu-target (target tracking: average CPU 60%", "2 fleet members (c6i.xlarge)", "1460 × 0.085"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "secretsecret") || f.emu.Mutations() != 0 {
		t.Fatalf("dry run leaked a setting or changed something:\n%s", out)
	}
	f.opts.DryRun = false
	out = f.mustReconcile(fleetSources...)
	groups := f.emu.Groups()
	if len(groups) != 1 {
		t.Fatalf("groups %+v\n%s", groups, out)
	}
	g := groups[0]
	s := f.emu.Snapshot()
	tg := s.TGs[0]
	if g.Desired != 2 || g.Min != 2 || g.Max != 4 || len(g.Instances) != 2 || g.HealthCheckType != "ELB" || g.LTVersion != "$Latest" ||
		len(g.Subnets) != 2 || len(g.TargetGroups) != 1 || g.TargetGroups[0] != tg.Arn || g.Tags[TagFleet] != "edge" {
		t.Fatalf("group %+v", g)
	}
	if p := g.Policies[scalingPolicy]; p.Metric != "ASGAverageCPUUtilization" || p.Target != 60 {
		t.Fatalf("policy %+v", g.Policies)
	}
	if len(tg.Targets) != 2 || tg.Attrs["stickiness.type"] != "source_ip" || tg.Attrs["deregistration_delay.timeout_seconds"] != "120" || tg.HealthPath != "/readyz" {
		t.Fatalf("target group %+v", tg)
	}
	for _, id := range tg.Targets {
		if id == selfID {
			t.Fatal("the controller registered itself in the fleet's target group")
		}
	}
	lts := f.emu.LaunchTemplates()
	if len(lts) != 1 || lts[0].Versions[0]["ImageId"] != "ami-0metlo" || lts[0].Versions[0]["InstanceType"] != "c6i.xlarge" || lts[0].Versions[0]["MetadataOptions.HttpTokens"] != "required" {
		t.Fatalf("launch template %+v", lts)
	}
	// Members launched across two AZs.
	azs := map[string]bool{}
	for _, sub := range g.Subnets {
		azs[sub] = true
	}
	if len(azs) != 2 {
		t.Fatalf("group subnets %v", g.Subnets)
	}
	f.assertNoop(fleetSources...)
	// The scaling policy moves the desired capacity: a re-run must not fight it.
	f.emu.SetDesired("metlo-fleet-edge", 3)
	f.assertNoop(fleetSources...)
	if g := f.emu.Groups()[0]; g.Desired != 3 {
		t.Fatalf("re-run reset the desired capacity to %d", g.Desired)
	}
	// A new image: a new template version, members launched from now on use it.
	f.p.cfg.Fleet.ImageID = "ami-0newer"
	out = f.mustReconcile(fleetSources...)
	if lts := f.emu.LaunchTemplates(); len(lts[0].Versions) != 2 || !strings.Contains(out, "image ami-0metlo → ami-0newer") {
		t.Fatalf("new image not versioned:\n%s", out)
	}
	// list shows the fleet.
	f.out.Reset()
	if err := f.p.List(context.Background(), f.opts); err != nil {
		t.Fatal(err)
	}
	if out := f.out.String(); !strings.Contains(out, "aws: fleet edge: auto scaling group metlo-fleet-edge, 3 members (desired 3, 2-4)") ||
		!strings.Contains(out, "scaling: ASGAverageCPUUtilization target 60") {
		t.Fatalf("list:\n%s", out)
	}
	// cleanup keeps a fleet that has members, unless the whole fleet is to go.
	f.opts.Yes = true
	f.out.Reset()
	if err := f.p.Cleanup(context.Background(), f.opts); err != nil {
		t.Fatal(err)
	}
	if len(f.emu.Groups()) != 1 || len(f.emu.Snapshot().LBs) != 1 || !strings.Contains(f.out.String(), "has 3 other members") {
		t.Fatalf("cleanup deleted a fleet with members:\n%s", f.out.String())
	}
	f.p.cfg.Fleet.Delete = true
	if err := f.p.Cleanup(context.Background(), f.opts); err != nil {
		t.Fatalf("%v\n%s", err, f.out.String())
	}
	s = f.emu.Snapshot()
	if len(f.emu.Groups())+len(f.emu.LaunchTemplates())+len(s.LBs)+len(s.TGs)+len(s.Sessions)+len(s.Targets)+len(s.Filters) != 0 {
		t.Fatalf("left after deleting the fleet: groups %v, %+v", f.emu.Groups(), s)
	}
}

// The shipped policy covers a fleet's lifecycle in a fresh account (service-linked roles).
func TestFleetUnderShippedPolicy(t *testing.T) {
	f := fleetFixture(t)
	f.emu.Policy, f.emu.FreshAccount = IAMPolicy, true
	f.mustReconcile(fleetSources...)
	f.p.cfg.Fleet.Max = 6
	f.mustReconcile(fleetSources...)
	f.p.cfg.Fleet.Delete, f.opts.Yes = true, true
	if err := f.p.Cleanup(context.Background(), f.opts); err != nil {
		t.Fatalf("%v\n%s", err, f.out.String())
	}
}

// The members' security group, not the controller's, must let the sources' VXLAN in.
func TestFleetSecurityGroup(t *testing.T) {
	f := fleetFixture(t)
	f.emu.AddSecurityGroup(awsemu.SecurityGroup{ID: "sg-0members", VPCID: "vpc-0emu"})
	f.p.cfg.Fleet.SecurityGroups = []string{"sg-0members"}
	out := f.mustReconcile(fleetSources...)
	if !strings.Contains(out, "security group sg-0members of the fleet members' does not let VXLAN (UDP 4789) in from 2 source interfaces") {
		t.Fatalf("fleet security group not checked:\n%s", out)
	}
	f.p.cfg.AllowVXLAN = true
	f.mustReconcile(fleetSources...)
	if r := f.emu.SecurityGroupRules("sg-0members"); len(r) != 1 || r[0].From != 4789 {
		t.Fatalf("rule not added to the members' group: %+v", r)
	}
}
