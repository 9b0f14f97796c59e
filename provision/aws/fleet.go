package aws

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// FleetConfig describes an Auto Scaling fleet of appliances behind the NLB. The fleet is
// named by Config.NLBName: its launch template and Auto Scaling group are metlo-fleet-<name>.
type FleetConfig struct {
	Size                int           // desired members when the group is created; 0 = no fleet
	Min, Max            int           // scaling bounds; 0 = Size and 2×Size
	ImageID             string        // AMI of the members; "" = this appliance's own AMI
	InstanceType        string        // "" = this appliance's type
	InstanceProfile     string        // IAM instance profile of the members ("" = none: members only collect)
	SecurityGroups      []string      // "" = this appliance's security groups
	Settings            []string      // METLO_KEY=VALUE lines for the members' user data (values never printed)
	CPUTarget           float64       // target tracking on ASGAverageCPUUtilization; 0 = 60
	DeregistrationDelay time.Duration // how long a leaving member keeps receiving; 0 = 120s with a fleet
	Delete              bool          // cleanup: delete the Auto Scaling group and its instances too
}

// fleetName is the name of the launch template and the Auto Scaling group.
func (e *env) fleetName() string { return "metlo-fleet-" + e.owner.value }

// withDefaults fills the fleet's defaults from this appliance where it can.
func (pl *planner) fleetDefaults(ctx context.Context) (FleetConfig, error) {
	f := pl.cfg.Fleet
	if f.Min == 0 {
		f.Min = f.Size
	}
	if f.Max == 0 {
		f.Max = max(2*f.Size, f.Min)
	}
	if f.CPUTarget == 0 {
		f.CPUTarget = 60
	}
	if f.Min > f.Size || f.Size > f.Max {
		return f, fmt.Errorf("fleet size %d must be between --aws-fleet-min %d and --aws-fleet-max %d", f.Size, f.Min, f.Max)
	}
	if f.CPUTarget <= 0 || f.CPUTarget > 100 {
		return f, fmt.Errorf("--aws-fleet-cpu-target %v: want 1-100", f.CPUTarget)
	}
	for _, s := range f.Settings {
		if k, _, ok := strings.Cut(s, "="); !ok || !strings.HasPrefix(k, "METLO_") {
			return f, fmt.Errorf("--aws-fleet-setting %q: want METLO_KEY=VALUE", strings.SplitN(s, "=", 2)[0])
		}
		if strings.HasPrefix(s, "METLO_SOURCES=") || strings.HasPrefix(s, "METLO_SOURCE=") {
			return f, fmt.Errorf("--aws-fleet-setting: members must not provision (the fleet's mirroring is set up here): drop METLO_SOURCES")
		}
	}
	if f.ImageID != "" && f.InstanceType != "" && len(f.SecurityGroups) > 0 {
		return f, nil
	}
	out, err := pl.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{pl.self.InstanceID}})
	if err != nil {
		return f, fmt.Errorf("describe this appliance (for the fleet's image, type and security groups; or pass --aws-fleet-image, --aws-fleet-instance-type, --aws-fleet-security-group): %w", err)
	}
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			if f.ImageID == "" {
				f.ImageID = awssdk.ToString(in.ImageId)
			}
			if f.InstanceType == "" {
				f.InstanceType = string(in.InstanceType)
			}
			if len(f.SecurityGroups) == 0 {
				for _, g := range in.SecurityGroups {
					f.SecurityGroups = append(f.SecurityGroups, awssdk.ToString(g.GroupId))
				}
			}
		}
	}
	if f.ImageID == "" {
		return f, fmt.Errorf("fleet image unknown: pass --aws-fleet-image ami-…")
	}
	return f, nil
}

// userData renders the members' settings as user data lines (what boot reads).
func (f FleetConfig) userData() string {
	lines := append([]string{"#!/bin/sh", "# metlo-appliance fleet member: collector settings (boot reads METLO_* lines)"}, f.Settings...)
	return base64.StdEncoding.EncodeToString([]byte(strings.Join(lines, "\n") + "\n"))
}

