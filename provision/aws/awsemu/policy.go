package awsemu

import (
	"encoding/json"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// The emulator can evaluate an IAM policy document (Emulator.Policy) against every call, so a
// test proves the shipped policy is enough — and no more — for what the provisioner does. It
// models identity-policy Allow statements with Action wildcards and the StringEquals /
// StringLike conditions on aws:RequestTag/…, aws:ResourceTag/…, ec2:CreateAction,
// elasticloadbalancing:CreateAction and iam:AWSServiceName; Resource is not matched (the
// shipped policy scopes by tags). Tag-on-create needs ec2:CreateTags / elasticloadbalancing:AddTags
// too, and in a fresh account (FreshAccount) the first NLB and Auto Scaling group need
// iam:CreateServiceLinkedRole, as in AWS.

type statement struct {
	Effect    string
	Action    json.RawMessage
	Condition map[string]map[string]json.RawMessage
}

func strings1(raw json.RawMessage) []string {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	var many []string
	_ = json.Unmarshal(raw, &many)
	return many
}

// allowedBy reports whether some Allow statement grants action in the context.
func allowedBy(doc, action string, ctx map[string]string) bool {
	var d struct{ Statement []statement }
	if json.Unmarshal([]byte(doc), &d) != nil {
		return false
	}
	for _, st := range d.Statement {
		if st.Effect != "Allow" {
			continue
		}
		matched := false
		for _, a := range strings1(st.Action) {
			if ok, _ := path.Match(strings.ToLower(a), strings.ToLower(action)); ok {
				matched = true
			}
		}
		if matched && conditionsHold(st.Condition, ctx) {
			return true
		}
	}
	return false
}

func conditionsHold(cond map[string]map[string]json.RawMessage, ctx map[string]string) bool {
	for op, kv := range cond {
		for key, raw := range kv {
			have, ok := ctx[strings.ToLower(key)]
			if !ok {
				if strings.HasSuffix(op, "IfExists") {
					continue
				}
				return false
			}
			hit := false
			for _, want := range strings1(raw) {
				switch op {
				case "StringEquals", "StringEqualsIfExists":
					hit = hit || have == want
				case "StringLike":
					m, _ := path.Match(want, have)
					hit = hit || m
				default:
					return false
				}
			}
			if !hit {
				return false
			}
		}
	}
	return true
}

// requestTags reads the tags a create request attaches (EC2 TagSpecification, ELBv2 and
// Auto Scaling Tags.member).
func requestTags(form url.Values) map[string]string {
	tags := map[string]string{}
	for i := 1; ; i++ {
		p := "TagSpecification." + strconv.Itoa(i)
		if form.Get(p+".ResourceType") == "" {
			break
		}
		for j := 1; ; j++ {
			k, ok := form[p+".Tag."+strconv.Itoa(j)+".Key"]
			if !ok {
				break
			}
			tags[k[0]] = form.Get(p + ".Tag." + strconv.Itoa(j) + ".Value")
		}
	}
	for i := 1; ; i++ {
		p := "Tags.member." + strconv.Itoa(i)
		k, ok := form[p+".Key"]
		if !ok {
			break
		}
		tags[k[0]] = form.Get(p + ".Value")
	}
	return tags
}

// resourceTags finds the tags of the existing resource a request acts on.
func (e *Emulator) resourceTags(form url.Values) map[string]string {
	if s := e.sessions[form.Get("TrafficMirrorSessionId")]; s != nil {
		return s.Tags
	}
	if t := e.targets[form.Get("TrafficMirrorTargetId")]; t != nil && strings.HasPrefix(form.Get("Action"), "Delete") {
		return t.Tags
	}
	if f := e.filters[form.Get("TrafficMirrorFilterId")]; f != nil {
		return f.Tags
	}
	if id := form.Get("TrafficMirrorFilterRuleId"); id != "" {
		// Both the rule and its filter are authorised: the emulator takes the rule's tags
		// when it has them (rules made by this provisioner do), else the filter's.
		for _, f := range e.filters {
			for _, r := range f.Rules {
				if r.ID == id && len(r.Tags) > 0 {
					return r.Tags
				}
				if r.ID == id {
					return f.Tags
				}
			}
		}
	}
	if lb := e.lbs[form.Get("LoadBalancerArn")]; lb != nil && form.Get("Action") != "CreateListener" {
		return lb.Tags
	}
	if tg := e.tgs[form.Get("TargetGroupArn")]; tg != nil {
		return tg.Tags
	}
	if l := e.listeners[form.Get("ListenerArn")]; l != nil {
		return l.Tags
	}
	if g := e.asg.groups[form.Get("AutoScalingGroupName")]; g != nil {
		return g.Tags
	}
	if lt := e.launchTemplate(form.Get("LaunchTemplateId"), form.Get("LaunchTemplateName")); lt != nil {
		return lt.Tags
	}
	return nil
}

// policyAllows evaluates the attached policy for one call (callers hold e.mu).
func (e *Emulator) policyAllows(service, action string, form url.Values) bool {
	full := service + ":" + action
	if strings.HasPrefix(action, "Describe") || strings.HasPrefix(action, "List") {
		return allowedBy(e.Policy, full, nil)
	}
	ctx := map[string]string{}
	req := requestTags(form)
	for k, v := range req {
		ctx["aws:requesttag/"+strings.ToLower(k)] = v
	}
	for k, v := range e.resourceTags(form) {
		ctx["aws:resourcetag/"+strings.ToLower(k)] = v
	}
	if !allowedBy(e.Policy, full, ctx) {
		return false
	}
	if len(req) > 0 {
		tagAction, key := "ec2:CreateTags", "ec2:createaction"
		if service == "elasticloadbalancing" {
			tagAction, key = "elasticloadbalancing:AddTags", "elasticloadbalancing:createaction"
		}
		if service == "autoscaling" {
			tagAction, key = "autoscaling:CreateOrUpdateTags", "autoscaling:action"
		}
		tctx := map[string]string{key: action}
		for k, v := range ctx {
			tctx[k] = v
		}
		if !allowedBy(e.Policy, tagAction, tctx) {
			return false
		}
	}
	if linked := map[string]string{"elasticloadbalancing:CreateLoadBalancer": "elasticloadbalancing.amazonaws.com",
		"autoscaling:CreateAutoScalingGroup": "autoscaling.amazonaws.com"}[full]; linked != "" && e.FreshAccount && !e.linkedRoles[linked] {
		if !allowedBy(e.Policy, "iam:CreateServiceLinkedRole", map[string]string{"iam:awsservicename": linked}) {
			return false
		}
		e.linkedRoles[linked] = true
	}
	return true
}
