package gcp

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/iterator"
	"google.golang.org/protobuf/proto"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// healthCheckRanges are the source ranges of Google Cloud's load-balancer health checkers.
var healthCheckRanges = []string{"35.191.0.0/16", "130.211.0.0/22"}

// filterRanges are the CIDR ranges the policy mirrors: the configured ones, else everything
// of both families (without ::/0 the API mirrors IPv4 only).
func (p *Provider) filterRanges() ([]string, error) {
	if len(p.cfg.FilterCIDRs) == 0 {
		return []string{"0.0.0.0/0", "::/0"}, nil
	}
	out := make([]string, 0, len(p.cfg.FilterCIDRs))
	for _, c := range p.cfg.FilterCIDRs {
		pfx, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			return nil, fmt.Errorf("filter cidr %q: %w", c, err)
		}
		out = append(out, pfx.Masked().String())
	}
	return out, nil
}

// ownedOrMissing classifies the answer to a Get: missing (404), ours, or an error — a
// resource with our name but without our marker is never adopted.
func ownedOrMissing(e *env, kind, name string, description string, err error) (exists bool, _ error) {
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get %s %s: %w", kind, name, err)
	}
	if !e.ours(description) {
		return false, fmt.Errorf("%s %s exists but was not created by metlo-appliance (its description lacks %s): rename or delete it, or pass --gcp-id", kind, name, e.marker())
	}
	return true, nil
}

// present turns ownedOrMissing's answer into fetch's: nil when the resource exists.
func present(exists bool, err error) error {
	if err == nil && !exists {
		return errGone
	}
	return err
}

// planCollector plans the collector ILB and its firewall rules.
func (p *Provider) planCollector(ctx context.Context, e *env, healthPort int, prices provision.Prices, est *provision.Estimate) ([]provision.Step, error) {
	if healthPort <= 0 || healthPort > 65535 {
		return nil, fmt.Errorf("health port %d: want 1-65535", healthPort)
	}
	var steps, last []provision.Step
	add := func(s provision.Step, err error) error {
		if err != nil {
			return err
		}
		steps = append(steps, s)
		return nil
	}
	if e.fleet {
		// The health check comes first: the group's autohealing uses it.
		if err := add(p.planHealthCheck(ctx, e, healthPort)); err != nil {
			return nil, err
		}
		before, after, err := p.planFleet(ctx, e, prices, est)
		if err != nil {
			return nil, err
		}
		steps, last = append(steps, before...), after
	} else {
		groupSteps, err := p.planGroup(ctx, e)
		if err != nil {
			return nil, err
		}
		steps = append(steps, groupSteps...)
		if err := add(p.planHealthCheck(ctx, e, healthPort)); err != nil {
			return nil, err
		}
	}
	if err := add(p.planBackendService(ctx, e)); err != nil {
		return nil, err
	}
	if err := add(p.planForwardingRule(ctx, e)); err != nil {
		return nil, err
	}
	fwSteps, err := p.planFirewalls(ctx, e, healthPort)
	if err != nil {
		return nil, err
	}
	return append(append(steps, fwSteps...), last...), nil
}

