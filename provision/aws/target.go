package aws

import (
	"context"
	"fmt"
	"strconv"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
)

// vxlanPort is where AWS sends mirrored packets.
const vxlanPort = 4789

// ensureTarget finds or creates the mirror target: the appliance's ENI, or an internal NLB.
func (r *run) ensureTarget(ctx context.Context, kind string, healthPort int) (string, error) {
	targets, err := r.listTargets(ctx)
	if err != nil {
		return "", err
	}
	in := &ec2.CreateTrafficMirrorTargetInput{Description: awssdk.String("metlo-appliance " + r.self.InstanceID),
		TagSpecifications: ec2TagSpec(ec2types.ResourceTypeTrafficMirrorTarget, r.tags())}
	var what string
	if kind == "nlb" {
		lbArn, err := r.ensureNLB(ctx, healthPort)
		if err != nil {
			return "", err
		}
		for _, t := range targets {
			if awssdk.ToString(t.NetworkLoadBalancerArn) == lbArn {
				r.say("=", "keep", "traffic mirror target %s (NLB %s)", awssdk.ToString(t.TrafficMirrorTargetId), r.nlbName())
				return awssdk.ToString(t.TrafficMirrorTargetId), nil
			}
		}
		in.NetworkLoadBalancerArn, what = awssdk.String(lbArn), "NLB "+r.nlbName()
	} else {
		for _, t := range targets {
			if awssdk.ToString(t.NetworkInterfaceId) == r.self.ENI {
				r.say("=", "keep", "traffic mirror target %s (ENI %s)", awssdk.ToString(t.TrafficMirrorTargetId), r.self.ENI)
				return awssdk.ToString(t.TrafficMirrorTargetId), nil
			}
		}
		in.NetworkInterfaceId, what = awssdk.String(r.self.ENI), "ENI "+r.self.ENI
	}
	r.say("+", "create", "traffic mirror target %s (%s)", r.name(), what)
	if r.dry {
		r.checkPerm("ec2:CreateTrafficMirrorTarget", func() error {
			c := *in
			c.DryRun = awssdk.Bool(true)
			_, err := r.ec2.CreateTrafficMirrorTarget(ctx, &c)
			return err
		})
		return placeholderTarget, nil
	}
	id, err := r.createVerified(ctx, "traffic mirror target", func(token string) (string, error) {
		c := *in
		c.ClientToken = awssdk.String(token)
		out, err := r.ec2.CreateTrafficMirrorTarget(ctx, &c)
		if err != nil {
			return "", err
		}
		return awssdk.ToString(out.TrafficMirrorTarget.TrafficMirrorTargetId), nil
	}, func(id string) (bool, error) {
		_, err := r.ec2.DescribeTrafficMirrorTargets(ctx, &ec2.DescribeTrafficMirrorTargetsInput{TrafficMirrorTargetIds: []string{id}})
		return err == nil, notFoundIsNil(err)
	}, "target", what)
	if err != nil {
		return "", fmt.Errorf("create traffic mirror target: %w", err)
	}
	return id, nil
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
	for k, v := range e.tags() {
		out = append(out, elbtypes.Tag{Key: awssdk.String(k), Value: awssdk.String(v)})
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

// adopt refuses an existing same-named ELBv2 resource that metlo-appliance did not create.
func (r *run) adopt(ctx context.Context, what, arn string) error {
	tags, err := r.elbTagsOf(ctx, []string{arn})
	if err != nil {
		return err
	}
	if tags[arn][TagManaged] != "true" {
		return fmt.Errorf("%s %s exists but is not tagged %s=true: pick another name with --aws-nlb-name", what, r.nlbName(), TagManaged)
	}
	return nil
}

// ensureNLB converges the internal NLB path: target group (UDP 4789, health check on the
// appliance's /readyz, source-IP stickiness), NLB (cross-zone), UDP listener, registration.
// It returns the NLB ARN (a placeholder in a dry run when the NLB does not exist yet).
func (r *run) ensureNLB(ctx context.Context, healthPort int) (string, error) {
	name := r.nlbName()
	if r.dry {
		fmt.Fprintln(r.out, "  (ELBv2 has no DryRun: load balancer permissions are checked by the calls themselves)")
	}
	// Target group.
	tgArn := ""
	tgs, err := r.elb.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{Names: []string{name}})
	switch {
	case err == nil && len(tgs.TargetGroups) > 0:
		tgArn = awssdk.ToString(tgs.TargetGroups[0].TargetGroupArn)
		if err := r.adopt(ctx, "target group", tgArn); err != nil {
			return "", err
		}
		r.say("=", "keep", "target group %s (UDP:%d)", name, vxlanPort)
	case err == nil || isNotFound(err):
		r.say("+", "create", "target group %s (UDP:%d, health check HTTP:%d/readyz)", name, vxlanPort, healthPort)
		if !r.dry {
			out, err := r.elb.CreateTargetGroup(ctx, &elb.CreateTargetGroupInput{
				Name: awssdk.String(name), Protocol: elbtypes.ProtocolEnumUdp, Port: awssdk.Int32(vxlanPort),
				VpcId: awssdk.String(r.self.VPCID), TargetType: elbtypes.TargetTypeEnumInstance,
				HealthCheckProtocol: elbtypes.ProtocolEnumHttp, HealthCheckPort: awssdk.String(strconv.Itoa(healthPort)),
				HealthCheckPath: awssdk.String("/readyz"), Tags: r.elbTags(),
			})
			if err != nil {
				return "", fmt.Errorf("create target group %s: %w", name, err)
			}
			tgArn = awssdk.ToString(out.TargetGroups[0].TargetGroupArn)
		}
	default:
		return "", fmt.Errorf("describe target group %s: %w", name, err)
	}
	// Stickiness: a source ENI's whole mirror must reach one appliance.
	want := map[string]string{"stickiness.enabled": "true", "stickiness.type": "source_ip"}
	if tgArn == "" {
		r.say("~", "set", "target group %s stickiness.type=source_ip", name)
	} else if err := r.ensureAttrs(ctx, "target group "+name, want,
		func() ([]kv, error) {
			out, err := r.elb.DescribeTargetGroupAttributes(ctx, &elb.DescribeTargetGroupAttributesInput{TargetGroupArn: &tgArn})
			if err != nil {
				return nil, err
			}
			var res []kv
			for _, a := range out.Attributes {
				res = append(res, kv{awssdk.ToString(a.Key), awssdk.ToString(a.Value)})
			}
			return res, nil
		},
		func(set map[string]string) error {
			var attrs []elbtypes.TargetGroupAttribute
			for k, v := range set {
				attrs = append(attrs, elbtypes.TargetGroupAttribute{Key: awssdk.String(k), Value: awssdk.String(v)})
			}
			_, err := r.elb.ModifyTargetGroupAttributes(ctx, &elb.ModifyTargetGroupAttributesInput{TargetGroupArn: &tgArn, Attributes: attrs})
			return err
		}); err != nil {
		return "", err
	}
	// Load balancer.
	lbArn := ""
	lbs, err := r.elb.DescribeLoadBalancers(ctx, &elb.DescribeLoadBalancersInput{Names: []string{name}})
	switch {
	case err == nil && len(lbs.LoadBalancers) > 0:
		lbArn = awssdk.ToString(lbs.LoadBalancers[0].LoadBalancerArn)
		if lbs.LoadBalancers[0].Type != elbtypes.LoadBalancerTypeEnumNetwork {
			return "", fmt.Errorf("load balancer %s exists but is not a network load balancer", name)
		}
		if err := r.adopt(ctx, "load balancer", lbArn); err != nil {
			return "", err
		}
		r.say("=", "keep", "network load balancer %s", name)
	case err == nil || isNotFound(err):
		r.say("+", "create", "internal network load balancer %s in %s", name, r.self.SubnetID)
		if !r.dry {
			out, err := r.elb.CreateLoadBalancer(ctx, &elb.CreateLoadBalancerInput{
				Name: awssdk.String(name), Type: elbtypes.LoadBalancerTypeEnumNetwork, Scheme: elbtypes.LoadBalancerSchemeEnumInternal,
				Subnets: []string{r.self.SubnetID}, Tags: r.elbTags(),
			})
			if err != nil {
				return "", fmt.Errorf("create load balancer %s: %w", name, err)
			}
			lbArn = awssdk.ToString(out.LoadBalancers[0].LoadBalancerArn)
		}
	default:
		return "", fmt.Errorf("describe load balancer %s: %w", name, err)
	}
	if lbArn == "" {
		r.say("~", "set", "load balancer %s load_balancing.cross_zone.enabled=true", name)
		r.say("+", "create", "listener UDP:%d → target group %s", vxlanPort, name)
		r.say("+", "register", "%s in target group %s", r.self.InstanceID, name)
		return "arn:aws:elasticloadbalancing:" + r.self.Region + ":000000000000:loadbalancer/net/" + name + "/planned", nil
	}
	if err := r.ensureAttrs(ctx, "load balancer "+name, map[string]string{"load_balancing.cross_zone.enabled": "true"},
		func() ([]kv, error) {
			out, err := r.elb.DescribeLoadBalancerAttributes(ctx, &elb.DescribeLoadBalancerAttributesInput{LoadBalancerArn: &lbArn})
			if err != nil {
				return nil, err
			}
			var res []kv
			for _, a := range out.Attributes {
				res = append(res, kv{awssdk.ToString(a.Key), awssdk.ToString(a.Value)})
			}
			return res, nil
		},
		func(set map[string]string) error {
			var attrs []elbtypes.LoadBalancerAttribute
			for k, v := range set {
				attrs = append(attrs, elbtypes.LoadBalancerAttribute{Key: awssdk.String(k), Value: awssdk.String(v)})
			}
			_, err := r.elb.ModifyLoadBalancerAttributes(ctx, &elb.ModifyLoadBalancerAttributesInput{LoadBalancerArn: &lbArn, Attributes: attrs})
			return err
		}); err != nil {
		return "", err
	}
	if err := r.ensureListener(ctx, lbArn, tgArn, name); err != nil {
		return "", err
	}
	if tgArn == "" {
		r.say("+", "register", "%s in target group %s", r.self.InstanceID, name)
		return lbArn, nil
	}
	health, err := r.elb.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: &tgArn})
	if err != nil {
		return "", fmt.Errorf("describe target health of %s: %w", name, err)
	}
	for _, h := range health.TargetHealthDescriptions {
		if h.Target != nil && awssdk.ToString(h.Target.Id) == r.self.InstanceID {
			r.say("=", "keep", "%s registered in target group %s", r.self.InstanceID, name)
			return lbArn, nil
		}
	}
	r.say("+", "register", "%s in target group %s", r.self.InstanceID, name)
	if !r.dry {
		if _, err := r.elb.RegisterTargets(ctx, &elb.RegisterTargetsInput{TargetGroupArn: &tgArn,
			Targets: []elbtypes.TargetDescription{{Id: awssdk.String(r.self.InstanceID), Port: awssdk.Int32(vxlanPort)}}}); err != nil {
			return "", fmt.Errorf("register %s in %s: %w", r.self.InstanceID, name, err)
		}
	}
	return lbArn, nil
}

func (r *run) ensureListener(ctx context.Context, lbArn, tgArn, name string) error {
	pg := elb.NewDescribeListenersPaginator(r.elb, &elb.DescribeListenersInput{LoadBalancerArn: &lbArn})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("describe listeners of %s: %w", name, err)
		}
		for _, l := range page.Listeners {
			if l.Protocol == elbtypes.ProtocolEnumUdp && awssdk.ToInt32(l.Port) == vxlanPort {
				r.say("=", "keep", "listener UDP:%d on %s", vxlanPort, name)
				return nil
			}
		}
	}
	r.say("+", "create", "listener UDP:%d → target group %s", vxlanPort, name)
	if r.dry || tgArn == "" {
		return nil
	}
	_, err := r.elb.CreateListener(ctx, &elb.CreateListenerInput{
		LoadBalancerArn: &lbArn, Protocol: elbtypes.ProtocolEnumUdp, Port: awssdk.Int32(vxlanPort),
		DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: &tgArn}},
		Tags:           r.elbTags(),
	})
	if err != nil {
		return fmt.Errorf("create listener on %s: %w", name, err)
	}
	return nil
}

type kv struct{ k, v string }

// ensureAttrs sets the attributes in want that differ, and only those.
func (r *run) ensureAttrs(ctx context.Context, what string, want map[string]string, get func() ([]kv, error), set func(map[string]string) error) error {
	have, err := get()
	if err != nil {
		return fmt.Errorf("describe attributes of %s: %w", what, err)
	}
	cur := map[string]string{}
	for _, a := range have {
		cur[a.k] = a.v
	}
	diff := map[string]string{}
	for k, v := range want {
		if cur[k] != v {
			diff[k] = v
			r.say("~", "set", "%s %s=%s", what, k, v)
		}
	}
	if len(diff) == 0 || r.dry {
		return nil
	}
	if err := set(diff); err != nil {
		return fmt.Errorf("set attributes of %s: %w", what, err)
	}
	return nil
}
