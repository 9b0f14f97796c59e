package gcp

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"

	"github.com/metlo-labs/metlo-appliance/provision"
)

const defaultHealthPort = 9731

func output(opts provision.Options) io.Writer {
	if opts.Out == nil {
		return io.Discard
	}
	return opts.Out
}

// Reconcile creates what is missing of the collector and the policy, adds the requested
// sources and drops sources whose resources no longer exist.
func (p *Provider) Reconcile(ctx context.Context, opts provision.Options) error {
	out := output(opts)
	if opts.Target != "" && opts.Target != "ilb" {
		return fmt.Errorf("gcp target %q: the only GCP target is ilb (an internal load balancer collector)", opts.Target)
	}
	if opts.HealthPort == 0 {
		opts.HealthPort = defaultHealthPort
	}
	e, err := p.resolve(ctx, opts)
	if err != nil {
		return err
	}
	var pr *prompter
	if opts.Interactive && opts.In != nil {
		pr = newPrompter(opts.In, out)
	}
	sources := opts.Sources
	if len(sources) == 0 && pr != nil && !opts.Yes {
		q := *p
		if sources, e, err = q.guided(ctx, pr, e, opts); err != nil {
			return err
		}
		p = &q
	}
	cur, err := p.getPolicy(ctx, e)
	if err != nil {
		return err
	}
	r := &resolver{p: p, e: e}
	var want mirrorSet
	if cur != nil {
		want = setOf(e.project, cur)
	}
	var skips []step
	for _, raw := range sources {
		src, err := provision.ParseSource(raw, sourceKinds...)
		if err != nil {
			return err
		}
		kind, value, reason, err := r.resolve(ctx, src)
		if err != nil {
			return err
		}
		if reason != "" {
			skips = append(skips, skip(src.Kind, src.Value, reason))
			continue
		}
		want.add(kind, value)
	}
	notes := map[string]string{}
	if cur != nil {
		gone, err := r.vanished(ctx, setOf(e.project, cur))
		if err != nil {
			return err
		}
		for _, g := range gone {
			want.drop(g[0], g[1])
			notes[g[1]] = "it no longer exists"
		}
	}
	for _, s := range skips {
		fmt.Fprintln(out, s.line(false))
	}
	if want.empty() && cur == nil {
		return fmt.Errorf("nothing to mirror: pass --source instance:NAME, subnet:NAME or tag:NETWORK-TAG")
	}
	steps, err := p.planCollector(ctx, e, opts.HealthPort)
	if err != nil {
		return err
	}
	ps, err := p.planPolicy(e, cur, want, notes)
	if err != nil {
		return err
	}
	steps = append(steps, ps)
	if ok, err := p.confirmPlan(out, pr, opts, steps, "Apply these changes?"); err != nil || !ok {
		return err
	}
	t, err := execute(ctx, out, steps)
	if err != nil {
		return err
	}
	state := "ok"
	if ps.verb == "delete" {
		state = "deleted (no sources left)"
	}
	fmt.Fprintf(out, "gcp: policy %s %s: %s (%s)\n", e.name("pm"), state, want, t)
	if len(skips) > 0 {
		return fmt.Errorf("%s skipped, see the ! lines above", plural(len(skips), "source", "sources"))
	}
	return nil
}

// confirmPlan prints the plan for a dry run or a terminal user and asks before changes; it
// reports whether to go on.
func (p *Provider) confirmPlan(out io.Writer, pr *prompter, opts provision.Options, steps []step, question string) (bool, error) {
	changes := 0
	for _, s := range steps {
		if s.run != nil {
			changes++
		}
	}
	if !opts.DryRun && (pr == nil || opts.Yes || changes == 0) {
		return true, nil
	}
	fmt.Fprintln(out, "gcp: plan")
	for _, s := range steps {
		fmt.Fprintln(out, s.line(true))
	}
	if opts.DryRun {
		fmt.Fprintf(out, "gcp: dry run, nothing changed (%s to change)\n", plural(changes, "resource", "resources"))
		return false, nil
	}
	ok, err := pr.confirm(question)
	if err != nil {
		return false, err
	}
	if !ok {
		fmt.Fprintln(out, "gcp: aborted, nothing changed")
	}
	return ok, nil
}

