package aws

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// sourceENI is one network interface a source resolved to.
type sourceENI struct {
	ENI       string // "" when the source has no mirrorable ENI at all
	Spec      string // the KIND:VALUE that asked for it
	Owner     string // what the ENI belongs to, for humans
	Skip      string // why it cannot be mirrored; "" = mirror it
	Permanent bool   // the skip reason will not go away by itself

	instance string // attached instance id, if any
	itype    string // instance type of that instance
	ip       string // primary private IPv4 (the outer source of its mirrored packets)
	subnet   string
	vpc      string
	groups   []string // security groups of the ENI
}

// resolution is what every source resolved to in one pass.
type resolution struct {
	enis   []sourceENI
	failed map[string]error // specs that could not be looked up: their sessions are kept
}

// errALB explains why alb: sources cannot work.
const errALB = "load balancer interfaces are requester-managed by Elastic Load Balancing, and AWS accepts " +
	"requester-managed interfaces as mirror sources only when RDS or ElastiCache created them: mirror the ALB's " +
	"targets instead (tag:…, ecs:…, instance:…)"

// parseSources parses raw KIND:VALUE strings with AWS's kinds.
func parseSources(raw []string) ([]provision.Source, error) {
	var out []provision.Source
	var errs []error
	for _, s := range raw {
		src, err := provision.ParseSource(strings.TrimSpace(s), SourceKinds...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, src)
	}
	return out, errors.Join(errs...)
}

// resolve turns sources into ENIs and decides which can be mirrored; a source whose lookup
// fails is recorded and the others continue.
func (e *env) resolve(ctx context.Context, srcs []provision.Source) resolution {
	res := resolution{failed: map[string]error{}}
	for _, s := range srcs {
		var (
			enis []sourceENI
			err  error
		)
		switch s.Kind {
		case "instance":
			enis, err = e.instanceENIs(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{s.Value}})
		case "tag":
			k, v, ok := strings.Cut(s.Value, "=")
			if !ok || k == "" {
				enis = []sourceENI{{Owner: s.String(), Skip: "want tag:Key=Value", Permanent: true}}
				break
			}
			enis, err = e.instanceENIs(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
				{Name: awssdk.String("tag:" + k), Values: []string{v}},
				{Name: awssdk.String("instance-state-name"), Values: []string{"running"}},
			}})
		case "eni":
			enis = []sourceENI{{ENI: s.Value, Owner: s.Value}}
		case "ecs":
			enis, err = e.ecsENIs(ctx, s.Value)
		case "alb":
			enis = []sourceENI{{Owner: s.String(), Skip: errALB, Permanent: true}}
		}
		if err != nil && !isNotFound(err) {
			res.failed[s.String()] = err
			continue
		}
		if len(enis) == 0 {
			why := "matches nothing"
			if err != nil {
				why = "not found: " + apiMessage(err)
			}
			enis = []sourceENI{{Owner: s.String(), Skip: why}}
		}
		for i := range enis {
			enis[i].Spec = s.String()
		}
		res.enis = append(res.enis, enis...)
	}
	if err := e.checkEligibility(ctx, res.enis); err != nil {
		// Without the interface details nothing can be decided safely: every source is unresolved.
		for _, s := range srcs {
			res.failed[s.String()] = err
		}
		res.enis = nil
	}
	return res
}

// instanceENIs lists every network interface of the matching instances.
func (e *env) instanceENIs(ctx context.Context, in *ec2.DescribeInstancesInput) ([]sourceENI, error) {
	var out []sourceENI
	pg := ec2.NewDescribeInstancesPaginator(e.ec2, in)
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, rsv := range page.Reservations {
			for _, inst := range rsv.Instances {
				out = append(out, e.instanceSources(inst)...)
			}
		}
	}
	return out, nil
}