// planFleet plans the launch template, the Auto Scaling group across the NLB's subnets (two
// AZs at least) registered in its target group with ELB health checks, and a target-tracking
// scaling policy on CPU.
func (pl *planner) planFleet(ctx context.Context, subnets []string, healthPort int, prices provision.Prices, est *provision.Estimate) error {
	f, err := pl.fleetDefaults(ctx)
	if err != nil {
		return err
	}
	name := pl.fleetName()
	pl.fleetSGs = f.SecurityGroups
	ltID, err := pl.planLaunchTemplate(ctx, f, name)
	if err != nil {
		return err
	}
	groups, err := pl.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
	if err != nil {
		return fmt.Errorf("describe auto scaling group %s: %w", name, err)
	}
	tags := []asgtypes.Tag{}
	t := pl.tags()
	for _, k := range slices.Sorted(maps.Keys(t)) {
		tags = append(tags, asgtypes.Tag{Key: awssdk.String(k), Value: awssdk.String(t[k]), PropagateAtLaunch: awssdk.Bool(true),
			ResourceId: awssdk.String(name), ResourceType: awssdk.String("auto-scaling-group")})
	}
	zones := strings.Join(subnets, ",")
	if len(groups.AutoScalingGroups) == 0 {
		est.Add(prices, fmt.Sprintf("%d fleet members (%s)", f.Size, f.InstanceType), float64(f.Size*provision.HoursPerMonth), "aws-instance-hour")
		pl.add(provision.Step{Sym: "+", Verb: "create", Kind: "auto scaling group", Name: name,
			Detail: fmt.Sprintf("%d members (%d-%d) in %s, target group %s, ELB health checks on :%d/readyz", f.Size, f.Min, f.Max, zones, pl.nlbName(), healthPort),
			Run: func(ctx context.Context, _ io.Writer) error {
				_, err := pl.asg.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
					AutoScalingGroupName: awssdk.String(name), MinSize: awssdk.Int32(int32(f.Min)), MaxSize: awssdk.Int32(int32(f.Max)),
					DesiredCapacity:   awssdk.Int32(int32(f.Size)),
					LaunchTemplate:    &asgtypes.LaunchTemplateSpecification{LaunchTemplateName: awssdk.String(name), Version: awssdk.String("$Latest")},
					VPCZoneIdentifier: awssdk.String(zones), TargetGroupARNs: []string{pl.ids.tg},
					HealthCheckType: awssdk.String("ELB"), HealthCheckGracePeriod: awssdk.Int32(120), DefaultInstanceWarmup: awssdk.Int32(120),
					Tags: tags,
				})
				if err != nil {
					return fmt.Errorf("create auto scaling group %s: %w", name, err)
				}
				return nil
			}})
	} else {
		g := groups.AutoScalingGroups[0]
		gt := map[string]string{}
		for _, x := range g.Tags {
			gt[awssdk.ToString(x.Key)] = awssdk.ToString(x.Value)
		}
		if !pl.ours(gt) {
			return fmt.Errorf("auto scaling group %s exists but is not tagged %s: rename it or pick another --aws-nlb-name", name, pl.owner)
		}
		var changes []string
		in := &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: awssdk.String(name)}
		if int(awssdk.ToInt32(g.MinSize)) != f.Min || int(awssdk.ToInt32(g.MaxSize)) != f.Max {
			in.MinSize, in.MaxSize = awssdk.Int32(int32(f.Min)), awssdk.Int32(int32(f.Max))
			changes = append(changes, fmt.Sprintf("size %d-%d → %d-%d", awssdk.ToInt32(g.MinSize), awssdk.ToInt32(g.MaxSize), f.Min, f.Max))
			// The scaling policy owns the desired capacity; it only moves when it leaves the bounds.
			if d := int(awssdk.ToInt32(g.DesiredCapacity)); d < f.Min || d > f.Max {
				in.DesiredCapacity = awssdk.Int32(int32(min(max(d, f.Min), f.Max)))
			}
		}
		if have := strings.Split(awssdk.ToString(g.VPCZoneIdentifier), ","); !sameSet(have, subnets) {
			in.VPCZoneIdentifier = awssdk.String(zones)
			changes = append(changes, "subnets "+zones)
		}
		if lt := g.LaunchTemplate; lt == nil || awssdk.ToString(lt.LaunchTemplateId) != ltID && awssdk.ToString(lt.LaunchTemplateName) != name || awssdk.ToString(lt.Version) != "$Latest" {
			in.LaunchTemplate = &asgtypes.LaunchTemplateSpecification{LaunchTemplateName: awssdk.String(name), Version: awssdk.String("$Latest")}
			changes = append(changes, "launch template "+name+" $Latest")
		}
		if awssdk.ToString(g.HealthCheckType) != "ELB" {
			in.HealthCheckType, in.HealthCheckGracePeriod = awssdk.String("ELB"), awssdk.Int32(120)
			changes = append(changes, "ELB health checks")
		}
		if !slices.Contains(g.TargetGroupARNs, pl.ids.tg) {
			return fmt.Errorf("auto scaling group %s is not attached to target group %s: delete the group (cleanup --aws-delete-fleet) and provision again", name, pl.nlbName())
		}
		detail := fmt.Sprintf("%d members (%d-%d)", len(g.Instances), awssdk.ToInt32(g.MinSize), awssdk.ToInt32(g.MaxSize))
		if len(changes) == 0 {
			pl.add(provision.Step{Sym: "=", Verb: "keep", Kind: "auto scaling group", Name: name, Detail: detail})
		} else {
			pl.add(provision.Step{Sym: "~", Verb: "update", Kind: "auto scaling group", Name: name, Detail: strings.Join(changes, ", "),
				Run: func(ctx context.Context, _ io.Writer) error {
					if _, err := pl.asg.UpdateAutoScalingGroup(ctx, in); err != nil {
						return fmt.Errorf("update auto scaling group %s: %w", name, err)
					}
					return nil
				}})
		}
	}
	return pl.planScalingPolicy(ctx, name, f.CPUTarget, len(groups.AutoScalingGroups) > 0)
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	sort.Strings(x)
	sort.Strings(y)
	return slices.Equal(x, y)
}

