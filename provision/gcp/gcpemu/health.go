package gcpemu

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
)

// healthCheckers are the source ranges Google's load-balancer health checks come from.
var healthCheckers = []string{"35.191.0.0/16", "130.211.0.0/22"}

// getHealth answers regionBackendServices.getHealth for one backend group the way the load
// balancer sees it: a member is HEALTHY only when an enabled ingress firewall rule of the
// network lets both health-checker ranges reach its health-check port, and its /readyz works.
func (s *Server) getHealth(w http.ResponseWriter, r *http.Request) {
	s.record("compute.regionBackendServices.getHealth")
	project := r.PathValue("project")
	key := itemKey(r, "regions", "backendServices")
	ref := &computepb.ResourceGroupReference{}
	if err := readBody(r, ref); err != nil {
		writeError(w, err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	bs, ok := s.res[key].(*computepb.BackendService)
	if !ok {
		writeError(w, notFound(key))
		return
	}
	group := rel(project, ref.GetGroup())
	if !slices.ContainsFunc(bs.GetBackends(), func(b *computepb.Backend) bool { return rel(project, b.GetGroup()) == group }) {
		writeError(w, badRequest("invalid", "group %s is not a backend of %s", group, key))
		return
	}
	port := int32(0)
	if len(bs.GetHealthChecks()) > 0 {
		if hc, ok := s.res[rel(project, bs.GetHealthChecks()[0])].(*computepb.HealthCheck); ok {
			port = hc.GetHttpHealthCheck().GetPort() + hc.GetTcpHealthCheck().GetPort()
		}
	}
	out := &computepb.BackendServiceGroupHealth{Kind: proto.String("compute#backendServiceGroupHealth")}
	for _, m := range s.members[group] {
		inst, ok := s.res[m].(*computepb.Instance)
		if !ok {
			continue
		}
		state := "HEALTHY"
		if s.unhealthy[m] || !s.healthCheckAllowed(project, inst, port) {
			state = "UNHEALTHY"
		}
		out.HealthStatus = append(out.HealthStatus, &computepb.HealthStatus{Instance: proto.String(linkBase + m),
			IpAddress: proto.String(inst.GetNetworkInterfaces()[0].GetNetworkIP()), HealthState: proto.String(state)})
	}
	writeJSON(w, out)
}

// healthCheckAllowed reports whether the firewall lets the health checkers reach port on inst.
func (s *Server) healthCheckAllowed(project string, inst *computepb.Instance, port int32) bool {
	network := rel(project, inst.GetNetworkInterfaces()[0].GetNetwork())
	sa := ""
	if len(inst.GetServiceAccounts()) > 0 {
		sa = inst.GetServiceAccounts()[0].GetEmail()
	}
	covered := map[string]bool{}
	for k, m := range s.res {
		fw, ok := m.(*computepb.Firewall)
		if !ok || collectionOf(k) != "firewalls" || fw.GetDisabled() || rel(project, fw.GetNetwork()) != network || fw.GetDirection() == "EGRESS" {
			continue
		}
		if t := fw.GetTargetTags(); len(t) > 0 && !slices.ContainsFunc(t, func(tag string) bool { return slices.Contains(inst.GetTags().GetItems(), tag) }) {
			continue
		}
		if t := fw.GetTargetServiceAccounts(); len(t) > 0 && !slices.Contains(t, sa) {
			continue
		}
		portOK := false
		for _, a := range fw.GetAllowed() {
			if a.GetIPProtocol() != "tcp" && a.GetIPProtocol() != "all" {
				continue
			}
			if len(a.GetPorts()) == 0 || portIn(a.GetPorts(), port) {
				portOK = true
			}
		}
		if !portOK {
			continue
		}
		for _, want := range healthCheckers {
			w := netip.MustParsePrefix(want)
			for _, have := range fw.GetSourceRanges() {
				if h, err := netip.ParsePrefix(have); err == nil && h.Bits() <= w.Bits() && h.Contains(w.Addr()) {
					covered[want] = true
				}
			}
		}
	}
	return len(covered) == len(healthCheckers)
}

func portIn(ports []string, port int32) bool {
	for _, p := range ports {
		lo, hi, isRange := strings.Cut(p, "-")
		var a, b int32
		fmt.Sscan(lo, &a)
		b = a
		if isRange {
			fmt.Sscan(hi, &b)
		}
		if port >= a && port <= b {
			return true
		}
	}
	return false
}
