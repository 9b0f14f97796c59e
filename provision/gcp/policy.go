package gcp

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strings"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/iterator"
	"google.golang.org/protobuf/proto"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// Packet Mirroring limits per policy.
const (
	maxInstances = 50
	maxSubnets   = 5
)

// sourceKinds are the source kinds GCP understands.
var sourceKinds = []string{"instance", "subnet", "tag"}

var tagRE = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)

// mirrorSet is what a policy mirrors: instance and subnetwork paths, and network tags.
type mirrorSet struct {
	instances, subnets, tags []string
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

func (m mirrorSet) String() string {
	return plural(len(m.instances), "instance", "instances") + ", " + plural(len(m.subnets), "subnet", "subnets") + ", " + plural(len(m.tags), "tag", "tags")
}

func (m mirrorSet) empty() bool { return len(m.instances)+len(m.subnets)+len(m.tags) == 0 }

func (m *mirrorSet) list(kind string) *[]string {
	switch kind {
	case "instance":
		return &m.instances
	case "subnet":
		return &m.subnets
	default:
		return &m.tags
	}
}

func (m *mirrorSet) add(kind, v string) bool {
	l := m.list(kind)
	if slices.Contains(*l, v) {
		return false
	}
	*l = append(*l, v)
	sort.Strings(*l)
	return true
}

func (m *mirrorSet) drop(kind, v string) bool {
	l := m.list(kind)
	i := slices.Index(*l, v)
	if i < 0 {
		return false
	}
	*l = slices.Delete(*l, i, i+1)
	return true
}

func (m mirrorSet) clone() mirrorSet {
	return mirrorSet{slices.Clone(m.instances), slices.Clone(m.subnets), slices.Clone(m.tags)}
}

func setOf(project string, pm *computepb.PacketMirroring) mirrorSet {
	var m mirrorSet
	for _, in := range pm.GetMirroredResources().GetInstances() {
		m.add("instance", relPath(project, in.GetUrl()))
	}
	for _, s := range pm.GetMirroredResources().GetSubnetworks() {
		m.add("subnet", relPath(project, s.GetUrl()))
	}
	for _, t := range pm.GetMirroredResources().GetTags() {
		m.add("tag", t)
	}
	return m
}

// checkLimits refuses a set the API would reject, before any call.
func (m mirrorSet) checkLimits() error {
	if n := len(m.instances); n > maxInstances {
		return fmt.Errorf("a packet mirroring policy mirrors at most %d instances, this would be %d: mirror a subnet or a network tag instead", maxInstances, n)
	}
	if n := len(m.subnets); n > maxSubnets {
		return fmt.Errorf("a packet mirroring policy mirrors at most %d subnets, this would be %d: mirror a network tag instead", maxSubnets, n)
	}
	return nil
}

// instancesInRegion lists the instances of the project in e's region, by path.
func (p *Provider) instancesInRegion(ctx context.Context, e *env) (map[string]*computepb.Instance, error) {
	out := map[string]*computepb.Instance{}
	it := p.api.instances.AggregatedList(ctx, &computepb.AggregatedListInstancesRequest{Project: e.project})
	for {
		pair, err := it.Next()
		if err == iterator.Done {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list instances: %w", err)
		}
		zone := lastSegment(pair.Key)
		if regionOf(zone) != e.region {
			continue
		}
		for _, in := range pair.Value.GetInstances() {
			out[fmt.Sprintf("projects/%s/zones/%s/instances/%s", e.project, zone, in.GetName())] = in
		}
	}
}

func instanceNetwork(project string, in *computepb.Instance) string {
	if nics := in.GetNetworkInterfaces(); len(nics) > 0 {
		return relPath(project, nics[0].GetNetwork())
	}
	return ""
}

// resolver looks sources up, caching the instance inventory.
type resolver struct {
	p         *Provider
	e         *env
	instances map[string]*computepb.Instance
}

func (r *resolver) inventory(ctx context.Context) (map[string]*computepb.Instance, error) {
	if r.instances == nil {
		inv, err := r.p.instancesInRegion(ctx, r.e)
		if err != nil {
			return nil, err
		}
		r.instances = inv
	}
	return r.instances, nil
}

// resolve turns KIND:VALUE into (kind, path-or-tag); a reason is returned for sources to
// skip (not found, wrong network or region, ambiguous), an error for API failures.
func (r *resolver) resolve(ctx context.Context, src provision.Source) (kind, value, reason string, err error) {
	e := r.e
	switch src.Kind {
	case "tag":
		if !tagRE.MatchString(src.Value) {
			return "", "", "not a valid network tag (lowercase letters, digits, dashes)", nil
		}
		return "tag", src.Value, "", nil
	case "subnet":
		path := ref(e.project, "regions/"+e.region, "subnetworks", src.Value)
		if reg := segment(path, "regions"); reg != e.region {
			return "", "", fmt.Sprintf("in region %s, not the collector's region %s", reg, e.region), nil
		}
		sub, err := r.p.api.subnets.Get(ctx, &computepb.GetSubnetworkRequest{Project: segment(path, "projects"), Region: e.region, Subnetwork: lastSegment(path)})
		if isNotFound(err) {
			return "", "", "not found in " + e.region, nil
		}
		if err != nil {
			return "", "", "", fmt.Errorf("look up subnet %s: %w", src.Value, err)
		}
		if n := relPath(e.project, sub.GetNetwork()); n != e.network {
			return "", "", fmt.Sprintf("in network %s, not the collector's network %s", lastSegment(n), lastSegment(e.network)), nil
		}
		return "subnet", path, "", nil
	case "instance":
		inv, err := r.inventory(ctx)
		if err != nil {
			return "", "", "", err
		}
		zone, name := "", src.Value
		switch parts := strings.Split(src.Value, "/"); {
		case len(parts) == 2:
			zone, name = parts[0], parts[1]
		case len(parts) > 2:
			zone, name = segment(src.Value, "zones"), lastSegment(src.Value)
		}
		if zone != "" && regionOf(zone) != e.region {
			return "", "", fmt.Sprintf("in zone %s, outside the collector's region %s", zone, e.region), nil
		}
		var matches []string
		for path := range inv {
			if lastSegment(path) == name && (zone == "" || segment(path, "zones") == zone) {
				matches = append(matches, path)
			}
		}
		sort.Strings(matches)
		switch {
		case len(matches) == 0:
			return "", "", "not found in " + e.region, nil
		case len(matches) > 1:
			zones := make([]string, len(matches))
			for i, m := range matches {
				zones[i] = segment(m, "zones")
			}
			return "", "", fmt.Sprintf("found in zones %s: write instance:ZONE/%s", strings.Join(zones, ", "), name), nil
		}
		path := matches[0]
		if path == e.instance {
			return "", "", "this appliance is the collector", nil
		}
		if n := instanceNetwork(e.project, inv[path]); n != e.network {
			return "", "", fmt.Sprintf("in network %s, not the collector's network %s", lastSegment(n), lastSegment(e.network)), nil
		}
		return "instance", path, "", nil
	}
	return "", "", "unknown kind", nil
}

// vanished returns the sources of a policy whose resources no longer exist.
func (r *resolver) vanished(ctx context.Context, m mirrorSet) ([][2]string, error) {
	var gone [][2]string
	if len(m.instances) > 0 {
		inv, err := r.inventory(ctx)
		if err != nil {
			return nil, err
		}
		for _, in := range m.instances {
			if _, ok := inv[in]; !ok {
				gone = append(gone, [2]string{"instance", in})
			}
		}
	}
	for _, s := range m.subnets {
		_, err := r.p.api.subnets.Get(ctx, &computepb.GetSubnetworkRequest{Project: segment(s, "projects"), Region: segment(s, "regions"), Subnetwork: lastSegment(s)})
		if isNotFound(err) {
			gone = append(gone, [2]string{"subnet", s})
		} else if err != nil {
			return nil, fmt.Errorf("look up subnet %s: %w", short(s), err)
		}
	}
	return gone, nil
}

// policyResource is the desired policy for a mirror set.
func (p *Provider) policyResource(e *env, m mirrorSet, ranges []string) *computepb.PacketMirroring {
	mr := &computepb.PacketMirroringMirroredResourceInfo{Tags: m.tags}
	for _, in := range m.instances {
		mr.Instances = append(mr.Instances, &computepb.PacketMirroringMirroredResourceInfoInstanceInfo{Url: proto.String(in)})
	}
	for _, s := range m.subnets {
		mr.Subnetworks = append(mr.Subnetworks, &computepb.PacketMirroringMirroredResourceInfoSubnetInfo{Url: proto.String(s)})
	}
	return &computepb.PacketMirroring{
		Name:              proto.String(e.name("pm")),
		Description:       proto.String(e.description("packet mirroring policy")),
		Network:           &computepb.PacketMirroringNetworkInfo{Url: proto.String(e.network)},
		CollectorIlb:      &computepb.PacketMirroringForwardingRuleInfo{Url: proto.String(e.regional("forwardingRules", e.name("fr")))},
		Priority:          proto.Uint32(uint32(p.cfg.Priority)),
		MirroredResources: mr,
		Filter:            &computepb.PacketMirroringFilter{CidrRanges: ranges, IPProtocols: []string{"tcp"}, Direction: proto.String("BOTH")},
		Enable:            proto.String("TRUE"),
	}
}

// getPolicy fetches this appliance's policy; nil when there is none.
func (p *Provider) getPolicy(ctx context.Context, e *env) (*computepb.PacketMirroring, error) {
	name := e.name("pm")
	pm, err := p.api.pms.Get(ctx, &computepb.GetPacketMirroringRequest{Project: e.project, Region: e.region, PacketMirroring: name})
	exists, err := ownedOrMissing(e, "packet mirroring", name, pm.GetDescription(), err)
	if err != nil || !exists {
		return nil, err
	}
	return pm, nil
}

// diffPolicy describes how cur must change to become want; clear reports a list that goes
// from non-empty to empty, which a merge-patch cannot express.
func diffPolicy(project string, cur, want *computepb.PacketMirroring, notes map[string]string) (changes []string, clear bool) {
	a, b := setOf(project, cur), setOf(project, want)
	for _, kind := range sourceKinds {
		before, after := *a.list(kind), *b.list(kind)
		for _, v := range after {
			if !slices.Contains(before, v) {
				changes = append(changes, "add "+kind+" "+short(v))
			}
		}
		for _, v := range before {
			if !slices.Contains(after, v) {
				c := "remove " + kind + " " + short(v)
				if n := notes[v]; n != "" {
					c += ": " + n
				}
				changes = append(changes, c)
			}
		}
		if len(before) > 0 && len(after) == 0 {
			clear = true
		}
	}
	cf, wf := cur.GetFilter(), want.GetFilter()
	cr, wr := slices.Clone(cf.GetCidrRanges()), slices.Clone(wf.GetCidrRanges())
	sort.Strings(cr)
	sort.Strings(wr)
	if !slices.Equal(cr, wr) || !slices.Equal(cf.GetIPProtocols(), wf.GetIPProtocols()) || cf.GetDirection() != wf.GetDirection() {
		changes = append(changes, fmt.Sprintf("filter %s %s %s", strings.Join(wf.GetIPProtocols(), ","), wf.GetDirection(), strings.Join(wf.GetCidrRanges(), ",")))
	}
	if relPath(project, cur.GetCollectorIlb().GetUrl()) != relPath(project, want.GetCollectorIlb().GetUrl()) {
		changes = append(changes, "collector "+lastSegment(want.GetCollectorIlb().GetUrl()))
	}
	if relPath(project, cur.GetNetwork().GetUrl()) != relPath(project, want.GetNetwork().GetUrl()) {
		changes = append(changes, "network "+lastSegment(want.GetNetwork().GetUrl()))
		clear = true // the network of a policy cannot be patched
	}
	if cur.GetPriority() != want.GetPriority() {
		changes = append(changes, fmt.Sprintf("priority %d", want.GetPriority()))
	}
	return changes, clear
}

// planPolicy plans the policy step for the desired set (cur nil: create).
func (p *Provider) planPolicy(e *env, cur *computepb.PacketMirroring, want mirrorSet, notes map[string]string) (provision.Step, error) {
	name := e.name("pm")
	ranges, err := p.filterRanges()
	if err != nil {
		return provision.Step{}, err
	}
	if err := want.checkLimits(); err != nil {
		return provision.Step{}, err
	}
	res := p.policyResource(e, want, ranges)
	if cur == nil {
		return provision.Step{Sym: "+", Verb: "create", Kind: "packet mirroring", Name: name, Detail: want.String(), Run: p.createPolicy(e, res)}, nil
	}
	if want.empty() {
		return provision.Step{Sym: "-", Verb: "delete", Kind: "packet mirroring", Name: name, Detail: "no sources left", Run: p.deletePolicy(e)}, nil
	}
	changes, clear := diffPolicy(e.project, cur, res, notes)
	if len(changes) == 0 {
		return keep("packet mirroring", name, want.String()), nil
	}
	detail := strings.Join(changes, ", ")
	if clear {
		del, create := p.deletePolicy(e), p.createPolicy(e, res)
		return provision.Step{Sym: "~", Verb: "replace", Kind: "packet mirroring", Name: name, Detail: detail + "; emptying a list needs a re-create",
			Run: func(ctx context.Context, out io.Writer) error {
				if err := del(ctx, out); err != nil {
					return err
				}
				return create(ctx, out)
			}}, nil
	}
	return provision.Step{Sym: "~", Verb: "patch", Kind: "packet mirroring", Name: name, Detail: detail,
		Run: func(ctx context.Context, out io.Writer) error {
			what := "patch packet mirroring " + name
			// A fresh id per patch: the same change may legitimately be made again later.
			op, err := p.api.pms.Patch(ctx, &computepb.PatchPacketMirroringRequest{Project: e.project, Region: e.region, PacketMirroring: name, PacketMirroringResource: res, RequestId: randomID()})
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			return p.wait(ctx, out, what, op)
		}}, nil
}

func (p *Provider) createPolicy(e *env, res *computepb.PacketMirroring) func(context.Context, io.Writer) error {
	name := res.GetName()
	return func(ctx context.Context, out io.Writer) error {
		return p.insert(ctx, out, "create packet mirroring "+name, requestID("insert", e.regional("packetMirrorings", name), res),
			func(rid *string) (*compute.Operation, error) {
				return p.api.pms.Insert(ctx, &computepb.InsertPacketMirroringRequest{Project: e.project, Region: e.region, PacketMirroringResource: res, RequestId: rid})
			},
			func(ctx context.Context) error {
				pm, err := p.getPolicy(ctx, e)
				if err == nil && pm == nil {
					return errGone
				}
				return err
			})
	}
}

func (p *Provider) deletePolicy(e *env) func(context.Context, io.Writer) error {
	name := e.name("pm")
	return func(ctx context.Context, out io.Writer) error {
		return p.remove(ctx, out, "delete packet mirroring "+name, func() (*compute.Operation, error) {
			return p.api.pms.Delete(ctx, &computepb.DeletePacketMirroringRequest{Project: e.project, Region: e.region, PacketMirroring: name, RequestId: randomID()})
		})
	}
}