// scalingPolicy is the name of the fleet's target-tracking policy.
const scalingPolicy = "metlo-cpu-target"

// planScalingPolicy keeps average CPU at the target: the collector's work (decapsulation,
// reassembly, parsing) grows with the mirrored packet and byte rates, and CPU is what runs out
// first (docs/deployment.md, sizing).
func (pl *planner) planScalingPolicy(ctx context.Context, group string, target float64, exists bool) error {
	if exists {
		out, err := pl.asg.DescribePolicies(ctx, &autoscaling.DescribePoliciesInput{AutoScalingGroupName: awssdk.String(group)})
		if err != nil {
			return fmt.Errorf("describe scaling policies of %s: %w", group, err)
		}
		for _, p := range out.ScalingPolicies {
			c := p.TargetTrackingConfiguration
			if awssdk.ToString(p.PolicyName) == scalingPolicy && c != nil && c.PredefinedMetricSpecification != nil &&
				c.PredefinedMetricSpecification.PredefinedMetricType == asgtypes.MetricTypeASGAverageCPUUtilization && awssdk.ToFloat64(c.TargetValue) == target {
				pl.add(provision.Step{Sym: "=", Verb: "keep", Kind: "scaling policy", Name: scalingPolicy, Detail: fmt.Sprintf("average CPU %.0f%%", target)})
				return nil
			}
		}
	}
	verb, sym := "create", "+"
	if exists {
		verb, sym = "set", "~"
	}
	pl.add(provision.Step{Sym: sym, Verb: verb, Kind: "scaling policy", Name: scalingPolicy, Detail: fmt.Sprintf("target tracking: average CPU %.0f%% (ASGAverageCPUUtilization)", target),
		Run: func(ctx context.Context, _ io.Writer) error {
			_, err := pl.asg.PutScalingPolicy(ctx, &autoscaling.PutScalingPolicyInput{
				AutoScalingGroupName: awssdk.String(group), PolicyName: awssdk.String(scalingPolicy), PolicyType: awssdk.String("TargetTrackingScaling"),
				TargetTrackingConfiguration: &asgtypes.TargetTrackingConfiguration{TargetValue: awssdk.Float64(target),
					PredefinedMetricSpecification: &asgtypes.PredefinedMetricSpecification{PredefinedMetricType: asgtypes.MetricTypeASGAverageCPUUtilization}},
			})
			if err != nil {
				return fmt.Errorf("put scaling policy on %s: %w", group, err)
			}
			return nil
		}})
	return nil
}

