package awsemu

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

func (e *Emulator) serveELB(w http.ResponseWriter, form url.Values) {
	e.mu.Lock()
	defer e.mu.Unlock()
	action := form.Get("Action")
	if err := e.gate(action, "Throttling", 400, "AccessDenied"); err != nil {
		writeELBError(w, err)
		return
	}
	if e.Policy != "" && !e.policyAllows("elasticloadbalancing", action, form) {
		writeELBError(w, errf(403, "AccessDenied", "User is not authorized to perform: elasticloadbalancing:%s (denied by the attached policy)", action))
		return
	}
	handlers := map[string]func(url.Values) (string, *apiError){
		"SetSubnets":                     e.setSubnets,
		"DeregisterTargets":              e.deregisterTargets,
		"AddTags":                        e.addTags,
		"DescribeLoadBalancers":          e.describeLBs,
		"CreateLoadBalancer":             e.createLB,
		"DeleteLoadBalancer":             e.deleteLB,
		"DescribeLoadBalancerAttributes": func(f url.Values) (string, *apiError) { return e.attrs(f, false, false) },
		"ModifyLoadBalancerAttributes":   func(f url.Values) (string, *apiError) { return e.attrs(f, false, true) },
		"DescribeTargetGroups":           e.describeTGs,
		"CreateTargetGroup":              e.createTG,
		"DeleteTargetGroup":              e.deleteTG,
		"DescribeTargetGroupAttributes":  func(f url.Values) (string, *apiError) { return e.attrs(f, true, false) },
		"ModifyTargetGroupAttributes":    func(f url.Values) (string, *apiError) { return e.attrs(f, true, true) },
		"RegisterTargets":                e.registerTargets,
		"DescribeTargetHealth":           e.describeTargetHealth,
		"DescribeListeners":              e.describeListeners,
		"CreateListener":                 e.createListener,
		"DeleteListener":                 e.deleteListener,
		"DescribeTags":                   e.describeTags,
	}
	h, ok := handlers[action]
	if !ok {
		writeELBError(w, errf(400, "InvalidAction", "unknown action %s", action))
		return
	}
	body, err := h(form)
	if err != nil {
		writeELBError(w, err)
		return
	}
	if isMutating(action) {
		e.mutated()
	}
	writeELB(w, action, body)
}

func (b *xb) elbTags(tags map[string]string) {
	b.open("Tags")
	for _, k := range sortedKeys(tags) {
		b.open("member")
		b.el("Key", k)
		b.el("Value", tags[k])
		b.close("member")
	}
	b.close("Tags")
}

func elbPageSize(form url.Values, def int) int {
	if n, err := strconv.Atoi(form.Get("PageSize")); err == nil && n > 0 && n < def {
		return n
	}
	return def
}

func (e *Emulator) lbXML(lb *LoadBalancer) string {
	var b xb
	b.el("LoadBalancerArn", lb.Arn)
	b.el("LoadBalancerName", lb.Name)
	b.el("Type", lb.Type)
	b.el("Scheme", lb.Scheme)
	b.el("VpcId", lb.VPCID)
	b.el("DNSName", lb.Name+".elb."+e.Region+".amazonaws.com")
	b.open("State")
	b.el("Code", "active")
	b.close("State")
	b.open("AvailabilityZones")
	for _, s := range lb.Subnets {
		b.open("member")
		b.el("SubnetId", s)
		az := e.Region + "a"
		if sn := e.net.subnets[s]; sn != nil {
			az = sn.AZ
		}
		b.el("ZoneName", az)
		b.close("member")
	}
	b.close("AvailabilityZones")
	return b.String()
}

