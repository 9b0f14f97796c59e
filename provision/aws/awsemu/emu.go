// Package awsemu is an in-process, stateful emulator of the slice of the EC2, ELBv2 and ECS
// APIs (and the instance metadata service) that the AWS provisioner uses. It speaks the real
// wire protocols — EC2/ELBv2 Query with XML replies, ECS JSON 1.1 — so tests drive it with the
// real SDK clients, and it enforces the documented rules so provisioning mistakes fail.
package awsemu

import (
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
)

// Instance is an EC2 instance the test seeds; its primary ENI is created with it.
type Instance struct {
	ID       string
	Type     string // e.g. m5.large; t2.* is refused as a mirror source
	State    string // running (default), stopped, …
	SubnetID string // default subnet-0emu (us-east-1a) of vpc-0emu
	VPCID    string // derived from the subnet
	Groups   []string
	Tags     map[string]string
	ENI      string // primary ENI id, filled by AddInstance
}

// ENI is an elastic network interface.
type ENI struct {
	ID               string
	Description      string
	InterfaceType    string // interface (default), branch, trunk, efa, network_load_balancer, …
	RequesterManaged bool
	RequesterID      string // amazon-elb, amazon-rds, amazon-elasticache, …
	InstanceID       string
	DeviceIndex      int
	SubnetID         string
	VPCID            string
	AZ               string
	PrivateIP        string
	Groups           []string
}

// Target is a traffic mirror target.
type Target struct {
	ID, ENI, NLBArn, Description string
	Tags                         map[string]string
}

// PortRange is an inclusive port range in a filter rule.
type PortRange struct{ From, To int }

// FilterRule is one traffic mirror filter rule.
type FilterRule struct {
	ID, FilterID, Direction, Action, SrcCIDR, DstCIDR, Description string
	Number, Protocol                                               int
	SrcPorts, DstPorts                                             *PortRange
	Tags                                                           map[string]string
}

// Filter is a traffic mirror filter and its rules.
type Filter struct {
	ID, Description string
	Tags            map[string]string
	Rules           []*FilterRule
}

// Session is a traffic mirror session.
type Session struct {
	ID, ENI, TargetID, FilterID, Description string
	Number, VNI, PacketLength                int
	Tags                                     map[string]string
}

// LoadBalancer is an ELBv2 load balancer.
type LoadBalancer struct {
	Arn, Name, Type, Scheme, VPCID string
	Subnets                        []string
	Attrs, Tags                    map[string]string
}

// TargetGroup is an ELBv2 target group.
type TargetGroup struct {
	Arn, Name, Protocol, VPCID, TargetType string
	HealthProtocol, HealthPort, HealthPath string
	Port                                   int
	Attrs, Tags                            map[string]string
	Targets                                []string
	Health                                 map[string]string // target → state other than healthy (draining, unhealthy, …)
}

// Listener is an ELBv2 listener forwarding to one target group.
type Listener struct {
	Arn, LBArn, Protocol, TGArn string
	Port                        int
	Tags                        map[string]string
}

// Task is an ECS task.
type Task struct {
	Arn, Cluster, Service, LaunchType, ENI string
}

type tokenEntry struct {
	params string
	id     string
}

// Emulator holds the emulated account's state; every method is safe for concurrent use.
type Emulator struct {
	mu        sync.Mutex
	seq       int
	Region    string
	Account   string
	PageSize  int // items per Describe/List page, small so callers must paginate
	instances map[string]*Instance
	enis      map[string]*ENI
	targets   map[string]*Target
	filters   map[string]*Filter
	sessions  map[string]*Session
	lbs       map[string]*LoadBalancer
	tgs       map[string]*TargetGroup
	listeners map[string]*Listener
	clusters  map[string]map[string]bool // cluster → services
	tasks     map[string]*Task
	tokens    map[string]tokenEntry // action+token → first request
	net       network
	asg       autoScaling

	// Lag makes a resource created through the API invisible to the next Lag Describe calls
	// that would return it (EC2 is eventually consistent); 0 = visible at once.
	Lag       int
	invisible map[string]int
	// Policy, when set, is an IAM policy document every call is evaluated against.
	Policy string
	// FreshAccount makes the first NLB and Auto Scaling group need iam:CreateServiceLinkedRole.
	FreshAccount bool
	linkedRoles  map[string]bool

	calls      []string
	mutations  int
	throttle   map[string]int
	denied     map[string]bool
	crashAfter int // >0: after this many more mutations, every request fails
	crashed    bool
}

