package awsemu

import (
	"context"
	"errors"
	"testing"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
)

func client(t *testing.T, e *Emulator) *ec2.Client {
	srv := e.Start()
	t.Cleanup(srv.Close)
	return ec2.New(ec2.Options{Region: "us-east-1", BaseEndpoint: awssdk.String(srv.URL),
		Credentials: awssdk.AnonymousCredentials{}, RetryMaxAttempts: 1})
}

func code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// TestEmulatorEnforcesMirroringRules checks the rules the provisioner relies on, through the SDK.
func TestEmulatorEnforcesMirroringRules(t *testing.T) {
	ctx := context.Background()
	e := New("us-east-1")
	c := client(t, e)
	src := e.AddInstance(Instance{ID: "i-1"})
	dst := e.AddInstance(Instance{ID: "i-2"})
	tgt, err := c.CreateTrafficMirrorTarget(ctx, &ec2.CreateTrafficMirrorTargetInput{NetworkInterfaceId: &dst, ClientToken: awssdk.String("t1")})
	if err != nil {
		t.Fatal(err)
	}
	tid := tgt.TrafficMirrorTarget.TrafficMirrorTargetId
	again, err := c.CreateTrafficMirrorTarget(ctx, &ec2.CreateTrafficMirrorTargetInput{NetworkInterfaceId: &dst, ClientToken: awssdk.String("t1")})
	if err != nil || *again.TrafficMirrorTarget.TrafficMirrorTargetId != *tid {
		t.Fatalf("ClientToken replay: %v", err)
	}
	if _, err := c.CreateTrafficMirrorTarget(ctx, &ec2.CreateTrafficMirrorTargetInput{NetworkInterfaceId: &src, ClientToken: awssdk.String("t1")}); code(err) != "IdempotentParameterMismatch" {
		t.Fatalf("token reuse with other params: %v", err)
	}
	f, _ := c.CreateTrafficMirrorFilter(ctx, &ec2.CreateTrafficMirrorFilterInput{})
	fid := f.TrafficMirrorFilter.TrafficMirrorFilterId
	rule := func(n int32) error {
		_, err := c.CreateTrafficMirrorFilterRule(ctx, &ec2.CreateTrafficMirrorFilterRuleInput{TrafficMirrorFilterId: fid,
			TrafficDirection: ec2types.TrafficDirectionIngress, RuleAction: ec2types.TrafficMirrorRuleActionAccept, RuleNumber: &n,
			SourceCidrBlock: awssdk.String("0.0.0.0/0"), DestinationCidrBlock: awssdk.String("0.0.0.0/0")})
		return err
	}
	if err := rule(1); err != nil {
		t.Fatal(err)
	}
	if code(rule(1)) != "TrafficMirrorFilterRuleAlreadyExists" {
		t.Fatal("duplicate rule number accepted")
	}
	for n := int32(2); n <= 10; n++ {
		if err := rule(n); err != nil {
			t.Fatal(err)
		}
	}
	if code(rule(11)) != "TrafficMirrorFilterRuleLimitExceeded" {
		t.Fatal("11th rule accepted")
	}
	sess := func(eni string, n int32) error {
		_, err := c.CreateTrafficMirrorSession(ctx, &ec2.CreateTrafficMirrorSessionInput{NetworkInterfaceId: &eni, TrafficMirrorTargetId: tid,
			TrafficMirrorFilterId: fid, SessionNumber: &n})
		return err
	}
	if code(sess(dst, 1)) != "InvalidParameterValue" {
		t.Fatal("target ENI accepted as a source")
	}
	if code(sess(src, 0)) != "InvalidParameterValue" || code(sess(src, 32767)) != "InvalidParameterValue" {
		t.Fatal("session number out of range accepted")
	}
	for n := int32(1); n <= 3; n++ {
		if err := sess(src, n); err != nil {
			t.Fatal(err)
		}
	}
	if code(sess(src, 3)) != "InvalidParameterValue" {
		t.Fatal("duplicate session number accepted")
	}
	if code(sess(src, 4)) != "TrafficMirrorSessionsPerInterfaceLimitExceeded" {
		t.Fatal("4th session on one ENI accepted")
	}
	if _, err := c.DeleteTrafficMirrorTarget(ctx, &ec2.DeleteTrafficMirrorTargetInput{TrafficMirrorTargetId: tid}); code(err) != "DependencyViolation" {
		t.Fatalf("in-use target deleted: %v", err)
	}
	if _, err := c.DeleteTrafficMirrorFilter(ctx, &ec2.DeleteTrafficMirrorFilterInput{TrafficMirrorFilterId: fid}); code(err) != "DependencyViolation" {
		t.Fatalf("in-use filter deleted: %v", err)
	}
	if _, err := c.DeleteTrafficMirrorSession(ctx, &ec2.DeleteTrafficMirrorSessionInput{TrafficMirrorSessionId: awssdk.String("tms-missing")}); code(err) != "InvalidTrafficMirrorSessionId.NotFound" {
		t.Fatalf("missing session: %v", err)
	}
	before := e.Mutations()
	if _, err := c.CreateTrafficMirrorFilter(ctx, &ec2.CreateTrafficMirrorFilterInput{DryRun: awssdk.Bool(true)}); code(err) != "DryRunOperation" || e.Mutations() != before {
		t.Fatalf("DryRun: %v", err)
	}
	e.Deny("CreateTrafficMirrorFilter")
	if _, err := c.CreateTrafficMirrorFilter(ctx, &ec2.CreateTrafficMirrorFilterInput{DryRun: awssdk.Bool(true)}); code(err) != "UnauthorizedOperation" {
		t.Fatalf("denied DryRun: %v", err)
	}
	// Pagination: 3 sessions, page size 2 → two pages.
	e.PageSize = 2
	out, err := c.DescribeTrafficMirrorSessions(ctx, &ec2.DescribeTrafficMirrorSessionsInput{})
	if err != nil || len(out.TrafficMirrorSessions) != 2 || out.NextToken == nil {
		t.Fatalf("first page: %v %+v", err, out)
	}
	out, err = c.DescribeTrafficMirrorSessions(ctx, &ec2.DescribeTrafficMirrorSessionsInput{NextToken: out.NextToken})
	if err != nil || len(out.TrafficMirrorSessions) != 1 || out.NextToken != nil {
		t.Fatalf("second page: %v %+v", err, out)
	}
	if _, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{{Name: awssdk.String("bogus"), Values: []string{"x"}}}}); code(err) != "InvalidParameterValue" {
		t.Fatalf("unknown filter accepted: %v", err)
	}
}