func (e *env) instanceSources(inst ec2types.Instance) []sourceENI {
	id := awssdk.ToString(inst.InstanceId)
	owner := id
	if n := ec2Tags(inst.Tags)["Name"]; n != "" {
		owner += " (" + n + ")"
	}
	base := sourceENI{Owner: owner, instance: id, itype: string(inst.InstanceType)}
	switch {
	case id == e.self.InstanceID:
		base.Skip, base.Permanent = "this is the appliance itself", true
		return []sourceENI{base}
	case inst.State != nil && (inst.State.Name == ec2types.InstanceStateNameTerminated || inst.State.Name == ec2types.InstanceStateNameShuttingDown):
		base.Skip = "instance is " + string(inst.State.Name)
		return []sourceENI{base}
	}
	nis := slices.Clone(inst.NetworkInterfaces)
	sort.Slice(nis, func(i, j int) bool { return deviceIndex(nis[i]) < deviceIndex(nis[j]) })
	var out []sourceENI
	for _, ni := range nis {
		s := base
		s.ENI = awssdk.ToString(ni.NetworkInterfaceId)
		if len(nis) > 1 {
			s.Owner = fmt.Sprintf("%s eth%d", owner, deviceIndex(ni))
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		base.Skip = "instance has no network interface"
		out = []sourceENI{base}
	}
	return out
}

func deviceIndex(ni ec2types.InstanceNetworkInterface) int32 {
	if ni.Attachment == nil {
		return 1 << 30
	}
	return awssdk.ToInt32(ni.Attachment.DeviceIndex)
}

// ecsENIs lists a service's running tasks and their awsvpc ENIs.
func (e *env) ecsENIs(ctx context.Context, value string) ([]sourceENI, error) {
	cluster, service, ok := strings.Cut(value, "/")
	if !ok || cluster == "" || service == "" {
		return []sourceENI{{Owner: "ecs:" + value, Skip: "want ecs:CLUSTER/SERVICE", Permanent: true}}, nil
	}
	var arns []string
	pg := ecs.NewListTasksPaginator(e.ecs, &ecs.ListTasksInput{Cluster: &cluster, ServiceName: &service, DesiredStatus: ecstypes.DesiredStatusRunning})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		arns = append(arns, page.TaskArns...)
	}
	var out []sourceENI
	for i := 0; i < len(arns); i += 100 {
		page, err := e.ecs.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: &cluster, Tasks: arns[i:min(i+100, len(arns))]})
		if err != nil {
			return nil, err
		}
		for _, t := range page.Tasks {
			arn := awssdk.ToString(t.TaskArn)
			s := sourceENI{Owner: "task " + arn[strings.LastIndex(arn, "/")+1:]}
			for _, a := range t.Attachments {
				if awssdk.ToString(a.Type) != "ElasticNetworkInterface" {
					continue
				}
				for _, d := range a.Details {
					if awssdk.ToString(d.Name) == "networkInterfaceId" {
						s.ENI = awssdk.ToString(d.Value)
					}
				}
			}
			switch {
			case t.LaunchType == ecstypes.LaunchTypeFargate:
				s.Skip, s.Permanent = "Fargate task interfaces are requester-managed by ECS, which AWS does not allow as mirror sources", true
			case s.ENI == "":
				s.Skip, s.Permanent = "task has no ENI of its own (bridge/host networking): mirror its container instance with instance:i-…", true
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// nonNitroMirrorable are the Xen instance families AWS lets mirror (docs: Traffic Mirroring
// limitations, "available only on the following non-Nitro instance types").
var nonNitroMirrorable = []string{"c4", "d2", "g3", "g3s", "h1", "i3", "m4", "p2", "p3", "r4", "x1", "x1e"}

// nitroNotMirrorable are Nitro families the same page excludes.
var nitroNotMirrorable = []string{
	"m8g", "m6a", "m6i", "m6id", "m6idn", "m6in", "m7a", "m7g", "m7gd", "m7i", "m7i-flex",
	"c8g", "c6a", "c6gd", "c6gn", "c6i", "c6id", "c6in", "c7a", "c7g", "c7gd", "c7gn", "c7i",
	"r8g", "r6a", "r6i", "r6id", "r6idn", "r6in", "r7a", "r7g", "r7gd", "r7i", "r7iz", "x8g", "x2idn", "x2iedn", "x2iezn",
	"i4g", "i4i", "im4gn", "is4gen", "inf2", "p5", "trn1", "trn1n", "hpc6a", "hpc6id", "hpc7a", "hpc7g",
}

// mirrorableType says whether AWS can mirror an instance of this type, and why not.
func mirrorableType(info ec2types.InstanceTypeInfo) string {
	t := string(info.InstanceType)
	family, _, _ := strings.Cut(t, ".")
	switch {
	case awssdk.ToBool(info.BareMetal) || strings.HasSuffix(t, ".metal") || strings.Contains(t, ".metal-"):
		return "instance type " + t + " is bare metal: AWS does not mirror bare metal instances"
	case slices.Contains(nitroNotMirrorable, family):
		return "instance type " + t + " is among the Nitro types AWS does not mirror"
	case info.Hypervisor == ec2types.InstanceTypeHypervisorXen && !slices.Contains(nonNitroMirrorable, family):
		return "instance type " + t + " is not Nitro-based and not among the few Xen types AWS mirrors"
	}
	return ""
}

// checkEligibility fills the interface details of every candidate and marks what AWS would
// refuse: interfaces that are not of type interface (EFA, trunk, ECS branch interfaces),
// requester-managed ones not created by RDS or ElastiCache, unsupported instance types,
// interfaces in VPCs that cannot reach the mirror target, and the appliance's own ENI.
func (e *env) checkEligibility(ctx context.Context, enis []sourceENI) error {
	var ids []string
	for _, s := range enis {
		if s.ENI != "" && s.Skip == "" {
			ids = append(ids, s.ENI)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	details := map[string]ec2types.NetworkInterface{}
	for i := 0; i < len(ids); i += 200 {
		pg := ec2.NewDescribeNetworkInterfacesPaginator(e.ec2, &ec2.DescribeNetworkInterfacesInput{
			Filters: []ec2types.Filter{{Name: awssdk.String("network-interface-id"), Values: ids[i:min(i+200, len(ids))]}}})
		for pg.HasMorePages() {
			page, err := pg.NextPage(ctx)
			if err != nil {
				return fmt.Errorf("describe network interfaces: %w", err)
			}
			for _, ni := range page.NetworkInterfaces {
				details[awssdk.ToString(ni.NetworkInterfaceId)] = ni
			}
		}
	}
	// Instances behind eni: sources, for their type.
	types := map[string]string{}
	var unknown []string
	for i := range enis {
		s := &enis[i]
		ni, ok := details[s.ENI]
		if !ok {
			continue
		}
		if s.instance == "" && ni.Attachment != nil && ni.Attachment.InstanceId != nil {
			s.instance = awssdk.ToString(ni.Attachment.InstanceId)
			if s.Owner == s.ENI {
				s.Owner = s.instance
			}
		}
		if s.instance != "" && s.itype == "" && !slices.Contains(unknown, s.instance) {
			unknown = append(unknown, s.instance)
		}
	}
	if len(unknown) > 0 {
		pg := ec2.NewDescribeInstancesPaginator(e.ec2, &ec2.DescribeInstancesInput{
			Filters: []ec2types.Filter{{Name: awssdk.String("instance-id"), Values: unknown}}})
		for pg.HasMorePages() {
			page, err := pg.NextPage(ctx)
			if err != nil {
				return fmt.Errorf("describe instances: %w", err)
			}
			for _, r := range page.Reservations {
				for _, in := range r.Instances {
					types[awssdk.ToString(in.InstanceId)] = string(in.InstanceType)
				}
			}
		}
	}
	typeSet := map[string]bool{}
	for i := range enis {
		if enis[i].itype == "" {
			enis[i].itype = types[enis[i].instance]
		}
		if enis[i].itype != "" {
			typeSet[enis[i].itype] = true
		}
	}
	typeWhy, err := e.typeSupport(ctx, typeSet)
	if err != nil {
		return err
	}
	reach, err := e.reachableVPCs(ctx)
	if err != nil {
		return err
	}
	for i := range enis {
		s := &enis[i]
		if s.ENI == "" || s.Skip != "" {
			continue
		}
		ni, ok := details[s.ENI]
		if !ok {
			s.Skip = "network interface not found"
			continue
		}
		s.ip, s.subnet, s.vpc = awssdk.ToString(ni.PrivateIpAddress), awssdk.ToString(ni.SubnetId), awssdk.ToString(ni.VpcId)
		for _, g := range ni.Groups {
			s.groups = append(s.groups, awssdk.ToString(g.GroupId))
		}
		s.Permanent = true
		switch {
		case s.ENI == e.self.ENI:
			s.Skip = "this appliance's own ENI is the mirror target and cannot be a source"
		case ni.InterfaceType == ec2types.NetworkInterfaceTypeBranch:
			s.Skip = "a branch interface (ECS ENI trunking): AWS mirrors only interfaces of type interface; turn awsvpcTrunking off for these container instances to mirror their tasks"
		case ni.InterfaceType != "" && ni.InterfaceType != ec2types.NetworkInterfaceTypeInterface:
			s.Skip = fmt.Sprintf("a %s interface: AWS mirrors only interfaces of type interface", ni.InterfaceType)
		case awssdk.ToBool(ni.RequesterManaged) && !rdsOrElastiCache(ni):
			s.Skip = fmt.Sprintf("requester-managed by %s: AWS accepts requester-managed interfaces as mirror sources only when RDS or ElastiCache created them", requester(ni))
		case typeWhy[s.itype] != "":
			s.Skip = typeWhy[s.itype]
		case !reach[s.vpc]:
			s.Skip = fmt.Sprintf("in %s, which cannot reach the mirror target in %s (not the same VPC, not peered): pass --aws-reachable-vpc %s if a transit gateway connects them", s.vpc, e.self.VPCID, s.vpc)
		default:
			s.Permanent = false
		}
	}
	return nil
}

func requester(ni ec2types.NetworkInterface) string {
	if r := awssdk.ToString(ni.RequesterId); r != "" {
		return r
	}
	return "an AWS service"
}

// rdsOrElastiCache recognises the requester-managed interfaces AWS lets mirror.
func rdsOrElastiCache(ni ec2types.NetworkInterface) bool {
	r, d := strings.ToLower(awssdk.ToString(ni.RequesterId)), strings.ToLower(awssdk.ToString(ni.Description))
	return r == "amazon-rds" || r == "amazon-elasticache" || strings.HasPrefix(d, "rdsnetworkinterface") || strings.HasPrefix(d, "elasticache ")
}

// typeSupport asks EC2 about each instance type once and keeps why a type cannot be mirrored.
func (e *env) typeSupport(ctx context.Context, set map[string]bool) (map[string]string, error) {
	why := map[string]string{}
	if len(set) == 0 {
		return why, nil
	}
	var list []ec2types.InstanceType
	for t := range set {
		list = append(list, ec2types.InstanceType(t))
	}
	slices.Sort(list)
	for i := 0; i < len(list); i += 100 {
		pg := ec2.NewDescribeInstanceTypesPaginator(e.ec2, &ec2.DescribeInstanceTypesInput{InstanceTypes: list[i:min(i+100, len(list))]})
		for pg.HasMorePages() {
			page, err := pg.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("describe instance types: %w", err)
			}
			for _, info := range page.InstanceTypes {
				why[string(info.InstanceType)] = mirrorableType(info)
			}
		}
	}
	return why, nil
}

// reachableVPCs are the VPCs whose mirrored packets can reach the target: the appliance's, the
// ones actively peered with it, and those the user names (transit gateways).
func (e *env) reachableVPCs(ctx context.Context) (map[string]bool, error) {
	reach := map[string]bool{e.self.VPCID: true}
	for _, v := range e.cfg.ReachableVPCs {
		reach[v] = true
	}
	pg := ec2.NewDescribeVpcPeeringConnectionsPaginator(e.ec2, &ec2.DescribeVpcPeeringConnectionsInput{
		Filters: []ec2types.Filter{{Name: awssdk.String("status-code"), Values: []string{"active"}}}})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describe vpc peering connections: %w", err)
		}
		for _, p := range page.VpcPeeringConnections {
			a, b := p.AccepterVpcInfo, p.RequesterVpcInfo
			if a == nil || b == nil {
				continue
			}
			switch e.self.VPCID {
			case awssdk.ToString(a.VpcId):
				reach[awssdk.ToString(b.VpcId)] = true
			case awssdk.ToString(b.VpcId):
				reach[awssdk.ToString(a.VpcId)] = true
			}
		}
	}
	return reach, nil
}
