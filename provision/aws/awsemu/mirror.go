package awsemu

import (
	"net/netip"
	"net/url"
	"slices"
	"strconv"
)

// Traffic mirror targets, filters and filter rules.

func (e *Emulator) describeTargets(form url.Values) (string, *apiError) {
	f := ec2Filters(form)
	if err := checkFilters(f, "network-interface-id", "network-load-balancer-arn", "traffic-mirror-target-id"); err != nil {
		return "", err
	}
	ids := flatList(form, "TrafficMirrorTargetId")
	for _, id := range ids {
		if e.targets[id] == nil || !e.visible(id) {
			return "", errf(400, "InvalidTrafficMirrorTargetId.NotFound", "The traffic mirror target '%s' does not exist", id)
		}
	}
	var sel []*Target
	for _, k := range sortedKeys(e.targets) {
		t := e.targets[k]
		if len(ids) == 0 && !e.visible(t.ID) {
			continue
		}
		if (len(ids) == 0 || slices.Contains(ids, t.ID)) && match(f, "network-interface-id", t.ENI) &&
			match(f, "network-load-balancer-arn", t.NLBArn) && match(f, "traffic-mirror-target-id", t.ID) {
			sel = append(sel, t)
		}
	}
	items, next, err := page(sel, form.Get("NextToken"), e.PageSize)
	if err != nil {
		return "", err
	}
	var b xb
	b.open("trafficMirrorTargetSet")
	for _, t := range items {
		b.open("item")
		b.WriteString(targetXML(t, e.Account))
		b.close("item")
	}
	b.close("trafficMirrorTargetSet")
	b.el("nextToken", next)
	return b.String(), nil
}

func targetXML(t *Target, account string) string {
	var b xb
	b.el("trafficMirrorTargetId", t.ID)
	b.el("networkInterfaceId", t.ENI)
	b.el("networkLoadBalancerArn", t.NLBArn)
	b.el("description", t.Description)
	b.el("ownerId", account)
	b.el("type", map[bool]string{true: "network-interface", false: "network-load-balancer"}[t.ENI != ""])
	b.ec2Tags(t.Tags)
	return b.String()
}

func ruleXML(r *FilterRule) string {
	var b xb
	b.el("trafficMirrorFilterRuleId", r.ID)
	b.el("trafficMirrorFilterId", r.FilterID)
	b.el("trafficDirection", r.Direction)
	b.num("ruleNumber", r.Number)
	b.el("ruleAction", r.Action)
	if r.Protocol != 0 {
		b.num("protocol", r.Protocol)
	}
	b.el("sourceCidrBlock", r.SrcCIDR)
	b.el("destinationCidrBlock", r.DstCIDR)
	for name, pr := range map[string]*PortRange{"sourcePortRange": r.SrcPorts, "destinationPortRange": r.DstPorts} {
		if pr != nil {
			b.open(name)
			b.num("fromPort", pr.From)
			b.num("toPort", pr.To)
			b.close(name)
		}
	}
	b.el("description", r.Description)
	return b.String()
}

func filterXML(f *Filter) string {
	var b xb
	b.el("trafficMirrorFilterId", f.ID)
	b.el("description", f.Description)
	for _, dir := range []string{"ingress", "egress"} {
		b.open(dir + "FilterRuleSet")
		for _, r := range f.Rules {
			if r.Direction == dir {
				b.open("item")
				b.WriteString(ruleXML(r))
				b.close("item")
			}
		}
		b.close(dir + "FilterRuleSet")
	}
	b.ec2Tags(f.Tags)
	return b.String()
}