func (p *Provider) planGroup(ctx context.Context, e *env) ([]provision.Step, error) {
	zone, name := segment(e.group, "zones"), lastSegment(e.group)
	g, err := p.api.groups.Get(ctx, &computepb.GetInstanceGroupRequest{Project: e.project, Zone: zone, InstanceGroup: name})
	if !e.ownGroup {
		if err != nil {
			return nil, fmt.Errorf("collector instance group %s: %w", short(e.group), err)
		}
		return []provision.Step{keep("instance group", name, "given with --gcp-instance-group")}, nil
	}
	exists, err := ownedOrMissing(e, "instance group", name, g.GetDescription(), err)
	if err != nil {
		return nil, err
	}
	var steps []provision.Step
	if exists {
		steps = append(steps, keep("instance group", name, ""))
	} else {
		want := &computepb.InstanceGroup{Name: proto.String(name), Description: proto.String(e.description("collector instance group")), Network: proto.String(e.network), Subnetwork: proto.String(e.subnetwork)}
		steps = append(steps, provision.Step{Sym: "+", Verb: "create", Kind: "instance group", Name: name, Detail: "unmanaged, " + zone,
			Run: func(ctx context.Context, out io.Writer) error {
				return p.insert(ctx, out, "create instance group "+name, requestID("insert", e.group, want),
					func(rid *string) (*compute.Operation, error) {
						return p.api.groups.Insert(ctx, &computepb.InsertInstanceGroupRequest{Project: e.project, Zone: zone, InstanceGroupResource: want, RequestId: rid})
					},
					func(ctx context.Context) error {
						g, err := p.api.groups.Get(ctx, &computepb.GetInstanceGroupRequest{Project: e.project, Zone: zone, InstanceGroup: name})
						return present(ownedOrMissing(e, "instance group", name, g.GetDescription(), err))
					})
			}})
	}
	if e.instance == "" {
		return steps, nil
	}
	member := false
	if exists {
		it := p.api.groups.ListInstances(ctx, &computepb.ListInstancesInstanceGroupsRequest{Project: e.project, Zone: zone, InstanceGroup: name, InstanceGroupsListInstancesRequestResource: &computepb.InstanceGroupsListInstancesRequest{InstanceState: proto.String("ALL")}})
		for {
			m, err := it.Next()
			if err != nil {
				if err == iterator.Done {
					break
				}
				return nil, fmt.Errorf("list members of instance group %s: %w", name, err)
			}
			if relPath(e.project, m.GetInstance()) == e.instance {
				member = true
			}
		}
	}
	if !member {
		steps = append(steps, provision.Step{Sym: "~", Verb: "patch", Kind: "instance group", Name: name, Detail: "add instance " + short(e.instance),
			Run: func(ctx context.Context, out io.Writer) error {
				what := "add " + short(e.instance) + " to instance group " + name
				op, err := p.api.groups.AddInstances(ctx, &computepb.AddInstancesInstanceGroupRequest{Project: e.project, Zone: zone, InstanceGroup: name, RequestId: randomID(),
					InstanceGroupsAddInstancesRequestResource: &computepb.InstanceGroupsAddInstancesRequest{Instances: []*computepb.InstanceReference{{Instance: proto.String(e.instance)}}}})
				if err != nil {
					return fmt.Errorf("%s: %w", what, err)
				}
				if err := p.wait(ctx, out, what, op); err != nil && !opCode(err, "memberAlreadyExists") {
					return err
				}
				return nil
			}})
	} else {
		steps = append(steps, keep("instance group member", short(e.instance), ""))
	}
	return steps, nil
}

func (p *Provider) planHealthCheck(ctx context.Context, e *env, port int) (provision.Step, error) {
	name := e.name("hc")
	want := &computepb.HealthCheck{
		Name: proto.String(name), Description: proto.String(e.description("collector health check")),
		Type:             proto.String("HTTP"),
		HttpHealthCheck:  &computepb.HTTPHealthCheck{Port: proto.Int32(int32(port)), RequestPath: proto.String("/readyz")},
		CheckIntervalSec: proto.Int32(5), TimeoutSec: proto.Int32(5), HealthyThreshold: proto.Int32(2), UnhealthyThreshold: proto.Int32(3),
	}
	detail := fmt.Sprintf("HTTP :%d/readyz", port)
	hc, err := p.api.hcs.Get(ctx, &computepb.GetRegionHealthCheckRequest{Project: e.project, Region: e.region, HealthCheck: name})
	exists, err := ownedOrMissing(e, "health check", name, hc.GetDescription(), err)
	if err != nil {
		return provision.Step{}, err
	}
	if exists {
		if hc.GetType() == "HTTP" && hc.GetHttpHealthCheck().GetPort() == int32(port) {
			return keep("health check", name, detail), nil
		}
		return provision.Step{Sym: "~", Verb: "patch", Kind: "health check", Name: name, Detail: fmt.Sprintf("port %d → %d", hc.GetHttpHealthCheck().GetPort(), port),
			Run: func(ctx context.Context, out io.Writer) error {
				what := "patch health check " + name
				op, err := p.api.hcs.Patch(ctx, &computepb.PatchRegionHealthCheckRequest{Project: e.project, Region: e.region, HealthCheck: name, HealthCheckResource: want, RequestId: randomID()})
				if err != nil {
					return fmt.Errorf("%s: %w", what, err)
				}
				return p.wait(ctx, out, what, op)
			}}, nil
	}
	return provision.Step{Sym: "+", Verb: "create", Kind: "health check", Name: name, Detail: detail,
		Run: func(ctx context.Context, out io.Writer) error {
			return p.insert(ctx, out, "create health check "+name, requestID("insert", e.regional("healthChecks", name), want),
				func(rid *string) (*compute.Operation, error) {
					return p.api.hcs.Insert(ctx, &computepb.InsertRegionHealthCheckRequest{Project: e.project, Region: e.region, HealthCheckResource: want, RequestId: rid})
				},
				func(ctx context.Context) error {
					hc, err := p.api.hcs.Get(ctx, &computepb.GetRegionHealthCheckRequest{Project: e.project, Region: e.region, HealthCheck: name})
					return present(ownedOrMissing(e, "health check", name, hc.GetDescription(), err))
				})
		}}, nil
}