// planLaunchTemplate creates the members' launch template, or a new version when the image,
// type, security groups, profile or settings changed (the group uses $Latest: members launched
// from now on get it; running ones keep theirs until they are replaced).
func (pl *planner) planLaunchTemplate(ctx context.Context, f FleetConfig, name string) (string, error) {
	data := &ec2types.RequestLaunchTemplateData{
		ImageId: awssdk.String(f.ImageID), InstanceType: ec2types.InstanceType(f.InstanceType), SecurityGroupIds: f.SecurityGroups,
		UserData: awssdk.String(f.userData()),
		MetadataOptions: &ec2types.LaunchTemplateInstanceMetadataOptionsRequest{HttpTokens: ec2types.LaunchTemplateHttpTokensStateRequired,
			InstanceMetadataTags: ec2types.LaunchTemplateInstanceMetadataTagsStateEnabled},
	}
	if f.InstanceProfile != "" {
		data.IamInstanceProfile = &ec2types.LaunchTemplateIamInstanceProfileSpecificationRequest{Name: awssdk.String(f.InstanceProfile)}
	}
	detail := fmt.Sprintf("%s, %s, security groups %s, %d settings", f.ImageID, f.InstanceType, strings.Join(f.SecurityGroups, ","), len(f.Settings))
	out, err := pl.ec2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{LaunchTemplateNames: []string{name}})
	if err != nil && !strings.Contains(apiCode(err), "NotFound") {
		return "", fmt.Errorf("describe launch template %s: %w", name, err)
	}
	if err != nil || len(out.LaunchTemplates) == 0 {
		pl.add(provision.Step{Sym: "+", Verb: "create", Kind: "launch template", Name: name, Detail: detail,
			Check: func(ctx context.Context) *provision.Problem {
				return pl.dryCheck("ec2:CreateLaunchTemplate", func() error {
					_, err := pl.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: awssdk.String(name), LaunchTemplateData: data, DryRun: awssdk.Bool(true),
						TagSpecifications: ec2TagSpec(ec2types.ResourceTypeLaunchTemplate, pl.tags())})
					return err
				})
			},
			Run: func(ctx context.Context, _ io.Writer) error {
				_, err := pl.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: awssdk.String(name), LaunchTemplateData: data,
					ClientToken: awssdk.String(pl.clientToken(0, "lt", name)), TagSpecifications: ec2TagSpec(ec2types.ResourceTypeLaunchTemplate, pl.tags())})
				if err != nil {
					return fmt.Errorf("create launch template %s: %w", name, err)
				}
				return nil
			}})
		return "", nil
	}
	lt := out.LaunchTemplates[0]
	if !pl.ours(ec2Tags(lt.Tags)) {
		return "", fmt.Errorf("launch template %s exists but is not tagged %s: rename it or pick another --aws-nlb-name", name, pl.owner)
	}
	id := awssdk.ToString(lt.LaunchTemplateId)
	vs, err := pl.ec2.DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{LaunchTemplateId: &id, Versions: []string{"$Latest"}})
	if err != nil {
		return "", fmt.Errorf("describe launch template %s: %w", name, err)
	}
	var changes []string
	if len(vs.LaunchTemplateVersions) > 0 {
		cur := vs.LaunchTemplateVersions[0].LaunchTemplateData
		if awssdk.ToString(cur.ImageId) != f.ImageID {
			changes = append(changes, "image "+awssdk.ToString(cur.ImageId)+" → "+f.ImageID)
		}
		if string(cur.InstanceType) != f.InstanceType {
			changes = append(changes, "type "+string(cur.InstanceType)+" → "+f.InstanceType)
		}
		if !sameSet(cur.SecurityGroupIds, f.SecurityGroups) {
			changes = append(changes, "security groups")
		}
		profile := ""
		if cur.IamInstanceProfile != nil {
			profile = awssdk.ToString(cur.IamInstanceProfile.Name)
		}
		if profile != f.InstanceProfile {
			changes = append(changes, "instance profile")
		}
		if awssdk.ToString(cur.UserData) != f.userData() {
			changes = append(changes, "settings")
		}
	}
	if len(changes) == 0 {
		pl.add(provision.Step{Sym: "=", Verb: "keep", Kind: "launch template", Name: name, Detail: detail})
		return id, nil
	}
	pl.add(provision.Step{Sym: "~", Verb: "add version to", Kind: "launch template", Name: name, Detail: strings.Join(changes, ", ") + " (members launched from now on)",
		Run: func(ctx context.Context, _ io.Writer) error {
			_, err := pl.ec2.CreateLaunchTemplateVersion(ctx, &ec2.CreateLaunchTemplateVersionInput{LaunchTemplateId: &id, LaunchTemplateData: data})
			if err != nil {
				return fmt.Errorf("add a version to launch template %s: %w", name, err)
			}
			return nil
		}})
	return id, nil
}

