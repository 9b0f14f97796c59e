package aws

import (
	"context"
	"fmt"
	"sort"
	"strings"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// sourceENI is one network interface a source resolved to.
type sourceENI struct {
	ENI   string // "" when the source has no mirrorable ENI at all
	Spec  string // the KIND:VALUE that asked for it
	Owner string // what the ENI belongs to, for humans
	Skip  string // why it cannot be mirrored; "" = mirror it
}

// resolution is what every source resolved to in one pass.
type resolution struct {
	enis   []sourceENI
	failed map[string]error // specs that could not be looked up: their sessions are kept
}

// resolve turns sources into ENIs; a failing source is recorded and the others continue.
func (e *env) resolve(ctx context.Context, srcs []provision.Source) resolution {
	res := resolution{failed: map[string]error{}}
	for _, s := range srcs {
		var (
			enis []sourceENI
			err  error
		)
		switch s.Kind {
		case "instance":
			enis, err = e.instanceENIs(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{s.Value}}, false)
		case "tag":
			k, v, ok := strings.Cut(s.Value, "=")
			if !ok || k == "" {
				err = fmt.Errorf("want tag:Key=Value")
				break
			}
			enis, err = e.instanceENIs(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
				{Name: awssdk.String("tag:" + k), Values: []string{v}},
				{Name: awssdk.String("instance-state-name"), Values: []string{"running"}},
			}}, true)
		case "eni":
			enis, err = e.eniSource(ctx, s.Value)
		case "ecs":
			enis, err = e.ecsENIs(ctx, s.Value)
		case "alb":
			enis, err = e.albENIs(ctx, s.Value)
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
			if enis[i].ENI != "" && enis[i].ENI == e.self.ENI && enis[i].Skip == "" {
				enis[i].Skip = "this appliance's own ENI is the mirror target and cannot be a source"
			}
		}
		res.enis = append(res.enis, enis...)
	}
	return res
}

func (e *env) instanceENIs(ctx context.Context, in *ec2.DescribeInstancesInput, byTag bool) ([]sourceENI, error) {
	var out []sourceENI
	pg := ec2.NewDescribeInstancesPaginator(e.ec2, in)
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, rsv := range page.Reservations {
			for _, inst := range rsv.Instances {
				out = append(out, e.instanceSource(inst))
			}
		}
	}
	return out, nil
}

func (e *env) instanceSource(inst ec2types.Instance) sourceENI {
	id := awssdk.ToString(inst.InstanceId)
	owner := id
	if n := ec2Tags(inst.Tags)["Name"]; n != "" {
		owner += " (" + n + ")"
	}
	s := sourceENI{Owner: owner}
	for _, ni := range inst.NetworkInterfaces {
		if ni.Attachment != nil && awssdk.ToInt32(ni.Attachment.DeviceIndex) == 0 {
			s.ENI = awssdk.ToString(ni.NetworkInterfaceId)
		}
	}
	switch {
	case id == e.self.InstanceID:
		s.Skip = "this is the appliance itself"
	case inst.State != nil && (inst.State.Name == ec2types.InstanceStateNameTerminated || inst.State.Name == ec2types.InstanceStateNameShuttingDown):
		s.Skip = "instance is " + string(inst.State.Name)
	case s.ENI == "":
		s.Skip = "instance has no primary network interface"
	}
	return s
}

func (e *env) eniSource(ctx context.Context, id string) ([]sourceENI, error) {
	out, err := e.ec2.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{NetworkInterfaceIds: []string{id}})
	if err != nil {
		return nil, err
	}
	var res []sourceENI
	for _, ni := range out.NetworkInterfaces {
		s := sourceENI{ENI: awssdk.ToString(ni.NetworkInterfaceId), Owner: awssdk.ToString(ni.Description)}
		if ni.Attachment != nil && ni.Attachment.InstanceId != nil {
			s.Owner = awssdk.ToString(ni.Attachment.InstanceId)
		}
		if ni.InterfaceType == ec2types.NetworkInterfaceTypeNetworkLoadBalancer {
			s.Skip = "belongs to a Network Load Balancer: NLB interfaces cannot be mirror sources"
		}
		res = append(res, s)
	}
	return res, nil
}

// ecsENIs lists a service's running tasks and their awsvpc ENIs.
func (e *env) ecsENIs(ctx context.Context, value string) ([]sourceENI, error) {
	cluster, service, ok := strings.Cut(value, "/")
	if !ok || cluster == "" || service == "" {
		return nil, fmt.Errorf("want ecs:CLUSTER/SERVICE")
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
				s.Skip = "Fargate tasks cannot be mirrored (AWS does not allow mirroring Fargate interfaces)"
			case s.ENI == "":
				s.Skip = "task has no ENI of its own (bridge/host networking): mirror its container instance with instance:i-…"
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// albENIs finds an ALB's interfaces by their description "ELB app/<name>/<id>".
func (e *env) albENIs(ctx context.Context, value string) ([]sourceENI, error) {
	in := &elb.DescribeLoadBalancersInput{Names: []string{value}}
	if strings.HasPrefix(value, "arn:") {
		in = &elb.DescribeLoadBalancersInput{LoadBalancerArns: []string{value}}
	}
	out, err := e.elb.DescribeLoadBalancers(ctx, in)
	if err != nil {
		return nil, err
	}
	var res []sourceENI
	for _, lb := range out.LoadBalancers {
		name := awssdk.ToString(lb.LoadBalancerName)
		if lb.Type != elbtypes.LoadBalancerTypeEnumApplication {
			res = append(res, sourceENI{Owner: "load balancer " + name, Skip: fmt.Sprintf("is a %s load balancer: only ALB interfaces can be mirror sources", lb.Type)})
			continue
		}
		arn := awssdk.ToString(lb.LoadBalancerArn)
		desc := "ELB " + arn[strings.Index(arn, ":loadbalancer/")+len(":loadbalancer/"):]
		pg := ec2.NewDescribeNetworkInterfacesPaginator(e.ec2, &ec2.DescribeNetworkInterfacesInput{
			Filters: []ec2types.Filter{{Name: awssdk.String("description"), Values: []string{desc}}}})
		var ids []string
		for pg.HasMorePages() {
			page, err := pg.NextPage(ctx)
			if err != nil {
				return nil, err
			}
			for _, ni := range page.NetworkInterfaces {
				ids = append(ids, awssdk.ToString(ni.NetworkInterfaceId))
			}
		}
		sort.Strings(ids)
		for _, id := range ids {
			res = append(res, sourceENI{ENI: id, Owner: "alb " + name})
		}
	}
	return res, nil
}