func (e *Emulator) describeFilters(form url.Values) (string, *apiError) {
	if err := checkFilters(ec2Filters(form), "traffic-mirror-filter-id", "description"); err != nil {
		return "", err
	}
	f := ec2Filters(form)
	ids := flatList(form, "TrafficMirrorFilterId")
	for _, id := range ids {
		if e.filters[id] == nil || !e.visible(id) {
			return "", errf(400, "InvalidTrafficMirrorFilterId.NotFound", "The traffic mirror filter '%s' does not exist", id)
		}
	}
	var sel []*Filter
	for _, k := range sortedKeys(e.filters) {
		x := e.filters[k]
		if len(ids) == 0 && !e.visible(x.ID) {
			continue
		}
		if (len(ids) == 0 || slices.Contains(ids, x.ID)) && match(f, "traffic-mirror-filter-id", x.ID) && match(f, "description", x.Description) {
			sel = append(sel, x)
		}
	}
	items, next, err := page(sel, form.Get("NextToken"), e.PageSize)
	if err != nil {
		return "", err
	}
	var b xb
	b.open("trafficMirrorFilterSet")
	for _, x := range items {
		b.open("item")
		b.WriteString(filterXML(x))
		b.close("item")
	}
	b.close("trafficMirrorFilterSet")
	b.el("nextToken", next)
	return b.String(), nil
}

// paramsKey canonicalises a request for ClientToken comparison.
func paramsKey(form url.Values) string {
	c := url.Values{}
	for k, v := range form {
		if k != "ClientToken" && k != "DryRun" {
			c[k] = v
		}
	}
	return c.Encode()
}

func (e *Emulator) createTarget(form url.Values) (string, *apiError) {
	token := form.Get("ClientToken")
	if id, err := e.idempotent("CreateTrafficMirrorTarget", token, paramsKey(form)); !dryRun(form) && (err != nil || id != "") {
		if err != nil {
			return "", err
		}
		return e.targetReply(id, token), nil
	}
	eni, nlb, gwlbe := form.Get("NetworkInterfaceId"), form.Get("NetworkLoadBalancerArn"), form.Get("GatewayLoadBalancerEndpointId")
	set := 0
	for _, v := range []string{eni, nlb, gwlbe} {
		if v != "" {
			set++
		}
	}
	if set != 1 {
		return "", errf(400, "InvalidParameterCombination", "exactly one of NetworkInterfaceId, NetworkLoadBalancerArn and GatewayLoadBalancerEndpointId is required")
	}
	if gwlbe != "" {
		return "", errf(400, "InvalidParameterValue", "gateway load balancer endpoints are not emulated")
	}
	tags, aerr := ec2TagSpec(form, "traffic-mirror-target")
	if aerr != nil {
		return "", aerr
	}
	if eni != "" {
		if e.enis[eni] == nil {
			return "", errf(400, "InvalidNetworkInterfaceID.NotFound", "The networkInterface ID '%s' does not exist", eni)
		}
		for _, s := range e.sessions {
			if s.ENI == eni {
				return "", errf(400, "InvalidParameterValue", "network interface %s is a traffic mirror source and cannot also be a target", eni)
			}
		}
		for _, t := range e.targets {
			if t.ENI == eni {
				return "", errf(400, "InvalidParameterValue", "network interface %s is already the traffic mirror target %s", eni, t.ID)
			}
		}
	}
	if nlb != "" {
		lb := e.lbs[nlb]
		if lb == nil || lb.Type != "network" {
			return "", errf(400, "InvalidParameterValue", "%s is not a network load balancer", nlb)
		}
	}
	if dryRun(form) {
		return "", errDryRun
	}
	t := &Target{ID: e.id("tmt"), ENI: eni, NLBArn: nlb, Description: form.Get("Description"), Tags: tags}
	e.targets[t.ID] = t
	e.created(t.ID)
	e.remember("CreateTrafficMirrorTarget", token, paramsKey(form), t.ID)
	return e.targetReply(t.ID, token), nil
}

func (e *Emulator) targetReply(id, token string) string {
	var b xb
	b.open("trafficMirrorTarget")
	if t := e.targets[id]; t != nil {
		b.WriteString(targetXML(t, e.Account))
	} else {
		b.el("trafficMirrorTargetId", id) // replay of a deleted resource: EC2 answers with the original id
	}
	b.close("trafficMirrorTarget")
	b.el("clientToken", token)
	return b.String()
}

