package aws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/metlo-labs/metlo-appliance/provision"
	"github.com/metlo-labs/metlo-appliance/provision/aws/awsemu"
)

// Each test here pins one defect of issue 15; the commit that added it says which failed on
// the code before.

func incomplete(t *testing.T, err error, out string) *provision.IncompleteError {
	t.Helper()
	var inc *provision.IncompleteError
	if !errors.As(err, &inc) {
		t.Fatalf("want an IncompleteError, got %v\n%s", err, out)
	}
	return inc
}

// Defect 1: a session AWS refuses is a failed run, not "0 sessions ok".
func TestRefusedSessionFailsTheRun(t *testing.T) {
	f := newFixture(t)
	eni := f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000001"})
	f.emu.Deny("CreateTrafficMirrorSession")
	out, err := f.reconcile("instance:i-0web000000000001")
	inc := incomplete(t, err, out)
	if len(inc.Missing) != 1 || inc.Missing[0].Source != "instance:i-0web000000000001" || !strings.Contains(inc.Missing[0].Reason, "UnauthorizedOperation") ||
		!strings.Contains(inc.Missing[0].What, eni) {
		t.Fatalf("missing = %+v", inc.Missing)
	}
	if inc.Permanent() {
		t.Error("a permission problem was reported as permanent (boot would stop retrying)")
	}
	if strings.Contains(out, "1 sessions mirroring") {
		t.Errorf("summary claims success:\n%s", out)
	}
}

// Defect 2: AWS mirrors each packet once, by the first session (lowest number) whose filter
// accepts it; an accept-all session ahead of ours takes everything.
func TestSessionOrderDecidesWhoGetsThePackets(t *testing.T) {
	f := newFixture(t)
	eni := f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000001"})
	other := f.emu.AddTarget(awsemu.Target{ENI: "eni-0someoneelse"})
	all := f.emu.AddFilter(
		awsemu.FilterRule{Direction: "ingress", Action: "accept", SrcCIDR: "0.0.0.0/0", DstCIDR: "0.0.0.0/0"},
		awsemu.FilterRule{Direction: "egress", Action: "accept", SrcCIDR: "0.0.0.0/0", DstCIDR: "0.0.0.0/0"},
		awsemu.FilterRule{Direction: "ingress", Action: "accept", SrcCIDR: "::/0", DstCIDR: "::/0"},
		awsemu.FilterRule{Direction: "egress", Action: "accept", SrcCIDR: "::/0", DstCIDR: "::/0"})
	theirs := f.emu.AddSession(awsemu.Session{ENI: eni, TargetID: other, FilterID: all, Number: 5})
	pkt := awsemu.Packet{Dir: "egress", Proto: 6, Src: "10.0.0.9", Dst: "10.0.3.3", SrcPort: 40000, DstPort: 443}

	out, err := f.reconcile("instance:i-0web000000000001")
	inc := incomplete(t, err, out)
	if !strings.Contains(inc.Error(), "evaluated first and accepts every packet ours would") || !strings.Contains(inc.Error(), theirs) {
		t.Fatalf("precedence not explained: %v", err)
	}
	if len(f.ourSessions()) != 0 {
		t.Fatalf("created a session that can never receive a packet")
	}
	// The user chooses to go first: a number below 5 is free.
	f.p.cfg.SessionNumber = "first"
	f.mustReconcile("instance:i-0web000000000001")
	ours := f.ourSessions()[eni]
	if ours.Number >= 5 || f.emu.Receiver(eni, pkt) != ours.ID {
		t.Fatalf("our session %v does not receive the packets (receiver %s)", ours, f.emu.Receiver(eni, pkt))
	}
	f.assertNoop("instance:i-0web000000000001")
	// Going back to "after" would hand the traffic back: the session is kept where it is.
	f.p.cfg.SessionNumber = ""
	f.assertNoop("instance:i-0web000000000001")

	// Nothing below 1: the run says so instead of pretending.
	f2 := newFixture(t, func(c *Config) { c.SessionNumber = "first" })
	eni2 := f2.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000002"})
	all2 := f2.emu.AddFilter(awsemu.FilterRule{Direction: "egress", Action: "accept", SrcCIDR: "0.0.0.0/0", DstCIDR: "0.0.0.0/0"},
		awsemu.FilterRule{Direction: "ingress", Action: "accept", SrcCIDR: "0.0.0.0/0", DstCIDR: "0.0.0.0/0"},
		awsemu.FilterRule{Direction: "ingress", Action: "accept", SrcCIDR: "::/0", DstCIDR: "::/0"},
		awsemu.FilterRule{Direction: "egress", Action: "accept", SrcCIDR: "::/0", DstCIDR: "::/0"})
	f2.emu.AddSession(awsemu.Session{ENI: eni2, TargetID: f2.emu.AddTarget(awsemu.Target{ENI: "eni-0x"}), FilterID: all2, Number: 1})
	out, err = f2.reconcile("instance:i-0web000000000002")
	if inc := incomplete(t, err, out); !strings.Contains(inc.Error(), "no session number fits") {
		t.Fatalf("err = %v", err)
	}
}