func (e *Emulator) describeLBs(form url.Values) (string, *apiError) {
	names, arns := memberList(form, "Names"), memberList(form, "LoadBalancerArns")
	var sel []*LoadBalancer
	for _, k := range sortedKeys(e.lbs) {
		lb := e.lbs[k]
		if (len(names) == 0 || slices.Contains(names, lb.Name)) && (len(arns) == 0 || slices.Contains(arns, lb.Arn)) {
			sel = append(sel, lb)
		}
	}
	if want := len(names) + len(arns); want > 0 && len(sel) < want {
		return "", errf(400, "LoadBalancerNotFound", "One or more load balancers not found")
	}
	items, next, err := page(sel, form.Get("Marker"), elbPageSize(form, e.PageSize))
	if err != nil {
		return "", err
	}
	var b xb
	b.open("LoadBalancers")
	for _, lb := range items {
		b.open("member")
		b.WriteString(e.lbXML(lb))
		b.close("member")
	}
	b.close("LoadBalancers")
	b.el("NextMarker", next)
	return b.String(), nil
}

func (e *Emulator) createLB(form url.Values) (string, *apiError) {
	name, typ := form.Get("Name"), form.Get("Type")
	if typ == "" {
		typ = "application"
	}
	if name == "" || len(name) > 32 || strings.HasPrefix(name, "internal-") {
		return "", errf(400, "ValidationError", "load balancer name %q is not valid", name)
	}
	subnets := memberList(form, "Subnets")
	if len(subnets) == 0 {
		return "", errf(400, "ValidationError", "at least one subnet is required")
	}
	if err := e.checkLBSubnets(subnets); err != nil {
		return "", err
	}
	scheme := form.Get("Scheme")
	if scheme == "" {
		scheme = "internet-facing"
	}
	for _, lb := range e.lbs {
		if lb.Name == name {
			if lb.Type != typ || lb.Scheme != scheme || !slices.Equal(lb.Subnets, subnets) {
				return "", errf(400, "DuplicateLoadBalancerName", "A load balancer with the same name '%s' exists, but with different settings", name)
			}
			return e.lbReply(lb), nil
		}
	}
	short := map[string]string{"application": "app", "network": "net"}[typ]
	e.seq++
	lb := &LoadBalancer{Arn: fmt.Sprintf("arn:aws:elasticloadbalancing:%s:%s:loadbalancer/%s/%s/%016x", e.Region, e.Account, short, name, e.seq),
		Name: name, Type: typ, Scheme: scheme, VPCID: "vpc-0emu", Subnets: subnets, Attrs: map[string]string{}, Tags: elbKV(form, "Tags")}
	e.lbs[lb.Arn] = lb
	for _, s := range subnets {
		e.addLBENI(lb.Arn, s)
	}
	return e.lbReply(lb), nil
}

func (e *Emulator) lbReply(lb *LoadBalancer) string {
	return "<LoadBalancers><member>" + e.lbXML(lb) + "</member></LoadBalancers>"
}

func (e *Emulator) deleteLB(form url.Values) (string, *apiError) {
	arn := form.Get("LoadBalancerArn")
	lb := e.lbs[arn]
	if lb == nil {
		return "", nil // deleting a missing load balancer succeeds
	}
	for _, t := range e.targets {
		if t.NLBArn == arn {
			return "", errf(400, "ResourceInUse", "load balancer %s is used by traffic mirror target %s", arn, t.ID)
		}
	}
	for id, l := range e.listeners {
		if l.LBArn == arn {
			delete(e.listeners, id)
		}
	}
	short := map[string]string{"application": "app", "network": "net"}[lb.Type]
	_, suffix, _ := strings.Cut(arn, ":loadbalancer/"+short+"/")
	for id, eni := range e.enis {
		if eni.Description == "ELB "+short+"/"+suffix {
			delete(e.enis, id)
		}
	}
	delete(e.lbs, arn)
	return "", nil
}

