package aws

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// sgAllows reports whether one of the security groups lets proto/port in from ip (or from a
// member of one of srcGroups). Security groups are stateless about mirrored VXLAN: each copy is
// a new UDP datagram, so only an inbound rule lets it in.
func sgAllows(groups []ec2types.SecurityGroup, proto string, port int, ip string, srcGroups []string) bool {
	addr, err := netip.ParseAddr(ip)
	for _, g := range groups {
		for _, p := range g.IpPermissions {
			pr := awssdk.ToString(p.IpProtocol)
			if pr != "-1" && pr != proto && !(proto == "udp" && pr == "17") && !(proto == "tcp" && pr == "6") {
				continue
			}
			if pr != "-1" && (int(awssdk.ToInt32(p.FromPort)) > port || int(awssdk.ToInt32(p.ToPort)) < port) {
				continue
			}
			for _, r := range p.IpRanges {
				if pfx, perr := netip.ParsePrefix(awssdk.ToString(r.CidrIp)); perr == nil && err == nil && pfx.Contains(addr) {
					return true
				}
			}
			for _, pair := range p.UserIdGroupPairs {
				if slices.Contains(srcGroups, awssdk.ToString(pair.GroupId)) {
					return true
				}
			}
		}
	}
	return false
}

// applianceGroups returns the security groups of the appliance's ENI.
func (e *env) applianceGroups(ctx context.Context) ([]ec2types.SecurityGroup, error) {
	out, err := e.ec2.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{
		Filters: []ec2types.Filter{{Name: awssdk.String("network-interface-id"), Values: []string{e.self.ENI}}}})
	if err != nil {
		return nil, fmt.Errorf("describe the appliance's network interface %s: %w", e.self.ENI, err)
	}
	var ids []string
	for _, ni := range out.NetworkInterfaces {
		for _, g := range ni.Groups {
			ids = append(ids, awssdk.ToString(g.GroupId))
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	sgs, err := e.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: ids})
	if err != nil {
		return nil, fmt.Errorf("describe security groups %s: %w", strings.Join(ids, ","), err)
	}
	return sgs.SecurityGroups, nil
}

// subnetCIDRs maps subnet id → IPv4 CIDR.
func (e *env) subnetCIDRs(ctx context.Context, ids []string) (map[string]string, error) {
	out := map[string]string{}
	if len(ids) == 0 {
		return out, nil
	}
	pg := ec2.NewDescribeSubnetsPaginator(e.ec2, &ec2.DescribeSubnetsInput{SubnetIds: ids})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describe subnets: %w", err)
		}
		for _, s := range page.Subnets {
			out[awssdk.ToString(s.SubnetId)] = awssdk.ToString(s.CidrBlock)
		}
	}
	return out, nil
}

// planSecurityGroup checks that the appliance's security groups let every source's VXLAN in
// (a mirror whose copies the target's security group rejects is dropped without a trace) and
// offers the rule: added with --aws-allow-vxlan (or a yes in guided mode), else explained.
func (pl *planner) planSecurityGroup(ctx context.Context, kind string, res resolution, healthPort int) error {
	groups, err := pl.applianceGroups(ctx)
	whose := "this appliance"
	if pl.cfg.Fleet.Size > 0 {
		// The members receive the mirror: their security groups (from the launch template) count.
		whose = "the fleet members'"
		groups = nil
		if len(pl.fleetSGs) > 0 {
			var out *ec2.DescribeSecurityGroupsOutput
			if out, err = pl.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: pl.fleetSGs}); err == nil {
				groups = out.SecurityGroups
			}
		}
	}
	if err != nil {
		return err
	}
	if len(groups) == 0 {
		return nil
	}
	var blocked []sourceENI
	var subnets []string
	for _, s := range res.enis {
		if s.ENI == "" || s.Skip != "" || s.ip == "" {
			continue
		}
		if !sgAllows(groups, "udp", vxlanPort, s.ip, s.groups) {
			blocked = append(blocked, s)
			if !slices.Contains(subnets, s.subnet) {
				subnets = append(subnets, s.subnet)
			}
		}
	}
	if len(blocked) == 0 {
		return nil
	}
	cidrs, err := pl.subnetCIDRs(ctx, subnets)
	if err != nil {
		return err
	}
	var ranges []string
	for _, sn := range subnets {
		if c := cidrs[sn]; c != "" && !slices.Contains(ranges, c) {
			ranges = append(ranges, c)
		}
	}
	sg := awssdk.ToString(groups[0].GroupId)
	examples := []string{}
	for _, s := range blocked[:min(3, len(blocked))] {
		examples = append(examples, s.ENI+" ("+s.ip+")")
	}
	if !pl.cfg.AllowVXLAN {
		pl.warn("security group %s of %s does not let VXLAN (UDP %d) in from %d source interfaces, e.g. %s: their mirrored packets would be dropped silently. "+
			"Pass --aws-allow-vxlan to add the rule, or allow UDP %d from %s yourself", sg, whose, vxlanPort, len(blocked), strings.Join(examples, ", "), vxlanPort, strings.Join(ranges, ", "))
		return nil
	}
	var ipr []ec2types.IpRange
	for _, c := range ranges {
		ipr = append(ipr, ec2types.IpRange{CidrIp: awssdk.String(c), Description: awssdk.String("metlo-appliance: mirrored traffic (VXLAN)")})
	}
	in := &ec2.AuthorizeSecurityGroupIngressInput{GroupId: awssdk.String(sg), IpPermissions: []ec2types.IpPermission{{
		IpProtocol: awssdk.String("udp"), FromPort: awssdk.Int32(vxlanPort), ToPort: awssdk.Int32(vxlanPort), IpRanges: ipr}}}
	pl.add(provision.Step{Sym: "+", Verb: "authorize", Kind: "security group rule", Name: sg, Detail: fmt.Sprintf("inbound UDP %d from %s", vxlanPort, strings.Join(ranges, ", ")),
		Check: func(ctx context.Context) *provision.Problem {
			return pl.dryCheck("ec2:AuthorizeSecurityGroupIngress", func() error {
				c := *in
				c.DryRun = awssdk.Bool(true)
				_, err := pl.ec2.AuthorizeSecurityGroupIngress(ctx, &c)
				return err
			})
		},
		Run: func(ctx context.Context, _ io.Writer) error {
			if _, err := pl.ec2.AuthorizeSecurityGroupIngress(ctx, in); err != nil && apiCode(err) != "InvalidPermission.Duplicate" {
				return fmt.Errorf("authorize VXLAN in security group %s: %w", sg, err)
			}
			return nil
		}})
	return nil
}