// New returns an empty emulator for one region.
func New(region string) *Emulator {
	return &Emulator{
		Region: region, Account: "123456789012", PageSize: 3,
		instances: map[string]*Instance{}, enis: map[string]*ENI{}, targets: map[string]*Target{},
		filters: map[string]*Filter{}, sessions: map[string]*Session{}, lbs: map[string]*LoadBalancer{},
		tgs: map[string]*TargetGroup{}, listeners: map[string]*Listener{}, clusters: map[string]map[string]bool{},
		tasks: map[string]*Task{}, tokens: map[string]tokenEntry{}, throttle: map[string]int{}, denied: map[string]bool{},
		invisible: map[string]int{}, net: newNetwork(region), asg: newAutoScaling(), linkedRoles: map[string]bool{},
	}
}

// created marks a resource just made through the API, for the consistency lag.
func (e *Emulator) created(id string) {
	if e.Lag > 0 {
		e.invisible[id] = e.Lag
	}
}

// visible reports whether a Describe may return id, and counts the look.
func (e *Emulator) visible(id string) bool {
	n, lagging := e.invisible[id]
	if !lagging {
		return true
	}
	if n <= 1 {
		delete(e.invisible, id)
	} else {
		e.invisible[id] = n - 1
	}
	return false
}

// Start serves the EC2, ELBv2 and ECS APIs on one loopback listener; close it when done.
func (e *Emulator) Start() *httptest.Server { return httptest.NewServer(e) }

func (e *Emulator) id(prefix string) string {
	e.seq++
	return fmt.Sprintf("%s-%017x", prefix, 0xa000+e.seq)
}

// ServeHTTP dispatches on the protocol: ECS JSON by X-Amz-Target, Query by Version.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if t := r.Header.Get("X-Amz-Target"); t != "" {
		e.serveECS(w, r, t)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	switch r.PostForm.Get("Version") {
	case "2016-11-15":
		e.serveEC2(w, r.PostForm)
	case "2015-12-01":
		e.serveELB(w, r.PostForm)
	case "2011-01-01":
		e.serveAutoScaling(w, r.PostForm)
	default:
		http.Error(w, "unknown API version", http.StatusBadRequest)
	}
}

// apiError is an error reply: code, message and HTTP status.
type apiError struct {
	Status        int
	Code, Message string
}

func (a *apiError) Error() string { return a.Code + ": " + a.Message }

