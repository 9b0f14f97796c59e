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

// AutoScalingGroup is an EC2 Auto Scaling group.
type AutoScalingGroup struct {
	Name                      string
	LaunchTemplate, LTVersion string // template id and version ($Latest, $Default or a number)
	Min, Max, Desired         int
	Subnets                   []string
	TargetGroups              []string
	HealthCheckType           string
	HealthCheckGracePeriod    int
	Tags                      map[string]string
	Instances                 []string
	Policies                  map[string]ScalingPolicy
	DefaultInstanceWarmup     int
	propagate                 map[string]bool
	launched                  int
}

// ScalingPolicy is a target-tracking scaling policy.
type ScalingPolicy struct {
	Name, Type, Metric string
	Target             float64
}

type autoScaling struct {
	templates map[string]*LaunchTemplate
	groups    map[string]*AutoScalingGroup
}

func newAutoScaling() autoScaling {
	return autoScaling{templates: map[string]*LaunchTemplate{}, groups: map[string]*AutoScalingGroup{}}
}

// predefinedMetrics are the target-tracking metrics Auto Scaling accepts for a group without
// an ALB (ALBRequestCountPerTarget needs one).
var predefinedMetrics = []string{"ASGAverageCPUUtilization", "ASGAverageNetworkIn", "ASGAverageNetworkOut"}

func (e *Emulator) serveAutoScaling(w http.ResponseWriter, form url.Values) {
	e.mu.Lock()
	defer e.mu.Unlock()
	action := form.Get("Action")
	if err := e.gate(action, "Throttling", 400, "AccessDenied"); err != nil {
		writeASGError(w, err)
		return
	}
	if e.Policy != "" && !e.policyAllows("autoscaling", action, form) {
		writeASGError(w, errf(403, "AccessDenied", "User is not authorized to perform: autoscaling:%s (denied by the attached policy)", action))
		return
	}
	handlers := map[string]func(url.Values) (string, *apiError){
		"DescribeAutoScalingGroups": e.describeGroups,
		"CreateAutoScalingGroup":    e.createGroup,
		"UpdateAutoScalingGroup":    e.updateGroup,
		"DeleteAutoScalingGroup":    e.deleteGroup,
		"PutScalingPolicy":          e.putPolicy,
		"DescribePolicies":          e.describePolicies,
	}
	h, ok := handlers[action]
	if !ok {
		writeASGError(w, errf(400, "InvalidAction", "unknown action %s", action))
		return
	}
	body, err := h(form)
	if err != nil {
		writeASGError(w, err)
		return
	}
	if isMutating(action) {
		e.mutated()
	}
	writeXML(w, 200, fmt.Sprintf(`<%sResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><%sResult>%s</%sResult><ResponseMetadata><RequestId>emu-req</RequestId></ResponseMetadata></%sResponse>`,
		action, action, body, action, action))
}

func writeASGError(w http.ResponseWriter, e *apiError) { writeELBError(w, e) }

