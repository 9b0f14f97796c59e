package aws

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// maxFilterRules is AWS's limit of rules per traffic mirror filter.
const maxFilterRules = 10

// PortRange is an inclusive port range.
type PortRange struct{ From, To int }

// Rule is one traffic mirror filter rule as the appliance wants it.
type Rule struct {
	Direction string // ingress|egress
	Action    string // accept|reject
	Number    int    // unique per direction; lower numbers are evaluated first
	Protocol  int    // 6 = TCP, 17 = UDP, 0 = all
	Src, Dst  string // CIDR blocks of one family
	SrcPorts  *PortRange
	DstPorts  *PortRange
}

func (r Rule) String() string {
	s := fmt.Sprintf("%s #%d %s proto=%d %s→%s", r.Direction, r.Number, r.Action, r.Protocol, r.Src, r.Dst)
	if r.SrcPorts != nil {
		s += fmt.Sprintf(" src-port=%d-%d", r.SrcPorts.From, r.SrcPorts.To)
	}
	if r.DstPorts != nil {
		s += fmt.Sprintf(" dst-port=%d-%d", r.DstPorts.From, r.DstPorts.To)
	}
	return s
}

// ParseRules turns --aws-filter-rule specs into the filter's full rule list. A spec is
// comma-separated key=value pairs: action=accept|reject, dir=ingress|egress|both,
// proto=tcp|udp|all|N, src=CIDR, dst=CIDR, src-port=P[-Q], dst-port=P[-Q]. Without src/dst a
// spec covers 0.0.0.0/0 and ::/0. Reject rules are evaluated before accept rules; when no
// accept rule is given, TCP in both directions for every address is accepted.
func ParseRules(specs []string) ([]Rule, error) {
	var rejects, accepts []Rule
	for _, spec := range specs {
		rs, err := parseRuleSpec(spec)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			if r.Action == "reject" {
				rejects = append(rejects, r)
			} else {
				accepts = append(accepts, r)
			}
		}
	}
	if len(accepts) == 0 {
		accepts, _ = parseRuleSpec("action=accept")
	}
	all := append(rejects, accepts...)
	if len(all) > maxFilterRules {
		return nil, fmt.Errorf("filter rules: %d rules after expanding directions and address families, AWS allows %d", len(all), maxFilterRules)
	}
	next := map[string]int{}
	for i := range all {
		next[all[i].Direction] += 100
		all[i].Number = next[all[i].Direction]
	}
	return all, nil
}

func parseRuleSpec(spec string) ([]Rule, error) {
	base := Rule{Action: "accept", Protocol: 6}
	dirs := []string{"ingress", "egress"}
	var src, dst string
	for _, kv := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return nil, fmt.Errorf("filter rule %q: %q is not key=value", spec, kv)
		}
		var err error
		switch k {
		case "action":
			if v != "accept" && v != "reject" {
				return nil, fmt.Errorf("filter rule %q: action must be accept or reject", spec)
			}
			base.Action = v
		case "dir":
			switch v {
			case "both":
			case "ingress", "egress":
				dirs = []string{v}
			default:
				return nil, fmt.Errorf("filter rule %q: dir must be ingress, egress or both", spec)
			}
		case "proto":
			switch v {
			case "tcp":
				base.Protocol = 6
			case "udp":
				base.Protocol = 17
			case "all":
				base.Protocol = 0
			default:
				if base.Protocol, err = strconv.Atoi(v); err != nil || base.Protocol < 0 || base.Protocol > 255 {
					return nil, fmt.Errorf("filter rule %q: bad proto %q", spec, v)
				}
			}
		case "src", "dst":
			p, err := netip.ParsePrefix(v)
			if err != nil {
				return nil, fmt.Errorf("filter rule %q: %s: %w", spec, k, err)
			}
			if k == "src" {
				src = p.Masked().String()
			} else {
				dst = p.Masked().String()
			}
		case "src-port", "dst-port":
			pr, err := parsePorts(v)
			if err != nil {
				return nil, fmt.Errorf("filter rule %q: %s: %w", spec, k, err)
			}
			if k == "src-port" {
				base.SrcPorts = pr
			} else {
				base.DstPorts = pr
			}
		default:
			return nil, fmt.Errorf("filter rule %q: unknown key %q (want action, dir, proto, src, dst, src-port, dst-port)", spec, k)
		}
	}
	if (base.SrcPorts != nil || base.DstPorts != nil) && base.Protocol != 6 && base.Protocol != 17 {
		return nil, fmt.Errorf("filter rule %q: port ranges need proto=tcp or proto=udp", spec)
	}
	type pair struct{ src, dst string }
	var pairs []pair
	switch {
	case src == "" && dst == "":
		pairs = []pair{{"0.0.0.0/0", "0.0.0.0/0"}, {"::/0", "::/0"}}
	case src == "":
		pairs = []pair{{anyOf(dst), dst}}
	case dst == "":
		pairs = []pair{{src, anyOf(src)}}
	default:
		if strings.Contains(src, ":") != strings.Contains(dst, ":") {
			return nil, fmt.Errorf("filter rule %q: src and dst must be the same IP version", spec)
		}
		pairs = []pair{{src, dst}}
	}
	var out []Rule
	for _, d := range dirs {
		for _, p := range pairs {
			r := base
			r.Direction, r.Src, r.Dst = d, p.src, p.dst
			out = append(out, r)
		}
	}
	return out, nil
}

