package gcpemu

import (
	"net/netip"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
)

// The rules each resource kind is checked against on insert and patch.

func (s *Server) network(project, ref string) (string, *apiError) {
	if ref == "" {
		return "", badRequest("required", "Required field 'network' not specified")
	}
	k := rel(project, ref)
	if _, ok := s.res[k].(*computepb.Network); !ok {
		return "", notFound(k)
	}
	return k, nil
}

func validateInstanceGroup(s *Server, project, key string, m proto.Message) *apiError {
	_, err := s.network(project, m.(*computepb.InstanceGroup).GetNetwork())
	return err
}

func validateHealthCheck(s *Server, project, key string, m proto.Message) *apiError {
	hc := m.(*computepb.HealthCheck)
	var port int32
	switch hc.GetType() {
	case "HTTP":
		if hc.HttpHealthCheck == nil {
			return badRequest("invalid", "HTTP health check needs httpHealthCheck")
		}
		port = hc.GetHttpHealthCheck().GetPort()
	case "TCP":
		if hc.TcpHealthCheck == nil {
			return badRequest("invalid", "TCP health check needs tcpHealthCheck")
		}
		port = hc.GetTcpHealthCheck().GetPort()
	default:
		return badRequest("invalid", "Invalid value for field 'resource.type': '%s'", hc.GetType())
	}
	if port < 1 || port > 65535 {
		return badRequest("invalid", "Invalid value for field 'port': %d", port)
	}
	return nil
}

func validateBackendService(s *Server, project, key string, m proto.Message) *apiError {
	bs := m.(*computepb.BackendService)
	_, region := location(key)
	if bs.GetLoadBalancingScheme() != "INTERNAL" {
		return badRequest("invalid", "regional backend services in this emulator must be INTERNAL, got %q", bs.GetLoadBalancingScheme())
	}
	switch bs.GetProtocol() {
	case "", "TCP", "UDP", "UNSPECIFIED":
	default:
		return badRequest("invalid", "INTERNAL backend services support TCP, UDP or UNSPECIFIED, not %s", bs.GetProtocol())
	}
	if len(bs.GetHealthChecks()) != 1 {
		return badRequest("invalid", "an INTERNAL backend service needs exactly one health check")
	}
	hk := rel(project, bs.GetHealthChecks()[0])
	if _, ok := s.res[hk].(*computepb.HealthCheck); !ok {
		return notFound(hk)
	}
	if scope, loc := location(hk); scope == "regions" && loc != region {
		return badRequest("invalid", "health check %s is not in region %s", hk, region)
	}
	for _, b := range bs.GetBackends() {
		gk := rel(project, b.GetGroup())
		if _, ok := s.res[gk].(*computepb.InstanceGroup); !ok {
			return notFound(gk)
		}
		if scope, loc := location(gk); scope == "zones" && regionOf(loc) != region || scope == "regions" && loc != region {
			return badRequest("invalid", "backend group %s is not in region %s", gk, region)
		}
		if mode := b.GetBalancingMode(); mode != "" && mode != "CONNECTION" {
			return badRequest("invalid", "INTERNAL backend services only support the CONNECTION balancing mode, not %s", mode)
		}
	}
	return nil
}

func validateForwardingRule(s *Server, project, key string, m proto.Message) *apiError {
	fr := m.(*computepb.ForwardingRule)
	_, region := location(key)
	if fr.GetIsMirroringCollector() && fr.GetLoadBalancingScheme() != "INTERNAL" {
		return badRequest("invalid", "isMirroringCollector can only be set on forwarding rules with loadBalancingScheme INTERNAL, not %q", fr.GetLoadBalancingScheme())
	}
	if fr.GetLoadBalancingScheme() != "INTERNAL" {
		return badRequest("invalid", "this emulator only serves INTERNAL forwarding rules")
	}
	if fr.GetBackendService() == "" {
		return badRequest("required", "an INTERNAL forwarding rule needs backendService")
	}
	bk := rel(project, fr.GetBackendService())
	bs, ok := s.res[bk].(*computepb.BackendService)
	if !ok {
		return notFound(bk)
	}
	if _, loc := location(bk); loc != region {
		return badRequest("invalid", "backend service %s is not in region %s", bk, region)
	}
	if bs.GetLoadBalancingScheme() != "INTERNAL" {
		return badRequest("invalid", "backend service %s is not INTERNAL", bk)
	}
	nk, err := s.network(project, fr.GetNetwork())
	if err != nil {
		return err
	}
	if fr.GetSubnetwork() != "" {
		sk := rel(project, fr.GetSubnetwork())
		sub, ok := s.res[sk].(*computepb.Subnetwork)
		if !ok {
			return notFound(sk)
		}
		if _, loc := location(sk); loc != region {
			return badRequest("invalid", "subnetwork %s is not in region %s", sk, region)
		}
		if rel(project, sub.GetNetwork()) != nk {
			return badRequest("invalid", "subnetwork %s is not in network %s", sk, nk)
		}
		if fr.IPAddress == nil {
			if p, perr := netip.ParsePrefix(sub.GetIpCidrRange()); perr == nil {
				addr := p.Addr()
				for range 1 + int(s.nextID%200) {
					addr = addr.Next()
				}
				fr.IPAddress = proto.String(addr.String())
			}
		}
	}
	switch ipp := fr.GetIPProtocol(); ipp {
	case "", "TCP", "UDP", "L3_DEFAULT":
	default:
		return badRequest("invalid", "INTERNAL forwarding rules carry TCP, UDP or L3_DEFAULT, not %s", ipp)
	}
	if !fr.GetAllPorts() && len(fr.GetPorts()) == 0 {
		return badRequest("invalid", "an INTERNAL forwarding rule needs ports or allPorts")
	}
	if fr.GetAllPorts() && len(fr.GetPorts()) > 0 {
		return badRequest("invalid", "ports and allPorts are mutually exclusive")
	}
	return nil
}

