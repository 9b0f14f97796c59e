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
