package aws

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/metlo-labs/metlo-appliance/provision"
)

var _ provision.Doctor = (*Provider)(nil)

// Doctor walks the chain a mirrored packet travels — session (and its precedence), source
// interface and instance, the source subnet's network ACL, the target (and NLB health), the
// appliance subnet's network ACL, the appliance's security group, the collector's counters —
// and says what is broken and how to fix it.
func (p *Provider) Doctor(ctx context.Context, opts provision.Options, d provision.DoctorOptions) (*provision.Report, error) {
	e, err := p.open(ctx, opts)
	if err != nil {
		return nil, err
	}
	r := &provision.Report{Cloud: "aws"}
	targets, err := e.listTargets(ctx)
	if err != nil {
		return nil, err
	}
	ourTargets := map[string]ec2types.TrafficMirrorTarget{}
	for _, t := range targets {
		if e.ours(ec2Tags(t.Tags)) || awssdk.ToString(t.NetworkInterfaceId) == e.self.ENI {
			ourTargets[awssdk.ToString(t.TrafficMirrorTargetId)] = t
		}
	}
	provisionFix := "run metlo-appliance provision --cloud aws --source KIND:VALUE (see provision --help)"
	if len(ourTargets) == 0 {
		r.Fail("mirror target", "no traffic mirror target is this appliance's ENI or tagged "+e.owner.String(), provisionFix)
		d.CheckArrival(ctx, r, []string{"vxlan", "geneve_vxlan"}, provisionFix)
		return r, nil
	}
	nlb := false
	for id, t := range ourTargets {
		if t.NetworkLoadBalancerArn != nil {
			nlb = true
			r.OK("mirror target", id+" → NLB "+e.nlbName())
		} else {
			r.OK("mirror target", id+" → ENI "+awssdk.ToString(t.NetworkInterfaceId))
		}
	}
	if nlb {
		if err := e.doctorNLB(ctx, r, opts.HealthPort); err != nil {
			return nil, err
		}
	}
	sessions, err := e.listSessions(ctx)
	if err != nil {
		return nil, err
	}
	var mine []ec2types.TrafficMirrorSession
	byENI := map[string][]ec2types.TrafficMirrorSession{}
	for _, s := range sessions {
		eni := awssdk.ToString(s.NetworkInterfaceId)
		byENI[eni] = append(byENI[eni], s)
		if _, ok := ourTargets[awssdk.ToString(s.TrafficMirrorTargetId)]; ok {
			mine = append(mine, s)
		}
	}
	if len(mine) == 0 {
		r.Fail("mirror sessions", "no session sends traffic to this appliance's target", provisionFix)
		d.CheckArrival(ctx, r, []string{"vxlan", "geneve_vxlan"}, provisionFix)
		return r, nil
	}
	r.OK("mirror sessions", fmt.Sprintf("%d sessions send to this appliance's target (VNI %d)", len(mine), e.vni))
	srcs, err := e.doctorSources(ctx, r, mine, byENI)
	if err != nil {
		return nil, err
	}
	if err := e.doctorNetwork(ctx, r, srcs, nlb); err != nil {
		return nil, err
	}
	d.CheckArrival(ctx, r, []string{"vxlan", "geneve_vxlan"},
		"fix the FAIL lines above; also check that the sources send traffic, that the filter accepts it (default: TCP), and the appliance's own firewall (iptables/nft) for UDP 4789")
	return r, nil
}