func errf(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func isMutating(action string) bool {
	for _, p := range []string{"Describe", "List", "Get"} {
		if strings.HasPrefix(action, p) {
			return false
		}
	}
	return true
}

// gate runs the cross-cutting checks every request passes before its handler: crash,
// throttling and IAM denial. It records the call.
func (e *Emulator) gate(action string, throttleCode string, throttleStatus int, deniedCode string) *apiError {
	e.calls = append(e.calls, action)
	if e.crashed {
		return errf(400, "EmulatedCrash", "the client process crashed before this call")
	}
	if n := e.throttle[action]; n > 0 {
		e.throttle[action] = n - 1
		return errf(throttleStatus, throttleCode, "Rate exceeded")
	}
	if e.denied[action] {
		return errf(403, deniedCode, "You are not authorized to perform this operation: %s", action)
	}
	return nil
}

// mutated counts one applied mutation and arms the crash when one is scheduled.
func (e *Emulator) mutated() {
	e.mutations++
	if e.crashAfter > 0 {
		e.crashAfter--
		if e.crashAfter == 0 {
			e.crashed = true
		}
	}
}

// idempotent replays a create with the same ClientToken: same parameters → the first result
// (even if that resource has since been deleted, as EC2 does), different → mismatch error.
func (e *Emulator) idempotent(action, token, params string) (string, *apiError) {
	if token == "" {
		return "", nil
	}
	if len(token) > 64 {
		return "", errf(400, "InvalidParameterValue", "ClientToken longer than 64 characters")
	}
	t, ok := e.tokens[action+"/"+token]
	if !ok {
		return "", nil
	}
	if t.params != params {
		return "", errf(400, "IdempotentParameterMismatch", "ClientToken %s was used with different parameters", token)
	}
	return t.id, nil
}

func (e *Emulator) remember(action, token, params, id string) {
	if token != "" {
		e.tokens[action+"/"+token] = tokenEntry{params: params, id: id}
	}
}

// Throttle makes the next n calls of action fail with the service's throttling error.
func (e *Emulator) Throttle(action string, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.throttle[action] = n
}

// Deny makes actions fail as if IAM did not allow them (DryRun included).
func (e *Emulator) Deny(actions ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, a := range actions {
		e.denied[a] = true
	}
}

// CrashAfter lets n more mutations through, then fails every request as if the client had
// died right after the n-th one was applied; Recover ends it.
func (e *Emulator) CrashAfter(n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.crashAfter, e.crashed = n, false
}

// Recover ends a simulated crash.
func (e *Emulator) Recover() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.crashAfter, e.crashed = 0, false
}

// Mutations is the number of state-changing calls applied so far.
func (e *Emulator) Mutations() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.mutations
}

// Calls returns every action received so far, in order.
func (e *Emulator) Calls() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.calls)
}

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

// Sessions returns a copy of every session.
func (e *Emulator) Sessions() []Session {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Session
	for _, s := range e.sessions {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b Session) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Snapshot is a copy of the provisioned state, for assertions.
type Snapshot struct {
	Targets   []Target
	Filters   []Filter
	Sessions  []Session
	LBs       []LoadBalancer
	TGs       []TargetGroup
	Listeners []Listener
}

// Snapshot copies the current mirroring and load-balancing state.
func (e *Emulator) Snapshot() Snapshot {
	e.mu.Lock()
	defer e.mu.Unlock()
	var s Snapshot
	for _, t := range e.targets {
		s.Targets = append(s.Targets, *t)
	}
	for _, f := range e.filters {
		c := *f
		c.Rules = nil
		for _, r := range f.Rules {
			c.Rules = append(c.Rules, &FilterRule{ID: r.ID, FilterID: r.FilterID, Direction: r.Direction, Action: r.Action,
				SrcCIDR: r.SrcCIDR, DstCIDR: r.DstCIDR, Number: r.Number, Protocol: r.Protocol, SrcPorts: r.SrcPorts, DstPorts: r.DstPorts})
		}
		s.Filters = append(s.Filters, c)
	}
	for _, x := range e.sessions {
		s.Sessions = append(s.Sessions, *x)
	}
	for _, x := range e.lbs {
		s.LBs = append(s.LBs, *x)
	}
	for _, x := range e.tgs {
		s.TGs = append(s.TGs, *x)
	}
	for _, x := range e.listeners {
		s.Listeners = append(s.Listeners, *x)
	}
	slices.SortFunc(s.Sessions, func(a, b Session) int { return strings.Compare(a.ID, b.ID) })
	return s
}

// TaggedFor counts the resources (EC2 and ELBv2) tagged metlo:appliance=instanceID.
func (e *Emulator) TaggedFor(instanceID string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, tags := range e.allTags() {
		if tags["metlo:appliance"] == instanceID {
			n++
		}
	}
	return n
}

func (e *Emulator) allTags() []map[string]string {
	var out []map[string]string
	for _, t := range e.targets {
		out = append(out, t.Tags)
	}
	for _, f := range e.filters {
		out = append(out, f.Tags)
	}
	for _, s := range e.sessions {
		out = append(out, s.Tags)
	}
	for _, x := range e.lbs {
		out = append(out, x.Tags)
	}
	for _, x := range e.tgs {
		out = append(out, x.Tags)
	}
	for _, x := range e.listeners {
		out = append(out, x.Tags)
	}
	return out
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
