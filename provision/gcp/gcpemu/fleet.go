package gcpemu

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
)

// Managed instance groups, their instance templates and autoscalers, as far as a collector
// fleet needs them: a regional MIG spreads targetSize instances over three zones of its
// region, keeps a regional instance group of the same name (the backend a backend service
// uses), and an autoscaler keeps targetSize within its bounds.

func validateInstanceTemplate(s *Server, project, key string, m proto.Message) *apiError {
	p := m.(*computepb.InstanceTemplate).GetProperties()
	if p.GetMachineType() == "" {
		return badRequest("required", "Required field 'properties.machineType' not specified")
	}
	boot := false
	for _, d := range p.GetDisks() {
		if d.GetBoot() && d.GetInitializeParams().GetSourceImage() != "" {
			boot = true
		}
	}
	if !boot {
		return badRequest("required", "an instance template needs a boot disk with initializeParams.sourceImage")
	}
	if len(p.GetNetworkInterfaces()) == 0 {
		return badRequest("required", "an instance template needs a network interface")
	}
	if _, err := s.network(project, p.GetNetworkInterfaces()[0].GetNetwork()); err != nil {
		return err
	}
	return nil
}

func validateMIG(s *Server, project, key string, m proto.Message) *apiError {
	g := m.(*computepb.InstanceGroupManager)
	tk := rel(project, g.GetInstanceTemplate())
	if _, ok := s.res[tk].(*computepb.InstanceTemplate); !ok {
		return notFound(tk)
	}
	if g.GetTargetSize() < 0 {
		return badRequest("invalid", "targetSize must be 0 or more")
	}
	if g.GetBaseInstanceName() == "" || !nameRE.MatchString(g.GetBaseInstanceName()) {
		return badRequest("invalid", "Invalid value for field 'resource.baseInstanceName': '%s'", g.GetBaseInstanceName())
	}
	for _, p := range g.GetAutoHealingPolicies() {
		hk := rel(project, p.GetHealthCheck())
		if _, ok := s.res[hk].(*computepb.HealthCheck); !ok {
			return notFound(hk)
		}
	}
	return nil
}

// migGroup is the regional instance group a regional MIG keeps.
func migGroup(key string) string {
	return strings.Replace(key, "/instanceGroupManagers/", "/instanceGroups/", 1)
}

// scaleMIG creates or deletes instances until the group holds targetSize, round-robin over
// the region's zones a, b and c, from the MIG's current template.
func (s *Server) scaleMIG(project, key string, m proto.Message) {
	g := m.(*computepb.InstanceGroupManager)
	gk := migGroup(key)
	_, region := location(key)
	tmpl, _ := s.res[rel(project, g.GetInstanceTemplate())].(*computepb.InstanceTemplate)
	props := tmpl.GetProperties()
	nic := props.GetNetworkInterfaces()[0]
	if _, ok := s.res[gk]; !ok {
		ig := &computepb.InstanceGroup{Network: proto.String(nic.GetNetwork()), Description: proto.String("managed by " + g.GetName())}
		s.stamp(gk, ig)
		s.res[gk] = ig
	}
	members := s.members[gk]
	for len(members) < int(g.GetTargetSize()) {
		s.nextID++
		zone := region + "-" + string(rune('a'+len(members)%3))
		ik := fmt.Sprintf("projects/%s/zones/%s/instances/%s-%04x", project, zone, g.GetBaseInstanceName(), s.nextID%0xffff)
		inst := &computepb.Instance{Status: proto.String("RUNNING"), MachineType: proto.String(props.GetMachineType()),
			NetworkInterfaces: []*computepb.NetworkInterface{{Network: proto.String(nic.GetNetwork()), Subnetwork: proto.String(nic.GetSubnetwork()),
				NetworkIP: proto.String(fmt.Sprintf("10.0.9.%d", len(members)+10))}},
			Tags: props.GetTags(), ServiceAccounts: props.GetServiceAccounts(), Metadata: props.GetMetadata(), Labels: props.GetLabels()}
		s.stamp(ik, inst)
		s.res[ik] = inst
		members = append(members, ik)
	}
	for len(members) > int(g.GetTargetSize()) {
		delete(s.res, members[len(members)-1])
		members = members[:len(members)-1]
	}
	s.members[gk] = members
	s.res[gk].(*computepb.InstanceGroup).Size = proto.Int32(int32(len(members)))
	g.TargetSize = proto.Int32(int32(len(members)))
}

