package awsemu

import (
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// unsupportedTypes are instance families that cannot be mirror sources (the Traffic Mirroring
// limitations page: Xen types outside a short list, and some Nitro families); bare metal
// sizes are refused too.
var unsupportedTypes = []string{"t2.", "m1.", "c3.", "m3.", "r3.", "m6i.", "c6i.", "r6i.", "m7i.", "c7i.", "m7g.", "c7g.", "i4i."}

func (e *Emulator) serveEC2(w http.ResponseWriter, form url.Values) {
	e.mu.Lock()
	defer e.mu.Unlock()
	action := form.Get("Action")
	if err := e.gate(action, "RequestLimitExceeded", 503, "UnauthorizedOperation"); err != nil {
		writeEC2Error(w, err)
		return
	}
	if e.Policy != "" && !e.policyAllows("ec2", action, form) {
		writeEC2Error(w, errf(403, "UnauthorizedOperation", "You are not authorized to perform this operation: ec2:%s (denied by the attached policy)", action))
		return
	}
	handlers := map[string]func(url.Values) (string, *apiError){
		"DescribeInstances":              e.describeInstances,
		"DescribeInstanceTypes":          e.describeInstanceTypes,
		"DescribeSubnets":                e.describeSubnets,
		"DescribeSecurityGroups":         e.describeSecurityGroups,
		"DescribeNetworkAcls":            e.describeNetworkAcls,
		"DescribeVpcPeeringConnections":  e.describePeerings,
		"AuthorizeSecurityGroupIngress":  e.authorizeIngress,
		"ModifyTrafficMirrorSession":     e.modifySession,
		"DescribeLaunchTemplates":        e.describeLaunchTemplates,
		"DescribeLaunchTemplateVersions": e.describeLaunchTemplateVersions,
		"CreateLaunchTemplate":           e.createLaunchTemplate,
		"CreateLaunchTemplateVersion":    e.createLaunchTemplateVersion,
		"DeleteLaunchTemplate":           e.deleteLaunchTemplate,
		"DescribeNetworkInterfaces":      e.describeENIs,
		"DescribeTrafficMirrorTargets":   e.describeTargets,
		"DescribeTrafficMirrorFilters":   e.describeFilters,
		"DescribeTrafficMirrorSessions":  e.describeSessions,
		"CreateTrafficMirrorTarget":      e.createTarget,
		"CreateTrafficMirrorFilter":      e.createFilter,
		"CreateTrafficMirrorFilterRule":  e.createFilterRule,
		"CreateTrafficMirrorSession":     e.createSession,
		"DeleteTrafficMirrorTarget":      e.deleteTarget,
		"DeleteTrafficMirrorFilter":      e.deleteFilter,
		"DeleteTrafficMirrorFilterRule":  e.deleteFilterRule,
		"DeleteTrafficMirrorSession":     e.deleteSession,
	}
	h, ok := handlers[action]
	if !ok {
		writeEC2Error(w, errf(400, "InvalidAction", "the action %s is not valid for this web service", action))
		return
	}
	body, err := h(form)
	if err == nil && dryRun(form) {
		if isMutating(action) {
			panic("awsemu: " + action + " applied a DryRun request")
		}
		err = errDryRun
	}
	if err != nil {
		writeEC2Error(w, err)
		return
	}
	if isMutating(action) {
		e.mutated()
	}
	writeEC2(w, action, body)
}

// errDryRun is the answer to a DryRun request that passed every check: handlers return it
// after validating and before changing anything.
var errDryRun = errf(412, "DryRunOperation", "Request would have succeeded, but DryRun flag is set.")

func dryRun(form url.Values) bool { return form.Get("DryRun") == "true" }

// checkFilters rejects filter names the API does not document for the call.
func checkFilters(f map[string][]string, allowed ...string) *apiError {
	for name := range f {
		if !slices.Contains(allowed, name) && !(slices.Contains(allowed, "tag:") && strings.HasPrefix(name, "tag:")) {
			return errf(400, "InvalidParameterValue", "The filter '%s' is invalid", name)
		}
	}
	return nil
}

func match(f map[string][]string, name, val string) bool {
	vs, ok := f[name]
	return !ok || slices.Contains(vs, val)
}

func (e *Emulator) describeInstances(form url.Values) (string, *apiError) {
	f := ec2Filters(form)
	if err := checkFilters(f, "instance-id", "instance-state-name", "vpc-id", "tag:"); err != nil {
		return "", err
	}
	ids := flatList(form, "InstanceId")
	for _, id := range ids {
		if e.instances[id] == nil {
			return "", errf(400, "InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
		}
	}
	var sel []*Instance
	for _, k := range sortedKeys(e.instances) {
		in := e.instances[k]
		if len(ids) > 0 && !slices.Contains(ids, in.ID) {
			continue
		}
		ok := match(f, "instance-id", in.ID) && match(f, "instance-state-name", in.State) && match(f, "vpc-id", in.VPCID)
		for name, vs := range f {
			if key, isTag := strings.CutPrefix(name, "tag:"); isTag {
				v, has := in.Tags[key]
				ok = ok && has && slices.Contains(vs, v)
			}
		}
		if ok {
			sel = append(sel, in)
		}
	}
	items, next, err := page(sel, form.Get("NextToken"), e.PageSize)
	if err != nil {
		return "", err
	}
	var b xb
	b.open("reservationSet")
	for _, in := range items {
		b.open("item")
		b.el("reservationId", "r-"+strings.TrimPrefix(in.ID, "i-"))
		b.el("ownerId", e.Account)
		b.open("instancesSet")
		b.open("item")
		b.el("instanceId", in.ID)
		b.el("instanceType", in.Type)
		b.open("instanceState")
		b.num("code", map[string]int{"pending": 0, "running": 16, "stopping": 64, "stopped": 80, "terminated": 48}[in.State])
		b.el("name", in.State)
		b.close("instanceState")
		b.el("subnetId", in.SubnetID)
		b.el("vpcId", in.VPCID)
		var attached []*ENI
		for _, k := range sortedKeys(e.enis) {
			if n := e.enis[k]; n.InstanceID == in.ID {
				attached = append(attached, n)
			}
		}
		slices.SortFunc(attached, func(a, b *ENI) int { return a.DeviceIndex - b.DeviceIndex })
		if p := e.enis[in.ENI]; p != nil {
			b.el("privateIpAddress", p.PrivateIP)
		}
		b.open("networkInterfaceSet")
		for _, eni := range attached {
			b.open("item")
			b.el("networkInterfaceId", eni.ID)
			b.el("subnetId", eni.SubnetID)
			b.el("vpcId", eni.VPCID)
			b.el("privateIpAddress", eni.PrivateIP)
			b.el("interfaceType", eni.InterfaceType)
			b.open("attachment")
			b.el("attachmentId", "eni-attach-"+strings.TrimPrefix(eni.ID, "eni-"))
			b.num("deviceIndex", eni.DeviceIndex)
			b.el("status", "attached")
			b.close("attachment")
			b.close("item")
		}
		b.close("networkInterfaceSet")
		b.ec2Tags(in.Tags)
		b.close("item")
		b.close("instancesSet")
		b.close("item")
	}
	b.close("reservationSet")
	b.el("nextToken", next)
	return b.String(), nil
}

func (e *Emulator) describeENIs(form url.Values) (string, *apiError) {
	f := ec2Filters(form)
	if err := checkFilters(f, "description", "network-interface-id", "vpc-id", "attachment.instance-id", "interface-type", "requester-managed"); err != nil {
		return "", err
	}
	ids := flatList(form, "NetworkInterfaceId")
	for _, id := range ids {
		if e.enis[id] == nil {
			return "", errf(400, "InvalidNetworkInterfaceID.NotFound", "The networkInterface ID '%s' does not exist", id)
		}
	}
	var sel []*ENI
	for _, k := range sortedKeys(e.enis) {
		n := e.enis[k]
		if (len(ids) == 0 || slices.Contains(ids, n.ID)) && match(f, "description", n.Description) && match(f, "network-interface-id", n.ID) &&
			match(f, "vpc-id", n.VPCID) && match(f, "attachment.instance-id", n.InstanceID) && match(f, "interface-type", n.InterfaceType) {
			sel = append(sel, n)
		}
	}
	items, next, err := page(sel, form.Get("NextToken"), e.PageSize)
	if err != nil {
		return "", err
	}
	var b xb
	b.open("networkInterfaceSet")
	for _, n := range items {
		b.open("item")
		b.el("networkInterfaceId", n.ID)
		b.el("description", n.Description)
		b.el("interfaceType", n.InterfaceType)
		b.el("subnetId", n.SubnetID)
		b.el("vpcId", n.VPCID)
		b.el("privateIpAddress", n.PrivateIP)
		b.el("availabilityZone", n.AZ)
		b.el("status", "in-use")
		b.el("requesterManaged", strconv.FormatBool(n.RequesterManaged))
		b.el("requesterId", n.RequesterID)
		b.open("groupSet")
		for _, g := range n.Groups {
			b.open("item")
			b.el("groupId", g)
			b.close("item")
		}
		b.close("groupSet")
		if n.InstanceID != "" {
			b.open("attachment")
			b.el("instanceId", n.InstanceID)
			b.num("deviceIndex", n.DeviceIndex)
			b.close("attachment")
		}
		b.close("item")
	}
	b.close("networkInterfaceSet")
	b.el("nextToken", next)
	return b.String(), nil
}

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

func sessionXML(s *Session, account string) string {
	var b xb
	b.el("trafficMirrorSessionId", s.ID)
	b.el("trafficMirrorTargetId", s.TargetID)
	b.el("trafficMirrorFilterId", s.FilterID)
	b.el("networkInterfaceId", s.ENI)
	b.el("ownerId", account)
	if s.PacketLength > 0 {
		b.num("packetLength", s.PacketLength)
	}
	b.num("sessionNumber", s.Number)
	b.num("virtualNetworkId", s.VNI)
	b.el("description", s.Description)
	b.ec2Tags(s.Tags)
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

func (e *Emulator) describeSessions(form url.Values) (string, *apiError) {
	f := ec2Filters(form)
	if err := checkFilters(f, "network-interface-id", "traffic-mirror-target-id", "traffic-mirror-filter-id", "traffic-mirror-session-id"); err != nil {
		return "", err
	}
	ids := flatList(form, "TrafficMirrorSessionId")
	for _, id := range ids {
		if e.sessions[id] == nil || !e.visible(id) {
			return "", errf(400, "InvalidTrafficMirrorSessionId.NotFound", "The traffic mirror session '%s' does not exist", id)
		}
	}
	var sel []*Session
	for _, k := range sortedKeys(e.sessions) {
		s := e.sessions[k]
		if len(ids) == 0 && !e.visible(s.ID) {
			continue
		}
		if (len(ids) == 0 || slices.Contains(ids, s.ID)) && match(f, "network-interface-id", s.ENI) && match(f, "traffic-mirror-target-id", s.TargetID) &&
			match(f, "traffic-mirror-filter-id", s.FilterID) && match(f, "traffic-mirror-session-id", s.ID) {
			sel = append(sel, s)
		}
	}
	items, next, err := page(sel, form.Get("NextToken"), e.PageSize)
	if err != nil {
		return "", err
	}
	var b xb
	b.open("trafficMirrorSessionSet")
	for _, s := range items {
		b.open("item")
		b.WriteString(sessionXML(s, e.Account))
		b.close("item")
	}
	b.close("trafficMirrorSessionSet")
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

func (e *Emulator) deleteSession(form url.Values) (string, *apiError) {
	id := form.Get("TrafficMirrorSessionId")
	if e.sessions[id] == nil {
		return "", errf(400, "InvalidTrafficMirrorSessionId.NotFound", "The traffic mirror session '%s' does not exist", id)
	}
	if dryRun(form) {
		return "", errDryRun
	}
	delete(e.sessions, id)
	var b xb
	b.el("trafficMirrorSessionId", id)
	return b.String(), nil
}

func (e *Emulator) createSession(form url.Values) (string, *apiError) {
	token := form.Get("ClientToken")
	id, err := e.idempotent("CreateTrafficMirrorSession", token, paramsKey(form))
	if err != nil {
		return "", err
	}
	if id == "" || dryRun(form) {
		s, err := e.newSession(form)
		if err != nil {
			return "", err
		}
		id = s.ID
		e.remember("CreateTrafficMirrorSession", token, paramsKey(form), id)
	}
	var b xb
	b.open("trafficMirrorSession")
	if s := e.sessions[id]; s != nil {
		b.WriteString(sessionXML(s, e.Account))
	} else {
		b.el("trafficMirrorSessionId", id)
	}
	b.close("trafficMirrorSession")
	b.el("clientToken", token)
	return b.String(), nil
}

func (e *Emulator) newSession(form url.Values) (*Session, *apiError) {
	eniID := form.Get("NetworkInterfaceId")
	if err := e.checkSource(eniID); err != nil {
		return nil, err
	}
	target := e.targets[form.Get("TrafficMirrorTargetId")]
	if target == nil {
		return nil, errf(400, "InvalidTrafficMirrorTargetId.NotFound", "The traffic mirror target '%s' does not exist", form.Get("TrafficMirrorTargetId"))
	}
	if e.filters[form.Get("TrafficMirrorFilterId")] == nil {
		return nil, errf(400, "InvalidTrafficMirrorFilterId.NotFound", "The traffic mirror filter '%s' does not exist", form.Get("TrafficMirrorFilterId"))
	}
	num, cerr := strconv.Atoi(form.Get("SessionNumber"))
	if cerr != nil || num < 1 || num > 32766 {
		return nil, errf(400, "InvalidParameterValue", "SessionNumber must be 1-32766, got %q", form.Get("SessionNumber"))
	}
	onENI := 0
	for _, s := range e.sessions {
		if s.ENI == eniID {
			onENI++
			if s.Number == num {
				return nil, errf(400, "InvalidParameterValue", "session number %d is already used on %s by %s", num, eniID, s.ID)
			}
		}
	}
	if onENI >= 3 {
		return nil, errf(400, "TrafficMirrorSessionsPerInterfaceLimitExceeded", "network interface %s already has 3 traffic mirror sessions", eniID)
	}
	if err := e.checkSourcesPerTarget(target, eniID); err != nil {
		return nil, err
	}
	s := &Session{ENI: eniID, TargetID: target.ID, FilterID: form.Get("TrafficMirrorFilterId"), Number: num, Description: form.Get("Description")}
	if v := form.Get("VirtualNetworkId"); v != "" {
		vni, err := strconv.Atoi(v)
		if err != nil || vni < 0 || vni > 1<<24-1 {
			return nil, errf(400, "InvalidParameterValue", "VirtualNetworkId must be 0-16777215, got %q", v)
		}
		s.VNI = vni
	} else {
		s.VNI = (e.seq * 7919) % (1 << 24)
	}
	if err := e.setPacketLength(s, target, form.Get("PacketLength")); err != nil {
		return nil, err
	}
	tags, aerr := ec2TagSpec(form, "traffic-mirror-session")
	if aerr != nil {
		return nil, aerr
	}
	if dryRun(form) {
		return nil, errDryRun
	}
	s.ID = e.id("tms")
	s.Tags = maps.Clone(tags)
	e.sessions[s.ID] = s
	e.created(s.ID)
	return s, nil
}

// checkSource applies the rules AWS has for mirror sources.
func (e *Emulator) checkSource(eniID string) *apiError {
	eni := e.enis[eniID]
	if eni == nil {
		return errf(400, "InvalidNetworkInterfaceID.NotFound", "The networkInterface ID '%s' does not exist", eniID)
	}
	for _, t := range e.targets {
		if t.ENI == eniID {
			return errf(400, "InvalidParameterValue", "network interface %s is a traffic mirror target and cannot also be a source", eniID)
		}
	}
	if eni.InterfaceType != "interface" {
		return errf(400, "InvalidNetworkInterface.NotSupported", "network interface %s is of type %s; only interfaces of type interface can be mirrored", eniID, eni.InterfaceType)
	}
	if eni.RequesterManaged && eni.RequesterID != "amazon-rds" && eni.RequesterID != "amazon-elasticache" {
		return errf(400, "InvalidNetworkInterface.NotSupported", "network interface %s is requester-managed by %s and cannot be mirrored", eniID, eni.RequesterID)
	}
	if in := e.instances[eni.InstanceID]; in != nil {
		for _, p := range append(slices.Clone(unsupportedTypes), "*.metal") {
			if strings.HasPrefix(in.Type, p) || p == "*.metal" && strings.HasSuffix(in.Type, ".metal") {
				return errf(400, "InvalidParameterValue", "instance type %s of %s is not supported for traffic mirroring", in.Type, in.ID)
			}
		}
	}
	return nil
}

// sourcesPerTarget is how many source interfaces an ENI target accepts: 100 on the largest
// sizes, 10 on the rest (Traffic Mirroring quotas; the emulator takes 24xlarge and up, and
// metal, as "largest").
func (e *Emulator) sourcesPerTarget(target *Target) int {
	eni := e.enis[target.ENI]
	if eni == nil {
		return 10
	}
	if in := e.instances[eni.InstanceID]; in != nil {
		_, size, _ := strings.Cut(in.Type, ".")
		if slices.Contains([]string{"24xlarge", "32xlarge", "48xlarge", "metal"}, size) {
			return 100
		}
	}
	return 10
}

func (e *Emulator) checkSourcesPerTarget(target *Target, eniID string) *apiError {
	if target.ENI == "" {
		return nil // NLB and GWLB endpoint targets take any number of sources
	}
	sources := map[string]bool{}
	for _, s := range e.sessions {
		if s.TargetID == target.ID {
			sources[s.ENI] = true
		}
	}
	if limit := e.sourcesPerTarget(target); !sources[eniID] && len(sources) >= limit {
		return errf(400, "TrafficMirrorSourcesPerTargetLimitExceeded", "traffic mirror target %s already has %d sources", target.ID, limit)
	}
	return nil
}

// setPacketLength validates PacketLength: 1-8500 for NLB targets, which default to 8500.
func (e *Emulator) setPacketLength(s *Session, target *Target, v string) *apiError {
	if v == "" {
		if target.NLBArn != "" {
			s.PacketLength = 8500
		} else {
			s.PacketLength = 0
		}
		return nil
	}
	n, err := strconv.Atoi(v)
	limit := 65535
	if target.NLBArn != "" {
		limit = 8500
	}
	if err != nil || n < 1 || n > limit {
		return errf(400, "InvalidParameterValue", "PacketLength must be 1-%d for this target, got %q", limit, v)
	}
	s.PacketLength = n
	return nil
}

func (e *Emulator) modifySession(form url.Values) (string, *apiError) {
	id := form.Get("TrafficMirrorSessionId")
	cur := e.sessions[id]
	if cur == nil {
		return "", errf(400, "InvalidTrafficMirrorSessionId.NotFound", "The traffic mirror session '%s' does not exist", id)
	}
	next := *cur
	if v := form.Get("TrafficMirrorTargetId"); v != "" {
		t := e.targets[v]
		if t == nil {
			return "", errf(400, "InvalidTrafficMirrorTargetId.NotFound", "The traffic mirror target '%s' does not exist", v)
		}
		if err := e.checkSourcesPerTarget(t, cur.ENI); err != nil {
			return "", err
		}
		next.TargetID = v
	}
	if v := form.Get("TrafficMirrorFilterId"); v != "" {
		if e.filters[v] == nil {
			return "", errf(400, "InvalidTrafficMirrorFilterId.NotFound", "The traffic mirror filter '%s' does not exist", v)
		}
		next.FilterID = v
	}
	if v := form.Get("SessionNumber"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 32766 {
			return "", errf(400, "InvalidParameterValue", "SessionNumber must be 1-32766, got %q", v)
		}
		for _, s := range e.sessions {
			if s.ENI == cur.ENI && s.ID != id && s.Number == n {
				return "", errf(400, "InvalidParameterValue", "session number %d is already used on %s by %s", n, cur.ENI, s.ID)
			}
		}
		next.Number = n
	}
	if v := form.Get("VirtualNetworkId"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 1<<24-1 {
			return "", errf(400, "InvalidParameterValue", "VirtualNetworkId must be 0-16777215, got %q", v)
		}
		next.VNI = n
	}
	target := e.targets[next.TargetID]
	removed := flatList(form, "RemoveField")
	switch {
	case form.Get("PacketLength") != "":
		if err := e.setPacketLength(&next, target, form.Get("PacketLength")); err != nil {
			return "", err
		}
	case slices.Contains(removed, "packet-length") || next.TargetID != cur.TargetID:
		_ = e.setPacketLength(&next, target, "")
	}
	if slices.Contains(removed, "description") {
		next.Description = ""
	} else if v := form.Get("Description"); v != "" {
		next.Description = v
	}
	if dryRun(form) {
		return "", errDryRun
	}
	*cur = next
	var b xb
	b.open("trafficMirrorSession")
	b.WriteString(sessionXML(cur, e.Account))
	b.close("trafficMirrorSession")
	return b.String(), nil
}

// String describes a session for test failure messages.
func (s Session) String() string {
	return fmt.Sprintf("%s(%s→%s #%d vni %d)", s.ID, s.ENI, s.TargetID, s.Number, s.VNI)
}
