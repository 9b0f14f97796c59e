package aws

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/metlo-labs/metlo-appliance/provision"
	"github.com/metlo-labs/metlo-appliance/provision/aws/awsemu"
)

func TestFreshProvisionEachSourceType(t *testing.T) {
	cases := []struct {
		name  string
		seed  func(f *fixture) (source string, enis []string)
		owner string
	}{
		{"instance", func(f *fixture) (string, []string) {
			eni := f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000001", Tags: map[string]string{"Name": "web-1"}})
			return "instance:i-0web000000000001", []string{eni}
		}, "i-0web000000000001 (web-1)"},
		{"eni", func(f *fixture) (string, []string) {
			eni := f.emu.AddInstance(awsemu.Instance{ID: "i-0db0000000000001"})
			return "eni:" + eni, []string{eni}
		}, "i-0db0000000000001"},
		{"tag", func(f *fixture) (string, []string) {
			var enis []string
			for _, id := range []string{"i-0api000000000001", "i-0api000000000002", "i-0api000000000003", "i-0api000000000004"} {
				enis = append(enis, f.emu.AddInstance(awsemu.Instance{ID: id, Tags: map[string]string{"app": "api"}}))
			}
			f.emu.AddInstance(awsemu.Instance{ID: "i-0api0000000000ff", State: "stopped", Tags: map[string]string{"app": "api"}})
			f.emu.AddInstance(awsemu.Instance{ID: "i-0other0000000001", Tags: map[string]string{"app": "other"}})
			return "tag:app=api", enis
		}, "i-0api"},
		{"ecs", func(f *fixture) (string, []string) {
			var enis []string
			for range 5 {
				enis = append(enis, f.emu.TaskENI(f.emu.AddTask("prod", "web", "EC2")))
			}
			f.emu.AddTask("prod", "worker", "EC2")
			return "ecs:prod/web", enis
		}, "task "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			src, enis := tc.seed(f)
			out := f.mustReconcile(src)
			snap := f.emu.Snapshot()
			if len(snap.Targets) != 1 || snap.Targets[0].ENI != f.eni {
				t.Fatalf("targets = %+v, want one on the appliance ENI %s", snap.Targets, f.eni)
			}
			if len(snap.Filters) != 1 || len(snap.Filters[0].Rules) != 4 {
				t.Fatalf("filters = %+v, want one with 4 rules", snap.Filters)
			}
			got := f.ourSessions()
			if len(got) != len(enis) {
				t.Fatalf("sessions on %v, want %v\n%s", keys(got), enis, out)
			}
			for _, eni := range enis {
				s, ok := got[eni]
				if !ok {
					t.Fatalf("no session on %s\n%s", eni, out)
				}
				if s.VNI != DefaultVNI(selfID) || s.TargetID != snap.Targets[0].ID || s.FilterID != snap.Filters[0].ID || s.Number != 1 {
					t.Errorf("session %v: want VNI %d, our target and filter, number 1", s, DefaultVNI(selfID))
				}
				if s.Tags[TagSource] != src || !strings.HasPrefix(s.Tags[TagOwner], tc.owner) || s.Tags[TagManaged] != "true" {
					t.Errorf("session tags %v", s.Tags)
				}
			}
			want := "aws: " + itoa(len(enis)) + " sessions mirroring (" + itoa(len(enis)) + " created, 0 changed, 0 kept), 0 removed"
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
			out = f.assertNoop(src)
			if !strings.Contains(out, "(0 created, 0 changed, "+itoa(len(enis))+" kept)") {
				t.Errorf("re-run summary wrong:\n%s", out)
			}
		})
	}
}