// Remove patches one source out of the policy, deleting the policy when nothing is left.
func (p *Provider) Remove(ctx context.Context, opts provision.Options, what string) error {
	out := output(opts)
	src, err := provision.ParseSource(what, sourceKinds...)
	if err != nil {
		return err
	}
	e, err := p.resolve(ctx, opts)
	if err != nil {
		return err
	}
	cur, err := p.getPolicy(ctx, e)
	if err != nil {
		return err
	}
	if cur == nil {
		fmt.Fprintln(out, skip("packet mirroring", e.name("pm"), "not found, nothing to remove").line(false))
		return nil
	}
	set := setOf(e.project, cur)
	match, err := matchSource(e, set, src)
	if err != nil {
		return err
	}
	if match == "" {
		fmt.Fprintln(out, skip(src.Kind, src.Value, "not mirrored by "+e.name("pm")).line(false))
		return nil
	}
	want := set.clone()
	want.drop(src.Kind, match)
	ps, err := p.planPolicy(e, cur, want, nil)
	if err != nil {
		return err
	}
	var pr *prompter
	if opts.Interactive && opts.In != nil {
		pr = newPrompter(opts.In, out)
	}
	if ok, err := p.confirmPlan(out, pr, opts, []step{ps}, "Remove this source?"); err != nil || !ok {
		return err
	}
	t, err := execute(ctx, out, []step{ps})
	if err != nil {
		return err
	}
	state := "ok"
	if ps.verb == "delete" {
		state = "deleted (no sources left)"
	}
	fmt.Fprintf(out, "gcp: policy %s %s: %s (%s)\n", e.name("pm"), state, want, t)
	return nil
}

// matchSource finds the policy entry a source names; instances and subnets match by name,
// zone-qualified names and paths too.
func matchSource(e *env, set mirrorSet, src provision.Source) (string, error) {
	var found []string
	for _, v := range *set.list(src.Kind) {
		switch {
		case v == src.Value, short(v) == src.Value, relPath(e.project, src.Value) == v:
		case src.Kind == "instance" && (lastSegment(v) == src.Value || segment(v, "zones")+"/"+lastSegment(v) == src.Value):
		case src.Kind == "subnet" && lastSegment(v) == src.Value:
		default:
			continue
		}
		found = append(found, v)
	}
	if len(found) > 1 {
		return "", fmt.Errorf("%s matches %s: qualify it with the zone (instance:ZONE/NAME)", src, strings.Join(found, ", "))
	}
	if len(found) == 0 {
		return "", nil
	}
	return found[0], nil
}

