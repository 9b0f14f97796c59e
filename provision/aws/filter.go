package aws

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/metlo-labs/metlo-appliance/provision"
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

// planFilter plans the appliance's filter and converges its rules; a new filter's id reaches
// the later steps through pl.ids.
func (pl *planner) planFilter(ctx context.Context, filters []ec2types.TrafficMirrorFilter, want []Rule) {
	var f *ec2types.TrafficMirrorFilter
	for i := range filters {
		if pl.ours(ec2Tags(filters[i].Tags)) {
			f = &filters[i]
			break
		}
	}
	var existing []ec2types.TrafficMirrorFilterRule
	if f != nil {
		pl.ids.filter = awssdk.ToString(f.TrafficMirrorFilterId)
		existing = append(append(existing, f.IngressFilterRules...), f.EgressFilterRules...)
		pl.add(provision.Step{Sym: "=", Verb: "keep", Kind: "traffic mirror filter", Name: pl.ids.filter, Detail: pl.name()})
	} else {
		pl.ids.filter = placeholderFilter
		pl.add(provision.Step{Sym: "+", Verb: "create", Kind: "traffic mirror filter", Name: pl.name(), Detail: fmt.Sprintf("%d rules", len(want)),
			Check: func(ctx context.Context) *provision.Problem {
				return pl.dryCheck("ec2:CreateTrafficMirrorFilter", func() error {
					_, err := pl.ec2.CreateTrafficMirrorFilter(ctx, &ec2.CreateTrafficMirrorFilterInput{DryRun: awssdk.Bool(true),
						TagSpecifications: ec2TagSpec(ec2types.ResourceTypeTrafficMirrorFilter, pl.tags())})
					return err
				})
			},
			Run: func(ctx context.Context, _ io.Writer) error {
				id, err := pl.createVerified(ctx, "traffic mirror filter", func(token string) (string, error) {
					out, err := pl.ec2.CreateTrafficMirrorFilter(ctx, &ec2.CreateTrafficMirrorFilterInput{
						ClientToken: awssdk.String(token), Description: awssdk.String("metlo-appliance " + pl.owner.value),
						TagSpecifications: ec2TagSpec(ec2types.ResourceTypeTrafficMirrorFilter, pl.tags()),
					})
					if err != nil {
						return "", err
					}
					return awssdk.ToString(out.TrafficMirrorFilter.TrafficMirrorFilterId), nil
				}, func(id string) (bool, error) {
					_, err := pl.ec2.DescribeTrafficMirrorFilters(ctx, &ec2.DescribeTrafficMirrorFiltersInput{TrafficMirrorFilterIds: []string{id}})
					return err == nil, notFoundIsNil(err)
				}, func(ctx context.Context) (string, error) {
					fs, err := pl.listFilters(ctx)
					for _, x := range fs {
						if pl.ours(ec2Tags(x.Tags)) {
							return awssdk.ToString(x.TrafficMirrorFilterId), err
						}
					}
					return "", err
				}, "filter")
				if err != nil {
					return fmt.Errorf("create traffic mirror filter: %w", err)
				}
				pl.ids.filter = id
				return nil
			}})
	}
	// Delete rules that differ first: rule numbers must stay unique per direction.
	have := map[string]bool{}
	for _, x := range existing {
		got := ruleFromAPI(x)
		if containsRule(want, got) && !have[got.String()] {
			have[got.String()] = true
			continue
		}
		id := x.TrafficMirrorFilterRuleId
		pl.add(provision.Step{Sym: "-", Verb: "delete", Kind: "filter rule", Name: awssdk.ToString(id), Detail: got.String(),
			Check: func(ctx context.Context) *provision.Problem {
				return pl.dryCheck("ec2:DeleteTrafficMirrorFilterRule", func() error {
					_, err := pl.ec2.DeleteTrafficMirrorFilterRule(ctx, &ec2.DeleteTrafficMirrorFilterRuleInput{TrafficMirrorFilterRuleId: id, DryRun: awssdk.Bool(true)})
					return err
				})
			},
			Run: func(ctx context.Context, _ io.Writer) error {
				if _, err := pl.ec2.DeleteTrafficMirrorFilterRule(ctx, &ec2.DeleteTrafficMirrorFilterRuleInput{TrafficMirrorFilterRuleId: id}); err != nil && !isNotFound(err) {
					return fmt.Errorf("delete filter rule %s: %w", awssdk.ToString(id), err)
				}
				return nil
			}})
	}
	for _, w := range want {
		if have[w.String()] {
			continue
		}
		pl.add(provision.Step{Sym: "+", Verb: "create", Kind: "filter rule", Name: w.String(),
			Check: func(ctx context.Context) *provision.Problem {
				return pl.dryCheck("ec2:CreateTrafficMirrorFilterRule", func() error {
					in := ruleInput(pl.ids.filter, w)
					in.DryRun = awssdk.Bool(true)
					in.TagSpecifications = ec2TagSpec(ec2types.ResourceTypeTrafficMirrorFilterRule, pl.tags())
					_, err := pl.ec2.CreateTrafficMirrorFilterRule(ctx, in)
					return err
				})
			},
			Run: func(ctx context.Context, _ io.Writer) error {
				in := ruleInput(pl.ids.filter, w)
				in.ClientToken = awssdk.String(pl.clientToken(0, "rule", pl.ids.filter, w.String()))
				in.TagSpecifications = ec2TagSpec(ec2types.ResourceTypeTrafficMirrorFilterRule, pl.tags())
				if _, err := pl.ec2.CreateTrafficMirrorFilterRule(ctx, in); err != nil {
					return fmt.Errorf("create filter rule %s: %w", w, err)
				}
				return nil
			}})
	}
}

