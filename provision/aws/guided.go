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

	"github.com/metlo-labs/metlo-appliance/provision"
)

// choice is one pickable item in guided mode.
type choice struct{ label, source string }

// guided asks for the region, the sources and, when they would be blocked, the security-group
// rule; the caller then plans, shows and applies like any other run (so --dry-run holds).
func (p *Provider) guided(ctx context.Context, opts *provision.Options) ([]provision.Source, string, error) {
	in, out := opts.In.(*bufio.Reader), opts.Out
	fmt.Fprintln(out, "Set up AWS traffic mirroring to this appliance. Press Enter to accept [defaults].")
	self, err := p.discover(ctx, opts.Region)
	if err != nil {
		return nil, "", err
	}
	region, err := ask(in, out, "AWS region", self.Region)
	if err != nil {
		return nil, "", err
	}
	p.cfg.Region = region
	self.Region = region
	e, err := p.openAs(ctx, *opts, self)
	if err != nil {
		return nil, "", err
	}
	kinds := []string{"EC2 instances", "EC2 instances with a tag (follows scaling)", "an ECS service (follows its tasks)"}
	k, err := pickOne(in, out, "What should be mirrored?", kinds)
	if err != nil {
		return nil, "", err
	}
	var sources []string
	if k == 1 {
		tag, err := ask(in, out, "Tag (Key=Value)", "")
		if err != nil {
			return nil, "", err
		}
		if !strings.Contains(tag, "=") {
			return nil, "", fmt.Errorf("tag %q: want Key=Value", tag)
		}
		sources = []string{"tag:" + tag}
	} else {
		var found []choice
		switch k {
		case 0:
			found, err = e.instanceChoices(ctx)
		case 2:
			found, err = e.serviceChoices(ctx)
		}
		if err != nil {
			return nil, "", err
		}
		if len(found) == 0 {
			return nil, "", fmt.Errorf("found no %s in %s", kinds[k], region)
		}
		picked, err := pickMany(in, out, "Found:", found)
		if err != nil {
			return nil, "", err
		}
		for _, c := range picked {
			sources = append(sources, c.source)
		}
	}
	srcs, err := parseSources(sources)
	if err != nil {
		return nil, "", err
	}
	if !p.cfg.AllowVXLAN {
		if blocked, err := e.blockedByGroups(ctx, srcs); err == nil && blocked > 0 {
			ok, err := provision.Confirm(in, out, fmt.Sprintf("This appliance's security group does not let VXLAN (UDP %d) in from %d of these interfaces. Add the rule?", vxlanPort, blocked))
			if err != nil {
				return nil, "", err
			}
			p.cfg.AllowVXLAN = ok
		}
	}
	args := "--cloud aws --region " + region
	for _, s := range sources {
		args += " --source " + s
	}
	if p.cfg.AllowVXLAN {
		args += " --aws-allow-vxlan"
	}
	return srcs, "To keep this in sync (at boot, or with --watch 5m): metlo-appliance provision " + args, nil
}

// blockedByGroups counts the source interfaces the appliance's security groups keep out.
func (e *env) blockedByGroups(ctx context.Context, srcs []provision.Source) (int, error) {
	groups, err := e.applianceGroups(ctx)
	if err != nil || len(groups) == 0 {
		return 0, err
	}
	n := 0
	for _, s := range e.resolve(ctx, srcs).enis {
		if s.ENI != "" && s.Skip == "" && s.ip != "" && !sgAllows(groups, "udp", vxlanPort, s.ip, s.groups) {
			n++
		}
	}
	return n, nil
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