// deleteMIG refuses while its group backs a backend service, else deletes group and instances.
func (s *Server) deleteMIG(key string) *apiError {
	gk := migGroup(key)
	if user := s.userOf(gk); user != "" {
		return badRequest("resourceInUseByAnotherResource", "The instance_group resource '%s' is already being used by '%s'", gk, user)
	}
	for _, ik := range s.members[gk] {
		delete(s.res, ik)
	}
	delete(s.members, gk)
	delete(s.res, gk)
	return nil
}

func validateAutoscaler(s *Server, project, key string, m proto.Message) *apiError {
	a := m.(*computepb.Autoscaler)
	tk := rel(project, a.GetTarget())
	if _, ok := s.res[tk].(*computepb.InstanceGroupManager); !ok {
		return notFound(tk)
	}
	p := a.GetAutoscalingPolicy()
	if p.GetMaxNumReplicas() < 1 || p.GetMinNumReplicas() > p.GetMaxNumReplicas() {
		return badRequest("invalid", "autoscalingPolicy: minNumReplicas %d must be ≤ maxNumReplicas %d (≥ 1)", p.GetMinNumReplicas(), p.GetMaxNumReplicas())
	}
	if t := p.GetCpuUtilization().GetUtilizationTarget(); t <= 0 || t > 1 {
		return badRequest("invalid", "cpuUtilization.utilizationTarget must be in (0, 1], got %v", t)
	}
	return nil
}

// applyAutoscaler keeps the target group's size within the autoscaler's bounds.
func (s *Server) applyAutoscaler(project, key string, m proto.Message) {
	a := m.(*computepb.Autoscaler)
	tk := rel(project, a.GetTarget())
	g := s.res[tk].(*computepb.InstanceGroupManager)
	p := a.GetAutoscalingPolicy()
	size := min(max(g.GetTargetSize(), p.GetMinNumReplicas()), p.GetMaxNumReplicas())
	if size != g.GetTargetSize() {
		g.TargetSize = proto.Int32(size)
		s.scaleMIG(project, tk, g)
	}
}

// patchAutoscaler serves regionAutoscalers.patch: PATCH on the collection with ?autoscaler=NAME.
func (s *Server) patchAutoscaler(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("autoscaler")
	r.SetPathValue("name", name)
	key := itemKey(r, "regions", "autoscalers")
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		s.record("compute.regionAutoscalers.patch")
		writeError(w, badRequest("parseError", "read body: %v", err))
		return
	}
	s.mutate(w, r, "compute.regionAutoscalers.patch", key, func() (*apiError, *apiError) {
		cur, ok := s.res[key]
		if !ok {
			return notFound(key), nil
		}
		next, perr := mergePatch(cur, body, &computepb.Autoscaler{})
		if perr != nil {
			return perr, nil
		}
		if err := validateAutoscaler(s, r.PathValue("project"), key, next); err != nil {
			return err, nil
		}
		s.res[key] = next
		s.applyAutoscaler(r.PathValue("project"), key, next)
		return nil, nil
	})
}

// Resize sets a managed group's size as its autoscaler would.
func (s *Server) Resize(migKey string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g, ok := s.res[migKey].(*computepb.InstanceGroupManager); ok {
		g.TargetSize = proto.Int32(int32(n))
		s.scaleMIG(strings.Split(migKey, "/")[1], migKey, g)
	}
}