// Defect 3: Describe may miss a resource right after its create. The run must wait for it,
// not create it again with a new token.
func TestEventuallyConsistentDescribe(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.ConsistencyWait = 2e9 })
	f.emu.Lag = 3
	f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000001"})
	f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000002"})
	out := f.mustReconcile("instance:i-0web000000000001", "instance:i-0web000000000002")
	s := f.emu.Snapshot()
	if len(s.Targets) != 1 || len(s.Filters) != 1 || len(s.Sessions) != 2 {
		t.Fatalf("after a lagging Describe: %d targets, %d filters, %d sessions (want 1, 1, 2)\n%s", len(s.Targets), len(s.Filters), len(s.Sessions), out)
	}
}

// Defect 5: interfaces AWS refuses as sources are named with the reason, and dry runs find
// them too; requester-managed RDS interfaces are mirrored.
func TestInterfaceRules(t *testing.T) {
	f := newFixture(t)
	alb := f.emu.AddLoadBalancer("shop", "application", "subnet-0emu", "subnet-0emub")
	albENI := f.emu.ScaleLoadBalancer(alb, 1)[0]
	f.emu.AddTrunkedTask("prod", "web")
	rds := f.emu.AddManagedENI("amazon-rds", "RDSNetworkInterface", "subnet-0emu")
	f.emu.AddInstance(awsemu.Instance{ID: "i-0new000000000001", Type: "m6i.large"})
	f.emu.AddInstance(awsemu.Instance{ID: "i-0metal0000000001", Type: "c5.metal"})
	srcs := []string{"alb:shop", "eni:" + albENI, "ecs:prod/web", "eni:" + rds, "instance:i-0new000000000001", "instance:i-0metal0000000001"}
	for _, dry := range []bool{true, false} {
		f.opts.DryRun = dry
		out, err := f.reconcile(srcs...)
		inc := incomplete(t, err, out)
		if len(inc.Missing) != 5 || !inc.Permanent() {
			t.Fatalf("dry=%v: missing %+v", dry, inc.Missing)
		}
		for _, want := range []string{"mirror the ALB's targets", "requester-managed by amazon-elb", "branch interface (ECS ENI trunking)",
			"m6i.large is among the Nitro types AWS does not mirror", "c5.metal is bare metal"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("dry=%v: error lacks %q: %v", dry, want, err)
			}
		}
	}
	if got := f.ourSessions(); len(got) != 1 || got[rds].ID == "" {
		t.Fatalf("sessions %v, want one on the RDS interface %s", keys(got), rds)
	}
}

// Defect 5 (DryRun): a dry run asks EC2 to validate each create, so it fails where the real
// run would — here a source that is another appliance's mirror target.
func TestDryRunValidates(t *testing.T) {
	f := newFixture(t)
	eni := f.emu.AddInstance(awsemu.Instance{ID: "i-0other00000000001"})
	f.emu.AddTarget(awsemu.Target{ENI: eni})
	f.opts.DryRun = true
	out, err := f.reconcile("instance:i-0other00000000001")
	inc := incomplete(t, err, out)
	if !strings.Contains(inc.Error(), "is a traffic mirror target and cannot also be a source") || f.emu.Mutations() != 0 {
		t.Fatalf("err = %v, %d mutations", err, f.emu.Mutations())
	}
}

