package aws

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// maxSessionsPerENI is AWS's limit of mirror sessions per source ENI.
const maxSessionsPerENI = 3

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

// freeSessionNumber picks a number above every existing session on the ENI, so sessions
// someone else created keep their precedence (lower numbers win); else the lowest free one.
func freeSessionNumber(used []int) int {
	top := 0
	for _, n := range used {
		top = max(top, n)
	}
	if top < 32766 {
		return top + 1
	}
	for n := 1; n <= 32766; n++ {
		if !slices.Contains(used, n) {
			return n
		}
	}
	return 0
}

// reconcileSessions creates a session for every mirrorable source ENI that has none to our
// target and deletes this appliance's sessions whose source is no longer wanted.
func (r *run) reconcileSessions(ctx context.Context, targetID, filterID string, res resolution) error {
	all, err := r.listSessions(ctx)
	if err != nil {
		return err
	}
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
	// Remove first: it frees session slots on ENIs that move to another target.
	for _, s := range all {
		tags := ec2Tags(s.Tags)
		if !r.ours(tags) {
			continue
		}
		id, eni := awssdk.ToString(s.TrafficMirrorSessionId), awssdk.ToString(s.NetworkInterfaceId)
		stale := awssdk.ToString(s.TrafficMirrorTargetId) != targetID || awssdk.ToString(s.TrafficMirrorFilterId) != filterID ||
			int(awssdk.ToInt32(s.VirtualNetworkId)) != r.vni
		if wanted[eni] && !stale {
			continue
		}
		if err, failed := res.failed[tags[TagSource]]; failed && !wanted[eni] {
			fmt.Fprintf(r.out, "  ! keep session %s (%s): source %s could not be resolved: %s\n", id, eni, tags[TagSource], apiMessage(err))
			r.kept++
			continue
		}
		why := "source gone"
		if wanted[eni] {
			why = "target, filter or VNI changed"
		}
		r.say("-", "delete", "traffic mirror session %s (%s ← %s, %s)", id, eni, tags[TagOwner], why)
		if r.dry {
			r.checkPerm("ec2:DeleteTrafficMirrorSession", func() error {
				_, err := r.ec2.DeleteTrafficMirrorSession(ctx, &ec2.DeleteTrafficMirrorSessionInput{TrafficMirrorSessionId: s.TrafficMirrorSessionId, DryRun: awssdk.Bool(true)})
				return err
			})
		} else if _, err := r.ec2.DeleteTrafficMirrorSession(ctx, &ec2.DeleteTrafficMirrorSessionInput{TrafficMirrorSessionId: s.TrafficMirrorSessionId}); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete traffic mirror session %s: %w", id, err)
		}
		r.removed++
		byENI[eni] = slices.DeleteFunc(byENI[eni], func(x ec2types.TrafficMirrorSession) bool { return awssdk.ToString(x.TrafficMirrorSessionId) == id })
	}
	for spec, err := range res.failed {
		fmt.Fprintf(r.out, "  ! skip %s (could not be resolved, its sessions are kept: %s)\n", spec, apiMessage(err))
		r.skipped++
	}
	seen := map[string]bool{}
	for _, src := range res.enis {
		if src.Skip != "" {
			what := src.ENI
			if what == "" {
				what = src.Owner
			} else {
				what += " (" + src.Owner + ")"
			}
			fmt.Fprintf(r.out, "  ! skip %s: %s\n", what, src.Skip)
			r.skipped++
			continue
		}
		if seen[src.ENI] {
			continue
		}
		seen[src.ENI] = true
		if err := r.ensureSession(ctx, src, targetID, filterID, byENI[src.ENI]); err != nil {
			return err
		}
	}
	return nil
}

func (r *run) ensureSession(ctx context.Context, src sourceENI, targetID, filterID string, existing []ec2types.TrafficMirrorSession) error {
	var used []int
	for _, s := range existing {
		if awssdk.ToString(s.TrafficMirrorTargetId) == targetID {
			r.say("=", "keep", "traffic mirror session %s (%s ← %s)", awssdk.ToString(s.TrafficMirrorSessionId), src.ENI, src.Owner)
			r.kept++
			return nil
		}
		used = append(used, int(awssdk.ToInt32(s.SessionNumber)))
	}
	if len(existing) >= maxSessionsPerENI {
		fmt.Fprintf(r.out, "  ! skip %s (%s): already has %d mirror sessions, the AWS limit\n", src.ENI, src.Owner, len(existing))
		r.skipped++
		return nil
	}
	num := freeSessionNumber(used)
	in := &ec2.CreateTrafficMirrorSessionInput{
		NetworkInterfaceId: awssdk.String(src.ENI), TrafficMirrorTargetId: awssdk.String(targetID),
		TrafficMirrorFilterId: awssdk.String(filterID), SessionNumber: awssdk.Int32(int32(num)),
		VirtualNetworkId: awssdk.Int32(int32(r.vni)), Description: awssdk.String("metlo-appliance: " + src.Owner),
		TagSpecifications: ec2TagSpec(ec2types.ResourceTypeTrafficMirrorSession,
			r.tags("Name", "metlo "+src.Owner, TagSource, src.Spec, TagOwner, src.Owner)),
	}
	if r.cfg.PacketLength > 0 {
		in.PacketLength = awssdk.Int32(int32(r.cfg.PacketLength))
	}
	if r.dry {
		r.say("+", "create", "traffic mirror session %s ← %s (session %d, VNI %d)", src.ENI, src.Owner, num, r.vni)
		r.checkPerm("ec2:CreateTrafficMirrorSession", func() error {
			c := *in
			c.DryRun = awssdk.Bool(true)
			_, err := r.ec2.CreateTrafficMirrorSession(ctx, &c)
			return err
		})
		r.created++
		return nil
	}
	id, err := r.createVerified(ctx, "traffic mirror session", func(token string) (string, error) {
		c := *in
		c.ClientToken = awssdk.String(token)
		out, err := r.ec2.CreateTrafficMirrorSession(ctx, &c)
		if err != nil {
			return "", err
		}
		return awssdk.ToString(out.TrafficMirrorSession.TrafficMirrorSessionId), nil
	}, func(id string) (bool, error) {
		_, err := r.ec2.DescribeTrafficMirrorSessions(ctx, &ec2.DescribeTrafficMirrorSessionsInput{TrafficMirrorSessionIds: []string{id}})
		return err == nil, notFoundIsNil(err)
	}, "session", src.ENI, targetID, filterID, strconv.Itoa(num), strconv.Itoa(r.vni))
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		fmt.Fprintf(r.out, "  ! skip %s (%s): %s\n", src.ENI, src.Owner, apiMessage(err))
		r.skipped++
		r.log.Warn("mirror session not created", "eni", src.ENI, "source", src.Spec, "err", err)
		return nil
	}
	r.say("+", "create", "traffic mirror session %s (%s ← %s, session %d, VNI %d)", id, src.ENI, src.Owner, num, r.vni)
	r.log.Info("mirror session created", "session", id, "eni", src.ENI, "source", src.Spec)
	r.created++
	return nil
}