func (e *Emulator) attrs(form url.Values, tg, modify bool) (string, *apiError) {
	var m map[string]string
	if tg {
		x := e.tgs[form.Get("TargetGroupArn")]
		if x == nil {
			return "", errf(400, "TargetGroupNotFound", "target group %s not found", form.Get("TargetGroupArn"))
		}
		m = x.Attrs
		if modify {
			in := elbKV(form, "Attributes")
			if st, ok := in["stickiness.type"]; ok && (x.Protocol == "UDP" || x.Protocol == "TCP") && st != "source_ip" {
				return "", errf(400, "ValidationError", "stickiness type %q is not supported for %s target groups", st, x.Protocol)
			}
			maps.Copy(m, in)
		}
	} else {
		x := e.lbs[form.Get("LoadBalancerArn")]
		if x == nil {
			return "", errf(400, "LoadBalancerNotFound", "load balancer %s not found", form.Get("LoadBalancerArn"))
		}
		m = x.Attrs
		if modify {
			maps.Copy(m, elbKV(form, "Attributes"))
		}
	}
	var b xb
	b.open("Attributes")
	for _, k := range sortedKeys(m) {
		b.open("member")
		b.el("Key", k)
		b.el("Value", m[k])
		b.close("member")
	}
	b.close("Attributes")
	return b.String(), nil
}

func tgXML(t *TargetGroup, lbArns []string) string {
	var b xb
	b.el("TargetGroupArn", t.Arn)
	b.el("TargetGroupName", t.Name)
	b.el("Protocol", t.Protocol)
	b.num("Port", t.Port)
	b.el("VpcId", t.VPCID)
	b.el("TargetType", t.TargetType)
	b.el("HealthCheckProtocol", t.HealthProtocol)
	b.el("HealthCheckPort", t.HealthPort)
	b.el("HealthCheckPath", t.HealthPath)
	b.open("LoadBalancerArns")
	for _, a := range lbArns {
		b.el("member", a)
	}
	b.close("LoadBalancerArns")
	return b.String()
}

func (e *Emulator) tgLBs(arn string) []string {
	var out []string
	for _, l := range e.listeners {
		if l.TGArn == arn && !slices.Contains(out, l.LBArn) {
			out = append(out, l.LBArn)
		}
	}
	return out
}

func (e *Emulator) describeTGs(form url.Values) (string, *apiError) {
	names, arns, lbArn := memberList(form, "Names"), memberList(form, "TargetGroupArns"), form.Get("LoadBalancerArn")
	var sel []*TargetGroup
	for _, k := range sortedKeys(e.tgs) {
		t := e.tgs[k]
		if (len(names) == 0 || slices.Contains(names, t.Name)) && (len(arns) == 0 || slices.Contains(arns, t.Arn)) &&
			(lbArn == "" || slices.Contains(e.tgLBs(t.Arn), lbArn)) {
			sel = append(sel, t)
		}
	}
	if want := len(names) + len(arns); want > 0 && len(sel) < want {
		return "", errf(400, "TargetGroupNotFound", "One or more target groups not found")
	}
	items, next, err := page(sel, form.Get("Marker"), elbPageSize(form, e.PageSize))
	if err != nil {
		return "", err
	}
	var b xb
	b.open("TargetGroups")
	for _, t := range items {
		b.open("member")
		b.WriteString(tgXML(t, e.tgLBs(t.Arn)))
		b.close("member")
	}
	b.close("TargetGroups")
	b.el("NextMarker", next)
	return b.String(), nil
}

