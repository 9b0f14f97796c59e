package aws

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// vxlanPort is where AWS sends mirrored packets.
const vxlanPort = 4789

// planTarget plans the mirror target: the appliance's ENI, or an internal NLB.
func (pl *planner) planTarget(ctx context.Context, kind string, healthPort int, prices provision.Prices, est *provision.Estimate) error {
	targets, err := pl.listTargets(ctx)
	if err != nil {
		return err
	}
	in := &ec2.CreateTrafficMirrorTargetInput{Description: awssdk.String("metlo-appliance " + pl.owner.value),
		TagSpecifications: ec2TagSpec(ec2types.ResourceTypeTrafficMirrorTarget, pl.tags())}
	var what string
	if kind == "nlb" {
		if err := pl.planNLB(ctx, healthPort, prices, est); err != nil {
			return err
		}
		for _, t := range targets {
			if awssdk.ToString(t.NetworkLoadBalancerArn) == pl.ids.lb {
				pl.ids.target = awssdk.ToString(t.TrafficMirrorTargetId)
				pl.add(provision.Step{Sym: "=", Verb: "keep", Kind: "traffic mirror target", Name: pl.ids.target, Detail: "NLB " + pl.nlbName()})
				return nil
			}
		}
		what = "NLB " + pl.nlbName()
	} else {
		for _, t := range targets {
			if awssdk.ToString(t.NetworkInterfaceId) == pl.self.ENI {
				pl.ids.target = awssdk.ToString(t.TrafficMirrorTargetId)
				pl.add(provision.Step{Sym: "=", Verb: "keep", Kind: "traffic mirror target", Name: pl.ids.target, Detail: "ENI " + pl.self.ENI})
				return nil
			}
		}
		in.NetworkInterfaceId, what = awssdk.String(pl.self.ENI), "ENI "+pl.self.ENI
	}
	pl.ids.target = placeholderTarget
	pl.add(provision.Step{Sym: "+", Verb: "create", Kind: "traffic mirror target", Name: pl.name(), Detail: what,
		Check: func(ctx context.Context) *provision.Problem {
			pr := pl.dryCheck("ec2:CreateTrafficMirrorTarget", func() error {
				c := *in
				if kind == "nlb" {
					c.NetworkLoadBalancerArn = awssdk.String(pl.ids.lb)
				}
				c.DryRun = awssdk.Bool(true)
				_, err := pl.ec2.CreateTrafficMirrorTarget(ctx, &c)
				return err
			})
			if pr != nil && pr.Permission == "" && kind == "nlb" && strings.HasSuffix(pl.ids.lb, "/planned") {
				return nil // the API only stopped at the load balancer an earlier step creates
			}
			return pr
		},
		Run: func(ctx context.Context, _ io.Writer) error {
			c := *in
			if kind == "nlb" {
				c.NetworkLoadBalancerArn = awssdk.String(pl.ids.lb)
			}
			id, err := pl.createVerified(ctx, "traffic mirror target", func(token string) (string, error) {
				c.ClientToken = awssdk.String(token)
				out, err := pl.ec2.CreateTrafficMirrorTarget(ctx, &c)
				if err != nil {
					return "", err
				}
				return awssdk.ToString(out.TrafficMirrorTarget.TrafficMirrorTargetId), nil
			}, func(id string) (bool, error) {
				_, err := pl.ec2.DescribeTrafficMirrorTargets(ctx, &ec2.DescribeTrafficMirrorTargetsInput{TrafficMirrorTargetIds: []string{id}})
				return err == nil, notFoundIsNil(err)
			}, func(ctx context.Context) (string, error) {
				ts, err := pl.listTargets(ctx)
				for _, t := range ts {
					if pl.ours(ec2Tags(t.Tags)) && (awssdk.ToString(t.NetworkInterfaceId) == awssdk.ToString(c.NetworkInterfaceId) && c.NetworkInterfaceId != nil ||
						awssdk.ToString(t.NetworkLoadBalancerArn) == awssdk.ToString(c.NetworkLoadBalancerArn) && c.NetworkLoadBalancerArn != nil) {
						return awssdk.ToString(t.TrafficMirrorTargetId), err
					}
				}
				return "", err
			}, "target", what)
			if err != nil {
				return fmt.Errorf("create traffic mirror target: %w", err)
			}
			pl.ids.target = id
			return nil
		}})
	return nil
}