func (p *Provider) planBackendService(ctx context.Context, e *env) (provision.Step, error) {
	name := e.name("bs")
	want := &computepb.BackendService{
		Name: proto.String(name), Description: proto.String(e.description("collector backend service")),
		LoadBalancingScheme: proto.String("INTERNAL"), Protocol: proto.String("TCP"),
		HealthChecks: []string{e.regional("healthChecks", e.name("hc"))},
		Backends:     []*computepb.Backend{{Group: proto.String(e.group), BalancingMode: proto.String("CONNECTION")}},
	}
	bs, err := p.api.bss.Get(ctx, &computepb.GetRegionBackendServiceRequest{Project: e.project, Region: e.region, BackendService: name})
	exists, err := ownedOrMissing(e, "backend service", name, bs.GetDescription(), err)
	if err != nil {
		return provision.Step{}, err
	}
	detail := "INTERNAL TCP, group " + lastSegment(e.group)
	if exists {
		var groups []string
		for _, b := range bs.GetBackends() {
			groups = append(groups, relPath(e.project, b.GetGroup()))
		}
		if len(groups) == 1 && groups[0] == e.group {
			return keep("backend service", name, detail), nil
		}
		return provision.Step{Sym: "~", Verb: "patch", Kind: "backend service", Name: name, Detail: "backend " + short(e.group),
			Run: func(ctx context.Context, out io.Writer) error {
				what := "patch backend service " + name
				op, err := p.api.bss.Patch(ctx, &computepb.PatchRegionBackendServiceRequest{Project: e.project, Region: e.region, BackendService: name,
					BackendServiceResource: &computepb.BackendService{Backends: want.Backends}, RequestId: randomID()})
				if err != nil {
					return fmt.Errorf("%s: %w", what, err)
				}
				return p.wait(ctx, out, what, op)
			}}, nil
	}
	return provision.Step{Sym: "+", Verb: "create", Kind: "backend service", Name: name, Detail: detail,
		Run: func(ctx context.Context, out io.Writer) error {
			return p.insert(ctx, out, "create backend service "+name, requestID("insert", e.regional("backendServices", name), want),
				func(rid *string) (*compute.Operation, error) {
					return p.api.bss.Insert(ctx, &computepb.InsertRegionBackendServiceRequest{Project: e.project, Region: e.region, BackendServiceResource: want, RequestId: rid})
				},
				func(ctx context.Context) error {
					bs, err := p.api.bss.Get(ctx, &computepb.GetRegionBackendServiceRequest{Project: e.project, Region: e.region, BackendService: name})
					return present(ownedOrMissing(e, "backend service", name, bs.GetDescription(), err))
				})
		}}, nil
}

func (p *Provider) planForwardingRule(ctx context.Context, e *env) (provision.Step, error) {
	name := e.name("fr")
	want := &computepb.ForwardingRule{
		Name: proto.String(name), Description: proto.String(e.description("packet mirroring collector")),
		LoadBalancingScheme:  proto.String("INTERNAL"),
		IsMirroringCollector: proto.Bool(true),
		AllPorts:             proto.Bool(true),
		IPProtocol:           proto.String("TCP"),
		BackendService:       proto.String(e.regional("backendServices", e.name("bs"))),
		Network:              proto.String(e.network),
		Subnetwork:           proto.String(e.subnetwork),
	}
	fr, err := p.api.frs.Get(ctx, &computepb.GetForwardingRuleRequest{Project: e.project, Region: e.region, ForwardingRule: name})
	exists, err := ownedOrMissing(e, "forwarding rule", name, fr.GetDescription(), err)
	if err != nil {
		return provision.Step{}, err
	}
	detail := "INTERNAL, all ports, isMirroringCollector, " + lastSegment(e.subnetwork)
	if exists {
		if !fr.GetIsMirroringCollector() {
			return provision.Step{}, fmt.Errorf("forwarding rule %s is not a mirroring collector (isMirroringCollector cannot be changed): run cleanup, then provision", name)
		}
		return keep("forwarding rule", name, fr.GetIPAddress()), nil
	}
	return provision.Step{Sym: "+", Verb: "create", Kind: "forwarding rule", Name: name, Detail: detail,
		Run: func(ctx context.Context, out io.Writer) error {
			return p.insert(ctx, out, "create forwarding rule "+name, requestID("insert", e.regional("forwardingRules", name), want),
				func(rid *string) (*compute.Operation, error) {
					return p.api.frs.Insert(ctx, &computepb.InsertForwardingRuleRequest{Project: e.project, Region: e.region, ForwardingRuleResource: want, RequestId: rid})
				},
				func(ctx context.Context) error {
					fr, err := p.api.frs.Get(ctx, &computepb.GetForwardingRuleRequest{Project: e.project, Region: e.region, ForwardingRule: name})
					return present(ownedOrMissing(e, "forwarding rule", name, fr.GetDescription(), err))
				})
		}}, nil
}

