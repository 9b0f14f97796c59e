package aws

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
)

func TestIAMPolicyCoversEveryOperation(t *testing.T) {
	var doc struct {
		Statement []struct {
			Effect string
			Action []string
		}
	}
	if err := json.Unmarshal([]byte(IAMPolicy), &doc); err != nil {
		t.Fatalf("parse iam-policy.json: %v", err)
	}
	var allowed []string
	for _, s := range doc.Statement {
		if s.Effect == "Allow" {
			allowed = append(allowed, s.Action...)
		}
	}
	services := map[string]reflect.Type{
		"ec2":                  reflect.TypeFor[ec2API](),
		"elasticloadbalancing": reflect.TypeFor[elbAPI](),
		"ecs":                  reflect.TypeFor[ecsAPI](),
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
	if n < 30 {
		t.Fatalf("only %d operations found: the API interfaces look wrong", n)
	}
	for _, a := range allowed {
		if slices.Contains([]string{"ec2:CreateTags", "elasticloadbalancing:AddTags"}, a) {
			continue // implied by tag-on-create
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
