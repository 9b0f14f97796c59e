package aws

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// choice is one pickable item in guided mode.
type choice struct{ label, source string }

// guided asks for the region and the sources, shows the plan and applies it once confirmed.
func (p *Provider) guided(ctx context.Context, opts provision.Options, rules []Rule) error {
	in, out := bufio.NewReader(opts.In), opts.Out
	fmt.Fprintln(out, "Set up AWS traffic mirroring to this appliance. Press Enter to accept [defaults].")
	self, err := p.discover(ctx, opts.Region)
	if err != nil {
		return err
	}
	region, err := ask(in, out, "AWS region", self.Region)
	if err != nil {
		return err
	}
	q := *p
	q.cfg.Region = region
	e, err := q.open(ctx, opts)
	if err != nil {
		return err
	}
	kinds := []string{"EC2 instances", "EC2 instances with a tag (follows scaling)", "an ECS service (follows its tasks)", "an Application Load Balancer"}
	k, err := pickOne(in, out, "What should be mirrored?", kinds)
	if err != nil {
		return err
	}
	var sources []string
	if k == 1 {
		tag, err := ask(in, out, "Tag (Key=Value)", "")
		if err != nil {
			return err
		}
		if !strings.Contains(tag, "=") {
			return fmt.Errorf("tag %q: want Key=Value", tag)
		}
		sources = []string{"tag:" + tag}
	} else {
		var found []choice
		switch k {
		case 0:
			found, err = e.instanceChoices(ctx)
		case 2:
			found, err = e.serviceChoices(ctx)
		case 3:
			found, err = e.albChoices(ctx)
		}
		if err != nil {
			return err
		}
		if len(found) == 0 {
			return fmt.Errorf("found no %s in %s", kinds[k], region)
		}
		picked, err := pickMany(in, out, "Found:", found)
		if err != nil {
			return err
		}
		for _, c := range picked {
			sources = append(sources, c.source)
		}
	}
	srcs, err := parseSources(sources)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "\nPlan:")
	if err := e.reconcile(ctx, opts, srcs, rules, true); err != nil {
		return err
	}
	ok, err := confirm(in, out, "Apply this plan?")
	if err != nil {
		return err
	}
	if !ok {
		fmt.Fprintln(out, "aws: nothing changed")
		return nil
	}
	if err := e.reconcile(ctx, opts, srcs, rules, false); err != nil {
		return err
	}
	args := "--cloud aws --region " + region
	for _, s := range sources {
		args += " --source " + s
	}
	fmt.Fprintf(out, "To keep this in sync (at boot, or with --watch 5m): metlo-appliance provision %s\n", args)
	return nil
}

// ask reads one line; an empty answer takes def, and an empty def makes the answer required.
func ask(in *bufio.Reader, out io.Writer, prompt, def string) (string, error) {
	for range 5 {
		if def != "" {
			fmt.Fprintf(out, "%s [%s]: ", prompt, def)
		} else {
			fmt.Fprintf(out, "%s: ", prompt)
		}
		line, err := in.ReadString('\n')
		if err != nil && line == "" {
			return "", fmt.Errorf("read %s: %w", strings.ToLower(prompt), err)
		}
		if a := strings.TrimSpace(line); a != "" {
			return a, nil
		}
		if def != "" {
			return def, nil
		}
	}
	return "", fmt.Errorf("%s: no answer", strings.ToLower(prompt))
}

func pickOne(in *bufio.Reader, out io.Writer, title string, items []string) (int, error) {
	fmt.Fprintln(out, title)
	for i, it := range items {
		fmt.Fprintf(out, "  %d) %s\n", i+1, it)
	}
	for range 5 {
		a, err := ask(in, out, "Choice", "1")
		if err != nil {
			return 0, err
		}
		if n, err := strconv.Atoi(a); err == nil && n >= 1 && n <= len(items) {
			return n - 1, nil
		}
		fmt.Fprintf(out, "Please answer 1-%d.\n", len(items))
	}
	return 0, fmt.Errorf("%s: no valid choice", title)
}

