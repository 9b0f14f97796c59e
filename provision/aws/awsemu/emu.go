// Package awsemu is an in-process, stateful emulator of the slice of the EC2, ELBv2 and ECS
// APIs (and the instance metadata service) that the AWS provisioner uses. It speaks the real
// wire protocols — EC2/ELBv2 Query with XML replies, ECS JSON 1.1 — so tests drive it with the
// real SDK clients, and it enforces the documented rules so provisioning mistakes fail.
package awsemu

import (
	"fmt"
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