// fleetGroup returns the fleet's Auto Scaling group, or nil.
func (e *env) fleetGroup(ctx context.Context) (*asgtypes.AutoScalingGroup, error) {
	if !e.fleet() {
		return nil, nil
	}
	out, err := e.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{e.fleetName()}})
	if err != nil {
		return nil, fmt.Errorf("describe auto scaling group %s: %w", e.fleetName(), err)
	}
	for _, g := range out.AutoScalingGroups {
		tags := map[string]string{}
		for _, t := range g.Tags {
			tags[awssdk.ToString(t.Key)] = awssdk.ToString(t.Value)
		}
		if e.ours(tags) {
			return &g, nil
		}
	}
	return nil, nil
}

// fleetMembers counts the fleet's Auto Scaling members other than this appliance.
func (pl *planner) fleetMembers(ctx context.Context) (int, error) {
	g, err := pl.fleetGroup(ctx)
	if err != nil || g == nil {
		return 0, err
	}
	n := 0
	for _, in := range g.Instances {
		if awssdk.ToString(in.InstanceId) != pl.self.InstanceID {
			n++
		}
	}
	if n > 0 && pl.cfg.Fleet.Delete {
		return 0, nil // the group goes with the rest
	}
	return n, nil
}

// planFleetCleanup deletes the fleet's Auto Scaling group (and so its members) first, when
// the whole fleet is going.
func (pl *planner) planFleetCleanup(ctx context.Context, del func(kind, id string, f func(context.Context) error)) error {
	g, err := pl.fleetGroup(ctx)
	if err != nil || g == nil {
		return err
	}
	name := awssdk.ToString(g.AutoScalingGroupName)
	del("auto scaling group", name+fmt.Sprintf(" (and its %d members)", len(g.Instances)), func(ctx context.Context) error {
		_, err := pl.asg.DeleteAutoScalingGroup(ctx, &autoscaling.DeleteAutoScalingGroupInput{AutoScalingGroupName: &name, ForceDelete: awssdk.Bool(true)})
		if err != nil && strings.Contains(err.Error(), "not found") {
			return nil
		}
		return err
	})
	return nil
}

// planLaunchTemplateCleanup deletes the fleet's launch template (after its group).
func (pl *planner) planLaunchTemplateCleanup(ctx context.Context, del func(kind, id string, f func(context.Context) error)) error {
	if !pl.fleet() {
		return nil
	}
	out, err := pl.ec2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{LaunchTemplateNames: []string{pl.fleetName()}})
	if err != nil {
		if strings.Contains(apiCode(err), "NotFound") {
			return nil
		}
		return fmt.Errorf("describe launch template: %w", err)
	}
	for _, lt := range out.LaunchTemplates {
		if id := awssdk.ToString(lt.LaunchTemplateId); pl.ours(ec2Tags(lt.Tags)) {
			del("launch template", awssdk.ToString(lt.LaunchTemplateName), func(ctx context.Context) error {
				_, err := pl.ec2.DeleteLaunchTemplate(ctx, &ec2.DeleteLaunchTemplateInput{LaunchTemplateId: &id})
				return err
			})
		}
	}
	return nil
}

// listFleet prints the fleet's group, members and scaling, after the sessions.
func (e *env) listFleet(ctx context.Context) error {
	g, err := e.fleetGroup(ctx)
	if err != nil || g == nil {
		return err
	}
	fmt.Fprintf(e.out, "aws: fleet %s: auto scaling group %s, %d members (desired %d, %d-%d) in %s\n", e.owner.value, awssdk.ToString(g.AutoScalingGroupName),
		len(g.Instances), awssdk.ToInt32(g.DesiredCapacity), awssdk.ToInt32(g.MinSize), awssdk.ToInt32(g.MaxSize), strings.Join(g.AvailabilityZones, ","))
	for _, in := range g.Instances {
		fmt.Fprintf(e.out, "  member %s  %s  %s  %s\n", awssdk.ToString(in.InstanceId), awssdk.ToString(in.AvailabilityZone), in.LifecycleState, awssdk.ToString(in.HealthStatus))
	}
	pol, err := e.asg.DescribePolicies(ctx, &autoscaling.DescribePoliciesInput{AutoScalingGroupName: g.AutoScalingGroupName})
	if err != nil {
		return fmt.Errorf("describe scaling policies: %w", err)
	}
	for _, p := range pol.ScalingPolicies {
		if c := p.TargetTrackingConfiguration; c != nil && c.PredefinedMetricSpecification != nil {
			fmt.Fprintf(e.out, "  scaling: %s target %s\n", c.PredefinedMetricSpecification.PredefinedMetricType, strconv.FormatFloat(awssdk.ToFloat64(c.TargetValue), 'f', -1, 64))
		}
	}
	return nil
}
