package aws

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// maxSessionsPerENI is AWS's limit of mirror sessions per source ENI.
const maxSessionsPerENI = 3

// nlbDefaultPacketLength is what AWS records for a session to an NLB target without one.
const nlbDefaultPacketLength = 8500

func (e *env) listSessions(ctx context.Context) ([]ec2types.TrafficMirrorSession, error) {
	var out []ec2types.TrafficMirrorSession
	pg := ec2.NewDescribeTrafficMirrorSessionsPaginator(e.ec2, &ec2.DescribeTrafficMirrorSessionsInput{})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describe traffic mirror sessions: %w", err)
		}
		out = append(out, page.TrafficMirrorSessions...)
	}
	sort.Slice(out, func(i, j int) bool {
		return awssdk.ToString(out[i].TrafficMirrorSessionId) < awssdk.ToString(out[j].TrafficMirrorSessionId)
	})
	return out, nil
}

// sessionMode is how our session's number is chosen among others on the same ENI.
type sessionMode struct {
	first bool // take a number below every other session, so ours is evaluated first
	fixed int  // use exactly this number
}

func parseSessionNumber(s string) (sessionMode, error) {
	switch s {
	case "", "last", "after":
		return sessionMode{}, nil
	case "first":
		return sessionMode{first: true}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 32766 {
		return sessionMode{}, fmt.Errorf("--aws-session-number %q: want first, last or a number 1-32766", s)
	}
	return sessionMode{fixed: n}, nil
}

// pickNumber chooses our session number among the numbers others use on the ENI; 0 = none fits.
func (m sessionMode) pickNumber(used []int) int {
	switch {
	case m.fixed > 0:
		if slices.Contains(used, m.fixed) {
			return 0
		}
		return m.fixed
	case m.first:
		low := 32767
		for _, n := range used {
			low = min(low, n)
		}
		for n := low - 1; n >= 1; n-- {
			if !slices.Contains(used, n) {
				return n
			}
		}
		return 0
	}
	top := 0
	for _, n := range used {
		top = max(top, n)
	}
	if top < 32766 {
		return top + 1
	}
	return 0
}

// filterRules maps filter id → its rules, for evaluating other sessions on a source.
func filterRules(filters []ec2types.TrafficMirrorFilter) map[string][]Rule {
	m := map[string][]Rule{}
	for _, f := range filters {
		var rs []Rule
		for _, r := range append(append([]ec2types.TrafficMirrorFilterRule{}, f.IngressFilterRules...), f.EgressFilterRules...) {
			rs = append(rs, ruleFromAPI(r))
		}
		m[awssdk.ToString(f.TrafficMirrorFilterId)] = rs
	}
	return m
}

// precedence looks at the sessions AWS evaluates before ours on one ENI (lower numbers): AWS
// mirrors each packet once, to the first session whose filter accepts it. It returns why the
// ENI would get nothing (a session ahead takes everything ours accepts), or warnings.
func precedence(ahead []ec2types.TrafficMirrorSession, rules map[string][]Rule, ours []Rule) (blocked string, warnings []string) {
	sort.Slice(ahead, func(i, j int) bool {
		return awssdk.ToInt32(ahead[i].SessionNumber) < awssdk.ToInt32(ahead[j].SessionNumber)
	})
	for _, s := range ahead {
		theirs, known := rules[awssdk.ToString(s.TrafficMirrorFilterId)]
		id, n := awssdk.ToString(s.TrafficMirrorSessionId), awssdk.ToInt32(s.SessionNumber)
		if !known {
			warnings = append(warnings, fmt.Sprintf("session %s (number %d) is evaluated before ours and its filter %s cannot be read: it may take some or all of the traffic",
				id, n, awssdk.ToString(s.TrafficMirrorFilterId)))
			continue
		}
		share, example := shadow(theirs, ours)
		switch {
		case share >= 1:
			return fmt.Sprintf("session %s (number %d, filter %s) is evaluated first and accepts every packet ours would: AWS mirrors each packet once, so this appliance would get nothing. Pass --aws-session-number first (or a number below %d) to take precedence, or remove that session",
				id, n, awssdk.ToString(s.TrafficMirrorFilterId), n), warnings
		case share > 0:
			warnings = append(warnings, fmt.Sprintf("session %s (number %d) is evaluated first and takes %.0f%% of what ours accepts (e.g. %s): that part never reaches this appliance; --aws-session-number first changes the order",
				id, n, share*100, example))
		}
	}
	return "", warnings
}

// planSessions plans one session per mirrorable source ENI to our target, changes to our
// sessions whose settings drifted, and the deletion of ours whose source is no longer wanted.
func (pl *planner) planSessions(ctx context.Context, kind string, res resolution, filters []ec2types.TrafficMirrorFilter, ourRules []Rule, prices provision.Prices, est *provision.Estimate) error {
	all, err := pl.listSessions(ctx)
	if err != nil {
		return err
	}
	mode, _ := parseSessionNumber(pl.cfg.SessionNumber)
	rules := filterRules(filters)
	byENI := map[string][]ec2types.TrafficMirrorSession{}
	for _, s := range all {
		eni := awssdk.ToString(s.NetworkInterfaceId)
		byENI[eni] = append(byENI[eni], s)
	}
	wanted := map[string]bool{}
	for _, src := range res.enis {
		if src.ENI != "" && src.Skip == "" {
			wanted[src.ENI] = true
		}
	}
	// Sessions of ours whose source is no longer wanted go first: that frees session slots.
	keepFor := map[string]ec2types.TrafficMirrorSession{}
	for _, s := range all {
		tags := ec2Tags(s.Tags)
		if !pl.ours(tags) {
			continue
		}
		id, eni := awssdk.ToString(s.TrafficMirrorSessionId), awssdk.ToString(s.NetworkInterfaceId)
		if wanted[eni] {
			if _, dup := keepFor[eni]; !dup {
				keepFor[eni] = s
				continue
			}
		}
		if err, failed := res.failed[tags[TagSource]]; failed && !wanted[eni] {
			pl.warn("keep session %s (%s): source %s could not be resolved: %s", id, eni, tags[TagSource], apiMessage(err))
			pl.sessions.kept++
			continue
		}
		why := "source no longer wanted or gone"
		if wanted[eni] {
			why = "duplicate"
		}
		pl.planDeleteSession(s, why)
		byENI[eni] = slices.DeleteFunc(byENI[eni], func(x ec2types.TrafficMirrorSession) bool { return awssdk.ToString(x.TrafficMirrorSessionId) == id })
	}
	for _, spec := range slices.Sorted(maps.Keys(res.failed)) {
		pl.miss(spec, "", "could not be resolved (its sessions are kept): "+apiMessage(res.failed[spec]), false)
	}
	seen := map[string]bool{}
	newSessions := 0
	for _, src := range res.enis {
		if src.Skip != "" {
			what := src.ENI
			if what == "" {
				what = src.Owner
			} else {
				what += " (" + src.Owner + ")"
			}
			pl.miss(src.Spec, what, src.Skip, src.Permanent)
			continue
		}
		if seen[src.ENI] {
			continue
		}
		seen[src.ENI] = true
		if created := pl.planSession(src, kind, mode, byENI[src.ENI], keepFor, rules, ourRules); created {
			newSessions++
		}
	}
	est.Add(prices, fmt.Sprintf("mirror sessions on %d more ENIs", newSessions), float64(newSessions*provision.HoursPerMonth), "aws-mirror-session-hour")
	return nil
}

func (pl *planner) planDeleteSession(s ec2types.TrafficMirrorSession, why string) {
	id, eni := s.TrafficMirrorSessionId, awssdk.ToString(s.NetworkInterfaceId)
	pl.add(provision.Step{Sym: "-", Verb: "delete", Kind: "traffic mirror session", Name: awssdk.ToString(id),
		Detail: fmt.Sprintf("%s ← %s, %s", eni, ec2Tags(s.Tags)[TagOwner], why),
		Check: func(ctx context.Context) *provision.Problem {
			return pl.dryCheck("ec2:DeleteTrafficMirrorSession", func() error {
				_, err := pl.ec2.DeleteTrafficMirrorSession(ctx, &ec2.DeleteTrafficMirrorSessionInput{TrafficMirrorSessionId: id, DryRun: awssdk.Bool(true)})
				return err
			})
		},
		Run: func(ctx context.Context, _ io.Writer) error {
			if _, err := pl.ec2.DeleteTrafficMirrorSession(ctx, &ec2.DeleteTrafficMirrorSessionInput{TrafficMirrorSessionId: id}); err != nil && !isNotFound(err) {
				return fmt.Errorf("delete traffic mirror session %s: %w", awssdk.ToString(id), err)
			}
			pl.sessions.removed++
			return nil
		}})
}

// planSession plans the session of one source ENI; it reports whether a new one is created.
func (pl *planner) planSession(src sourceENI, kind string, mode sessionMode, onENI []ec2types.TrafficMirrorSession,
	keepFor map[string]ec2types.TrafficMirrorSession, rules map[string][]Rule, ourRules []Rule) bool {
	mine, have := keepFor[src.ENI]
	var others []ec2types.TrafficMirrorSession
	var used []int
	for _, s := range onENI {
		if have && awssdk.ToString(s.TrafficMirrorSessionId) == awssdk.ToString(mine.TrafficMirrorSessionId) {
			continue
		}
		if !have && awssdk.ToString(s.TrafficMirrorTargetId) == pl.ids.target && pl.ids.target != placeholderTarget {
			// Someone already mirrors this ENI to us: leave it alone.
			pl.add(provision.Step{Sym: "=", Verb: "keep", Kind: "traffic mirror session", Name: awssdk.ToString(s.TrafficMirrorSessionId),
				Detail: src.ENI + " ← " + src.Owner + ", not created by metlo-appliance"})
			pl.sessions.kept++
			return false
		}
		others = append(others, s)
		used = append(used, int(awssdk.ToInt32(s.SessionNumber)))
	}
	what := src.ENI + " ← " + src.Owner
	num := 0
	if have {
		num = int(awssdk.ToInt32(mine.SessionNumber))
		if mode.fixed > 0 && mode.fixed != num || mode.first && slices.ContainsFunc(used, func(n int) bool { return n < num }) {
			if n := mode.pickNumber(used); n > 0 {
				num = n
			}
		}
	} else {
		if len(onENI) >= maxSessionsPerENI {
			pl.miss(src.Spec, what, fmt.Sprintf("already has %d mirror sessions, the AWS limit", len(onENI)), false)
			return false
		}
		if num = mode.pickNumber(used); num == 0 {
			pl.miss(src.Spec, what, fmt.Sprintf("no session number fits --aws-session-number %q among the ones in use (%v)", pl.cfg.SessionNumber, used), false)
			return false
		}
	}
	var ahead []ec2types.TrafficMirrorSession
	for _, s := range others {
		if int(awssdk.ToInt32(s.SessionNumber)) < num {
			ahead = append(ahead, s)
		}
	}
	blocked, warnings := precedence(ahead, rules, ourRules)
	for _, w := range warnings {
		pl.warn("%s: %s", src.ENI, w)
	}
	if blocked != "" {
		pl.miss(src.Spec, what, blocked, false)
		if !have {
			return false
		}
	}
	if have {
		pl.planModifySession(mine, src, kind, num)
		return false
	}
	in := &ec2.CreateTrafficMirrorSessionInput{
		NetworkInterfaceId: awssdk.String(src.ENI), SessionNumber: awssdk.Int32(int32(num)),
		VirtualNetworkId: awssdk.Int32(int32(pl.vni)), Description: awssdk.String("metlo-appliance: " + src.Owner),
		TagSpecifications: ec2TagSpec(ec2types.ResourceTypeTrafficMirrorSession,
			pl.tags("Name", "metlo "+src.Owner, TagSource, src.Spec, TagOwner, src.Owner)),
	}
	if pl.cfg.PacketLength > 0 {
		in.PacketLength = awssdk.Int32(int32(pl.cfg.PacketLength))
	}
	withIDs := func() *ec2.CreateTrafficMirrorSessionInput {
		c := *in
		c.TrafficMirrorTargetId, c.TrafficMirrorFilterId = awssdk.String(pl.ids.target), awssdk.String(pl.ids.filter)
		return &c
	}
	pl.add(provision.Step{Sym: "+", Verb: "create", Kind: "traffic mirror session", Name: src.ENI, Source: src.Spec,
		Detail: fmt.Sprintf("← %s, session %d, VNI %d", src.Owner, num, pl.vni),
		Check: func(ctx context.Context) *provision.Problem {
			return pl.dryCheck("ec2:CreateTrafficMirrorSession", func() error {
				c := withIDs()
				c.DryRun = awssdk.Bool(true)
				_, err := pl.ec2.CreateTrafficMirrorSession(ctx, c)
				return err
			})
		},
		Run: func(ctx context.Context, out io.Writer) error {
			c := withIDs()
			id, err := pl.createVerified(ctx, "traffic mirror session", func(token string) (string, error) {
				c.ClientToken = awssdk.String(token)
				out, err := pl.ec2.CreateTrafficMirrorSession(ctx, c)
				if err != nil {
					return "", err
				}
				return awssdk.ToString(out.TrafficMirrorSession.TrafficMirrorSessionId), nil
			}, func(id string) (bool, error) {
				_, err := pl.ec2.DescribeTrafficMirrorSessions(ctx, &ec2.DescribeTrafficMirrorSessionsInput{TrafficMirrorSessionIds: []string{id}})
				return err == nil, notFoundIsNil(err)
			}, func(ctx context.Context) (string, error) {
				ss, err := pl.listSessions(ctx)
				for _, s := range ss {
					if pl.ours(ec2Tags(s.Tags)) && awssdk.ToString(s.NetworkInterfaceId) == src.ENI {
						return awssdk.ToString(s.TrafficMirrorSessionId), err
					}
				}
				return "", err
			}, "session", src.ENI, pl.ids.target, pl.ids.filter, strconv.Itoa(num), strconv.Itoa(pl.vni))
			if err != nil {
				pl.log.Warn("mirror session not created", "eni", src.ENI, "source", src.Spec, "err", err)
				return fmt.Errorf("create traffic mirror session on %s: %s", src.ENI, apiMessage(err))
			}
			fmt.Fprintf(out, "    created %s\n", id)
			pl.log.Info("mirror session created", "session", id, "eni", src.ENI, "source", src.Spec)
			pl.sessions.created++
			return nil
		}})
	return true
}

// planModifySession converges an existing session of ours in place (target, filter, VNI,
// packet length, number): ModifyTrafficMirrorSession keeps the mirror running, where a
// delete and re-create would leave a gap.
func (pl *planner) planModifySession(s ec2types.TrafficMirrorSession, src sourceENI, kind string, num int) {
	id := s.TrafficMirrorSessionId
	in := &ec2.ModifyTrafficMirrorSessionInput{TrafficMirrorSessionId: id}
	var changes []string
	if awssdk.ToString(s.TrafficMirrorTargetId) != pl.ids.target {
		changes = append(changes, "target "+pl.ids.target)
	}
	if awssdk.ToString(s.TrafficMirrorFilterId) != pl.ids.filter {
		changes = append(changes, "filter "+pl.ids.filter)
	}
	if int(awssdk.ToInt32(s.VirtualNetworkId)) != pl.vni {
		in.VirtualNetworkId = awssdk.Int32(int32(pl.vni))
		changes = append(changes, fmt.Sprintf("VNI %d → %d", awssdk.ToInt32(s.VirtualNetworkId), pl.vni))
	}
	if int(awssdk.ToInt32(s.SessionNumber)) != num {
		in.SessionNumber = awssdk.Int32(int32(num))
		changes = append(changes, fmt.Sprintf("session number %d → %d", awssdk.ToInt32(s.SessionNumber), num))
	}
	have, want := int(awssdk.ToInt32(s.PacketLength)), pl.cfg.PacketLength
	if kind == "nlb" && want == 0 && have == nlbDefaultPacketLength {
		have = 0
	}
	if have != want {
		if want == 0 {
			in.RemoveFields = []ec2types.TrafficMirrorSessionField{ec2types.TrafficMirrorSessionFieldPacketLength}
			changes = append(changes, fmt.Sprintf("packet length %d → whole packets", have))
		} else {
			in.PacketLength = awssdk.Int32(int32(want))
			changes = append(changes, fmt.Sprintf("packet length %s → %d", packetLength(have), want))
		}
	}
	name := awssdk.ToString(id)
	if len(changes) == 0 {
		pl.add(provision.Step{Sym: "=", Verb: "keep", Kind: "traffic mirror session", Name: name, Detail: src.ENI + " ← " + src.Owner})
		pl.sessions.kept++
		return
	}
	pl.add(provision.Step{Sym: "~", Verb: "change", Kind: "traffic mirror session", Name: name, Source: src.Spec,
		Detail: src.ENI + " ← " + src.Owner + ": " + strings.Join(changes, ", "),
		Check: func(ctx context.Context) *provision.Problem {
			return pl.dryCheck("ec2:ModifyTrafficMirrorSession", func() error {
				c := *in
				c.DryRun = awssdk.Bool(true)
				_, err := pl.ec2.ModifyTrafficMirrorSession(ctx, &c)
				return err
			})
		},
		Run: func(ctx context.Context, _ io.Writer) error {
			c := *in
			if awssdk.ToString(s.TrafficMirrorTargetId) != pl.ids.target {
				c.TrafficMirrorTargetId = awssdk.String(pl.ids.target)
			}
			if awssdk.ToString(s.TrafficMirrorFilterId) != pl.ids.filter {
				c.TrafficMirrorFilterId = awssdk.String(pl.ids.filter)
			}
			if _, err := pl.ec2.ModifyTrafficMirrorSession(ctx, &c); err != nil {
				return fmt.Errorf("change traffic mirror session %s: %s", name, apiMessage(err))
			}
			pl.sessions.changed++
			return nil
		}})
}

func packetLength(n int) string {
	if n == 0 {
		return "whole packets"
	}
	return strconv.Itoa(n)
}
