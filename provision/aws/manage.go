package aws

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

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
	return nil
}

// Remove deletes one of this appliance's sessions, by session id or by source.
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
					return fmt.Errorf("session %s is not managed by this appliance (%s)", what, e.self.InstanceID)
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
	for _, s := range victims {
		id := awssdk.ToString(s.TrafficMirrorSessionId)
		fmt.Fprintf(e.out, "  - delete traffic mirror session %s (%s ← %s)\n", id, awssdk.ToString(s.NetworkInterfaceId), ec2Tags(s.Tags)[TagOwner])
		if _, err := e.ec2.DeleteTrafficMirrorSession(ctx, &ec2.DeleteTrafficMirrorSessionInput{TrafficMirrorSessionId: s.TrafficMirrorSessionId}); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete traffic mirror session %s: %w", id, err)
		}
	}
	fmt.Fprintf(e.out, "aws: %d sessions removed", len(victims))
	if spec != "" {
		fmt.Fprintf(e.out, " (if %s is still a configured source, the next provision run mirrors it again)", spec)
	}
	fmt.Fprintln(e.out)
	return nil
}

// doomed is one resource cleanup deletes.
type doomed struct {
	kind, id string
	del      func(context.Context) error
}

// Cleanup deletes everything tagged for this appliance: sessions → filters → targets →
// listeners → NLBs → target groups. A resource already gone counts as deleted.
func (p *Provider) Cleanup(ctx context.Context, opts provision.Options) error {
	e, err := p.open(ctx, opts)
	if err != nil {
		return err
	}
	plan, err := e.cleanupPlan(ctx)
	if err != nil {
		return err
	}
	if len(plan) == 0 {
		fmt.Fprintf(e.out, "aws: nothing tagged %s=%s to clean up\n", TagAppliance, e.self.InstanceID)
		return nil
	}
	for _, d := range plan {
		fmt.Fprintf(e.out, "  - delete %s %s\n", d.kind, d.id)
	}
	if !opts.Yes {
		if !opts.Interactive {
			return fmt.Errorf("cleanup would delete %d resources: pass --yes to confirm", len(plan))
		}
		ok, err := confirm(bufio.NewReader(opts.In), e.out, fmt.Sprintf("Delete these %d resources?", len(plan)))
		if err != nil {
			return err
		}
		if !ok {
			fmt.Fprintln(e.out, "aws: cleanup cancelled")
			return nil
		}
	}
	for _, d := range plan {
		if err := d.del(ctx); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete %s %s: %w", d.kind, d.id, err)
		}
	}
	fmt.Fprintf(e.out, "aws: cleanup deleted %d resources\n", len(plan))
	return nil
}

func (e *env) cleanupPlan(ctx context.Context) ([]doomed, error) {
	var plan []doomed
	sessions, err := e.listSessions(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range sessions {
		if id := s.TrafficMirrorSessionId; e.ours(ec2Tags(s.Tags)) {
			plan = append(plan, doomed{"traffic mirror session", *id, func(ctx context.Context) error {
				_, err := e.ec2.DeleteTrafficMirrorSession(ctx, &ec2.DeleteTrafficMirrorSessionInput{TrafficMirrorSessionId: id})
				return err
			}})
		}
	}
	filters, err := e.listFilters(ctx)
	if err != nil {
		return nil, err
	}
	for _, f := range filters {
		if id := f.TrafficMirrorFilterId; e.ours(ec2Tags(f.Tags)) {
			plan = append(plan, doomed{"traffic mirror filter", *id, func(ctx context.Context) error {
				_, err := e.ec2.DeleteTrafficMirrorFilter(ctx, &ec2.DeleteTrafficMirrorFilterInput{TrafficMirrorFilterId: id})
				return err
			}})
		}
	}
	targets, err := e.listTargets(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range targets {
		if id := t.TrafficMirrorTargetId; e.ours(ec2Tags(t.Tags)) {
			plan = append(plan, doomed{"traffic mirror target", *id, func(ctx context.Context) error {
				_, err := e.ec2.DeleteTrafficMirrorTarget(ctx, &ec2.DeleteTrafficMirrorTargetInput{TrafficMirrorTargetId: id})
				return err
			}})
		}
	}
	lbs, tgs, err := e.ourLoadBalancing(ctx)
	if err != nil {
		return nil, err
	}
	for _, lb := range lbs {
		pg := elb.NewDescribeListenersPaginator(e.elb, &elb.DescribeListenersInput{LoadBalancerArn: awssdk.String(lb)})
		for pg.HasMorePages() {
			page, err := pg.NextPage(ctx)
			if err != nil && !isNotFound(err) {
				return nil, fmt.Errorf("describe listeners of %s: %w", lb, err)
			}
			if page == nil {
				break
			}
			for _, l := range page.Listeners {
				arn := l.ListenerArn
				plan = append(plan, doomed{"listener", *arn, func(ctx context.Context) error {
					_, err := e.elb.DeleteListener(ctx, &elb.DeleteListenerInput{ListenerArn: arn})
					return err
				}})
			}
		}
	}
	for _, lb := range lbs {
		arn := lb
		plan = append(plan, doomed{"network load balancer", arn, func(ctx context.Context) error {
			_, err := e.elb.DeleteLoadBalancer(ctx, &elb.DeleteLoadBalancerInput{LoadBalancerArn: &arn})
			return err
		}})
	}
	for _, tg := range tgs {
		arn := tg
		plan = append(plan, doomed{"target group", arn, func(ctx context.Context) error {
			_, err := e.elb.DeleteTargetGroup(ctx, &elb.DeleteTargetGroupInput{TargetGroupArn: &arn})
			return err
		}})
	}
	return plan, nil
}

// ourLoadBalancing lists the NLBs and target groups tagged for this appliance.
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

// confirm asks a yes/no question; only y/yes accepts.
func confirm(in *bufio.Reader, out io.Writer, question string) (bool, error) {
	fmt.Fprintf(out, "%s [y/N]: ", question)
	line, err := in.ReadString('\n')
	if err != nil && (!errors.Is(err, io.EOF) || line == "") {
		return false, fmt.Errorf("read answer: %w", err)
	}
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes", nil
}