// Cleanup deletes the policy and the collector in dependency order; missing counts as done.
func (p *Provider) Cleanup(ctx context.Context, opts provision.Options) error {
	out := output(opts)
	e, err := p.resolve(ctx, opts)
	if err != nil {
		return err
	}
	type item struct {
		kind, name string
		get        func(ctx context.Context) (string, error) // description
		del        func(ctx context.Context) (*compute.Operation, error)
	}
	items := []item{
		{"packet mirroring", e.name("pm"),
			func(ctx context.Context) (string, error) {
				r, err := p.api.pms.Get(ctx, &computepb.GetPacketMirroringRequest{Project: e.project, Region: e.region, PacketMirroring: e.name("pm")})
				return r.GetDescription(), err
			},
			func(ctx context.Context) (*compute.Operation, error) {
				return p.api.pms.Delete(ctx, &computepb.DeletePacketMirroringRequest{Project: e.project, Region: e.region, PacketMirroring: e.name("pm"), RequestId: randomID()})
			}},
		{"forwarding rule", e.name("fr"),
			func(ctx context.Context) (string, error) {
				r, err := p.api.frs.Get(ctx, &computepb.GetForwardingRuleRequest{Project: e.project, Region: e.region, ForwardingRule: e.name("fr")})
				return r.GetDescription(), err
			},
			func(ctx context.Context) (*compute.Operation, error) {
				return p.api.frs.Delete(ctx, &computepb.DeleteForwardingRuleRequest{Project: e.project, Region: e.region, ForwardingRule: e.name("fr"), RequestId: randomID()})
			}},
		{"backend service", e.name("bs"),
			func(ctx context.Context) (string, error) {
				r, err := p.api.bss.Get(ctx, &computepb.GetRegionBackendServiceRequest{Project: e.project, Region: e.region, BackendService: e.name("bs")})
				return r.GetDescription(), err
			},
			func(ctx context.Context) (*compute.Operation, error) {
				return p.api.bss.Delete(ctx, &computepb.DeleteRegionBackendServiceRequest{Project: e.project, Region: e.region, BackendService: e.name("bs"), RequestId: randomID()})
			}},
	}
	if e.ownGroup {
		zone := segment(e.group, "zones")
		items = append(items, item{"instance group", e.name("ig"),
			func(ctx context.Context) (string, error) {
				r, err := p.api.groups.Get(ctx, &computepb.GetInstanceGroupRequest{Project: e.project, Zone: zone, InstanceGroup: e.name("ig")})
				return r.GetDescription(), err
			},
			func(ctx context.Context) (*compute.Operation, error) {
				return p.api.groups.Delete(ctx, &computepb.DeleteInstanceGroupRequest{Project: e.project, Zone: zone, InstanceGroup: e.name("ig"), RequestId: randomID()})
			}})
	}
	items = append(items, item{"health check", e.name("hc"),
		func(ctx context.Context) (string, error) {
			r, err := p.api.hcs.Get(ctx, &computepb.GetRegionHealthCheckRequest{Project: e.project, Region: e.region, HealthCheck: e.name("hc")})
			return r.GetDescription(), err
		},
		func(ctx context.Context) (*compute.Operation, error) {
			return p.api.hcs.Delete(ctx, &computepb.DeleteRegionHealthCheckRequest{Project: e.project, Region: e.region, HealthCheck: e.name("hc"), RequestId: randomID()})
		}})
	for _, suffix := range []string{"fw-hc", "fw-mirror", "fw-mirror6"} {
		name := e.name(suffix)
		items = append(items, item{"firewall rule", name,
			func(ctx context.Context) (string, error) {
				r, err := p.api.fws.Get(ctx, &computepb.GetFirewallRequest{Project: e.project, Firewall: name})
				return r.GetDescription(), err
			},
			func(ctx context.Context) (*compute.Operation, error) {
				return p.api.fws.Delete(ctx, &computepb.DeleteFirewallRequest{Project: e.project, Firewall: name, RequestId: randomID()})
			}})
	}
	var steps []step
	gone := 0
	for _, it := range items {
		desc, err := it.get(ctx)
		switch {
		case isNotFound(err):
			gone++
			continue
		case err != nil:
			return fmt.Errorf("get %s %s: %w", it.kind, it.name, err)
		case !e.ours(desc):
			steps = append(steps, skip(it.kind, it.name, "not created by metlo-appliance"))
			continue
		}
		it := it
		steps = append(steps, step{sym: "-", verb: "delete", kind: it.kind, name: it.name,
			run: func(ctx context.Context, out io.Writer) error {
				return p.remove(ctx, out, "delete "+it.kind+" "+it.name, func() (*compute.Operation, error) { return it.del(ctx) })
			}})
	}
	var pr *prompter
	if opts.Interactive && opts.In != nil {
		pr = newPrompter(opts.In, out)
	}
	if ok, err := p.confirmPlan(out, pr, opts, steps, "Delete these resources?"); err != nil || !ok {
		return err
	}
	t, err := execute(ctx, out, steps)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "gcp: cleanup of metlo-appliance-%s ok: %d deleted, %d already gone\n", e.id, t.deleted, gone)
	return nil
}