func anyOf(cidr string) string {
	if strings.Contains(cidr, ":") {
		return "::/0"
	}
	return "0.0.0.0/0"
}

func parsePorts(v string) (*PortRange, error) {
	a, b, isRange := strings.Cut(v, "-")
	from, err := strconv.Atoi(a)
	to := from
	if err == nil && isRange {
		to, err = strconv.Atoi(b)
	}
	if err != nil || from < 0 || to > 65535 || from > to {
		return nil, fmt.Errorf("bad port range %q", v)
	}
	return &PortRange{From: from, To: to}, nil
}

func ruleFromAPI(r ec2types.TrafficMirrorFilterRule) Rule {
	out := Rule{Direction: string(r.TrafficDirection), Action: string(r.RuleAction), Number: int(awssdk.ToInt32(r.RuleNumber)),
		Protocol: int(awssdk.ToInt32(r.Protocol)), Src: awssdk.ToString(r.SourceCidrBlock), Dst: awssdk.ToString(r.DestinationCidrBlock)}
	if p := r.SourcePortRange; p != nil {
		out.SrcPorts = &PortRange{int(awssdk.ToInt32(p.FromPort)), int(awssdk.ToInt32(p.ToPort))}
	}
	if p := r.DestinationPortRange; p != nil {
		out.DstPorts = &PortRange{int(awssdk.ToInt32(p.FromPort)), int(awssdk.ToInt32(p.ToPort))}
	}
	return out
}

// ensureFilter finds or creates the appliance's filter and converges its rules.
func (r *run) ensureFilter(ctx context.Context, want []Rule) (string, error) {
	filters, err := r.listFilters(ctx)
	if err != nil {
		return "", err
	}
	var f *ec2types.TrafficMirrorFilter
	for i := range filters {
		if r.ours(ec2Tags(filters[i].Tags)) {
			f = &filters[i]
			break
		}
	}
	var existing []ec2types.TrafficMirrorFilterRule
	id := placeholderFilter
	if f != nil {
		id = awssdk.ToString(f.TrafficMirrorFilterId)
		existing = append(append(existing, f.IngressFilterRules...), f.EgressFilterRules...)
		r.say("=", "keep", "traffic mirror filter %s (%s)", id, r.name())
	} else {
		r.say("+", "create", "traffic mirror filter %s (TCP, %d rules)", r.name(), len(want))
		if r.dry {
			r.checkPerm("ec2:CreateTrafficMirrorFilter", func() error {
				_, err := r.ec2.CreateTrafficMirrorFilter(ctx, &ec2.CreateTrafficMirrorFilterInput{DryRun: awssdk.Bool(true)})
				return err
			})
		} else {
			id, err = r.createVerified(ctx, "filter", func(token string) (string, error) {
				out, err := r.ec2.CreateTrafficMirrorFilter(ctx, &ec2.CreateTrafficMirrorFilterInput{
					ClientToken: awssdk.String(token), Description: awssdk.String("metlo-appliance " + r.self.InstanceID),
					TagSpecifications: ec2TagSpec(ec2types.ResourceTypeTrafficMirrorFilter, r.tags()),
				})
				if err != nil {
					return "", err
				}
				return awssdk.ToString(out.TrafficMirrorFilter.TrafficMirrorFilterId), nil
			}, func(id string) (bool, error) {
				_, err := r.ec2.DescribeTrafficMirrorFilters(ctx, &ec2.DescribeTrafficMirrorFiltersInput{TrafficMirrorFilterIds: []string{id}})
				return err == nil, notFoundIsNil(err)
			}, "filter")
			if err != nil {
				return "", fmt.Errorf("create traffic mirror filter: %w", err)
			}
		}
	}
	// Delete rules that differ first: rule numbers must stay unique per direction.
	have := map[string]bool{}
	for _, x := range existing {
		got := ruleFromAPI(x)
		if containsRule(want, got) && !have[got.String()] {
			have[got.String()] = true
			continue
		}
		r.say("-", "delete", "filter rule %s (%s)", awssdk.ToString(x.TrafficMirrorFilterRuleId), got)
		if r.dry {
			r.checkPerm("ec2:DeleteTrafficMirrorFilterRule", func() error {
				_, err := r.ec2.DeleteTrafficMirrorFilterRule(ctx, &ec2.DeleteTrafficMirrorFilterRuleInput{TrafficMirrorFilterRuleId: x.TrafficMirrorFilterRuleId, DryRun: awssdk.Bool(true)})
				return err
			})
			continue
		}
		if _, err := r.ec2.DeleteTrafficMirrorFilterRule(ctx, &ec2.DeleteTrafficMirrorFilterRuleInput{TrafficMirrorFilterRuleId: x.TrafficMirrorFilterRuleId}); err != nil && !isNotFound(err) {
			return "", fmt.Errorf("delete filter rule %s: %w", awssdk.ToString(x.TrafficMirrorFilterRuleId), err)
		}
	}
	for _, w := range want {
		if have[w.String()] {
			continue
		}
		in := ruleInput(id, w)
		if r.dry {
			if f != nil {
				r.say("+", "create", "filter rule %s", w)
			}
			r.checkPerm("ec2:CreateTrafficMirrorFilterRule", func() error {
				in.DryRun = awssdk.Bool(true)
				_, err := r.ec2.CreateTrafficMirrorFilterRule(ctx, in)
				return err
			})
			continue
		}
		r.say("+", "create", "filter rule %s", w)
		in.ClientToken = awssdk.String(r.clientToken(0, "rule", id, w.String()))
		if _, err := r.ec2.CreateTrafficMirrorFilterRule(ctx, in); err != nil {
			return "", fmt.Errorf("create filter rule %s: %w", w, err)
		}
	}
	return id, nil
}