func validateFirewall(s *Server, project, key string, m proto.Message) *apiError {
	fw := m.(*computepb.Firewall)
	if _, err := s.network(project, fw.GetNetwork()); err != nil {
		return err
	}
	if len(fw.GetAllowed()) == 0 && len(fw.GetDenied()) == 0 {
		return badRequest("invalid", "a firewall rule needs allowed or denied")
	}
	v4, v6 := false, false
	for _, c := range append(append([]string(nil), fw.GetSourceRanges()...), fw.GetDestinationRanges()...) {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return badRequest("invalid", "Invalid value for field 'resource.sourceRanges': '%s'", c)
		}
		v4, v6 = v4 || p.Addr().Is4(), v6 || p.Addr().Is6()
	}
	if v4 && v6 {
		return badRequest("invalid", "a firewall rule cannot mix IPv4 and IPv6 ranges")
	}
	if len(fw.GetTargetTags()) > 0 && len(fw.GetTargetServiceAccounts()) > 0 {
		return badRequest("invalid", "targetTags and targetServiceAccounts are mutually exclusive")
	}
	return nil
}

func validatePacketMirroring(s *Server, project, key string, m proto.Message) *apiError {
	pm := m.(*computepb.PacketMirroring)
	_, region := location(key)
	nk, err := s.network(project, pm.GetNetwork().GetUrl())
	if err != nil {
		return err
	}
	ck := rel(project, pm.GetCollectorIlb().GetUrl())
	fr, ok := s.res[ck].(*computepb.ForwardingRule)
	if !ok {
		return notFound(ck)
	}
	if !fr.GetIsMirroringCollector() {
		return badRequest("invalid", "collectorIlb %s is not a forwarding rule with isMirroringCollector=true", ck)
	}
	if _, loc := location(ck); loc != region {
		return badRequest("invalid", "collectorIlb %s is not in the policy's region %s", ck, region)
	}
	if rel(project, fr.GetNetwork()) != nk {
		return badRequest("invalid", "collectorIlb %s is in network %s, not the policy's network %s", ck, fr.GetNetwork(), nk)
	}
	mr := pm.GetMirroredResources()
	if len(mr.GetInstances())+len(mr.GetSubnetworks())+len(mr.GetTags()) == 0 {
		return badRequest("invalid", "mirroredResources must name at least one instance, subnetwork or tag")
	}
	if n := len(mr.GetInstances()); n > maxMirroredInstances {
		return badRequest("invalid", "a packet mirroring policy can mirror at most %d instances, got %d", maxMirroredInstances, n)
	}
	if n := len(mr.GetSubnetworks()); n > maxMirroredSubnets {
		return badRequest("invalid", "a packet mirroring policy can mirror at most %d subnetworks, got %d", maxMirroredSubnets, n)
	}
	seen := map[string]bool{}
	for _, in := range mr.GetInstances() {
		ik := rel(project, in.GetUrl())
		if seen[ik] {
			return badRequest("invalid", "instance %s listed twice", ik)
		}
		seen[ik] = true
		inst, ok := s.res[ik].(*computepb.Instance)
		if !ok {
			return notFound(ik)
		}
		if _, zone := location(ik); regionOf(zone) != region {
			return badRequest("invalid", "mirrored instance %s is not in region %s", ik, region)
		}
		if rel(project, inst.GetNetworkInterfaces()[0].GetNetwork()) != nk {
			return badRequest("invalid", "mirrored instance %s is not in network %s", ik, nk)
		}
	}
	for _, sn := range mr.GetSubnetworks() {
		sk := rel(project, sn.GetUrl())
		sub, ok := s.res[sk].(*computepb.Subnetwork)
		if !ok {
			return notFound(sk)
		}
		if _, loc := location(sk); loc != region {
			return badRequest("invalid", "mirrored subnetwork %s is not in region %s", sk, region)
		}
		if rel(project, sub.GetNetwork()) != nk {
			return badRequest("invalid", "mirrored subnetwork %s is not in network %s", sk, nk)
		}
	}
	for _, tag := range mr.GetTags() {
		if !nameRE.MatchString(tag) {
			return badRequest("invalid", "invalid network tag %q", tag)
		}
	}
	f := pm.GetFilter()
	switch f.GetDirection() {
	case "", "BOTH", "INGRESS", "EGRESS":
	default:
		return badRequest("invalid", "Invalid value for field 'resource.filter.direction': '%s'", f.GetDirection())
	}
	for _, c := range f.GetCidrRanges() {
		if _, err := netip.ParsePrefix(c); err != nil {
			return badRequest("invalid", "Invalid value for field 'resource.filter.cidrRanges': '%s'", c)
		}
	}
	for _, p := range f.GetIPProtocols() {
		switch p {
		case "tcp", "udp", "icmp", "esp", "ah", "ipip", "sctp":
		default:
			return badRequest("invalid", "Invalid value for field 'resource.filter.IPProtocols': '%s'", p)
		}
	}
	if pm.GetPriority() > 65535 {
		return badRequest("invalid", "priority must be 0-65535")
	}
	return nil
}