func (e *env) listTargets(ctx context.Context) ([]ec2types.TrafficMirrorTarget, error) {
	var out []ec2types.TrafficMirrorTarget
	pg := ec2.NewDescribeTrafficMirrorTargetsPaginator(e.ec2, &ec2.DescribeTrafficMirrorTargetsInput{})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describe traffic mirror targets: %w", err)
		}
		out = append(out, page.TrafficMirrorTargets...)
	}
	return out, nil
}

// nlbName names both the NLB and its target group (ELBv2 names: ≤ 32 characters).
func (e *env) nlbName() string {
	n := e.cfg.NLBName
	if n == "" {
		n = "metlo-" + e.self.InstanceID
	}
	if len(n) > 32 {
		n = n[:32]
	}
	return n
}

func (e *env) elbTags() []elbtypes.Tag {
	var out []elbtypes.Tag
	t := e.tags()
	for _, k := range slices.Sorted(maps.Keys(t)) {
		out = append(out, elbtypes.Tag{Key: awssdk.String(k), Value: awssdk.String(t[k])})
	}
	return out
}

// elbTagsOf returns the tags of ELBv2 resources by ARN (DescribeTags takes 20 at a time).
func (e *env) elbTagsOf(ctx context.Context, arns []string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	for i := 0; i < len(arns); i += 20 {
		res, err := e.elb.DescribeTags(ctx, &elb.DescribeTagsInput{ResourceArns: arns[i:min(i+20, len(arns))]})
		if err != nil {
			return nil, fmt.Errorf("describe load balancing tags: %w", err)
		}
		for _, d := range res.TagDescriptions {
			m := map[string]string{}
			for _, t := range d.Tags {
				m[awssdk.ToString(t.Key)] = awssdk.ToString(t.Value)
			}
			out[awssdk.ToString(d.ResourceArn)] = m
		}
	}
	return out, nil
}

// adopt decides what to do with an existing same-named ELBv2 resource: use it when it is ours,
// tag it for the fleet when an earlier version created it untagged for fleets, refuse it otherwise.
func (pl *planner) adopt(ctx context.Context, what, arn string) error {
	tags, err := pl.elbTagsOf(ctx, []string{arn})
	if err != nil {
		return err
	}
	t := tags[arn]
	switch {
	case t[TagManaged] != "true":
		return fmt.Errorf("%s %s exists but is not tagged %s=true: pick another name with --aws-nlb-name", what, pl.nlbName(), TagManaged)
	case pl.ours(t):
		return nil
	case pl.fleet() && t[TagFleet] == "":
		pl.add(provision.Step{Sym: "~", Verb: "tag", Kind: what, Name: pl.nlbName(), Detail: TagFleet + "=" + pl.owner.value + " (shared by the fleet, no longer owned by " + t[TagAppliance] + ")",
			Run: func(ctx context.Context, _ io.Writer) error {
				_, err := pl.elb.AddTags(ctx, &elb.AddTagsInput{ResourceArns: []string{arn},
					Tags: []elbtypes.Tag{{Key: awssdk.String(TagFleet), Value: awssdk.String(pl.owner.value)}}})
				if err != nil {
					return fmt.Errorf("tag %s %s for the fleet: %w", what, pl.nlbName(), err)
				}
				return nil
			}})
		return nil
	case t[TagFleet] != "":
		return fmt.Errorf("%s %s belongs to fleet %s: pass --aws-nlb-name %s to join it", what, pl.nlbName(), t[TagFleet], t[TagFleet])
	}
	return fmt.Errorf("%s %s belongs to appliance %s: pick another name with --aws-nlb-name", what, pl.nlbName(), t[TagAppliance])
}