func containsRule(rules []Rule, x Rule) bool {
	for _, r := range rules {
		if r.String() == x.String() {
			return true
		}
	}
	return false
}

func ruleInput(filterID string, w Rule) *ec2.CreateTrafficMirrorFilterRuleInput {
	in := &ec2.CreateTrafficMirrorFilterRuleInput{
		TrafficMirrorFilterId: awssdk.String(filterID), TrafficDirection: ec2types.TrafficDirection(w.Direction),
		RuleAction: ec2types.TrafficMirrorRuleAction(w.Action), RuleNumber: awssdk.Int32(int32(w.Number)),
		SourceCidrBlock: awssdk.String(w.Src), DestinationCidrBlock: awssdk.String(w.Dst),
		Description: awssdk.String("metlo-appliance"),
	}
	if w.Protocol != 0 {
		in.Protocol = awssdk.Int32(int32(w.Protocol))
	}
	if p := w.SrcPorts; p != nil {
		in.SourcePortRange = &ec2types.TrafficMirrorPortRangeRequest{FromPort: awssdk.Int32(int32(p.From)), ToPort: awssdk.Int32(int32(p.To))}
	}
	if p := w.DstPorts; p != nil {
		in.DestinationPortRange = &ec2types.TrafficMirrorPortRangeRequest{FromPort: awssdk.Int32(int32(p.From)), ToPort: awssdk.Int32(int32(p.To))}
	}
	return in
}

func (e *env) listFilters(ctx context.Context) ([]ec2types.TrafficMirrorFilter, error) {
	var out []ec2types.TrafficMirrorFilter
	pg := ec2.NewDescribeTrafficMirrorFiltersPaginator(e.ec2, &ec2.DescribeTrafficMirrorFiltersInput{})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describe traffic mirror filters: %w", err)
		}
		out = append(out, page.TrafficMirrorFilters...)
	}
	sort.Slice(out, func(i, j int) bool {
		return awssdk.ToString(out[i].TrafficMirrorFilterId) < awssdk.ToString(out[j].TrafficMirrorFilterId)
	})
	return out, nil
}

func ec2Tags(tags []ec2types.Tag) map[string]string {
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[awssdk.ToString(t.Key)] = awssdk.ToString(t.Value)
	}
	return m
}

func ec2TagSpec(rt ec2types.ResourceType, tags map[string]string) []ec2types.TagSpecification {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	spec := ec2types.TagSpecification{ResourceType: rt}
	for _, k := range keys {
		spec.Tags = append(spec.Tags, ec2types.Tag{Key: awssdk.String(k), Value: awssdk.String(tags[k])})
	}
	return []ec2types.TagSpecification{spec}
}
