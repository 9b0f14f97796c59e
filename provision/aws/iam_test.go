package aws

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

type policyStatement struct {
	Sid       string
	Effect    string
	Action    json.RawMessage
	Condition map[string]map[string]json.RawMessage
}

func (s policyStatement) actions() []string {
	var one string
	if json.Unmarshal(s.Action, &one) == nil {
		return []string{one}
	}
	var many []string
	_ = json.Unmarshal(s.Action, &many)
	return many
}

func parsePolicy(t *testing.T) []policyStatement {
	t.Helper()
	var doc struct{ Statement []policyStatement }
	if err := json.Unmarshal([]byte(IAMPolicy), &doc); err != nil {
		t.Fatalf("parse iam-policy.json: %v", err)
	}
	return doc.Statement
}

// implied are actions AWS checks on the provisioner's behalf: tagging on create, the ELB and
// Auto Scaling service-linked roles of a fresh account, launching the fleet's instances.
var implied = []string{"ec2:CreateTags", "elasticloadbalancing:AddTags", "autoscaling:CreateOrUpdateTags",
	"iam:CreateServiceLinkedRole", "ec2:RunInstances", "iam:PassRole"}

func TestIAMPolicyCoversEveryOperation(t *testing.T) {
	var allowed []string
	for _, s := range parsePolicy(t) {
		if s.Effect == "Allow" {
			allowed = append(allowed, s.actions()...)
		}
	}
	services := map[string]reflect.Type{
		"ec2":                  reflect.TypeFor[ec2API](),
		"elasticloadbalancing": reflect.TypeFor[elbAPI](),
		"ecs":                  reflect.TypeFor[ecsAPI](),
		"autoscaling":          reflect.TypeFor[asgAPI](),
	}
	n := 0
	for svc, typ := range services {
		for i := range typ.NumMethod() {
			action := svc + ":" + typ.Method(i).Name
			n++
			if !slices.Contains(allowed, action) {
				t.Errorf("%s is callable but not in iam-policy.json", action)
			}
		}
	}
	if n < 50 {
		t.Fatalf("only %d operations found: the API interfaces look wrong", n)
	}
	for _, a := range allowed {
		if slices.Contains(implied, a) {
			continue
		}
		found := false
		for svc, typ := range services {
			for i := range typ.NumMethod() {
				found = found || svc+":"+typ.Method(i).Name == a
			}
		}
		if !found {
			t.Errorf("%s is in the policy but never called: drop it (least privilege)", a)
		}
	}
}

// TestIAMPolicyScopesChangesByTag checks that every action changing or deleting an existing
// resource is granted only on resources tagged metlo:managed=true, and every create only
// with that tag in the request: the provisioner's role cannot touch anyone else's mirroring.
func TestIAMPolicyScopesChangesByTag(t *testing.T) {
	for _, s := range parsePolicy(t) {
		for _, a := range s.actions() {
			_, op, _ := strings.Cut(a, ":")
			var want string
			switch {
			case strings.HasPrefix(op, "Describe") || strings.HasPrefix(op, "List"), a == "ec2:AuthorizeSecurityGroupIngress",
				slices.Contains(implied, a) && a != "elasticloadbalancing:AddTags" && a != "autoscaling:CreateOrUpdateTags":
				continue
			case a == "elasticloadbalancing:AddTags" && s.Sid == "MetloApplianceTagOnCreateELB":
				want = "elasticloadbalancing:CreateAction"
			case a == "ec2:CreateTrafficMirrorFilterRule" && s.Sid == "MetloApplianceRulesOfOwnedFilters", a == "ec2:CreateLaunchTemplateVersion":
				want = "aws:ResourceTag/metlo:managed"
			case strings.HasPrefix(op, "Create"):
				want = "aws:RequestTag/metlo:managed"
			default:
				want = "aws:ResourceTag/metlo:managed"
			}
			found := false
			for _, kv := range s.Condition {
				_, found = kv[want]
				if found {
					break
				}
			}
			if !found {
				t.Errorf("%s (statement %s) is not conditioned on %s", a, s.Sid, want)
			}
		}
	}
}