// Defect 14: every eligible interface of an instance is mirrored, the others named.
func TestEveryInterfaceOfAnInstance(t *testing.T) {
	f := newFixture(t)
	eth0 := f.emu.AddInstance(awsemu.Instance{ID: "i-0multi0000000001", Tags: map[string]string{"Name": "multi"}})
	eth1 := f.emu.AddENI("i-0multi0000000001", 1, awsemu.ENI{SubnetID: "subnet-0emub"})
	eth2 := f.emu.AddENI("i-0multi0000000001", 2, awsemu.ENI{InterfaceType: "efa"})
	out, err := f.reconcile("instance:i-0multi0000000001")
	inc := incomplete(t, err, out)
	if len(inc.Missing) != 1 || !strings.Contains(inc.Missing[0].What, eth2) || !strings.Contains(inc.Missing[0].Reason, "a efa interface") {
		t.Fatalf("missing %+v", inc.Missing)
	}
	got := f.ourSessions()
	if len(got) != 2 || got[eth0].ID == "" || got[eth1].ID == "" || got[eth1].Tags[TagOwner] != "i-0multi0000000001 (multi) eth1" {
		t.Fatalf("sessions %v", got)
	}
}

// Defect 10: the packet length is validated, and a changed one reaches existing sessions.
func TestPacketLength(t *testing.T) {
	f := newFixture(t)
	f.opts.Target = "nlb"
	eni := f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000001"})
	f.p.cfg.PacketLength = 9000
	if _, err := f.reconcile("instance:i-0web000000000001"); err == nil || !strings.Contains(err.Error(), "want 1-8500") || f.emu.Mutations() != 0 {
		t.Fatalf("9000 bytes to an NLB target: %v", err)
	}
	f.p.cfg.PacketLength = 0
	f.mustReconcile("instance:i-0web000000000001")
	if s := f.ourSessions()[eni]; s.PacketLength != 8500 {
		t.Fatalf("NLB session packet length %d, want the API's 8500", s.PacketLength)
	}
	f.assertNoop("instance:i-0web000000000001")
	f.p.cfg.PacketLength = 200
	out := f.mustReconcile("instance:i-0web000000000001")
	if s := f.ourSessions()[eni]; s.PacketLength != 200 || !strings.Contains(out, "packet length 8500 → 200") {
		t.Fatalf("packet length not applied: %+v\n%s", s, out)
	}
	f.assertNoop("instance:i-0web000000000001")
	f.p.cfg.PacketLength = 0
	f.mustReconcile("instance:i-0web000000000001")
	if s := f.ourSessions()[eni]; s.PacketLength != 8500 {
		t.Fatalf("packet length not reset: %+v", s)
	}
}

// Defect 11: tag: sources only where mirrored packets can reach the target.
func TestSourcesOnlyFromReachableVPCs(t *testing.T) {
	f := newFixture(t)
	f.emu.AddSubnet("subnet-0far", "vpc-0far", "us-east-1a", "10.50.0.0/20")
	near := f.emu.AddInstance(awsemu.Instance{ID: "i-0near00000000001", Tags: map[string]string{"app": "api"}})
	far := f.emu.AddInstance(awsemu.Instance{ID: "i-0far000000000001", SubnetID: "subnet-0far", Tags: map[string]string{"app": "api"}})
	out, err := f.reconcile("tag:app=api")
	inc := incomplete(t, err, out)
	if len(inc.Missing) != 1 || !strings.Contains(inc.Missing[0].Reason, "in vpc-0far, which cannot reach the mirror target in vpc-0emu") {
		t.Fatalf("missing %+v", inc.Missing)
	}
	if got := f.ourSessions(); len(got) != 1 || got[near].ID == "" {
		t.Fatalf("sessions %v", keys(got))
	}
	f.emu.AddPeering("vpc-0emu", "vpc-0far", "active")
	f.mustReconcile("tag:app=api")
	if got := f.ourSessions(); len(got) != 2 || got[far].ID == "" {
		t.Fatalf("peered VPC not mirrored: %v", keys(got))
	}
}