// TestEmulatorModelsWhatTheReviewFound covers the behaviour issue 15 added: eventual
// consistency, interface rules, first-match session evaluation, the sources-per-target quota
// and DryRun that validates before answering.
func TestEmulatorModelsWhatTheReviewFound(t *testing.T) {
	ctx := context.Background()
	e := New("us-east-1")
	c := client(t, e)
	src := e.AddInstance(Instance{ID: "i-1"})
	dst := e.AddInstance(Instance{ID: "i-2", Type: "c5n.large"})
	e.Lag = 2
	tgt, err := c.CreateTrafficMirrorTarget(ctx, &ec2.CreateTrafficMirrorTargetInput{NetworkInterfaceId: &dst})
	if err != nil {
		t.Fatal(err)
	}
	tid := tgt.TrafficMirrorTarget.TrafficMirrorTargetId
	for i := range 3 {
		_, err := c.DescribeTrafficMirrorTargets(ctx, &ec2.DescribeTrafficMirrorTargetsInput{TrafficMirrorTargetIds: []string{*tid}})
		if wantGone := i < 2; wantGone != (code(err) == "InvalidTrafficMirrorTargetId.NotFound") {
			t.Fatalf("describe %d after create: %v (lag 2)", i, err)
		}
	}
	e.Lag = 0
	// Filters: a narrow one (port 22) and an accept-all one.
	mk := func(port int32) *string {
		f, _ := c.CreateTrafficMirrorFilter(ctx, &ec2.CreateTrafficMirrorFilterInput{})
		in := &ec2.CreateTrafficMirrorFilterRuleInput{TrafficMirrorFilterId: f.TrafficMirrorFilter.TrafficMirrorFilterId,
			TrafficDirection: ec2types.TrafficDirectionIngress, RuleAction: ec2types.TrafficMirrorRuleActionAccept, RuleNumber: awssdk.Int32(1),
			SourceCidrBlock: awssdk.String("0.0.0.0/0"), DestinationCidrBlock: awssdk.String("0.0.0.0/0")}
		if port > 0 {
			in.Protocol = awssdk.Int32(6)
			in.DestinationPortRange = &ec2types.TrafficMirrorPortRangeRequest{FromPort: &port, ToPort: &port}
		}
		if _, err := c.CreateTrafficMirrorFilterRule(ctx, in); err != nil {
			t.Fatal(err)
		}
		return f.TrafficMirrorFilter.TrafficMirrorFilterId
	}
	narrow, all := mk(22), mk(0)
	sess := func(eni string, n int32, filter *string, dry bool) (string, error) {
		out, err := c.CreateTrafficMirrorSession(ctx, &ec2.CreateTrafficMirrorSessionInput{NetworkInterfaceId: &eni, TrafficMirrorTargetId: tid,
			TrafficMirrorFilterId: filter, SessionNumber: &n, DryRun: &dry})
		if err != nil {
			return "", err
		}
		return *out.TrafficMirrorSession.TrafficMirrorSessionId, nil
	}
	// DryRun validates before answering: a bad session number is an error, not DryRunOperation.
	if _, err := sess(src, 0, all, true); code(err) != "InvalidParameterValue" {
		t.Fatalf("DryRun with session number 0: %v", err)
	}
	if _, err := sess(src, 7, all, true); code(err) != "DryRunOperation" {
		t.Fatalf("valid DryRun: %v", err)
	}
	first, _ := sess(src, 1, narrow, false)
	second, _ := sess(src, 2, all, false)
	ssh := Packet{Dir: "ingress", Proto: 6, Src: "10.0.9.9", Dst: "10.0.0.5", SrcPort: 50000, DstPort: 22}
	web := ssh
	web.DstPort = 443
	if r := e.Receiver(src, ssh); r != first {
		t.Errorf("port 22 went to %s, want the first session %s", r, first)
	}
	if r := e.Receiver(src, web); r != second {
		t.Errorf("port 443 went to %s, want the second session %s", r, second)
	}
	web.Dir = "egress"
	if r := e.Receiver(src, web); r != "" {
		t.Errorf("egress with ingress-only filters went to %s", r)
	}
	// Interfaces AWS refuses.
	alb := e.AddLoadBalancer("shop", "application", "subnet-0emu")
	albENI := e.ScaleLoadBalancer(alb, 1)[0]
	branch := e.TaskENI(e.AddTrunkedTask("prod", "web"))
	rds := e.AddManagedENI("amazon-rds", "RDSNetworkInterface", "subnet-0emu")
	for eni, want := range map[string]string{albENI: "InvalidNetworkInterface.NotSupported", branch: "InvalidNetworkInterface.NotSupported", rds: ""} {
		_, err := sess(eni, 1, all, false)
		if code(err) != want {
			t.Errorf("session on %s: %v, want %q", eni, err, want)
		}
	}
	// Sources per ENI target: 10 on small sizes (rds is the first).
	for i := range 9 {
		eni := e.AddInstance(Instance{ID: "i-s" + string(rune('a'+i))})
		if _, err := sess(eni, 1, all, false); err != nil && i < 8 {
			t.Fatalf("source %d: %v", i+2, err)
		}
	}
	extra := e.AddInstance(Instance{ID: "i-extra"})
	if _, err := sess(extra, 1, all, false); code(err) != "TrafficMirrorSourcesPerTargetLimitExceeded" {
		t.Fatalf("11th source on a c5n.large target: %v", err)
	}
	big := e.AddInstance(Instance{ID: "i-big", Type: "m5.24xlarge"})
	bt, _ := c.CreateTrafficMirrorTarget(ctx, &ec2.CreateTrafficMirrorTargetInput{NetworkInterfaceId: &big})
	if got := e.sourcesPerTarget(e.targets[*bt.TrafficMirrorTarget.TrafficMirrorTargetId]); got != 100 {
		t.Fatalf("an m5.24xlarge target takes %d sources, want 100", got)
	}
}
