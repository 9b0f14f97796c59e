package awsemu

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Seeding: what a test puts in the account before the provisioner looks (instances, load
// balancers, tasks, other people's mirroring).

// AddInstance seeds an instance with its primary ENI and returns the ENI id.
func (e *Emulator) AddInstance(in Instance) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.addInstance(in)
}

func (e *Emulator) addInstance(in Instance) string {
	if in.State == "" {
		in.State = "running"
	}
	if in.Type == "" {
		in.Type = "m5.large"
	}
	if in.SubnetID == "" {
		in.SubnetID = "subnet-0emu"
	}
	sn := e.net.subnets[in.SubnetID]
	if sn == nil {
		panic("awsemu: AddInstance in unknown subnet " + in.SubnetID)
	}
	in.VPCID = sn.VPCID
	if len(in.Groups) == 0 {
		in.Groups = []string{e.net.defaultGroup(sn.VPCID)}
	}
	eni := e.newENI(sn, "Primary network interface", in.Groups)
	eni.InstanceID = in.ID
	in.ENI = eni.ID
	in.Tags = maps.Clone(in.Tags)
	e.instances[in.ID] = &in
	return eni.ID
}

// SetInstanceState changes an instance's state (e.g. "terminated").
func (e *Emulator) SetInstanceState(id, state string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if in := e.instances[id]; in != nil {
		in.State = state
	}
}

// AddLoadBalancer seeds an ALB or NLB ("application"/"network") with one ENI per subnet.
func (e *Emulator) AddLoadBalancer(name, typ string, subnets ...string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	short := map[string]string{"application": "app", "network": "net"}[typ]
	arn := fmt.Sprintf("arn:aws:elasticloadbalancing:%s:%s:loadbalancer/%s/%s/%016x", e.Region, e.Account, short, name, e.seq+1)
	e.seq++
	e.lbs[arn] = &LoadBalancer{Arn: arn, Name: name, Type: typ, Scheme: "internet-facing", VPCID: "vpc-0emu", Subnets: subnets,
		Attrs: map[string]string{}, Tags: map[string]string{}}
	for _, s := range subnets {
		e.addLBENI(arn, s)
	}
	return arn
}

func (e *Emulator) addLBENI(arn, subnet string) *ENI {
	lb := e.lbs[arn]
	short := map[string]string{"application": "app", "network": "net"}[lb.Type]
	_, suffix, _ := strings.Cut(arn, ":loadbalancer/"+short+"/")
	sn := e.net.subnets[subnet]
	if sn == nil {
		sn = e.net.subnets["subnet-0emu"]
	}
	eni := e.newENI(sn, "ELB "+short+"/"+suffix, nil)
	eni.SubnetID = subnet
	// ALB interfaces are requester-managed by ELB, NLB ones are of their own type.
	eni.InterfaceType = map[string]string{"application": "interface", "network": "network_load_balancer"}[lb.Type]
	eni.RequesterManaged, eni.RequesterID = true, "amazon-elb"
	return eni
}

// newENI allocates an interface with the next free address of the subnet.
func (e *Emulator) newENI(sn *Subnet, desc string, groups []string) *ENI {
	eni := &ENI{ID: e.id("eni"), Description: desc, InterfaceType: "interface", SubnetID: sn.ID, VPCID: sn.VPCID, AZ: sn.AZ,
		PrivateIP: sn.allocate(), Groups: slices.Clone(groups)}
	e.enis[eni.ID] = eni
	return eni
}

// AddENI attaches one more interface to an instance at deviceIndex (ENI.InterfaceType,
// Description and SubnetID may be set; the rest is filled) and returns its id.
func (e *Emulator) AddENI(instanceID string, deviceIndex int, tmpl ENI) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	in := e.instances[instanceID]
	subnet := tmpl.SubnetID
	if subnet == "" {
		subnet = in.SubnetID
	}
	eni := e.newENI(e.net.subnets[subnet], tmpl.Description, in.Groups)
	eni.InstanceID, eni.DeviceIndex = instanceID, deviceIndex
	if tmpl.InterfaceType != "" {
		eni.InterfaceType = tmpl.InterfaceType
	}
	return eni.ID
}