// Defect 15 (provision side): the appliance's security group must let VXLAN in; the run
// says so, and adds the rule when asked.
func TestSecurityGroupRule(t *testing.T) {
	f := newFixture(t)
	f.emu.AddSecurityGroup(awsemu.SecurityGroup{ID: "sg-0web", VPCID: "vpc-0emu"})
	f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000001", Groups: []string{"sg-0web"}})
	f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000002", SubnetID: "subnet-0emub", Groups: []string{"sg-0web"}})
	web := f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000003", Groups: []string{"sg-0web"}})
	srcs := []string{"instance:i-0web000000000001", "instance:i-0web000000000002", "instance:i-0web000000000003"}
	pkt := awsemu.Packet{Dir: "ingress", Proto: 6, Src: "10.9.9.9", Dst: "10.0.0.9", SrcPort: 50000, DstPort: 443}
	out := f.mustReconcile(srcs...)
	if f.emu.Receiver(web, pkt) == "" || f.emu.Delivered(web, pkt) {
		t.Fatalf("the security group should drop the mirrored copy (receiver %q)", f.emu.Receiver(web, pkt))
	}
	if !strings.Contains(out, "does not let VXLAN (UDP 4789) in from 3 source interfaces") || !strings.Contains(out, "--aws-allow-vxlan") {
		t.Fatalf("blocked VXLAN not reported:\n%s", out)
	}
	f.p.cfg.AllowVXLAN = true
	out = f.mustReconcile(srcs...)
	rules := f.emu.SecurityGroupRules("sg-0emudefault")
	last := rules[len(rules)-1]
	if last.Proto != "udp" || last.From != 4789 || strings.Join(last.CIDRs, ",") != "10.0.0.0/20,10.0.16.0/20" {
		t.Fatalf("rule added: %+v\n%s", last, out)
	}
	if !f.emu.Delivered(web, pkt) {
		t.Fatal("mirrored copies still dropped after the rule was added")
	}
	f.assertNoop(srcs...)
}

// Defect 13: the shipped policy, evaluated by the emulator, is enough for a fresh account's
// whole lifecycle — and does not let the appliance delete mirroring it does not own.
func TestShippedPolicyIsEnoughAndNoMore(t *testing.T) {
	f := newFixture(t)
	f.emu.Policy, f.emu.FreshAccount = IAMPolicy, true
	f.opts.Target = "nlb"
	eni := f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000001"})
	f.emu.AddTask("prod", "web", "EC2")
	f.p.cfg.FilterRules = []string{"action=reject,dst-port=22"}
	f.mustReconcile("instance:i-0web000000000001", "ecs:prod/web")
	f.p.cfg.FilterRules, f.p.cfg.PacketLength = nil, 100
	f.mustReconcile("instance:i-0web000000000001")
	f.out.Reset()
	if err := f.p.List(context.Background(), f.opts); err != nil {
		t.Fatal(err)
	}
	// Someone else's session on the same ENI: the policy must refuse to touch it.
	foreign := f.emu.AddSession(awsemu.Session{ENI: eni, TargetID: f.emu.AddTarget(awsemu.Target{ENI: "eni-0x"}), Number: 9,
		Tags: map[string]string{"team": "netsec"}})
	srv := f.emu.Start()
	defer srv.Close()
	c := ec2.New(ec2.Options{Region: "us-east-1", BaseEndpoint: awssdk.String(srv.URL), Credentials: awssdk.AnonymousCredentials{}, RetryMaxAttempts: 1})
	_, err := c.DeleteTrafficMirrorSession(context.Background(), &ec2.DeleteTrafficMirrorSessionInput{TrafficMirrorSessionId: &foreign})
	if apiCode(err) != "UnauthorizedOperation" {
		t.Fatalf("deleting a foreign session under the shipped policy: %v", err)
	}
	f.opts.Yes = true
	if err := f.p.Cleanup(context.Background(), f.opts); err != nil {
		t.Fatalf("cleanup under the shipped policy: %v\n%s", err, f.out.String())
	}
	if n := f.emu.TaggedFor(selfID); n != 0 {
		t.Fatalf("%d resources left", n)
	}
}