// nlbSubnets picks the NLB's subnets: the ones given, else the appliance's subnet plus the
// lowest-numbered subnet of every other AZ of its VPC. It also returns how many AZs they span.
func (pl *planner) nlbSubnets(ctx context.Context) ([]string, int, error) {
	in := &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{{Name: awssdk.String("vpc-id"), Values: []string{pl.self.VPCID}}}}
	var all []ec2types.Subnet
	pg := ec2.NewDescribeSubnetsPaginator(pl.ec2, in)
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, 0, fmt.Errorf("describe subnets of %s: %w", pl.self.VPCID, err)
		}
		all = append(all, page.Subnets...)
	}
	azOf := map[string]string{}
	for _, s := range all {
		azOf[awssdk.ToString(s.SubnetId)] = awssdk.ToString(s.AvailabilityZone)
	}
	var picked []string
	if len(pl.cfg.NLBSubnets) > 0 {
		picked = slices.Clone(pl.cfg.NLBSubnets)
		for _, s := range picked {
			if azOf[s] == "" {
				return nil, 0, fmt.Errorf("--aws-nlb-subnet %s: not a subnet of %s", s, pl.self.VPCID)
			}
		}
	} else {
		byAZ := map[string]string{}
		if az := azOf[pl.self.SubnetID]; az != "" {
			byAZ[az] = pl.self.SubnetID
		}
		sort.Slice(all, func(i, j int) bool { return awssdk.ToString(all[i].SubnetId) < awssdk.ToString(all[j].SubnetId) })
		for _, s := range all {
			az := awssdk.ToString(s.AvailabilityZone)
			if _, ok := byAZ[az]; !ok {
				byAZ[az] = awssdk.ToString(s.SubnetId)
			}
		}
		for _, az := range slices.Sorted(maps.Keys(byAZ)) {
			picked = append(picked, byAZ[az])
		}
		if len(picked) == 0 {
			picked = []string{pl.self.SubnetID}
		}
	}
	azs := map[string]bool{}
	for _, s := range picked {
		azs[azOf[s]] = true
	}
	return picked, len(azs), nil
}

// attrs reads and writes one ELBv2 resource's attributes.
type attrs struct {
	get func(ctx context.Context, arn string) (map[string]string, error)
	set func(ctx context.Context, arn string, kv map[string]string) error
}

func (e *env) tgAttrs() attrs {
	return attrs{
		get: func(ctx context.Context, arn string) (map[string]string, error) {
			out, err := e.elb.DescribeTargetGroupAttributes(ctx, &elb.DescribeTargetGroupAttributesInput{TargetGroupArn: &arn})
			if err != nil {
				return nil, err
			}
			m := map[string]string{}
			for _, a := range out.Attributes {
				m[awssdk.ToString(a.Key)] = awssdk.ToString(a.Value)
			}
			return m, nil
		},
		set: func(ctx context.Context, arn string, kv map[string]string) error {
			var list []elbtypes.TargetGroupAttribute
			for _, k := range slices.Sorted(maps.Keys(kv)) {
				list = append(list, elbtypes.TargetGroupAttribute{Key: awssdk.String(k), Value: awssdk.String(kv[k])})
			}
			_, err := e.elb.ModifyTargetGroupAttributes(ctx, &elb.ModifyTargetGroupAttributesInput{TargetGroupArn: &arn, Attributes: list})
			return err
		},
	}
}

func (e *env) lbAttrs() attrs {
	return attrs{
		get: func(ctx context.Context, arn string) (map[string]string, error) {
			out, err := e.elb.DescribeLoadBalancerAttributes(ctx, &elb.DescribeLoadBalancerAttributesInput{LoadBalancerArn: &arn})
			if err != nil {
				return nil, err
			}
			m := map[string]string{}
			for _, a := range out.Attributes {
				m[awssdk.ToString(a.Key)] = awssdk.ToString(a.Value)
			}
			return m, nil
		},
		set: func(ctx context.Context, arn string, kv map[string]string) error {
			var list []elbtypes.LoadBalancerAttribute
			for _, k := range slices.Sorted(maps.Keys(kv)) {
				list = append(list, elbtypes.LoadBalancerAttribute{Key: awssdk.String(k), Value: awssdk.String(kv[k])})
			}
			_, err := e.elb.ModifyLoadBalancerAttributes(ctx, &elb.ModifyLoadBalancerAttributesInput{LoadBalancerArn: &arn, Attributes: list})
			return err
		},
	}
}