func (e *Emulator) createFilter(form url.Values) (string, *apiError) {
	token := form.Get("ClientToken")
	id, err := e.idempotent("CreateTrafficMirrorFilter", token, paramsKey(form))
	if err != nil {
		return "", err
	}
	if id == "" || dryRun(form) {
		tags, aerr := ec2TagSpec(form, "traffic-mirror-filter")
		if aerr != nil {
			return "", aerr
		}
		if dryRun(form) {
			return "", errDryRun
		}
		f := &Filter{ID: e.id("tmf"), Description: form.Get("Description"), Tags: tags}
		e.filters[f.ID] = f
		e.created(f.ID)
		id = f.ID
		e.remember("CreateTrafficMirrorFilter", token, paramsKey(form), id)
	}
	var b xb
	b.open("trafficMirrorFilter")
	if f := e.filters[id]; f != nil {
		b.WriteString(filterXML(f))
	} else {
		b.el("trafficMirrorFilterId", id)
	}
	b.close("trafficMirrorFilter")
	b.el("clientToken", token)
	return b.String(), nil
}

func portRange(form url.Values, name string) (*PortRange, *apiError) {
	from, to := form.Get(name+".FromPort"), form.Get(name+".ToPort")
	if from == "" && to == "" {
		return nil, nil
	}
	f, err1 := strconv.Atoi(from)
	t, err2 := strconv.Atoi(to)
	if err1 != nil || err2 != nil || f < 0 || t > 65535 || f > t {
		return nil, errf(400, "InvalidParameterValue", "invalid %s %s-%s", name, from, to)
	}
	return &PortRange{From: f, To: t}, nil
}

func (e *Emulator) createFilterRule(form url.Values) (string, *apiError) {
	token := form.Get("ClientToken")
	id, err := e.idempotent("CreateTrafficMirrorFilterRule", token, paramsKey(form))
	if err != nil {
		return "", err
	}
	if id == "" || dryRun(form) {
		r, err := e.newRule(form)
		if err != nil {
			return "", err
		}
		id = r.ID
		e.remember("CreateTrafficMirrorFilterRule", token, paramsKey(form), id)
	}
	var b xb
	b.open("trafficMirrorFilterRule")
	b.el("trafficMirrorFilterRuleId", id)
	for _, f := range e.filters {
		for _, r := range f.Rules {
			if r.ID == id {
				b.Reset()
				b.open("trafficMirrorFilterRule")
				b.WriteString(ruleXML(r))
			}
		}
	}
	b.close("trafficMirrorFilterRule")
	b.el("clientToken", token)
	return b.String(), nil
}