func TestNLBTarget(t *testing.T) {
	f := newFixture(t)
	f.opts.Target = "nlb"
	eni := f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000001"})
	out := f.mustReconcile("instance:i-0web000000000001")
	s := f.emu.Snapshot()
	if len(s.LBs) != 1 || s.LBs[0].Type != "network" || s.LBs[0].Scheme != "internal" || s.LBs[0].Attrs["load_balancing.cross_zone.enabled"] != "true" {
		t.Fatalf("load balancers %+v\n%s", s.LBs, out)
	}
	if len(s.TGs) != 1 {
		t.Fatalf("target groups %+v", s.TGs)
	}
	tg := s.TGs[0]
	if tg.Protocol != "UDP" || tg.Port != 4789 || tg.HealthPort != "9731" || tg.HealthPath != "/readyz" ||
		tg.Attrs["stickiness.type"] != "source_ip" || tg.Attrs["stickiness.enabled"] != "true" || !slices.Equal(tg.Targets, []string{selfID}) {
		t.Fatalf("target group %+v", tg)
	}
	if len(s.Listeners) != 1 || s.Listeners[0].Protocol != "UDP" || s.Listeners[0].Port != 4789 || s.Listeners[0].TGArn != tg.Arn {
		t.Fatalf("listeners %+v", s.Listeners)
	}
	if len(s.Targets) != 1 || s.Targets[0].NLBArn != s.LBs[0].Arn {
		t.Fatalf("mirror targets %+v", s.Targets)
	}
	if got := f.ourSessions(); got[eni].TargetID != s.Targets[0].ID {
		t.Fatalf("session %v does not use the NLB target", got[eni])
	}
	f.assertNoop("instance:i-0web000000000001")

	// Switching back to the ENI target moves the session.
	f.opts.Target = "eni"
	out = f.mustReconcile("instance:i-0web000000000001")
	if got := f.ourSessions(); len(got) != 1 || got[eni].TargetID == s.Targets[0].ID {
		t.Fatalf("session not moved to the ENI target: %v\n%s", got, out)
	}
}