// Defect 16: the dry run prices what it would add; prices are inputs.
func TestDryRunEstimate(t *testing.T) {
	f := newFixture(t)
	f.opts.Target, f.opts.DryRun, f.opts.MirroredGBPerMonth = "nlb", true, 1000
	prices, err := provision.ParsePrices([]string{"aws-mirror-session-hour=0.02"})
	if err != nil {
		t.Fatal(err)
	}
	f.opts.Prices = prices
	for _, id := range []string{"i-0web000000000001", "i-0web000000000002"} {
		f.emu.AddInstance(awsemu.Instance{ID: id})
	}
	out := f.mustReconcile("instance:i-0web000000000001", "instance:i-0web000000000002")
	for _, want := range []string{
		"mirror sessions on 2 more ENIs", "1460 × 0.02", "$29.20",
		"network load balancer metlo-i-0appliance0000001", "$16.43",
		"NLB capacity for the mirrored traffic", "1000 × 0.006", "$6.00",
		"total", "$51.6", "up to $20.00 for 1000 GB",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("estimate lacks %q:\n%s", want, out)
		}
	}
	if _, err := provision.ParsePrices([]string{"aws-nope=1"}); err == nil {
		t.Error("unknown price key accepted")
	}
}

// Quota: an ENI target takes 10 sources on most sizes; the 11th is reported, not lost.
func TestSourcesPerENITarget(t *testing.T) {
	f := newFixture(t)
	var srcs []string
	for i := range 11 {
		id := "i-0src00000000000" + string(rune('a'+i))
		f.emu.AddInstance(awsemu.Instance{ID: id})
		srcs = append(srcs, "instance:"+id)
	}
	out, err := f.reconcile(srcs...)
	inc := incomplete(t, err, out)
	if len(inc.Missing) != 1 || !strings.Contains(inc.Missing[0].Reason, "TrafficMirrorSourcesPerTargetLimitExceeded") || len(f.ourSessions()) != 10 {
		t.Fatalf("missing %+v, %d sessions", inc.Missing, len(f.ourSessions()))
	}
}

// Defect 6: appliances sharing one NLB (a fleet) share its resources: each registers itself,
// the NLB spans two AZs, and one member's cleanup leaves the fleet working for the others.
func TestFleetSharesTheNLB(t *testing.T) {
	a := newFixture(t, func(c *Config) { c.NLBName = "metlo-fleet" })
	a.opts.Target = "nlb"
	web := a.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000001"})
	a.mustReconcile("instance:i-0web000000000001")
	// Appliance B: same account, same NLB name, its own instance.
	bENI := a.emu.AddInstance(awsemu.Instance{ID: "i-0applianceb00001", SubnetID: "subnet-0emub"})
	b := *a
	b.p = New(Config{Endpoint: a.p.cfg.Endpoint, IMDSEndpoint: "http://127.0.0.1:1", InstanceID: "i-0applianceb00001", Region: "us-east-1",
		VPCID: "vpc-0emu", SubnetID: "subnet-0emub", ENIID: bENI, NLBName: "metlo-fleet", MaxAttempts: 2, ConsistencyWait: 40e6})
	s := a.emu.Snapshot()
	if len(s.LBs) != 1 || len(s.LBs[0].Subnets) != 2 || len(s.TGs) != 1 || len(s.TGs[0].Targets) != 1 {
		t.Fatalf("shared NLB: %+v", s)
	}
	b.mustReconcile("instance:i-0web000000000001")
	s = a.emu.Snapshot()
	if got := s.TGs[0].Targets; len(got) != 2 {
		t.Fatalf("registered members %v, want both appliances", got)
	}
	for _, x := range s.Sessions {
		if x.Tags[TagFleet] != "metlo-fleet" {
			t.Fatalf("session %v is not fleet-owned: %v", x, x.Tags)
		}
	}
	// A leaves: deregistered, everything else stays and B's mirroring goes on.
	a.opts.Yes = true
	if err := a.p.Cleanup(context.Background(), a.opts); err != nil {
		t.Fatal(err)
	}
	s = a.emu.Snapshot()
	if len(s.LBs) != 1 || len(s.Targets) != 1 || len(s.Sessions) != 1 || s.Sessions[0].ENI != web || len(s.TGs[0].Targets) != 1 || s.TGs[0].Targets[0] != "i-0applianceb00001" {
		t.Fatalf("after one member's cleanup: %+v", s)
	}
	// The last member's cleanup removes the fleet.
	b.opts.Yes = true
	if err := b.p.Cleanup(context.Background(), b.opts); err != nil {
		t.Fatal(err)
	}
	if s := a.emu.Snapshot(); len(s.LBs)+len(s.TGs)+len(s.Targets)+len(s.Sessions)+len(s.Filters)+len(s.Listeners) != 0 {
		t.Fatalf("after the last member's cleanup: %+v", s)
	}
}