func (e *Emulator) createTG(form url.Values) (string, *apiError) {
	port, _ := strconv.Atoi(form.Get("Port"))
	t := &TargetGroup{Name: form.Get("Name"), Protocol: form.Get("Protocol"), Port: port, VPCID: form.Get("VpcId"),
		TargetType: form.Get("TargetType"), HealthProtocol: form.Get("HealthCheckProtocol"), HealthPort: form.Get("HealthCheckPort"),
		HealthPath: form.Get("HealthCheckPath"), Attrs: map[string]string{"stickiness.enabled": "false", "stickiness.type": "source_ip"}, Tags: elbKV(form, "Tags")}
	if t.Name == "" || len(t.Name) > 32 {
		return "", errf(400, "ValidationError", "target group name %q is not valid", t.Name)
	}
	if t.TargetType == "" {
		t.TargetType = "instance"
	}
	if t.Protocol == "UDP" && !slices.Contains([]string{"TCP", "HTTP", "HTTPS"}, t.HealthProtocol) {
		return "", errf(400, "ValidationError", "health check protocol %q is not supported for UDP target groups", t.HealthProtocol)
	}
	for _, x := range e.tgs {
		if x.Name == t.Name {
			if x.Protocol != t.Protocol || x.Port != t.Port || x.VPCID != t.VPCID || x.HealthPort != t.HealthPort {
				return "", errf(400, "DuplicateTargetGroupName", "A target group with the same name '%s' exists, but with different settings", t.Name)
			}
			return "<TargetGroups><member>" + tgXML(x, e.tgLBs(x.Arn)) + "</member></TargetGroups>", nil
		}
	}
	e.seq++
	t.Arn = fmt.Sprintf("arn:aws:elasticloadbalancing:%s:%s:targetgroup/%s/%016x", e.Region, e.Account, t.Name, e.seq)
	e.tgs[t.Arn] = t
	return "<TargetGroups><member>" + tgXML(t, nil) + "</member></TargetGroups>", nil
}

func (e *Emulator) deleteTG(form url.Values) (string, *apiError) {
	arn := form.Get("TargetGroupArn")
	if e.tgs[arn] == nil {
		return "", nil
	}
	if lbs := e.tgLBs(arn); len(lbs) > 0 {
		return "", errf(400, "ResourceInUse", "Target group '%s' is currently in use by a listener or a rule", arn)
	}
	delete(e.tgs, arn)
	return "", nil
}

func (e *Emulator) registerTargets(form url.Values) (string, *apiError) {
	t := e.tgs[form.Get("TargetGroupArn")]
	if t == nil {
		return "", errf(400, "TargetGroupNotFound", "target group %s not found", form.Get("TargetGroupArn"))
	}
	for i := 1; ; i++ {
		id := form.Get("Targets.member." + strconv.Itoa(i) + ".Id")
		if id == "" {
			break
		}
		if e.instances[id] == nil {
			return "", errf(400, "InvalidTarget", "The following targets are not valid instances: '%s'", id)
		}
		if !slices.Contains(t.Targets, id) {
			t.Targets = append(t.Targets, id)
		}
	}
	return "", nil
}

func (e *Emulator) describeTargetHealth(form url.Values) (string, *apiError) {
	t := e.tgs[form.Get("TargetGroupArn")]
	if t == nil {
		return "", errf(400, "TargetGroupNotFound", "target group %s not found", form.Get("TargetGroupArn"))
	}
	var b xb
	b.open("TargetHealthDescriptions")
	for _, id := range t.Targets {
		b.open("member")
		b.open("Target")
		b.el("Id", id)
		b.num("Port", t.Port)
		b.close("Target")
		b.el("HealthCheckPort", t.HealthPort)
		b.open("TargetHealth")
		state := "healthy"
		if st, ok := t.Health[id]; ok {
			state = st
		}
		b.el("State", state)
		b.close("TargetHealth")
		b.close("member")
	}
	b.close("TargetHealthDescriptions")
	return b.String(), nil
}

func listenerXML(l *Listener) string {
	var b xb
	b.el("ListenerArn", l.Arn)
	b.el("LoadBalancerArn", l.LBArn)
	b.el("Protocol", l.Protocol)
	b.num("Port", l.Port)
	b.open("DefaultActions")
	b.open("member")
	b.el("Type", "forward")
	b.el("TargetGroupArn", l.TGArn)
	b.close("member")
	b.close("DefaultActions")
	return b.String()
}

