package gcp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"

	"github.com/metlo-labs/metlo-appliance/provision"
)

var _ provision.Doctor = (*Provider)(nil)

// Doctor walks the chain GCP mirroring takes — the policy and its sources, the collector
// forwarding rule, the health-check firewall rule, the load balancer's health of each
// collector, the collector's counters — and says what is broken and how to fix it.
func (p *Provider) Doctor(ctx context.Context, opts provision.Options, d provision.DoctorOptions) (*provision.Report, error) {
	if opts.HealthPort == 0 {
		opts.HealthPort = defaultHealthPort
	}
	e, err := p.resolve(ctx, opts)
	if err != nil {
		return nil, err
	}
	r := &provision.Report{Cloud: "gcp"}
	fix := "run metlo-appliance provision --cloud gcp --source KIND:VALUE (see provision --help)"
	pm, err := p.getPolicy(ctx, e)
	switch {
	case err != nil:
		r.Fail("packet mirroring policy", err.Error(), "delete or rename the foreign resource, or pass --gcp-id")
	case pm == nil:
		r.Fail("packet mirroring policy", e.name("pm")+" does not exist", fix)
	case pm.GetEnable() == "FALSE":
		r.Fail("packet mirroring policy", e.name("pm")+" is disabled", "gcloud compute packet-mirrorings update "+e.name("pm")+" --enable --region "+e.region)
	default:
		set := setOf(e.project, pm)
		r.OK("packet mirroring policy", fmt.Sprintf("%s mirrors %s, priority %d", e.name("pm"), set, pm.GetPriority()))
		rv := &resolver{p: p, e: e}
		gone, err := rv.vanished(ctx, set)
		if err != nil {
			return nil, err
		}
		if len(gone) > 0 {
			var names []string
			for _, g := range gone {
				names = append(names, g[0]+" "+short(g[1]))
			}
			r.Warn("mirrored sources", "gone: "+strings.Join(names, ", "), "run provision: it drops sources that no longer exist")
		}
	}
	fr, err := p.api.frs.Get(ctx, &computepb.GetForwardingRuleRequest{Project: e.project, Region: e.region, ForwardingRule: e.name("fr")})
	switch {
	case isNotFound(err):
		r.Fail("collector forwarding rule", e.name("fr")+" does not exist", fix)
	case err != nil:
		return nil, fmt.Errorf("get forwarding rule: %w", err)
	case !fr.GetIsMirroringCollector():
		r.Fail("collector forwarding rule", e.name("fr")+" is not a mirroring collector", "run cleanup, then provision")
	default:
		r.OK("collector forwarding rule", fmt.Sprintf("%s %s, isMirroringCollector", e.name("fr"), fr.GetIPAddress()))
	}
	if err := p.doctorFirewall(ctx, r, e, opts.HealthPort); err != nil {
		return nil, err
	}
	if err := p.doctorHealth(ctx, r, e); err != nil {
		return nil, err
	}
	d.CheckArrival(ctx, r, []string{"raw"}, "fix the FAIL lines above; the collector must run with raw capture (capture: auto or afpacket/xdp, raw: true) on the interface in the mirrored network")
	return r, nil
}

// doctorFirewall checks that the health checkers reach the collector's /readyz port.
func (p *Provider) doctorFirewall(ctx context.Context, r *provision.Report, e *env, healthPort int) error {
	name := e.name("fw-hc")
	fw, err := p.api.fws.Get(ctx, &computepb.GetFirewallRequest{Project: e.project, Firewall: name})
	check := "health-check firewall rule"
	fix := fmt.Sprintf("run provision (it creates %s), or allow tcp:%d from %s to the collectors", name, healthPort, strings.Join(healthCheckRanges, ", "))
	if isNotFound(err) {
		r.Fail(check, name+" does not exist: the load balancer sees every collector as unhealthy and mirrors to none", fix)
		return nil
	}
	if err != nil {
		return fmt.Errorf("get firewall rule %s: %w", name, err)
	}
	port := fmt.Sprint(healthPort)
	portOK := false
	for _, a := range fw.GetAllowed() {
		if a.GetIPProtocol() == "tcp" && (len(a.GetPorts()) == 0 || slices.Contains(a.GetPorts(), port)) {
			portOK = true
		}
	}
	rangesOK := true
	for _, want := range healthCheckRanges {
		w := netip.MustParsePrefix(want)
		covered := false
		for _, have := range fw.GetSourceRanges() {
			if h, err := netip.ParsePrefix(have); err == nil && h.Bits() <= w.Bits() && h.Contains(w.Addr()) {
				covered = true
			}
		}
		rangesOK = rangesOK && covered
	}
	switch {
	case fw.GetDisabled():
		r.Fail(check, name+" is disabled", fix)
	case !portOK || !rangesOK:
		r.Fail(check, fmt.Sprintf("%s does not allow tcp:%d from %s", name, healthPort, strings.Join(healthCheckRanges, ", ")), fix)
	default:
		r.OK(check, fmt.Sprintf("%s allows tcp:%d from the health checkers", name, healthPort))
	}
	return nil
}

// doctorHealth asks the load balancer how it sees each collector.
func (p *Provider) doctorHealth(ctx context.Context, r *provision.Report, e *env) error {
	check := "collector health (internal load balancer)"
	out, err := p.api.bss.GetHealth(ctx, &computepb.GetHealthRegionBackendServiceRequest{Project: e.project, Region: e.region, BackendService: e.name("bs"),
		ResourceGroupReferenceResource: &computepb.ResourceGroupReference{Group: &e.group}})
	if isNotFound(err) {
		r.Fail(check, "backend service "+e.name("bs")+" or group "+short(e.group)+" does not exist", "run provision")
		return nil
	}
	if err != nil {
		return fmt.Errorf("get health of %s: %w", e.name("bs"), err)
	}
	healthy := 0
	var sick []string
	for _, h := range out.GetHealthStatus() {
		if h.GetHealthState() == "HEALTHY" {
			healthy++
		} else {
			sick = append(sick, lastSegment(h.GetInstance())+" "+h.GetHealthState())
		}
	}
	switch {
	case healthy == 0:
		r.Fail(check, "no healthy collector: mirrored packets are dropped ("+strings.Join(sick, ", ")+")",
			"the collector's /readyz must answer 200 (curl localhost:9731/readyz) and the health-check firewall rule must let 35.191.0.0/16 and 130.211.0.0/22 in")
	case len(sick) > 0:
		r.Warn(check, fmt.Sprintf("%d healthy, not healthy: %s", healthy, strings.Join(sick, ", ")), "")
	default:
		r.OK(check, fmt.Sprintf("%d healthy collectors", healthy))
	}
	return nil
}