// doctorSources checks each session's source interface, instance and precedence; it returns
// the live sources for the network checks.
func (e *env) doctorSources(ctx context.Context, r *provision.Report, mine []ec2types.TrafficMirrorSession, byENI map[string][]ec2types.TrafficMirrorSession) ([]sourceENI, error) {
	var ids []string
	for _, s := range mine {
		ids = append(ids, awssdk.ToString(s.NetworkInterfaceId))
	}
	res := resolution{failed: map[string]error{}}
	for _, id := range ids {
		res.enis = append(res.enis, sourceENI{ENI: id, Owner: id, Spec: "eni:" + id})
	}
	if err := e.checkEligibility(ctx, res.enis); err != nil {
		return nil, err
	}
	filters, err := e.listFilters(ctx)
	if err != nil {
		return nil, err
	}
	rules := filterRules(filters)
	states, err := e.instanceStates(ctx, res.enis)
	if err != nil {
		return nil, err
	}
	var live []sourceENI
	bad := 0
	for i, s := range mine {
		src := res.enis[i]
		id := awssdk.ToString(s.TrafficMirrorSessionId)
		check := "session " + id + " (" + src.ENI + ")"
		switch {
		case src.Skip == "network interface not found":
			r.Fail(check, "the source interface no longer exists", "run provision: it removes sessions whose source is gone")
			bad++
			continue
		case src.Skip != "" && src.ENI != e.self.ENI:
			r.Fail(check, "AWS cannot mirror this source: "+src.Skip, "mirror another interface of the workload")
			bad++
			continue
		case states[src.instance] != "" && states[src.instance] != "running":
			r.Warn(check, "instance "+src.instance+" is "+states[src.instance]+": it sends nothing while stopped", "")
		}
		live = append(live, src)
		var ahead []ec2types.TrafficMirrorSession
		for _, o := range byENI[src.ENI] {
			if awssdk.ToInt32(o.SessionNumber) < awssdk.ToInt32(s.SessionNumber) {
				ahead = append(ahead, o)
			}
		}
		blocked, warnings := precedence(ahead, rules, rules[awssdk.ToString(s.TrafficMirrorFilterId)])
		if blocked != "" {
			r.Fail(check, blocked, "metlo-appliance provision --cloud aws --aws-session-number first …")
			bad++
			continue
		}
		for _, w := range warnings {
			r.Warn(check, w, "metlo-appliance provision --cloud aws --aws-session-number first …")
		}
	}
	if bad == 0 {
		r.OK("session sources", fmt.Sprintf("%d source interfaces exist, can be mirrored, and no other session takes their packets first", len(live)))
	}
	return live, nil
}

// instanceStates maps instance id → state for the instances behind the sources.
func (e *env) instanceStates(ctx context.Context, srcs []sourceENI) (map[string]string, error) {
	var ids []string
	for _, s := range srcs {
		if s.instance != "" && !slices.Contains(ids, s.instance) {
			ids = append(ids, s.instance)
		}
	}
	out := map[string]string{}
	if len(ids) == 0 {
		return out, nil
	}
	pg := ec2.NewDescribeInstancesPaginator(e.ec2, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{{Name: awssdk.String("instance-id"), Values: ids}}})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describe instances: %w", err)
		}
		for _, rsv := range page.Reservations {
			for _, in := range rsv.Instances {
				if in.State != nil {
					out[awssdk.ToString(in.InstanceId)] = string(in.State.Name)
				}
			}
		}
	}
	return out, nil
}

// doctorNLB checks the target group's health: this appliance, and how many members take traffic.
func (e *env) doctorNLB(ctx context.Context, r *provision.Report, healthPort int) error {
	_, tgs, err := e.ourLoadBalancing(ctx)
	if err != nil {
		return err
	}
	if len(tgs) == 0 {
		r.Fail("NLB target group", "no target group tagged "+e.owner.String(), "run provision --target nlb")
		return nil
	}
	for _, tg := range tgs {
		arn := tg
		out, err := e.elb.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: &arn})
		if err != nil {
			return fmt.Errorf("describe target health: %w", err)
		}
		healthy, self := 0, "not registered"
		var sick []string
		for _, h := range out.TargetHealthDescriptions {
			id, st := awssdk.ToString(h.Target.Id), elbtypes.TargetHealthStateEnum("")
			if h.TargetHealth != nil {
				st = h.TargetHealth.State
			}
			if st == elbtypes.TargetHealthStateEnumHealthy {
				healthy++
			} else {
				why := string(st)
				if h.TargetHealth != nil && h.TargetHealth.Description != nil {
					why += ": " + awssdk.ToString(h.TargetHealth.Description)
				}
				sick = append(sick, id+" "+why)
			}
			if id == e.self.InstanceID {
				self = string(st)
			}
		}
		check := "NLB target group " + e.nlbName()
		switch {
		case healthy == 0:
			r.Fail(check, "no healthy target: the NLB drops every mirrored packet ("+strings.Join(sick, "; ")+")",
				fmt.Sprintf("the health check is HTTP :%d/readyz: the collector must be ready and the security group must let the NLB subnets reach that port", healthPort))
		case self != string(elbtypes.TargetHealthStateEnumHealthy) && !e.fleet():
			r.Fail(check, "this appliance is "+self, fmt.Sprintf("check curl -s localhost:%d/readyz and the security group rule for TCP %d from the NLB subnets", healthPort, healthPort))
		case len(sick) > 0:
			r.Warn(check, fmt.Sprintf("%d healthy, not healthy: %s", healthy, strings.Join(sick, "; ")), "")
		default:
			r.OK(check, fmt.Sprintf("%d healthy targets", healthy))
		}
	}
	return nil
}