// List prints this appliance's policy, its sources and the collector parts as a table.
func (p *Provider) List(ctx context.Context, opts provision.Options) error {
	out := output(opts)
	e, err := p.resolve(ctx, opts)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "KIND\tNAME\tSTATE\n")
	row := func(kind, name, desc string, err error, state func() string) error {
		switch {
		case isNotFound(err):
			fmt.Fprintf(tw, "%s\t%s\tmissing\n", kind, name)
		case err != nil:
			return fmt.Errorf("get %s %s: %w", kind, name, err)
		case !e.ours(desc):
			fmt.Fprintf(tw, "%s\t%s\tnot created by metlo-appliance\n", kind, name)
		default:
			fmt.Fprintf(tw, "%s\t%s\t%s\n", kind, name, state())
		}
		return nil
	}
	pm, err := p.api.pms.Get(ctx, &computepb.GetPacketMirroringRequest{Project: e.project, Region: e.region, PacketMirroring: e.name("pm")})
	if err := row("packet mirroring", e.name("pm"), pm.GetDescription(), err, func() string {
		f := pm.GetFilter()
		return fmt.Sprintf("%s; filter %s %s %s", setOf(e.project, pm), strings.Join(f.GetIPProtocols(), ","), f.GetDirection(), strings.Join(f.GetCidrRanges(), ","))
	}); err != nil {
		return err
	}
	if err == nil && e.ours(pm.GetDescription()) {
		set := setOf(e.project, pm)
		for _, kind := range sourceKinds {
			for _, v := range *set.list(kind) {
				fmt.Fprintf(tw, "  %s\t%s\tmirrored\n", kind, short(v))
			}
		}
	}
	fr, err := p.api.frs.Get(ctx, &computepb.GetForwardingRuleRequest{Project: e.project, Region: e.region, ForwardingRule: e.name("fr")})
	if err := row("forwarding rule", e.name("fr"), fr.GetDescription(), err, func() string {
		return fmt.Sprintf("%s %s, isMirroringCollector=%t", fr.GetIPAddress(), fr.GetLoadBalancingScheme(), fr.GetIsMirroringCollector())
	}); err != nil {
		return err
	}
	bs, err := p.api.bss.Get(ctx, &computepb.GetRegionBackendServiceRequest{Project: e.project, Region: e.region, BackendService: e.name("bs")})
	if err := row("backend service", e.name("bs"), bs.GetDescription(), err, func() string {
		return fmt.Sprintf("%s %s, %s", bs.GetLoadBalancingScheme(), bs.GetProtocol(), plural(len(bs.GetBackends()), "backend", "backends"))
	}); err != nil {
		return err
	}
	if e.ownGroup {
		g, err := p.api.groups.Get(ctx, &computepb.GetInstanceGroupRequest{Project: e.project, Zone: segment(e.group, "zones"), InstanceGroup: e.name("ig")})
		if err := row("instance group", e.name("ig"), g.GetDescription(), err, func() string {
			return fmt.Sprintf("%s, %s", segment(e.group, "zones"), plural(int(g.GetSize()), "member", "members"))
		}); err != nil {
			return err
		}
	}
	hc, err := p.api.hcs.Get(ctx, &computepb.GetRegionHealthCheckRequest{Project: e.project, Region: e.region, HealthCheck: e.name("hc")})
	if err := row("health check", e.name("hc"), hc.GetDescription(), err, func() string {
		return fmt.Sprintf("%s :%d%s", hc.GetType(), hc.GetHttpHealthCheck().GetPort(), hc.GetHttpHealthCheck().GetRequestPath())
	}); err != nil {
		return err
	}
	for _, suffix := range []string{"fw-hc", "fw-mirror", "fw-mirror6"} {
		fw, err := p.api.fws.Get(ctx, &computepb.GetFirewallRequest{Project: e.project, Firewall: e.name(suffix)})
		if isNotFound(err) && suffix == "fw-mirror6" {
			continue
		}
		if err := row("firewall rule", e.name(suffix), fw.GetDescription(), err, func() string {
			a := fw.GetAllowed()
			ports := ""
			if len(a) > 0 {
				ports = portsSuffix(a[0].GetPorts())
			}
			return fmt.Sprintf("allow tcp%s from %s", ports, strings.Join(fw.GetSourceRanges(), ","))
		}); err != nil {
			return err
		}
	}
	return tw.Flush()
}