// pickMany accepts "all" or a list like "1,3" / "1 3" / "2-4".
func pickMany(in *bufio.Reader, out io.Writer, title string, items []choice) ([]choice, error) {
	fmt.Fprintln(out, title)
	for i, it := range items {
		fmt.Fprintf(out, "  %d) %s\n", i+1, it.label)
	}
	for range 5 {
		a, err := ask(in, out, "Mirror which (e.g. 1,3 or 2-4 or all)", "all")
		if err != nil {
			return nil, err
		}
		if a == "all" {
			return items, nil
		}
		var picked []choice
		ok := true
		for _, f := range strings.FieldsFunc(a, func(r rune) bool { return r == ',' || r == ' ' }) {
			lo, hi, isRange := strings.Cut(f, "-")
			l, err1 := strconv.Atoi(lo)
			h, err2 := l, error(nil)
			if isRange {
				h, err2 = strconv.Atoi(hi)
			}
			if err1 != nil || err2 != nil || l < 1 || h > len(items) || l > h {
				ok = false
				break
			}
			for i := l; i <= h; i++ {
				picked = append(picked, items[i-1])
			}
		}
		if ok && len(picked) > 0 {
			return picked, nil
		}
		fmt.Fprintf(out, "Please answer numbers between 1 and %d, or all.\n", len(items))
	}
	return nil, fmt.Errorf("%s: no valid choice", title)
}

func (e *env) instanceChoices(ctx context.Context) ([]choice, error) {
	var out []choice
	pg := ec2.NewDescribeInstancesPaginator(e.ec2, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
		{Name: awssdk.String("instance-state-name"), Values: []string{"running"}}}})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describe instances: %w", err)
		}
		for _, r := range page.Reservations {
			for _, inst := range r.Instances {
				id := awssdk.ToString(inst.InstanceId)
				if id == e.self.InstanceID {
					continue
				}
				out = append(out, choice{fmt.Sprintf("%-20s %-24s %-12s %s", id, ec2Tags(inst.Tags)["Name"], inst.InstanceType,
					awssdk.ToString(inst.PrivateIpAddress)), "instance:" + id})
			}
		}
	}
	return out, nil
}

func (e *env) serviceChoices(ctx context.Context) ([]choice, error) {
	var out []choice
	cp := ecs.NewListClustersPaginator(e.ecs, &ecs.ListClustersInput{})
	for cp.HasMorePages() {
		page, err := cp.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list ECS clusters: %w", err)
		}
		for _, c := range page.ClusterArns {
			cluster := c[strings.LastIndex(c, "/")+1:]
			sp := ecs.NewListServicesPaginator(e.ecs, &ecs.ListServicesInput{Cluster: awssdk.String(c)})
			for sp.HasMorePages() {
				sv, err := sp.NextPage(ctx)
				if err != nil {
					return nil, fmt.Errorf("list ECS services of %s: %w", cluster, err)
				}
				for _, s := range sv.ServiceArns {
					name := cluster + "/" + s[strings.LastIndex(s, "/")+1:]
					out = append(out, choice{name, "ecs:" + name})
				}
			}
		}
	}
	return out, nil
}

func (e *env) albChoices(ctx context.Context) ([]choice, error) {
	var out []choice
	pg := elb.NewDescribeLoadBalancersPaginator(e.elb, &elb.DescribeLoadBalancersInput{})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describe load balancers: %w", err)
		}
		for _, lb := range page.LoadBalancers {
			if lb.Type == elbtypes.LoadBalancerTypeEnumApplication {
				name := awssdk.ToString(lb.LoadBalancerName)
				out = append(out, choice{fmt.Sprintf("%-32s %s", name, lb.Scheme), "alb:" + name})
			}
		}
	}
	return out, nil
}