// doctorNetwork checks the security group and the network ACLs on the VXLAN path.
func (e *env) doctorNetwork(ctx context.Context, r *provision.Report, srcs []sourceENI, nlb bool) error {
	groups, err := e.applianceGroups(ctx)
	if err != nil {
		return err
	}
	var blocked []string
	for _, s := range srcs {
		if s.ip != "" && !sgAllows(groups, "udp", vxlanPort, s.ip, s.groups) {
			blocked = append(blocked, s.ENI+" ("+s.ip+")")
		}
	}
	var gids []string
	for _, g := range groups {
		gids = append(gids, awssdk.ToString(g.GroupId))
	}
	check := "security group " + strings.Join(gids, ",")
	if len(blocked) > 0 {
		r.Fail(check, fmt.Sprintf("UDP %d is not allowed in from %s: AWS drops their mirrored packets silently", vxlanPort, strings.Join(blocked, ", ")),
			"metlo-appliance provision --cloud aws --aws-allow-vxlan … adds the rule (or allow UDP 4789 from the sources' subnets)")
	} else {
		r.OK(check, fmt.Sprintf("UDP %d allowed in from every source", vxlanPort))
	}
	self, err := e.ec2.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{
		Filters: []ec2types.Filter{{Name: awssdk.String("network-interface-id"), Values: []string{e.self.ENI}}}})
	if err != nil {
		return fmt.Errorf("describe the appliance's interface: %w", err)
	}
	if len(self.NetworkInterfaces) == 0 {
		return nil
	}
	selfIP := awssdk.ToString(self.NetworkInterfaces[0].PrivateIpAddress)
	acls, err := e.aclsBySubnet(ctx)
	if err != nil {
		return err
	}
	var problems []string
	for _, s := range srcs {
		if s.ip == "" {
			continue
		}
		if ok, rule := naclAllows(acls[s.subnet], true, 17, vxlanPort, selfIP); !ok && !nlb {
			problems = append(problems, fmt.Sprintf("network ACL of %s (rule %s) blocks UDP %d out to %s", s.subnet, rule, vxlanPort, selfIP))
		}
		if ok, rule := naclAllows(acls[e.self.SubnetID], false, 17, vxlanPort, s.ip); !ok {
			problems = append(problems, fmt.Sprintf("network ACL of %s (rule %s) blocks UDP %d in from %s", e.self.SubnetID, rule, vxlanPort, s.ip))
		}
	}
	if len(problems) > 0 {
		r.Fail("network ACLs", strings.Join(problems, "; "), "allow UDP 4789 between the sources' subnets and the appliance's (network ACLs are stateless: check both)")
	} else {
		r.OK("network ACLs", "UDP 4789 allowed out of every source subnet and into the appliance's subnet")
	}
	return nil
}

// aclsBySubnet maps subnet id → the entries of its network ACL.
func (e *env) aclsBySubnet(ctx context.Context) (map[string][]ec2types.NetworkAclEntry, error) {
	out := map[string][]ec2types.NetworkAclEntry{}
	pg := ec2.NewDescribeNetworkAclsPaginator(e.ec2, &ec2.DescribeNetworkAclsInput{})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describe network acls: %w", err)
		}
		for _, a := range page.NetworkAcls {
			for _, as := range a.Associations {
				out[awssdk.ToString(as.SubnetId)] = a.Entries
			}
		}
	}
	return out, nil
}

// naclAllows evaluates a network ACL for one direction: entries in ascending rule number, the
// first that matches decides, and the final * rule denies. It returns the deciding rule.
func naclAllows(entries []ec2types.NetworkAclEntry, egress bool, proto, port int, addr string) (bool, string) {
	a, err := netip.ParseAddr(addr)
	if err != nil || entries == nil {
		return true, "none"
	}
	sorted := slices.Clone(entries)
	sort.Slice(sorted, func(i, j int) bool {
		return awssdk.ToInt32(sorted[i].RuleNumber) < awssdk.ToInt32(sorted[j].RuleNumber)
	})
	for _, x := range sorted {
		if awssdk.ToBool(x.Egress) != egress {
			continue
		}
		p := awssdk.ToString(x.Protocol)
		if p != "-1" && p != strconv.Itoa(proto) {
			continue
		}
		if p != "-1" && x.PortRange != nil && (port < int(awssdk.ToInt32(x.PortRange.From)) || port > int(awssdk.ToInt32(x.PortRange.To))) {
			continue
		}
		pfx, err := netip.ParsePrefix(awssdk.ToString(x.CidrBlock))
		if err != nil || !pfx.Contains(a) {
			continue
		}
		n := strconv.Itoa(int(awssdk.ToInt32(x.RuleNumber)))
		if n == "32767" {
			n = "*"
		}
		return x.RuleAction == ec2types.RuleActionAllow, n
	}
	return false, "*"
}