// AddManagedENI seeds an unattached requester-managed interface (RDS, ElastiCache, …).
func (e *Emulator) AddManagedENI(requester, description, subnet string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	eni := e.newENI(e.net.subnets[subnet], description, []string{e.net.defaultGroup(e.net.subnets[subnet].VPCID)})
	eni.RequesterManaged, eni.RequesterID = true, requester
	return eni.ID
}

// ScaleLoadBalancer replaces the load balancer's ENIs by n fresh ones (the way ALB nodes are
// replaced when it scales) and returns their ids.
func (e *Emulator) ScaleLoadBalancer(arn string, n int) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	lb := e.lbs[arn]
	short := map[string]string{"application": "app", "network": "net"}[lb.Type]
	_, suffix, _ := strings.Cut(arn, ":loadbalancer/"+short+"/")
	for id, eni := range e.enis {
		if eni.Description == "ELB "+short+"/"+suffix {
			delete(e.enis, id)
		}
	}
	var ids []string
	for i := range n {
		ids = append(ids, e.addLBENI(arn, lb.Subnets[i%len(lb.Subnets)]).ID)
	}
	return ids
}

// AddTask seeds a running ECS task of cluster/service; awsvpc tasks get their own ENI
// (Fargate ones a requester-managed one, which mirroring refuses). It returns the task ARN.
func (e *Emulator) AddTask(cluster, service, launchType string) string {
	return e.addTask(cluster, service, launchType, false)
}

// AddTrunkedTask seeds an EC2 task on a container instance with ENI trunking: its interface
// is a branch interface, which mirroring refuses.
func (e *Emulator) AddTrunkedTask(cluster, service string) string {
	return e.addTask(cluster, service, "EC2", true)
}

func (e *Emulator) addTask(cluster, service, launchType string, trunk bool) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.clusters[cluster] == nil {
		e.clusters[cluster] = map[string]bool{}
	}
	e.clusters[cluster][service] = true
	e.seq++
	t := &Task{Arn: fmt.Sprintf("arn:aws:ecs:%s:%s:task/%s/%032x", e.Region, e.Account, cluster, e.seq), Cluster: cluster, Service: service, LaunchType: launchType}
	sn := e.net.subnets["subnet-0emu"]
	eni := e.newENI(sn, "arn:aws:ecs:"+e.Region+":"+e.Account+":attachment/x", []string{e.net.defaultGroup(sn.VPCID)})
	switch {
	case launchType == "FARGATE":
		eni.RequesterManaged, eni.RequesterID = true, "amazon-ecs-fargate"
	case trunk:
		eni.InterfaceType = "branch"
	}
	t.ENI = eni.ID
	e.tasks[t.Arn] = t
	return t.Arn
}

// StopTask removes a task and its ENI (as ECS does when a task stops).
func (e *Emulator) StopTask(arn string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if t := e.tasks[arn]; t != nil {
		delete(e.enis, t.ENI)
		delete(e.tasks, arn)
	}
}

// TaskENI returns a task's ENI id.
func (e *Emulator) TaskENI(arn string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.tasks[arn].ENI
}

// AddSession seeds a session created by someone else (not through the API's rules).
func (e *Emulator) AddSession(s Session) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	s.ID = e.id("tms")
	e.sessions[s.ID] = &s
	return s.ID
}

// AddTarget seeds a mirror target created by someone else.
func (e *Emulator) AddTarget(t Target) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	t.ID = e.id("tmt")
	e.targets[t.ID] = &t
	return t.ID
}

// AddFilter seeds a traffic mirror filter created by someone else, with its rules; rule
// numbers default to 100, 200, … per direction. It returns the filter id.
func (e *Emulator) AddFilter(rules ...FilterRule) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := &Filter{ID: e.id("tmf"), Tags: map[string]string{}}
	next := map[string]int{}
	for _, r := range rules {
		r := r
		r.ID, r.FilterID = e.id("tmfr"), f.ID
		if r.Number == 0 {
			next[r.Direction] += 100
			r.Number = next[r.Direction]
		}
		f.Rules = append(f.Rules, &r)
	}
	e.filters[f.ID] = f
	return f.ID
}