func TestUnsupportedSourcesAreSkipped(t *testing.T) {
	f := newFixture(t)
	good := f.emu.AddInstance(awsemu.Instance{ID: "i-0good00000000001"})
	f.emu.AddInstance(awsemu.Instance{ID: "i-0old000000000001", Type: "t2.micro"})
	f.emu.AddTask("prod", "web", "FARGATE")
	f.emu.AddLoadBalancer("edge", "network", "subnet-0emu")
	out, err := f.reconcile("instance:i-0good00000000001", "instance:i-0old000000000001", "ecs:prod/web",
		"alb:edge", "instance:"+selfID, "instance:i-0gone00000000001", "eni:"+f.eni)
	var inc *provision.IncompleteError
	if !errors.As(err, &inc) || len(inc.Missing) != 6 {
		t.Fatalf("want 6 sources reported missing, got %v\n%s", err, out)
	}
	for _, want := range []string{
		"t2.micro is not Nitro-based",
		"Fargate task interfaces are requester-managed",
		"mirror the ALB's targets instead",
		"this is the appliance itself",
		"i-0gone00000000001",
		"own ENI is the mirror target",
		"aws: 1 sessions mirroring (1 created",
	} {
		if !strings.Contains(out+err.Error(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if got := f.ourSessions(); len(got) != 1 || got[good].ID == "" {
		t.Fatalf("sessions %v, want only %s", got, good)
	}
}

func TestSessionNumbersAndLimits(t *testing.T) {
	f := newFixture(t)
	a := f.emu.AddInstance(awsemu.Instance{ID: "i-0a00000000000001"})
	b := f.emu.AddInstance(awsemu.Instance{ID: "i-0b00000000000001"})
	c := f.emu.AddInstance(awsemu.Instance{ID: "i-0c00000000000001"})
	other := f.emu.AddTarget(awsemu.Target{ENI: "eni-0someoneelse"})
	narrow := f.emu.AddFilter(awsemu.FilterRule{Direction: "ingress", Action: "accept", Protocol: 6, SrcCIDR: "0.0.0.0/0", DstCIDR: "0.0.0.0/0", DstPorts: &awsemu.PortRange{From: 22, To: 22}})
	f.emu.AddSession(awsemu.Session{ENI: a, TargetID: other, FilterID: narrow, Number: 1})
	for n := 1; n <= 3; n++ {
		f.emu.AddSession(awsemu.Session{ENI: b, TargetID: other, Number: n * 10})
	}
	out, err := f.reconcile("instance:i-0a00000000000001", "instance:i-0b00000000000001", "instance:i-0c00000000000001")
	if err == nil {
		t.Fatalf("an ENI at its session limit went unreported\n%s", out)
	}
	got := f.ourSessions()
	if got[a].Number != 2 || !strings.Contains(out, "is evaluated first and takes") {
		t.Errorf("session on %s got number %d, want 2 behind the port-22 session, with a warning:\n%s", a, got[a].Number, out)
	}
	if _, ok := got[b]; ok || !strings.Contains(out, "already has 3 mirror sessions") {
		t.Errorf("ENI with 3 sessions was not skipped:\n%s", out)
	}
	// An ENI already mirrored to us by someone else is left alone.
	targets := f.emu.Snapshot().Targets
	var ours string
	for _, tg := range targets {
		if tg.ENI == f.eni {
			ours = tg.ID
		}
	}
	d := f.emu.AddInstance(awsemu.Instance{ID: "i-0d00000000000001"})
	f.emu.AddSession(awsemu.Session{ENI: d, TargetID: ours, Number: 5})
	out = f.mustReconcile("instance:i-0a00000000000001", "instance:i-0c00000000000001", "instance:i-0d00000000000001")
	if r := f.emu.Receiver(a, awsemu.Packet{Dir: "ingress", Proto: 6, Src: "10.9.9.9", Dst: "10.0.0.5", SrcPort: 50000, DstPort: 22}); r == got[a].ID {
		t.Errorf("port-22 traffic of %s went to our session, the earlier session should take it", a)
	}
	if r := f.emu.Receiver(a, awsemu.Packet{Dir: "ingress", Proto: 6, Src: "10.9.9.9", Dst: "10.0.0.5", SrcPort: 50000, DstPort: 80}); r != got[a].ID {
		t.Errorf("port-80 traffic of %s went to %q, want our session %s", a, r, got[a].ID)
	}
	if _, ok := f.ourSessions()[d]; ok {
		t.Errorf("created a second session on %s, already mirrored to us:\n%s", d, out)
	}
	if _, ok := f.ourSessions()[c]; !ok {
		t.Errorf("lost the session on %s", c)
	}
}

func TestECSChurn(t *testing.T) {
	f := newFixture(t)
	t1 := f.emu.AddTask("prod", "web", "EC2")
	t2 := f.emu.AddTask("prod", "web", "EC2")
	f.mustReconcile("ecs:prod/web")
	f.emu.StopTask(t1)
	t3 := f.emu.AddTask("prod", "web", "EC2")
	out := f.mustReconcile("ecs:prod/web")
	got := f.ourSessions()
	if len(got) != 2 || got[f.emu.TaskENI(t2)].ID == "" || got[f.emu.TaskENI(t3)].ID == "" {
		t.Fatalf("sessions after churn %v\n%s", keys(got), out)
	}
	if !strings.Contains(out, "(1 created, 0 changed, 1 kept), 1 removed") {
		t.Fatalf("summary wrong:\n%s", out)
	}
	// A source that cannot be resolved (throttled past every retry) keeps its sessions, and
	// the run says so with a non-zero exit.
	f.emu.Throttle("ListTasks", 100)
	out, err := f.reconcile("ecs:prod/web")
	if err == nil || len(f.ourSessions()) != 2 || !strings.Contains(out, "could not be resolved") {
		t.Fatalf("sessions dropped or failure hidden while ECS was unavailable: %v\n%s", err, out)
	}
	f.emu.Throttle("ListTasks", 0)
}

func TestThrottlingIsRetried(t *testing.T) {
	f := newFixture(t)
	f.opts.Target = "nlb"
	f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000001"})
	f.emu.AddTask("prod", "web", "EC2")
	for _, a := range []string{"DescribeTrafficMirrorTargets", "CreateTrafficMirrorSession", "CreateTrafficMirrorFilterRule",
		"DescribeInstances", "CreateLoadBalancer", "DescribeTargetGroups", "ListTasks", "DescribeTasks"} {
		f.emu.Throttle(a, 2)
	}
	out := f.mustReconcile("instance:i-0web000000000001", "ecs:prod/web")
	if len(f.ourSessions()) != 2 {
		t.Fatalf("sessions %v\n%s", keys(f.ourSessions()), out)
	}
	throttled := 0
	for _, c := range f.emu.Calls() {
		if c == "CreateTrafficMirrorSession" {
			throttled++
		}
	}
	if throttled < 4 {
		t.Fatalf("CreateTrafficMirrorSession called %d times, want the 2 throttled attempts retried", throttled)
	}
	f.assertNoop("instance:i-0web000000000001", "ecs:prod/web")
}

func TestDryRun(t *testing.T) {
	f := newFixture(t)
	f.opts.Target = "nlb"
	f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000001"})
	f.opts.DryRun = true
	out := f.mustReconcile("instance:i-0web000000000001")
	if f.emu.Mutations() != 0 {
		t.Fatalf("dry run mutated %d times", f.emu.Mutations())
	}
	for _, want := range []string{"+ would create traffic mirror target", "+ would create internal network load balancer",
		"+ would create traffic mirror session", "aws: dry run, nothing changed (13 resources to change)",
		"network load balancer metlo-i-0appliance0000001  730 × 0.0225", "mirror sessions on 1 more ENIs", "total"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	f.emu.Deny("CreateTrafficMirrorSession")
	out, err := f.reconcile("instance:i-0web000000000001")
	var denied *provision.DeniedError
	if !errors.As(err, &denied) || !strings.Contains(err.Error(), "ec2:CreateTrafficMirrorSession") || !strings.Contains(out, "missing permission") {
		t.Fatalf("denied permission not reported: %v\n%s", err, out)
	}
}

func TestRemoveThenProvisionAgain(t *testing.T) {
	f := newFixture(t)
	eni := f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000001"})
	f.mustReconcile("instance:i-0web000000000001")
	f.out.Reset()
	if err := f.p.Remove(context.Background(), f.opts, "i-0web000000000001"); err != nil {
		t.Fatal(err)
	}
	if len(f.ourSessions()) != 0 {
		t.Fatal("remove left the session")
	}
	// The same deterministic ClientToken now replays a deleted session: the run must notice.
	f.mustReconcile("instance:i-0web000000000001")
	if f.ourSessions()[eni].ID == "" {
		t.Fatal("session not recreated after remove")
	}
	id := f.ourSessions()[eni].ID
	f.out.Reset()
	if err := f.p.Remove(context.Background(), f.opts, id); err != nil {
		t.Fatal(err)
	}
	if err := f.p.Remove(context.Background(), f.opts, id); err == nil {
		t.Fatal("removing a missing session succeeded")
	}
	// Cleanup then provision: the filter and target tokens replay deleted resources too.
	f.mustReconcile("instance:i-0web000000000001")
	f.opts.Yes = true
	if err := f.p.Cleanup(context.Background(), f.opts); err != nil {
		t.Fatal(err)
	}
	f.mustReconcile("instance:i-0web000000000001")
	if s := f.emu.Snapshot(); len(s.Targets) != 1 || len(s.Filters) != 1 || len(f.ourSessions()) != 1 {
		t.Fatalf("after cleanup+provision: %d targets, %d filters, %d sessions", len(s.Targets), len(s.Filters), len(f.ourSessions()))
	}
}

func TestFilterRulesConverge(t *testing.T) {
	rules := []string{"action=reject,dst-port=22", "dst-port=80-443", "src=10.0.0.0/8,dir=ingress"}
	f := newFixture(t, func(c *Config) { c.FilterRules = rules })
	f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000001"})
	f.mustReconcile("instance:i-0web000000000001")
	fl := f.emu.Snapshot().Filters[0]
	if len(fl.Rules) != 9 {
		t.Fatalf("%d rules, want 9 (4 reject, 4 port accept, 1 cidr accept)", len(fl.Rules))
	}
	nums := map[string][]int{}
	for _, r := range fl.Rules {
		nums[r.Direction] = append(nums[r.Direction], r.Number)
		if r.Action == "reject" && (r.DstPorts == nil || r.DstPorts.From != 22) {
			t.Errorf("reject rule %+v", r)
		}
	}
	if !slices.Equal(nums["ingress"], []int{100, 200, 300, 400, 500}) || !slices.Equal(nums["egress"], []int{100, 200, 300, 400}) {
		t.Errorf("rule numbers %v", nums)
	}
	f.assertNoop("instance:i-0web000000000001")
	// Back to the defaults: rules converge in place, sessions stay.
	f.p.cfg.FilterRules = nil
	f.mustReconcile("instance:i-0web000000000001")
	if fl := f.emu.Snapshot().Filters[0]; len(fl.Rules) != 4 {
		t.Fatalf("%d rules after reverting, want 4", len(fl.Rules))
	}
	if _, err := ParseRules(slices.Repeat([]string{"dst-port=80"}, 3)); err == nil {
		t.Fatal("12 rules accepted")
	}
	if _, err := ParseRules([]string{"proto=all,dst-port=80"}); err == nil {
		t.Fatal("port range without protocol accepted")
	}
}

func TestListAndCleanup(t *testing.T) {
	f := newFixture(t)
	f.opts.Target = "nlb"
	f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000001", Tags: map[string]string{"Name": "web-1"}})
	task := f.emu.AddTask("prod", "web", "EC2")
	f.mustReconcile("instance:i-0web000000000001", "ecs:prod/web")
	f.emu.StopTask(task)
	f.out.Reset()
	if err := f.p.List(context.Background(), f.opts); err != nil {
		t.Fatal(err)
	}
	out := f.out.String()
	for _, want := range []string{"SESSION", "i-0web000000000001 (web-1) [instance:i-0web000000000001]", "NLB metlo-" + selfID, "active", "source gone", "aws: 2 sessions"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	if err := f.p.Cleanup(context.Background(), f.opts); err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Fatalf("cleanup without --yes off a terminal: %v", err)
	}
	// Crash half-way through cleanup, then finish it.
	f.emu.CrashAfter(3)
	f.opts.Yes = true
	if err := f.p.Cleanup(context.Background(), f.opts); err == nil {
		t.Fatal("cleanup survived a crash")
	}
	f.emu.Recover()
	if err := f.p.Cleanup(context.Background(), f.opts); err != nil {
		t.Fatal(err)
	}
	if n := f.emu.TaggedFor(selfID); n != 0 {
		t.Fatalf("%d resources still tagged for the appliance", n)
	}
	if s := f.emu.Snapshot(); len(s.LBs)+len(s.TGs)+len(s.Listeners)+len(s.Targets)+len(s.Filters)+len(s.Sessions) != 0 {
		t.Fatalf("left behind: %+v", s)
	}
	f.out.Reset()
	if err := f.p.Cleanup(context.Background(), f.opts); err != nil || !strings.Contains(f.out.String(), "nothing tagged") {
		t.Fatalf("second cleanup: %v %s", err, f.out.String())
	}
}

func TestNoSourcesWithoutTerminal(t *testing.T) {
	f := newFixture(t)
	_, err := f.reconcile()
	if err == nil || !strings.Contains(err.Error(), "--source") || !strings.Contains(err.Error(), "ecs:CLUSTER/SERVICE") {
		t.Fatalf("err = %v", err)
	}
	if _, err := f.reconcile("bogus:x"); err == nil {
		t.Fatal("unknown source kind accepted")
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }
