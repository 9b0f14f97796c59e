package aws

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// List prints the sessions this appliance owns, and any other session to its target.
func (p *Provider) List(ctx context.Context, opts provision.Options) error {
	e, err := p.open(ctx, opts)
	if err != nil {
		return err
	}
	sessions, err := e.listSessions(ctx)
	if err != nil {
		return err
	}
	targets, err := e.listTargets(ctx)
	if err != nil {
		return err
	}
	ourTargets := map[string]string{}
	for _, t := range targets {
		if e.ours(ec2Tags(t.Tags)) {
			desc := "ENI " + awssdk.ToString(t.NetworkInterfaceId)
			if t.NetworkLoadBalancerArn != nil {
				desc = "NLB " + e.nlbName()
			}
			ourTargets[awssdk.ToString(t.TrafficMirrorTargetId)] = desc
		}
	}
	var rows []ec2types.TrafficMirrorSession
	var enis []string
	for _, s := range sessions {
		if e.ours(ec2Tags(s.Tags)) || ourTargets[awssdk.ToString(s.TrafficMirrorTargetId)] != "" {
			rows = append(rows, s)
			enis = append(enis, awssdk.ToString(s.NetworkInterfaceId))
		}
	}
	live := map[string]bool{}
	if len(enis) > 0 {
		pg := ec2.NewDescribeNetworkInterfacesPaginator(e.ec2, &ec2.DescribeNetworkInterfacesInput{
			Filters: []ec2types.Filter{{Name: awssdk.String("network-interface-id"), Values: enis}}})
		for pg.HasMorePages() {
			page, err := pg.NextPage(ctx)
			if err != nil {
				return fmt.Errorf("describe network interfaces: %w", err)
			}
			for _, ni := range page.NetworkInterfaces {
				live[awssdk.ToString(ni.NetworkInterfaceId)] = true
			}
		}
	}
	tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tSOURCE\tOWNER\tTARGET\tFILTER\tVNI\tSTATE")
	for _, s := range rows {
		tags := ec2Tags(s.Tags)
		owner := tags[TagOwner]
		if tags[TagSource] != "" {
			owner += " [" + tags[TagSource] + "]"
		}
		if !e.ours(tags) {
			owner = "(not managed by this appliance)"
		}
		target := awssdk.ToString(s.TrafficMirrorTargetId)
		if d := ourTargets[target]; d != "" {
			target += " (" + d + ")"
		}
		state := "active"
		if !live[awssdk.ToString(s.NetworkInterfaceId)] {
			state = "source gone"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", awssdk.ToString(s.TrafficMirrorSessionId), awssdk.ToString(s.NetworkInterfaceId),
			owner, target, awssdk.ToString(s.TrafficMirrorFilterId), awssdk.ToInt32(s.VirtualNetworkId), state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(e.out, "aws: %d sessions\n", len(rows))
	return e.listFleet(ctx)
}

// Remove deletes this appliance's sessions for one session id or source.
func (p *Provider) Remove(ctx context.Context, opts provision.Options, what string) error {
	e, err := p.open(ctx, opts)
	if err != nil {
		return err
	}
	sessions, err := e.listSessions(ctx)
	if err != nil {
		return err
	}
	var victims []ec2types.TrafficMirrorSession
	spec := ""
	switch {
	case strings.HasPrefix(what, "tms-"):
		for _, s := range sessions {
			if awssdk.ToString(s.TrafficMirrorSessionId) == what {
				if !e.ours(ec2Tags(s.Tags)) {
					return fmt.Errorf("session %s is not managed by this appliance (%s)", what, e.owner)
				}
				victims = append(victims, s)
			}
		}
	default:
		raw := what
		switch {
		case strings.HasPrefix(what, "eni-"):
			raw = "eni:" + what
		case strings.HasPrefix(what, "i-"):
			raw = "instance:" + what
		}
		srcs, err := parseSources([]string{raw})
		if err != nil {
			return err
		}
		spec = srcs[0].String()
		res := e.resolve(ctx, srcs)
		if err := res.failed[spec]; err != nil {
			return fmt.Errorf("resolve %s: %w", spec, err)
		}
		enis := map[string]bool{}
		for _, s := range res.enis {
			if s.ENI != "" {
				enis[s.ENI] = true
			}
		}
		for _, s := range sessions {
			tags := ec2Tags(s.Tags)
			if e.ours(tags) && (enis[awssdk.ToString(s.NetworkInterfaceId)] || tags[TagSource] == spec) {
				victims = append(victims, s)
			}
		}
	}
	if len(victims) == 0 {
		return fmt.Errorf("no session of this appliance matches %s", what)
	}
	pl := &planner{env: e, plan: &provision.Plan{Cloud: "aws", Question: fmt.Sprintf("Delete %d sessions?", len(victims))}}
	for _, s := range victims {
		pl.planDeleteSession(s, "removed by hand")
	}
	pl.plan.Done = func(provision.Tally) string {
		msg := fmt.Sprintf("aws: %d sessions removed", pl.sessions.removed)
		if spec != "" {
			msg += fmt.Sprintf(" (if %s is still a configured source, the next provision run mirrors it again)", spec)
		}
		return msg
	}
	return provision.Apply(ctx, opts, pl.plan)
}

// Cleanup deletes everything this appliance owns, in dependency order: sessions → filters →
// targets → listeners → NLBs → target groups. A fleet member leaves the fleet instead, and
// the fleet's shared resources go only with its last member.
func (p *Provider) Cleanup(ctx context.Context, opts provision.Options) error {
	e, err := p.open(ctx, opts)
	if err != nil {
		return err
	}
	pl := &planner{env: e, plan: &provision.Plan{Cloud: "aws", Destructive: true, Question: "Delete these resources?"}}
	deleted := 0
	count := func(del func(context.Context) error) func(context.Context, io.Writer) error {
		return func(ctx context.Context, _ io.Writer) error {
			if err := del(ctx); err != nil && !isNotFound(err) {
				return err
			}
			deleted++
			return nil
		}
	}
	shared, err := pl.planLeaveFleet(ctx, count)
	if err != nil {
		return err
	}
	if !shared {
		if err := pl.planCleanup(ctx, count); err != nil {
			return err
		}
	}
	if pl.plan.Changes() == 0 && len(pl.plan.Warnings) == 0 {
		fmt.Fprintf(e.out, "aws: nothing tagged %s to clean up\n", e.owner)
		return nil
	}
	pl.plan.Done = func(provision.Tally) string { return fmt.Sprintf("aws: cleanup deleted %d resources", deleted) }
	return provision.Apply(ctx, opts, pl.plan)
}

type deleter func(del func(context.Context) error) func(context.Context, io.Writer) error

func (pl *planner) planCleanup(ctx context.Context, count deleter) error {
	e := pl.env
	del := func(kind, id string, f func(context.Context) error) {
		pl.add(provision.Step{Sym: "-", Verb: "delete", Kind: kind, Name: id, Run: count(func(ctx context.Context) error {
			if err := f(ctx); err != nil && !isNotFound(err) {
				return fmt.Errorf("delete %s %s: %w", kind, id, err)
			}
			return nil
		})})
	}
	if err := pl.planFleetCleanup(ctx, del); err != nil {
		return err
	}
	sessions, err := e.listSessions(ctx)
	if err != nil {
		return err
	}
	for _, s := range sessions {
		if id := s.TrafficMirrorSessionId; e.ours(ec2Tags(s.Tags)) {
			del("traffic mirror session", *id, func(ctx context.Context) error {
				_, err := e.ec2.DeleteTrafficMirrorSession(ctx, &ec2.DeleteTrafficMirrorSessionInput{TrafficMirrorSessionId: id})
				return err
			})
		}
	}
	filters, err := e.listFilters(ctx)
	if err != nil {
		return err
	}
	for _, f := range filters {
		if id := f.TrafficMirrorFilterId; e.ours(ec2Tags(f.Tags)) {
			del("traffic mirror filter", *id, func(ctx context.Context) error {
				_, err := e.ec2.DeleteTrafficMirrorFilter(ctx, &ec2.DeleteTrafficMirrorFilterInput{TrafficMirrorFilterId: id})
				return err
			})
		}
	}
	targets, err := e.listTargets(ctx)
	if err != nil {
		return err
	}
	for _, t := range targets {
		if id := t.TrafficMirrorTargetId; e.ours(ec2Tags(t.Tags)) {
			del("traffic mirror target", *id, func(ctx context.Context) error {
				_, err := e.ec2.DeleteTrafficMirrorTarget(ctx, &ec2.DeleteTrafficMirrorTargetInput{TrafficMirrorTargetId: id})
				return err
			})
		}
	}
	lbs, tgs, err := e.ourLoadBalancing(ctx)
	if err != nil {
		return err
	}
	for _, lb := range lbs {
		pg := elb.NewDescribeListenersPaginator(e.elb, &elb.DescribeListenersInput{LoadBalancerArn: awssdk.String(lb)})
		for pg.HasMorePages() {
			page, err := pg.NextPage(ctx)
			if err != nil && !isNotFound(err) {
				return fmt.Errorf("describe listeners of %s: %w", lb, err)
			}
			if page == nil {
				break
			}
			for _, l := range page.Listeners {
				arn := l.ListenerArn
				del("listener", *arn, func(ctx context.Context) error {
					_, err := e.elb.DeleteListener(ctx, &elb.DeleteListenerInput{ListenerArn: arn})
					return err
				})
			}
		}
	}
	for _, lb := range lbs {
		arn := lb
		del("network load balancer", arn, func(ctx context.Context) error {
			_, err := e.elb.DeleteLoadBalancer(ctx, &elb.DeleteLoadBalancerInput{LoadBalancerArn: &arn})
			return err
		})
	}
	for _, tg := range tgs {
		arn := tg
		del("target group", arn, func(ctx context.Context) error {
			_, err := e.elb.DeleteTargetGroup(ctx, &elb.DeleteTargetGroupInput{TargetGroupArn: &arn})
			return err
		})
	}
	return pl.planLaunchTemplateCleanup(ctx, del)
}

// planLeaveFleet deregisters this member from the fleet's target group; it reports whether
// other members remain (then the fleet's shared resources stay).
func (pl *planner) planLeaveFleet(ctx context.Context, count deleter) (shared bool, err error) {
	if !pl.fleet() {
		return false, nil
	}
	_, tgs, err := pl.ourLoadBalancing(ctx)
	if err != nil {
		return false, err
	}
	others := 0
	for _, tg := range tgs {
		arn := tg
		health, err := pl.elb.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: &arn})
		if err != nil {
			return false, fmt.Errorf("describe target health of %s: %w", arn, err)
		}
		for _, h := range health.TargetHealthDescriptions {
			id := awssdk.ToString(h.Target.Id)
			if id == pl.self.InstanceID {
				pl.add(provision.Step{Sym: "-", Verb: "deregister", Kind: "target", Name: id, Detail: "leave fleet " + pl.owner.value,
					Run: count(func(ctx context.Context) error {
						_, err := pl.elb.DeregisterTargets(ctx, &elb.DeregisterTargetsInput{TargetGroupArn: &arn,
							Targets: []elbtypes.TargetDescription{{Id: awssdk.String(id), Port: h.Target.Port}}})
						return err
					})})
				continue
			}
			if h.TargetHealth == nil || h.TargetHealth.State != elbtypes.TargetHealthStateEnumDraining {
				others++
			}
		}
	}
	members, err := pl.fleetMembers(ctx)
	if err != nil {
		return false, err
	}
	others = max(others, members)
	if pl.cfg.Fleet.Delete {
		return false, nil // the whole fleet goes: its Auto Scaling group first, then the rest
	}
	if others > 0 {
		pl.warn("fleet %s has %d other members: its NLB, target group, mirror target, filter and sessions stay (the last member's cleanup removes them; --aws-delete-fleet deletes the whole fleet, its Auto Scaling group and members included)", pl.owner.value, others)
		return true, nil
	}
	return false, nil
}

// ourLoadBalancing lists the NLBs and target groups tagged as ours.
func (e *env) ourLoadBalancing(ctx context.Context) (lbs, tgs []string, err error) {
	var lbArns, tgArns []string
	lp := elb.NewDescribeLoadBalancersPaginator(e.elb, &elb.DescribeLoadBalancersInput{})
	for lp.HasMorePages() {
		page, err := lp.NextPage(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("describe load balancers: %w", err)
		}
		for _, lb := range page.LoadBalancers {
			lbArns = append(lbArns, awssdk.ToString(lb.LoadBalancerArn))
		}
	}
	tp := elb.NewDescribeTargetGroupsPaginator(e.elb, &elb.DescribeTargetGroupsInput{})
	for tp.HasMorePages() {
		page, err := tp.NextPage(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("describe target groups: %w", err)
		}
		for _, tg := range page.TargetGroups {
			tgArns = append(tgArns, awssdk.ToString(tg.TargetGroupArn))
		}
	}
	tags, err := e.elbTagsOf(ctx, append(append([]string{}, lbArns...), tgArns...))
	if err != nil {
		return nil, nil, err
	}
	for _, a := range lbArns {
		if e.ours(tags[a]) {
			lbs = append(lbs, a)
		}
	}
	for _, a := range tgArns {
		if e.ours(tags[a]) {
			tgs = append(tgs, a)
		}
	}
	return lbs, tgs, nil
}