// planAttrs adds one step setting the attributes in want that differ (all of them when the
// resource is created by an earlier step); arn is read when the step runs.
func (pl *planner) planAttrs(ctx context.Context, what string, arn *string, exists bool, a attrs, want map[string]string) error {
	diff := maps.Clone(want)
	if exists {
		cur, err := a.get(ctx, *arn)
		if err != nil {
			return fmt.Errorf("describe attributes of %s: %w", what, err)
		}
		for k, v := range want {
			if cur[k] == v {
				delete(diff, k)
			}
		}
	}
	if len(diff) == 0 {
		return nil
	}
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(diff)) {
		kv = append(kv, k+"="+diff[k])
	}
	pl.add(provision.Step{Sym: "~", Verb: "set", Kind: what, Detail: strings.Join(kv, ", "),
		Run: func(ctx context.Context, _ io.Writer) error {
			if err := a.set(ctx, *arn, diff); err != nil {
				return fmt.Errorf("set attributes of %s: %w", what, err)
			}
			return nil
		}})
	return nil
}

// tgWantAttrs are the target group attributes the mirror path needs: a source ENI's whole
// mirror on one appliance (source-IP stickiness), and, for a fleet, time for open exchanges to
// finish on an appliance leaving the group.
func (pl *planner) tgWantAttrs() map[string]string {
	want := map[string]string{"stickiness.enabled": "true", "stickiness.type": "source_ip"}
	d := pl.cfg.Fleet.DeregistrationDelay
	if d == 0 && pl.fleet() {
		// Long enough for the exchanges open on a leaving member to finish (the collector
		// gives a response 30 s by default) before the NLB sends its flows elsewhere.
		d = 120 * time.Second
	}
	if d > 0 {
		want["deregistration_delay.timeout_seconds"] = strconv.Itoa(int(d.Seconds()))
	}
	return want
}