func (e *Emulator) describeListeners(form url.Values) (string, *apiError) {
	lbArn, arns := form.Get("LoadBalancerArn"), memberList(form, "ListenerArns")
	if lbArn != "" && e.lbs[lbArn] == nil {
		return "", errf(400, "LoadBalancerNotFound", "load balancer %s not found", lbArn)
	}
	var sel []*Listener
	for _, k := range sortedKeys(e.listeners) {
		l := e.listeners[k]
		if (lbArn == "" || l.LBArn == lbArn) && (len(arns) == 0 || slices.Contains(arns, l.Arn)) {
			sel = append(sel, l)
		}
	}
	if len(arns) > 0 && len(sel) < len(arns) {
		return "", errf(400, "ListenerNotFound", "One or more listeners not found")
	}
	items, next, err := page(sel, form.Get("Marker"), elbPageSize(form, e.PageSize))
	if err != nil {
		return "", err
	}
	var b xb
	b.open("Listeners")
	for _, l := range items {
		b.open("member")
		b.WriteString(listenerXML(l))
		b.close("member")
	}
	b.close("Listeners")
	b.el("NextMarker", next)
	return b.String(), nil
}

func (e *Emulator) createListener(form url.Values) (string, *apiError) {
	lb := e.lbs[form.Get("LoadBalancerArn")]
	if lb == nil {
		return "", errf(400, "LoadBalancerNotFound", "load balancer %s not found", form.Get("LoadBalancerArn"))
	}
	port, _ := strconv.Atoi(form.Get("Port"))
	l := &Listener{LBArn: lb.Arn, Protocol: form.Get("Protocol"), Port: port, TGArn: form.Get("DefaultActions.member.1.TargetGroupArn"), Tags: elbKV(form, "Tags")}
	if form.Get("DefaultActions.member.1.Type") != "forward" {
		return "", errf(400, "ValidationError", "the default action must be forward")
	}
	tg := e.tgs[l.TGArn]
	if tg == nil {
		return "", errf(400, "TargetGroupNotFound", "target group %s not found", l.TGArn)
	}
	if tg.Protocol != l.Protocol {
		return "", errf(400, "IncompatibleProtocols", "listener protocol %s does not match target group protocol %s", l.Protocol, tg.Protocol)
	}
	if other := e.tgLBs(tg.Arn); len(other) > 0 && !slices.Contains(other, lb.Arn) {
		return "", errf(400, "TargetGroupAssociationLimit", "target group %s is already used by another load balancer", tg.Arn)
	}
	for _, x := range e.listeners {
		if x.LBArn == lb.Arn && x.Port == l.Port && x.Protocol == l.Protocol {
			if x.TGArn == l.TGArn {
				return "<Listeners><member>" + listenerXML(x) + "</member></Listeners>", nil
			}
			return "", errf(400, "DuplicateListener", "A listener already exists on this port for this load balancer")
		}
	}
	e.seq++
	_, suffix, _ := strings.Cut(lb.Arn, ":loadbalancer/")
	l.Arn = fmt.Sprintf("arn:aws:elasticloadbalancing:%s:%s:listener/%s/%016x", e.Region, e.Account, suffix, e.seq)
	e.listeners[l.Arn] = l
	return "<Listeners><member>" + listenerXML(l) + "</member></Listeners>", nil
}

func (e *Emulator) deleteListener(form url.Values) (string, *apiError) {
	arn := form.Get("ListenerArn")
	if e.listeners[arn] == nil {
		return "", errf(400, "ListenerNotFound", "listener %s not found", arn)
	}
	delete(e.listeners, arn)
	return "", nil
}

func (e *Emulator) describeTags(form url.Values) (string, *apiError) {
	arns := memberList(form, "ResourceArns")
	if len(arns) == 0 || len(arns) > 20 {
		return "", errf(400, "ValidationError", "ResourceArns must hold 1 to 20 ARNs, got %d", len(arns))
	}
	var b xb
	b.open("TagDescriptions")
	for _, a := range arns {
		var tags map[string]string
		switch {
		case e.lbs[a] != nil:
			tags = e.lbs[a].Tags
		case e.tgs[a] != nil:
			tags = e.tgs[a].Tags
		case e.listeners[a] != nil:
			tags = e.listeners[a].Tags
		case strings.Contains(a, ":targetgroup/"):
			return "", errf(400, "TargetGroupNotFound", "target group %s not found", a)
		case strings.Contains(a, ":listener/"):
			return "", errf(400, "ListenerNotFound", "listener %s not found", a)
		default:
			return "", errf(400, "LoadBalancerNotFound", "load balancer %s not found", a)
		}
		b.open("member")
		b.el("ResourceArn", a)
		b.elbTags(tags)
		b.close("member")
	}
	b.close("TagDescriptions")
	return b.String(), nil
}