// Defect 6: a fleet's NLB must span two AZs; with one AZ the run refuses before changing anything.
func TestFleetNeedsTwoAZs(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.NLBName = "metlo-fleet" })
	f.opts.Target = "nlb"
	f.emu.RemoveSubnet("subnet-0emub")
	f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000001"})
	if _, err := f.reconcile("instance:i-0web000000000001"); err == nil || !strings.Contains(err.Error(), "spans one AZ only") || f.emu.Mutations() != 0 {
		t.Fatalf("one-AZ fleet: %v, %d mutations", err, f.emu.Mutations())
	}
}

// Design: a hanging metadata service costs at most MetadataTimeout, and the error names it.
func TestHangingIMDS(t *testing.T) {
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
	p := New(Config{IMDSEndpoint: "http://" + l.Addr().String(), MetadataTimeout: 300 * time.Millisecond})
	start := time.Now()
	err = p.List(context.Background(), provision.Options{})
	if err == nil || !strings.Contains(err.Error(), l.Addr().String()) || !strings.Contains(err.Error(), "--aws-instance-id") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("a hanging IMDS cost %s", d)
	}
}

// Promise 15: doctor walks the chain and names what is broken.
func TestDoctorAWS(t *testing.T) {
	f := newFixture(t)
	f.emu.AddSecurityGroup(awsemu.SecurityGroup{ID: "sg-0web", VPCID: "vpc-0emu"})
	web := f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000001", Groups: []string{"sg-0web"}})
	f.p.cfg.AllowVXLAN = true
	f.mustReconcile("instance:i-0web000000000001")
	var packets atomic.Int64
	metrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "metlo_appliance_datapath_packets_total{encap=\"vxlan\",outcome=\"ok\"} %d\n", packets.Add(50))
	}))
	defer metrics.Close()
	doctor := func() (*provision.Report, string) {
		rep, err := f.p.Doctor(context.Background(), f.opts, provision.DoctorOptions{MetricsURL: metrics.URL, Sample: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		rep.Print(&b)
		return rep, b.String()
	}
	if rep, out := doctor(); rep.Failed() != 0 || !strings.Contains(out, "vxlan") {
		t.Fatalf("healthy chain:\n%s", out)
	}
	// A network ACL denying VXLAN into the appliance's subnet.
	f.emu.AddNACLEntry("vpc-0emu", awsemu.NACLEntry{Number: 50, Proto: "17", From: 4789, To: 4789, CIDR: "10.0.0.0/16"})
	// Someone's accept-all session ahead of ours.
	all := f.emu.AddFilter(awsemu.FilterRule{Direction: "ingress", Action: "accept", SrcCIDR: "0.0.0.0/0", DstCIDR: "0.0.0.0/0"},
		awsemu.FilterRule{Direction: "egress", Action: "accept", SrcCIDR: "0.0.0.0/0", DstCIDR: "0.0.0.0/0"},
		awsemu.FilterRule{Direction: "ingress", Action: "accept", SrcCIDR: "::/0", DstCIDR: "::/0"},
		awsemu.FilterRule{Direction: "egress", Action: "accept", SrcCIDR: "::/0", DstCIDR: "::/0"})
	f.emu.AddSession(awsemu.Session{ENI: web, TargetID: f.emu.AddTarget(awsemu.Target{ENI: "eni-0x"}), FilterID: all, Number: 0})
	rep, out := doctor()
	for _, want := range []string{"FAIL network ACLs", "blocks UDP 4789 in from", "evaluated first and accepts every packet ours would"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor lacks %q:\n%s", want, out)
		}
	}
	if rep.Err() == nil {
		t.Error("broken chain, nil error")
	}
}
