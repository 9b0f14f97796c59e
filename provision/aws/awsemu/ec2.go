package awsemu

import (
	"net/http"
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