// planNLB plans the internal NLB path: target group (UDP 4789, health check on /readyz,
// source-IP stickiness), NLB across at least two AZs (cross-zone on), UDP listener and the
// appliance's registration. pl.ids.lb is the NLB's ARN (a placeholder until it exists).
func (pl *planner) planNLB(ctx context.Context, healthPort int, prices provision.Prices, est *provision.Estimate) error {
	name := pl.nlbName()
	subnets, nAZ, err := pl.nlbSubnets(ctx)
	if err != nil {
		return err
	}
	if nAZ < 2 {
		msg := fmt.Sprintf("the NLB spans one AZ only (subnets %s): an AZ outage stops all mirroring; add a subnet in another AZ to %s or pass --aws-nlb-subnet", strings.Join(subnets, ","), pl.self.VPCID)
		if pl.fleet() {
			return fmt.Errorf("fleet %s: %s", pl.owner.value, msg)
		}
		pl.warn("%s", msg)
	}
	// Target group.
	tgExists := false
	tgs, err := pl.elb.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{Names: []string{name}})
	switch {
	case err == nil && len(tgs.TargetGroups) > 0:
		pl.ids.tg, tgExists = awssdk.ToString(tgs.TargetGroups[0].TargetGroupArn), true
		if err := pl.adopt(ctx, "target group", pl.ids.tg); err != nil {
			return err
		}
		pl.add(provision.Step{Sym: "=", Verb: "keep", Kind: "target group", Name: name, Detail: fmt.Sprintf("UDP:%d", vxlanPort)})
	case err == nil || isNotFound(err):
		pl.ids.tg = "arn:aws:elasticloadbalancing:" + pl.self.Region + ":000000000000:targetgroup/" + name + "/planned"
		in := &elb.CreateTargetGroupInput{
			Name: awssdk.String(name), Protocol: elbtypes.ProtocolEnumUdp, Port: awssdk.Int32(vxlanPort),
			VpcId: awssdk.String(pl.self.VPCID), TargetType: elbtypes.TargetTypeEnumInstance,
			HealthCheckProtocol: elbtypes.ProtocolEnumHttp, HealthCheckPort: awssdk.String(strconv.Itoa(healthPort)),
			HealthCheckPath: awssdk.String("/readyz"), Tags: pl.elbTags(),
		}
		pl.add(provision.Step{Sym: "+", Verb: "create", Kind: "target group", Name: name, Detail: fmt.Sprintf("UDP:%d, health check HTTP:%d/readyz", vxlanPort, healthPort),
			Run: func(ctx context.Context, _ io.Writer) error {
				out, err := pl.elb.CreateTargetGroup(ctx, in)
				if err != nil {
					return fmt.Errorf("create target group %s: %w", name, err)
				}
				pl.ids.tg = awssdk.ToString(out.TargetGroups[0].TargetGroupArn)
				return nil
			}})
	default:
		return fmt.Errorf("describe target group %s: %w", name, err)
	}
	if err := pl.planAttrs(ctx, "target group "+name, &pl.ids.tg, tgExists, pl.tgAttrs(), pl.tgWantAttrs()); err != nil {
		return err
	}
	// Load balancer.
	lbExists := false
	lbs, err := pl.elb.DescribeLoadBalancers(ctx, &elb.DescribeLoadBalancersInput{Names: []string{name}})
	switch {
	case err == nil && len(lbs.LoadBalancers) > 0:
		lb := lbs.LoadBalancers[0]
		pl.ids.lb, lbExists = awssdk.ToString(lb.LoadBalancerArn), true
		if lb.Type != elbtypes.LoadBalancerTypeEnumNetwork {
			return fmt.Errorf("load balancer %s exists but is not a network load balancer", name)
		}
		if err := pl.adopt(ctx, "load balancer", pl.ids.lb); err != nil {
			return err
		}
		pl.add(provision.Step{Sym: "=", Verb: "keep", Kind: "network load balancer", Name: name})
		have := map[string]bool{}
		for _, az := range lb.AvailabilityZones {
			have[awssdk.ToString(az.SubnetId)] = true
		}
		var add []string
		for _, s := range subnets {
			if !have[s] {
				add = append(add, s)
			}
		}
		if len(add) > 0 {
			all := append(slices.Sorted(maps.Keys(have)), add...)
			arn := pl.ids.lb
			pl.add(provision.Step{Sym: "~", Verb: "set", Kind: "network load balancer", Name: name, Detail: "add subnets " + strings.Join(add, ", "),
				Run: func(ctx context.Context, _ io.Writer) error {
					if _, err := pl.elb.SetSubnets(ctx, &elb.SetSubnetsInput{LoadBalancerArn: &arn, Subnets: all}); err != nil {
						return fmt.Errorf("add subnets to %s: %w", name, err)
					}
					return nil
				}})
		}
	case err == nil || isNotFound(err):
		pl.ids.lb = "arn:aws:elasticloadbalancing:" + pl.self.Region + ":000000000000:loadbalancer/net/" + name + "/planned"
		est.Add(prices, "network load balancer "+name, provision.HoursPerMonth, "aws-nlb-hour")
		pl.add(provision.Step{Sym: "+", Verb: "create", Kind: "internal network load balancer", Name: name, Detail: "subnets " + strings.Join(subnets, ", "),
			Run: func(ctx context.Context, _ io.Writer) error {
				out, err := pl.elb.CreateLoadBalancer(ctx, &elb.CreateLoadBalancerInput{
					Name: awssdk.String(name), Type: elbtypes.LoadBalancerTypeEnumNetwork, Scheme: elbtypes.LoadBalancerSchemeEnumInternal,
					Subnets: subnets, Tags: pl.elbTags(),
				})
				if err != nil {
					return fmt.Errorf("create load balancer %s: %w", name, err)
				}
				pl.ids.lb = awssdk.ToString(out.LoadBalancers[0].LoadBalancerArn)
				return nil
			}})
	default:
		return fmt.Errorf("describe load balancer %s: %w", name, err)
	}
	if err := pl.planAttrs(ctx, "load balancer "+name, &pl.ids.lb, lbExists, pl.lbAttrs(), map[string]string{"load_balancing.cross_zone.enabled": "true"}); err != nil {
		return err
	}
	if err := pl.planListener(ctx, lbExists, name); err != nil {
		return err
	}
	if pl.cfg.Fleet.Size > 0 {
		return pl.planFleet(ctx, subnets, healthPort, prices, est)
	}
	return pl.planRegistration(ctx, tgExists, name)
}