// checkLBSubnets enforces one subnet per AZ, all known, all in one VPC.
func (e *Emulator) checkLBSubnets(subnets []string) *apiError {
	azs, vpc := map[string]bool{}, ""
	for _, id := range subnets {
		sn := e.net.subnets[id]
		if sn == nil {
			return errf(400, "SubnetNotFound", "The subnet ID '%s' is not valid", id)
		}
		if azs[sn.AZ] {
			return errf(400, "InvalidConfigurationRequest", "You cannot specify multiple subnets in the same Availability Zone (%s)", sn.AZ)
		}
		if vpc != "" && sn.VPCID != vpc {
			return errf(400, "InvalidConfigurationRequest", "subnets must be in one VPC")
		}
		azs[sn.AZ], vpc = true, sn.VPCID
	}
	return nil
}

func (e *Emulator) setSubnets(form url.Values) (string, *apiError) {
	lb := e.lbs[form.Get("LoadBalancerArn")]
	if lb == nil {
		return "", errf(400, "LoadBalancerNotFound", "load balancer %s not found", form.Get("LoadBalancerArn"))
	}
	subnets := memberList(form, "Subnets")
	if err := e.checkLBSubnets(subnets); err != nil {
		return "", err
	}
	for _, s := range lb.Subnets {
		if lb.Type == "network" && !slices.Contains(subnets, s) {
			return "", errf(400, "InvalidConfigurationRequest", "subnets cannot be removed from a Network Load Balancer (%s)", s)
		}
	}
	for _, s := range subnets {
		if !slices.Contains(lb.Subnets, s) {
			e.addLBENI(lb.Arn, s)
		}
	}
	lb.Subnets = subnets
	var b xb
	b.open("AvailabilityZones")
	for _, s := range subnets {
		b.open("member")
		b.el("SubnetId", s)
		b.close("member")
	}
	b.close("AvailabilityZones")
	return b.String(), nil
}

func (e *Emulator) deregisterTargets(form url.Values) (string, *apiError) {
	t := e.tgs[form.Get("TargetGroupArn")]
	if t == nil {
		return "", errf(400, "TargetGroupNotFound", "target group %s not found", form.Get("TargetGroupArn"))
	}
	for i := 1; ; i++ {
		id := form.Get("Targets.member." + strconv.Itoa(i) + ".Id")
		if id == "" {
			break
		}
		if !slices.Contains(t.Targets, id) {
			return "", errf(400, "InvalidTarget", "The target %s is not registered in the target group", id)
		}
		t.Targets = slices.DeleteFunc(t.Targets, func(x string) bool { return x == id })
		delete(t.Health, id)
	}
	return "", nil
}

func (e *Emulator) addTags(form url.Values) (string, *apiError) {
	add := elbKV(form, "Tags")
	for _, a := range memberList(form, "ResourceArns") {
		var tags map[string]string
		switch {
		case e.lbs[a] != nil:
			tags = e.lbs[a].Tags
		case e.tgs[a] != nil:
			tags = e.tgs[a].Tags
		case e.listeners[a] != nil:
			tags = e.listeners[a].Tags
		default:
			return "", errf(400, "LoadBalancerNotFound", "resource %s not found", a)
		}
		maps.Copy(tags, add)
	}
	return "", nil
}

// SetTargetHealth sets the state DescribeTargetHealth reports for one registered target.
func (e *Emulator) SetTargetHealth(tgArn, target, state string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if t := e.tgs[tgArn]; t != nil {
		if t.Health == nil {
			t.Health = map[string]string{}
		}
		t.Health[target] = state
	}
}
