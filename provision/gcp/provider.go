package gcp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"slices"
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

// errNoSources explains what to pass when there is no terminal to ask on.
var errNoSources = fmt.Errorf("no sources to mirror: pass --source KIND:VALUE (repeatable):\n%s\nor run on a terminal for guided mode", SourceHelp)

// Reconcile makes the cloud match the sources: the collector, and a policy mirroring exactly
// the given sources (a source dropped from the list stops being mirrored).
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
	sources := opts.Sources
	if len(sources) == 0 {
		if !opts.Interactive || opts.In == nil || opts.Yes {
			return errNoSources
		}
		opts.In = bufio.NewReader(opts.In)
		q := *p
		if sources, e, err = q.guided(ctx, newPrompter(opts.In, out), e, opts); err != nil {
			return err
		}
		p = &q
	}
	cur, err := p.getPolicy(ctx, e)
	if err != nil {
		return err
	}
	plan := &provision.Plan{Cloud: "gcp", Header: fmt.Sprintf("gcp: appliance %s in %s, collector %s", e.id, e.region, e.name("fr"))}
	r := &resolver{p: p, e: e}
	var want mirrorSet
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
			plan.Missing = append(plan.Missing, provision.Missing{Source: src.String(), Reason: reason, Permanent: true})
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
			notes[g[1]] = "it no longer exists"
		}
		have := setOf(e.project, cur)
		for _, kind := range sourceKinds {
			for _, v := range *have.list(kind) {
				if _, known := notes[v]; !known && !slices.Contains(*want.list(kind), v) {
					notes[v] = "no longer a wanted source"
				}
			}
		}
	}
	est := &provision.Estimate{}
	prices := opts.Prices
	if prices == nil {
		prices, _ = provision.ParsePrices(nil)
	}
	steps, err := p.planCollector(ctx, e, opts.HealthPort, prices, est)
	if err != nil {
		return err
	}
	for _, s := range steps {
		if s.Sym == "+" && s.Kind == "forwarding rule" {
			est.Add(prices, "collector forwarding rule "+s.Name, provision.HoursPerMonth, "gcp-forwarding-rule-hour")
		}
	}
	if gb := opts.MirroredGBPerMonth; gb > 0 {
		est.Add(prices, "Packet Mirroring data processed", gb, "gcp-mirroring-gb")
		est.Add(prices, "internal load balancer data processed", gb, "gcp-ilb-gb")
	} else {
		est.Notes = append(est.Notes, "Packet Mirroring and the load balancer bill per GB processed: pass --estimate-gb-month")
	}
	if want.empty() {
		if cur == nil {
			if len(plan.Missing) > 0 {
				// Nothing to mirror at all: report why without building anything.
				return &provision.IncompleteError{Missing: plan.Missing, DryRun: opts.DryRun}
			}
			return errNoSources
		}
	}
	ps, err := p.planPolicy(e, cur, want, notes)
	if err != nil {
		return err
	}
	plan.Steps, plan.Estimate = append(steps, ps), est
	plan.Done = func(t provision.Tally) string {
		state := "ok"
		if ps.Verb == "delete" {
			state = "deleted (no sources left)"
		}
		return fmt.Sprintf("gcp: policy %s %s: %s (%s)", e.name("pm"), state, want, t)
	}
	return provision.Apply(ctx, opts, plan)
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
		fmt.Fprintf(out, "gcp: packet mirroring %s not found, nothing to remove\n", e.name("pm"))
		return nil
	}
	set := setOf(e.project, cur)
	match, err := matchSource(e, set, src)
	if err != nil {
		return err
	}
	if match == "" {
		fmt.Fprintf(out, "gcp: %s is not mirrored by %s, nothing to remove\n", src, e.name("pm"))
		return nil
	}
	want := set.clone()
	want.drop(src.Kind, match)
	ps, err := p.planPolicy(e, cur, want, nil)
	if err != nil {
		return err
	}
	plan := &provision.Plan{Cloud: "gcp", Steps: []provision.Step{ps}, Question: "Remove this source?"}
	plan.Done = func(t provision.Tally) string {
		state := "ok"
		if ps.Verb == "delete" {
			state = "deleted (no sources left)"
		}
		return fmt.Sprintf("gcp: policy %s %s: %s (%s)", e.name("pm"), state, want, t)
	}
	return provision.Apply(ctx, opts, plan)
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
	if e.fleet {
		items = append(items,
			item{"autoscaler", e.name("as"),
				func(ctx context.Context) (string, error) {
					r, err := p.api.autoscalers.Get(ctx, &computepb.GetRegionAutoscalerRequest{Project: e.project, Region: e.region, Autoscaler: e.name("as")})
					return r.GetDescription(), err
				},
				func(ctx context.Context) (*compute.Operation, error) {
					return p.api.autoscalers.Delete(ctx, &computepb.DeleteRegionAutoscalerRequest{Project: e.project, Region: e.region, Autoscaler: e.name("as"), RequestId: randomID()})
				}},
			item{"managed instance group", e.name("mig"),
				func(ctx context.Context) (string, error) {
					r, err := p.api.migs.Get(ctx, &computepb.GetRegionInstanceGroupManagerRequest{Project: e.project, Region: e.region, InstanceGroupManager: e.name("mig")})
					return r.GetDescription(), err
				},
				func(ctx context.Context) (*compute.Operation, error) {
					return p.api.migs.Delete(ctx, &computepb.DeleteRegionInstanceGroupManagerRequest{Project: e.project, Region: e.region, InstanceGroupManager: e.name("mig"), RequestId: randomID()})
				}})
		templates, err := p.ourTemplates(ctx, e)
		if err != nil {
			return err
		}
		for _, t := range templates {
			name := t
			items = append(items, item{"instance template", name,
				func(ctx context.Context) (string, error) {
					r, err := p.api.templates.Get(ctx, &computepb.GetInstanceTemplateRequest{Project: e.project, InstanceTemplate: name})
					return r.GetDescription(), err
				},
				func(ctx context.Context) (*compute.Operation, error) {
					return p.api.templates.Delete(ctx, &computepb.DeleteInstanceTemplateRequest{Project: e.project, InstanceTemplate: name, RequestId: randomID()})
				}})
		}
		mig, err := p.api.migs.Get(ctx, &computepb.GetRegionInstanceGroupManagerRequest{Project: e.project, Region: e.region, InstanceGroupManager: e.name("mig")})
		if err == nil && mig.GetTargetSize() > 0 && !p.cfg.Fleet.Delete {
			fmt.Fprintf(output(opts), "  ! collector fleet %s has %d members: nothing deleted (pass --gcp-delete-fleet to delete the fleet, its members and the mirroring)\n",
				e.name("mig"), mig.GetTargetSize())
			return nil
		}
	}
	if e.ownGroup || e.fleet && e.zone != "" {
		// A fleet may follow a single appliance: its unmanaged group goes too.
		zone := e.zone
		if e.ownGroup {
			zone = segment(e.group, "zones")
		}
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
	plan := &provision.Plan{Cloud: "gcp", Destructive: true, Question: "Delete these resources?"}
	var steps []provision.Step
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
			plan.Warnings = append(plan.Warnings, fmt.Sprintf("keep %s %s: not created by metlo-appliance", it.kind, it.name))
			continue
		}
		it := it
		steps = append(steps, provision.Step{Sym: "-", Verb: "delete", Kind: it.kind, Name: it.name,
			Run: func(ctx context.Context, out io.Writer) error {
				return p.remove(ctx, out, "delete "+it.kind+" "+it.name, func() (*compute.Operation, error) { return it.del(ctx) })
			}})
	}
	plan.Steps = steps
	plan.Done = func(t provision.Tally) string {
		return fmt.Sprintf("gcp: cleanup of metlo-appliance-%s ok: %d deleted, %d already gone", e.id, t.Deleted, gone)
	}
	return provision.Apply(ctx, opts, plan)
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
	if e.fleet {
		g, err := p.api.migs.Get(ctx, &computepb.GetRegionInstanceGroupManagerRequest{Project: e.project, Region: e.region, InstanceGroupManager: e.name("mig")})
		if err := row("managed instance group", e.name("mig"), g.GetDescription(), err, func() string {
			return fmt.Sprintf("%s, template %s, autohealing %s", plural(int(g.GetTargetSize()), "collector", "collectors"), lastSegment(g.GetInstanceTemplate()),
				lastSegment(g.GetAutoHealingPolicies()[0].GetHealthCheck()))
		}); err != nil {
			return err
		}
		as, err := p.api.autoscalers.Get(ctx, &computepb.GetRegionAutoscalerRequest{Project: e.project, Region: e.region, Autoscaler: e.name("as")})
		if err := row("autoscaler", e.name("as"), as.GetDescription(), err, func() string {
			pol := as.GetAutoscalingPolicy()
			return fmt.Sprintf("%d-%d collectors, CPU target %.0f%%", pol.GetMinNumReplicas(), pol.GetMaxNumReplicas(), pol.GetCpuUtilization().GetUtilizationTarget()*100)
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
		if isNotFound(err) && suffix != "fw-hc" {
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