func atoiDefault(s string, def int) (int, bool) {
	if s == "" {
		return def, true
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

func (e *Emulator) createGroup(form url.Values) (string, *apiError) {
	name := form.Get("AutoScalingGroupName")
	if name == "" || len(name) > 255 {
		return "", errf(400, "ValidationError", "AutoScalingGroupName %q is not valid", name)
	}
	if e.asg.groups[name] != nil {
		return "", errf(400, "AlreadyExists", "AutoScalingGroup by this name already exists - A group with the name %s already exists", name)
	}
	g := &AutoScalingGroup{Name: name, Tags: map[string]string{}, propagate: map[string]bool{}, Policies: map[string]ScalingPolicy{}, HealthCheckType: "EC2"}
	if err := e.applyGroup(g, form, true); err != nil {
		return "", err
	}
	e.asg.groups[name] = g
	e.scaleGroup(g)
	return "", nil
}

func (e *Emulator) applyGroup(g *AutoScalingGroup, form url.Values, create bool) *apiError {
	if id, ltName := form.Get("LaunchTemplate.LaunchTemplateId"), form.Get("LaunchTemplate.LaunchTemplateName"); id != "" || ltName != "" {
		lt := e.launchTemplate(id, ltName)
		if lt == nil {
			return errf(400, "ValidationError", "You must use a valid fully-formed launch template. The specified launch template does not exist")
		}
		g.LaunchTemplate, g.LTVersion = lt.ID, form.Get("LaunchTemplate.Version")
		if g.LTVersion == "" {
			g.LTVersion = "$Default"
		}
	} else if create {
		return errf(400, "ValidationError", "a launch template is required by this emulator")
	}
	var ok1, ok2, ok3 bool
	g.Min, ok1 = atoiDefault(form.Get("MinSize"), g.Min)
	g.Max, ok2 = atoiDefault(form.Get("MaxSize"), g.Max)
	if v := form.Get("DesiredCapacity"); v != "" || create {
		g.Desired, ok3 = atoiDefault(v, g.Min)
	} else {
		ok3 = true
	}
	if !ok1 || !ok2 || !ok3 || g.Min < 0 || g.Min > g.Max || g.Desired < g.Min || g.Desired > g.Max {
		return errf(400, "ValidationError", "Desired capacity:%d must be between the specified min size:%d and max size:%d", g.Desired, g.Min, g.Max)
	}
	if v := form.Get("VPCZoneIdentifier"); v != "" {
		g.Subnets = strings.Split(v, ",")
		for _, s := range g.Subnets {
			if e.net.subnets[s] == nil {
				return errf(400, "ValidationError", "The subnet ID '%s' does not exist", s)
			}
		}
	} else if create {
		return errf(400, "ValidationError", "VPCZoneIdentifier is required in a VPC")
	}
	if tgs := memberList(form, "TargetGroupARNs"); len(tgs) > 0 {
		for _, t := range tgs {
			if e.tgs[t] == nil {
				return errf(400, "ValidationError", "Provided Target Groups may not be valid. Target group %s not found", t)
			}
		}
		g.TargetGroups = tgs
	}
	if v := form.Get("HealthCheckType"); v != "" {
		if v != "EC2" && v != "ELB" {
			return errf(400, "ValidationError", "HealthCheckType must be EC2 or ELB")
		}
		g.HealthCheckType = v
	}
	if v, ok := atoiDefault(form.Get("HealthCheckGracePeriod"), g.HealthCheckGracePeriod); ok {
		g.HealthCheckGracePeriod = v
	}
	if v, ok := atoiDefault(form.Get("DefaultInstanceWarmup"), g.DefaultInstanceWarmup); ok {
		g.DefaultInstanceWarmup = v
	}
	for i := 1; ; i++ {
		p := "Tags.member." + strconv.Itoa(i)
		k, ok := form[p+".Key"]
		if !ok {
			break
		}
		g.Tags[k[0]] = form.Get(p + ".Value")
		g.propagate[k[0]] = form.Get(p+".PropagateAtLaunch") == "true"
	}
	return nil
}

// scaleGroup launches or terminates instances until the group holds Desired, spread over its
// subnets' AZs, and keeps its target groups' registrations in step.
func (e *Emulator) scaleGroup(g *AutoScalingGroup) {
	lt := e.asg.templates[g.LaunchTemplate]
	for len(g.Instances) < g.Desired {
		g.launched++
		subnet := g.Subnets[g.launched%len(g.Subnets)]
		id := fmt.Sprintf("i-0asg%013x", e.seq+1)
		tags := map[string]string{"aws:autoscaling:groupName": g.Name}
		for k, v := range g.Tags {
			if g.propagate[k] {
				tags[k] = v
			}
		}
		itype := "c6i.large"
		var groups []string
		if lt != nil {
			d := lt.Versions[len(lt.Versions)-1]
			if d["InstanceType"] != "" {
				itype = d["InstanceType"]
			}
			for j := 1; d["SecurityGroupId."+strconv.Itoa(j)] != ""; j++ {
				groups = append(groups, d["SecurityGroupId."+strconv.Itoa(j)])
			}
		}
		e.addInstance(Instance{ID: id, Type: itype, SubnetID: subnet, Tags: tags, Groups: groups})
		g.Instances = append(g.Instances, id)
		for _, tg := range g.TargetGroups {
			if t := e.tgs[tg]; t != nil && !slices.Contains(t.Targets, id) {
				t.Targets = append(t.Targets, id)
			}
		}
	}
	for len(g.Instances) > g.Desired {
		id := g.Instances[len(g.Instances)-1]
		g.Instances = g.Instances[:len(g.Instances)-1]
		e.terminate(id, g.TargetGroups)
	}
}

func (e *Emulator) terminate(id string, tgs []string) {
	if in := e.instances[id]; in != nil {
		in.State = "terminated"
	}
	for k, n := range e.enis {
		if n.InstanceID == id {
			delete(e.enis, k)
		}
	}
	for _, tg := range tgs {
		if t := e.tgs[tg]; t != nil {
			t.Targets = slices.DeleteFunc(t.Targets, func(x string) bool { return x == id })
		}
	}
}

func (e *Emulator) updateGroup(form url.Values) (string, *apiError) {
	g := e.asg.groups[form.Get("AutoScalingGroupName")]
	if g == nil {
		return "", errf(400, "ValidationError", "AutoScalingGroup name not found - %s", form.Get("AutoScalingGroupName"))
	}
	c := *g
	c.Tags, c.propagate = maps.Clone(g.Tags), maps.Clone(g.propagate)
	if err := e.applyGroup(&c, form, false); err != nil {
		return "", err
	}
	*g = c
	e.scaleGroup(g)
	return "", nil
}

func (e *Emulator) deleteGroup(form url.Values) (string, *apiError) {
	g := e.asg.groups[form.Get("AutoScalingGroupName")]
	if g == nil {
		return "", errf(400, "ValidationError", "AutoScalingGroup name not found - %s", form.Get("AutoScalingGroupName"))
	}
	if len(g.Instances) > 0 && form.Get("ForceDelete") != "true" {
		return "", errf(400, "ResourceInUse", "You cannot delete an AutoScalingGroup while there are instances or pending Spot instance request(s) still in the group.")
	}
	for _, id := range g.Instances {
		e.terminate(id, g.TargetGroups)
	}
	delete(e.asg.groups, g.Name)
	return "", nil
}

func (e *Emulator) describeGroups(form url.Values) (string, *apiError) {
	names := memberList(form, "AutoScalingGroupNames")
	var sel []*AutoScalingGroup
	for _, k := range sortedKeys(e.asg.groups) {
		g := e.asg.groups[k]
		if len(names) > 0 && !slices.Contains(names, g.Name) {
			continue
		}
		sel = append(sel, g)
	}
	items, next, err := page(sel, form.Get("NextToken"), e.PageSize)
	if err != nil {
		return "", err
	}
	var b xb
	b.open("AutoScalingGroups")
	for _, g := range items {
		b.open("member")
		b.el("AutoScalingGroupName", g.Name)
		b.el("AutoScalingGroupARN", fmt.Sprintf("arn:aws:autoscaling:%s:%s:autoScalingGroup:uuid:autoScalingGroupName/%s", e.Region, e.Account, g.Name))
		b.open("LaunchTemplate")
		b.el("LaunchTemplateId", g.LaunchTemplate)
		if lt := e.asg.templates[g.LaunchTemplate]; lt != nil {
			b.el("LaunchTemplateName", lt.Name)
		}
		b.el("Version", g.LTVersion)
		b.close("LaunchTemplate")
		b.num("MinSize", g.Min)
		b.num("MaxSize", g.Max)
		b.num("DesiredCapacity", g.Desired)
		b.el("VPCZoneIdentifier", strings.Join(g.Subnets, ","))
		b.el("HealthCheckType", g.HealthCheckType)
		b.num("HealthCheckGracePeriod", g.HealthCheckGracePeriod)
		b.num("DefaultInstanceWarmup", g.DefaultInstanceWarmup)
		b.open("AvailabilityZones")
		var azs []string
		for _, s := range g.Subnets {
			if sn := e.net.subnets[s]; sn != nil && !slices.Contains(azs, sn.AZ) {
				azs = append(azs, sn.AZ)
			}
		}
		for _, az := range azs {
			b.el("member", az)
		}
		b.close("AvailabilityZones")
		b.open("TargetGroupARNs")
		for _, t := range g.TargetGroups {
			b.el("member", t)
		}
		b.close("TargetGroupARNs")
		b.open("Instances")
		for _, id := range g.Instances {
			b.open("member")
			b.el("InstanceId", id)
			if in := e.instances[id]; in != nil {
				if eni := e.enis[in.ENI]; eni != nil {
					b.el("AvailabilityZone", eni.AZ)
				}
				b.el("InstanceType", in.Type)
			}
			b.el("LifecycleState", "InService")
			b.el("HealthStatus", "Healthy")
			b.close("member")
		}
		b.close("Instances")
		b.open("Tags")
		for _, k := range sortedKeys(g.Tags) {
			b.open("member")
			b.el("Key", k)
			b.el("Value", g.Tags[k])
			b.el("ResourceId", g.Name)
			b.el("ResourceType", "auto-scaling-group")
			b.el("PropagateAtLaunch", strconv.FormatBool(g.propagate[k]))
			b.close("member")
		}
		b.close("Tags")
		b.close("member")
	}
	b.close("AutoScalingGroups")
	b.el("NextToken", next)
	return b.String(), nil
}

func (e *Emulator) putPolicy(form url.Values) (string, *apiError) {
	g := e.asg.groups[form.Get("AutoScalingGroupName")]
	if g == nil {
		return "", errf(400, "ValidationError", "AutoScalingGroup name not found - %s", form.Get("AutoScalingGroupName"))
	}
	p := ScalingPolicy{Name: form.Get("PolicyName"), Type: form.Get("PolicyType")}
	if p.Name == "" {
		return "", errf(400, "ValidationError", "PolicyName is required")
	}
	if p.Type != "TargetTrackingScaling" {
		return "", errf(400, "ValidationError", "this emulator serves TargetTrackingScaling policies only, got %q", p.Type)
	}
	p.Metric = form.Get("TargetTrackingConfiguration.PredefinedMetricSpecification.PredefinedMetricType")
	if !slices.Contains(predefinedMetrics, p.Metric) {
		return "", errf(400, "ValidationError", "PredefinedMetricType %q is not valid for this group", p.Metric)
	}
	t, err := strconv.ParseFloat(form.Get("TargetTrackingConfiguration.TargetValue"), 64)
	if err != nil || t <= 0 {
		return "", errf(400, "ValidationError", "TargetValue must be positive")
	}
	p.Target = t
	g.Policies[p.Name] = p
	var b xb
	b.el("PolicyARN", fmt.Sprintf("arn:aws:autoscaling:%s:%s:scalingPolicy:uuid:autoScalingGroupName/%s:policyName/%s", e.Region, e.Account, g.Name, p.Name))
	return b.String(), nil
}

func (e *Emulator) describePolicies(form url.Values) (string, *apiError) {
	var b xb
	b.open("ScalingPolicies")
	for _, gn := range sortedKeys(e.asg.groups) {
		g := e.asg.groups[gn]
		if n := form.Get("AutoScalingGroupName"); n != "" && n != gn {
			continue
		}
		for _, pn := range sortedKeys(g.Policies) {
			p := g.Policies[pn]
			b.open("member")
			b.el("AutoScalingGroupName", gn)
			b.el("PolicyName", p.Name)
			b.el("PolicyType", p.Type)
			b.open("TargetTrackingConfiguration")
			b.open("PredefinedMetricSpecification")
			b.el("PredefinedMetricType", p.Metric)
			b.close("PredefinedMetricSpecification")
			b.el("TargetValue", strconv.FormatFloat(p.Target, 'f', -1, 64))
			b.close("TargetTrackingConfiguration")
			b.close("member")
		}
	}
	b.close("ScalingPolicies")
	return b.String(), nil
}

// Groups returns a copy of every Auto Scaling group.
func (e *Emulator) Groups() []AutoScalingGroup {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []AutoScalingGroup
	for _, k := range sortedKeys(e.asg.groups) {
		g := *e.asg.groups[k]
		g.Instances = slices.Clone(g.Instances)
		g.Tags = maps.Clone(g.Tags)
		g.Policies = maps.Clone(g.Policies)
		out = append(out, g)
	}
	return out
}

// SetDesired changes a group's desired capacity as a scaling policy would.
func (e *Emulator) SetDesired(name string, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if g := e.asg.groups[name]; g != nil {
		g.Desired = min(max(n, g.Min), g.Max)
		e.scaleGroup(g)
	}
}