// planRegistration registers this appliance in the target group.
func (pl *planner) planRegistration(ctx context.Context, tgExists bool, name string) error {
	if tgExists {
		health, err := pl.elb.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: &pl.ids.tg})
		if err != nil {
			return fmt.Errorf("describe target health of %s: %w", name, err)
		}
		for _, h := range health.TargetHealthDescriptions {
			if h.Target != nil && awssdk.ToString(h.Target.Id) == pl.self.InstanceID && h.TargetHealth != nil && h.TargetHealth.State != elbtypes.TargetHealthStateEnumDraining {
				pl.add(provision.Step{Sym: "=", Verb: "keep", Kind: "target", Name: pl.self.InstanceID, Detail: "registered in " + name + ", " + string(h.TargetHealth.State)})
				return nil
			}
		}
	}
	pl.add(provision.Step{Sym: "+", Verb: "register", Kind: "target", Name: pl.self.InstanceID, Detail: "in target group " + name,
		Run: func(ctx context.Context, _ io.Writer) error {
			if _, err := pl.elb.RegisterTargets(ctx, &elb.RegisterTargetsInput{TargetGroupArn: &pl.ids.tg,
				Targets: []elbtypes.TargetDescription{{Id: awssdk.String(pl.self.InstanceID), Port: awssdk.Int32(vxlanPort)}}}); err != nil {
				return fmt.Errorf("register %s in %s: %w", pl.self.InstanceID, name, err)
			}
			return nil
		}})
	return nil
}

func (pl *planner) planListener(ctx context.Context, lbExists bool, name string) error {
	if lbExists {
		pg := elb.NewDescribeListenersPaginator(pl.elb, &elb.DescribeListenersInput{LoadBalancerArn: &pl.ids.lb})
		for pg.HasMorePages() {
			page, err := pg.NextPage(ctx)
			if err != nil {
				return fmt.Errorf("describe listeners of %s: %w", name, err)
			}
			for _, l := range page.Listeners {
				if l.Protocol == elbtypes.ProtocolEnumUdp && awssdk.ToInt32(l.Port) == vxlanPort {
					pl.add(provision.Step{Sym: "=", Verb: "keep", Kind: "listener", Name: fmt.Sprintf("UDP:%d", vxlanPort), Detail: "on " + name})
					return nil
				}
			}
		}
	}
	pl.add(provision.Step{Sym: "+", Verb: "create", Kind: "listener", Name: fmt.Sprintf("UDP:%d", vxlanPort), Detail: "→ target group " + name,
		Run: func(ctx context.Context, _ io.Writer) error {
			_, err := pl.elb.CreateListener(ctx, &elb.CreateListenerInput{
				LoadBalancerArn: &pl.ids.lb, Protocol: elbtypes.ProtocolEnumUdp, Port: awssdk.Int32(vxlanPort),
				DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: &pl.ids.tg}},
				Tags:           pl.elbTags(),
			})
			if err != nil {
				return fmt.Errorf("create listener on %s: %w", name, err)
			}
			return nil
		}})
	return nil
}