// packet is what a filter is asked about: one direction of one flow, as seen at the source.
type packet struct {
	dir          string // ingress (into the source ENI) or egress
	proto        int
	src, dst     netip.Addr
	sport, dport int
}

// ruleMatches reports whether one rule applies to p (its action then decides).
func ruleMatches(r Rule, p packet) bool {
	if r.Direction != p.dir || (r.Protocol != 0 && r.Protocol != p.proto) {
		return false
	}
	for _, c := range []struct {
		cidr string
		addr netip.Addr
	}{{r.Src, p.src}, {r.Dst, p.dst}} {
		pfx, err := netip.ParsePrefix(c.cidr)
		if err != nil || !pfx.Contains(c.addr) {
			return false
		}
	}
	if r.SrcPorts != nil && (p.sport < r.SrcPorts.From || p.sport > r.SrcPorts.To) {
		return false
	}
	if r.DstPorts != nil && (p.dport < r.DstPorts.From || p.dport > r.DstPorts.To) {
		return false
	}
	return true
}

// accepts evaluates a filter the way AWS does: per direction, rules in ascending number, the
// first match decides; no match means the packet is not mirrored.
func accepts(rules []Rule, p packet) bool {
	sorted := slices.Clone(rules)
	slices.SortFunc(sorted, func(a, b Rule) int { return a.Number - b.Number })
	for _, r := range sorted {
		if ruleMatches(r, p) {
			return r.Action == "accept"
		}
	}
	return false
}

// probes are sample packets covering what a filter accepts: both directions, private and
// public addresses of both families, common and high ports.
func probes(rules []Rule) []packet {
	v4 := []string{"10.1.2.3", "172.16.5.4", "192.168.7.8", "100.64.1.1", "52.95.110.1", "8.8.8.8"}
	v6 := []string{"fd00::1", "2600:1f18::1", "2001:db8::7"}
	ports := []int{80, 443, 8080, 3000, 5432, 22, 40000}
	protos := map[int]bool{6: true}
	for _, r := range rules {
		if r.Protocol != 0 {
			protos[r.Protocol] = true
		}
	}
	var out []packet
	for _, dir := range []string{"ingress", "egress"} {
		for proto := range protos {
			for _, fam := range [][]string{v4, v6} {
				for i, a := range fam {
					b := fam[(i+1)%len(fam)]
					for _, port := range ports {
						out = append(out, packet{dir: dir, proto: proto, src: netip.MustParseAddr(a), dst: netip.MustParseAddr(b), sport: 49152 + port, dport: port})
						out = append(out, packet{dir: dir, proto: proto, src: netip.MustParseAddr(a), dst: netip.MustParseAddr(b), sport: port, dport: 49152 + port})
					}
				}
			}
		}
	}
	return out
}

// shadow compares a session evaluated before ours with our filter: the share of our probes it
// takes, and one example of a packet it takes.
func shadow(theirs, ours []Rule) (share float64, example string) {
	n, taken := 0, 0
	for _, p := range probes(ours) {
		if !accepts(ours, p) {
			continue
		}
		n++
		if accepts(theirs, p) {
			taken++
			if example == "" {
				example = fmt.Sprintf("%s proto %d %s:%d → %s:%d", p.dir, p.proto, p.src, p.sport, p.dst, p.dport)
			}
		}
	}
	if n == 0 {
		return 0, ""
	}
	return float64(taken) / float64(n), example
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