func (e *Emulator) newRule(form url.Values) (*FilterRule, *apiError) {
	f := e.filters[form.Get("TrafficMirrorFilterId")]
	if f == nil {
		return nil, errf(400, "InvalidTrafficMirrorFilterId.NotFound", "The traffic mirror filter '%s' does not exist", form.Get("TrafficMirrorFilterId"))
	}
	r := &FilterRule{FilterID: f.ID, Direction: form.Get("TrafficDirection"), Action: form.Get("RuleAction"),
		SrcCIDR: form.Get("SourceCidrBlock"), DstCIDR: form.Get("DestinationCidrBlock"), Description: form.Get("Description")}
	if r.Direction != "ingress" && r.Direction != "egress" {
		return nil, errf(400, "InvalidParameterValue", "TrafficDirection must be ingress or egress, got %q", r.Direction)
	}
	if r.Action != "accept" && r.Action != "reject" {
		return nil, errf(400, "InvalidParameterValue", "RuleAction must be accept or reject, got %q", r.Action)
	}
	n, cerr := strconv.Atoi(form.Get("RuleNumber"))
	if cerr != nil || n < 1 || n > 32766 {
		return nil, errf(400, "InvalidParameterValue", "RuleNumber must be 1-32766, got %q", form.Get("RuleNumber"))
	}
	r.Number = n
	src, e1 := netip.ParsePrefix(r.SrcCIDR)
	dst, e2 := netip.ParsePrefix(r.DstCIDR)
	if e1 != nil || e2 != nil {
		return nil, errf(400, "InvalidParameterValue", "SourceCidrBlock and DestinationCidrBlock are required CIDR blocks")
	}
	if src.Addr().Is4() != dst.Addr().Is4() {
		return nil, errf(400, "InvalidParameterValue", "source and destination CIDR blocks must be the same IP version")
	}
	if p := form.Get("Protocol"); p != "" {
		r.Protocol, _ = strconv.Atoi(p)
	}
	var perr *apiError
	if r.SrcPorts, perr = portRange(form, "SourcePortRange"); perr != nil {
		return nil, perr
	}
	if r.DstPorts, perr = portRange(form, "DestinationPortRange"); perr != nil {
		return nil, perr
	}
	if (r.SrcPorts != nil || r.DstPorts != nil) && r.Protocol != 6 && r.Protocol != 17 {
		return nil, errf(400, "InvalidParameterValue", "port ranges need protocol 6 (TCP) or 17 (UDP)")
	}
	for _, x := range f.Rules {
		if x.Direction == r.Direction && x.Number == r.Number {
			return nil, errf(400, "TrafficMirrorFilterRuleAlreadyExists", "rule number %d already exists for %s in %s", n, r.Direction, f.ID)
		}
	}
	if len(f.Rules) >= 10 {
		return nil, errf(400, "TrafficMirrorFilterRuleLimitExceeded", "a traffic mirror filter can have at most 10 rules")
	}
	tags, aerr := ec2TagSpec(form, "traffic-mirror-filter-rule")
	if aerr != nil {
		return nil, aerr
	}
	if dryRun(form) {
		return nil, errDryRun
	}
	r.ID, r.Tags = e.id("tmfr"), tags
	f.Rules = append(f.Rules, r)
	return r, nil
}

func (e *Emulator) deleteFilterRule(form url.Values) (string, *apiError) {
	id := form.Get("TrafficMirrorFilterRuleId")
	for _, f := range e.filters {
		for i, r := range f.Rules {
			if r.ID == id {
				if dryRun(form) {
					return "", errDryRun
				}
				f.Rules = slices.Delete(f.Rules, i, i+1)
				var b xb
				b.el("trafficMirrorFilterRuleId", id)
				return b.String(), nil
			}
		}
	}
	return "", errf(400, "InvalidTrafficMirrorFilterRuleId.NotFound", "The traffic mirror filter rule '%s' does not exist", id)
}

func (e *Emulator) deleteFilter(form url.Values) (string, *apiError) {
	id := form.Get("TrafficMirrorFilterId")
	if e.filters[id] == nil {
		return "", errf(400, "InvalidTrafficMirrorFilterId.NotFound", "The traffic mirror filter '%s' does not exist", id)
	}
	for _, s := range e.sessions {
		if s.FilterID == id {
			return "", errf(400, "DependencyViolation", "traffic mirror filter %s is in use by session %s", id, s.ID)
		}
	}
	if dryRun(form) {
		return "", errDryRun
	}
	delete(e.filters, id)
	var b xb
	b.el("trafficMirrorFilterId", id)
	return b.String(), nil
}

func (e *Emulator) deleteTarget(form url.Values) (string, *apiError) {
	id := form.Get("TrafficMirrorTargetId")
	if e.targets[id] == nil {
		return "", errf(400, "InvalidTrafficMirrorTargetId.NotFound", "The traffic mirror target '%s' does not exist", id)
	}
	for _, s := range e.sessions {
		if s.TargetID == id {
			return "", errf(400, "DependencyViolation", "traffic mirror target %s is in use by session %s", id, s.ID)
		}
	}
	if dryRun(form) {
		return "", errDryRun
	}
	delete(e.targets, id)
	var b xb
	b.el("trafficMirrorTargetId", id)
	return b.String(), nil
}