// firewallRules returns the one rule the collector needs: the load balancer's health checkers
// to the /readyz port. Mirrored packets need none: Packet Mirroring hands them to the
// collector whatever its ingress rules say, so no port is opened to anyone else.
func (p *Provider) firewallRules(e *env, healthPort int) ([]*computepb.Firewall, error) {
	tags, sas, err := p.firewallTarget(e)
	if err != nil {
		return nil, err
	}
	return []*computepb.Firewall{{
		Name: proto.String(e.name("fw-hc")), Description: proto.String(e.description("health checker access")),
		Network: proto.String(e.network), Direction: proto.String("INGRESS"), Priority: proto.Int32(1000),
		Allowed:      []*computepb.Allowed{{IPProtocol: proto.String("tcp"), Ports: []string{fmt.Sprint(healthPort)}}},
		SourceRanges: healthCheckRanges, TargetTags: tags, TargetServiceAccounts: sas,
	}}, nil
}

// obsoleteFirewalls are rules earlier versions created: they opened every TCP port of the
// appliance to 0.0.0.0/0 and ::/0, and mirroring never needed them.
var obsoleteFirewalls = []string{"fw-mirror", "fw-mirror6"}

func (p *Provider) planFirewalls(ctx context.Context, e *env, healthPort int) ([]provision.Step, error) {
	rules, err := p.firewallRules(e, healthPort)
	if err != nil {
		return nil, err
	}
	var steps []provision.Step
	for _, want := range rules {
		name := want.GetName()
		detail := fmt.Sprintf("allow tcp%s from %s", portsSuffix(want.GetAllowed()[0].GetPorts()), strings.Join(want.GetSourceRanges(), ","))
		fw, err := p.api.fws.Get(ctx, &computepb.GetFirewallRequest{Project: e.project, Firewall: name})
		exists, err := ownedOrMissing(e, "firewall rule", name, fw.GetDescription(), err)
		if err != nil {
			return nil, err
		}
		if exists {
			if strings.Join(fw.GetAllowed()[0].GetPorts(), ",") == strings.Join(want.GetAllowed()[0].GetPorts(), ",") {
				steps = append(steps, keep("firewall rule", name, detail))
				continue
			}
			steps = append(steps, provision.Step{Sym: "~", Verb: "patch", Kind: "firewall rule", Name: name, Detail: detail,
				Run: func(ctx context.Context, out io.Writer) error {
					what := "patch firewall rule " + name
					op, err := p.api.fws.Patch(ctx, &computepb.PatchFirewallRequest{Project: e.project, Firewall: name, FirewallResource: want, RequestId: randomID()})
					if err != nil {
						return fmt.Errorf("%s: %w", what, err)
					}
					return p.wait(ctx, out, what, op)
				}})
			continue
		}
		steps = append(steps, provision.Step{Sym: "+", Verb: "create", Kind: "firewall rule", Name: name, Detail: detail,
			Run: func(ctx context.Context, out io.Writer) error {
				return p.insert(ctx, out, "create firewall rule "+name, requestID("insert", "projects/"+e.project+"/global/firewalls/"+name, want),
					func(rid *string) (*compute.Operation, error) {
						return p.api.fws.Insert(ctx, &computepb.InsertFirewallRequest{Project: e.project, FirewallResource: want, RequestId: rid})
					},
					func(ctx context.Context) error {
						fw, err := p.api.fws.Get(ctx, &computepb.GetFirewallRequest{Project: e.project, Firewall: name})
						return present(ownedOrMissing(e, "firewall rule", name, fw.GetDescription(), err))
					})
			}})
	}
	for _, suffix := range obsoleteFirewalls {
		name := e.name(suffix)
		fw, err := p.api.fws.Get(ctx, &computepb.GetFirewallRequest{Project: e.project, Firewall: name})
		if isNotFound(err) || (err == nil && !e.ours(fw.GetDescription())) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("get firewall rule %s: %w", name, err)
		}
		steps = append(steps, provision.Step{Sym: "-", Verb: "delete", Kind: "firewall rule", Name: name, Detail: "opened every TCP port to everyone; mirroring does not need it",
			Run: func(ctx context.Context, out io.Writer) error {
				return p.remove(ctx, out, "delete firewall rule "+name, func() (*compute.Operation, error) {
					return p.api.fws.Delete(ctx, &computepb.DeleteFirewallRequest{Project: e.project, Firewall: name, RequestId: randomID()})
				})
			}})
	}
	return steps, nil
}

func portsSuffix(ports []string) string {
	if len(ports) == 0 {
		return ""
	}
	return ":" + strings.Join(ports, ",")
}
