package awsemu

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Traffic mirror sessions and the rules AWS applies to their sources, targets and packet length.

func sessionXML(s *Session, account string) string {
	var b xb
	b.el("trafficMirrorSessionId", s.ID)
	b.el("trafficMirrorTargetId", s.TargetID)
	b.el("trafficMirrorFilterId", s.FilterID)
	b.el("networkInterfaceId", s.ENI)
	b.el("ownerId", account)
	if s.PacketLength > 0 {
		b.num("packetLength", s.PacketLength)
	}
	b.num("sessionNumber", s.Number)
	b.num("virtualNetworkId", s.VNI)
	b.el("description", s.Description)
	b.ec2Tags(s.Tags)
	return b.String()
}

func (e *Emulator) describeSessions(form url.Values) (string, *apiError) {
	f := ec2Filters(form)
	if err := checkFilters(f, "network-interface-id", "traffic-mirror-target-id", "traffic-mirror-filter-id", "traffic-mirror-session-id"); err != nil {
		return "", err
	}
	ids := flatList(form, "TrafficMirrorSessionId")
	for _, id := range ids {
		if e.sessions[id] == nil || !e.visible(id) {
			return "", errf(400, "InvalidTrafficMirrorSessionId.NotFound", "The traffic mirror session '%s' does not exist", id)
		}
	}
	var sel []*Session
	for _, k := range sortedKeys(e.sessions) {
		s := e.sessions[k]
		if len(ids) == 0 && !e.visible(s.ID) {
			continue
		}
		if (len(ids) == 0 || slices.Contains(ids, s.ID)) && match(f, "network-interface-id", s.ENI) && match(f, "traffic-mirror-target-id", s.TargetID) &&
			match(f, "traffic-mirror-filter-id", s.FilterID) && match(f, "traffic-mirror-session-id", s.ID) {
			sel = append(sel, s)
		}
	}
	items, next, err := page(sel, form.Get("NextToken"), e.PageSize)
	if err != nil {
		return "", err
	}
	var b xb
	b.open("trafficMirrorSessionSet")
	for _, s := range items {
		b.open("item")
		b.WriteString(sessionXML(s, e.Account))
		b.close("item")
	}
	b.close("trafficMirrorSessionSet")
	b.el("nextToken", next)
	return b.String(), nil
}

func (e *Emulator) deleteSession(form url.Values) (string, *apiError) {
	id := form.Get("TrafficMirrorSessionId")
	if e.sessions[id] == nil {
		return "", errf(400, "InvalidTrafficMirrorSessionId.NotFound", "The traffic mirror session '%s' does not exist", id)
	}
	if dryRun(form) {
		return "", errDryRun
	}
	delete(e.sessions, id)
	var b xb
	b.el("trafficMirrorSessionId", id)
	return b.String(), nil
}

func (e *Emulator) createSession(form url.Values) (string, *apiError) {
	token := form.Get("ClientToken")
	id, err := e.idempotent("CreateTrafficMirrorSession", token, paramsKey(form))
	if err != nil {
		return "", err
	}
	if id == "" || dryRun(form) {
		s, err := e.newSession(form)
		if err != nil {
			return "", err
		}
		id = s.ID
		e.remember("CreateTrafficMirrorSession", token, paramsKey(form), id)
	}
	var b xb
	b.open("trafficMirrorSession")
	if s := e.sessions[id]; s != nil {
		b.WriteString(sessionXML(s, e.Account))
	} else {
		b.el("trafficMirrorSessionId", id)
	}
	b.close("trafficMirrorSession")
	b.el("clientToken", token)
	return b.String(), nil
}

func (e *Emulator) newSession(form url.Values) (*Session, *apiError) {
	eniID := form.Get("NetworkInterfaceId")
	if err := e.checkSource(eniID); err != nil {
		return nil, err
	}
	target := e.targets[form.Get("TrafficMirrorTargetId")]
	if target == nil {
		return nil, errf(400, "InvalidTrafficMirrorTargetId.NotFound", "The traffic mirror target '%s' does not exist", form.Get("TrafficMirrorTargetId"))
	}
	if e.filters[form.Get("TrafficMirrorFilterId")] == nil {
		return nil, errf(400, "InvalidTrafficMirrorFilterId.NotFound", "The traffic mirror filter '%s' does not exist", form.Get("TrafficMirrorFilterId"))
	}
	num, cerr := strconv.Atoi(form.Get("SessionNumber"))
	if cerr != nil || num < 1 || num > 32766 {
		return nil, errf(400, "InvalidParameterValue", "SessionNumber must be 1-32766, got %q", form.Get("SessionNumber"))
	}
	onENI := 0
	for _, s := range e.sessions {
		if s.ENI == eniID {
			onENI++
			if s.Number == num {
				return nil, errf(400, "InvalidParameterValue", "session number %d is already used on %s by %s", num, eniID, s.ID)
			}
		}
	}
	if onENI >= 3 {
		return nil, errf(400, "TrafficMirrorSessionsPerInterfaceLimitExceeded", "network interface %s already has 3 traffic mirror sessions", eniID)
	}
	if err := e.checkSourcesPerTarget(target, eniID); err != nil {
		return nil, err
	}
	s := &Session{ENI: eniID, TargetID: target.ID, FilterID: form.Get("TrafficMirrorFilterId"), Number: num, Description: form.Get("Description")}
	if v := form.Get("VirtualNetworkId"); v != "" {
		vni, err := strconv.Atoi(v)
		if err != nil || vni < 0 || vni > 1<<24-1 {
			return nil, errf(400, "InvalidParameterValue", "VirtualNetworkId must be 0-16777215, got %q", v)
		}
		s.VNI = vni
	} else {
		s.VNI = (e.seq * 7919) % (1 << 24)
	}
	if err := e.setPacketLength(s, target, form.Get("PacketLength")); err != nil {
		return nil, err
	}
	tags, aerr := ec2TagSpec(form, "traffic-mirror-session")
	if aerr != nil {
		return nil, aerr
	}
	if dryRun(form) {
		return nil, errDryRun
	}
	s.ID = e.id("tms")
	s.Tags = maps.Clone(tags)
	e.sessions[s.ID] = s
	e.created(s.ID)
	return s, nil
}

// checkSource applies the rules AWS has for mirror sources.
func (e *Emulator) checkSource(eniID string) *apiError {
	eni := e.enis[eniID]
	if eni == nil {
		return errf(400, "InvalidNetworkInterfaceID.NotFound", "The networkInterface ID '%s' does not exist", eniID)
	}
	for _, t := range e.targets {
		if t.ENI == eniID {
			return errf(400, "InvalidParameterValue", "network interface %s is a traffic mirror target and cannot also be a source", eniID)
		}
	}
	if eni.InterfaceType != "interface" {
		return errf(400, "InvalidNetworkInterface.NotSupported", "network interface %s is of type %s; only interfaces of type interface can be mirrored", eniID, eni.InterfaceType)
	}
	if eni.RequesterManaged && eni.RequesterID != "amazon-rds" && eni.RequesterID != "amazon-elasticache" {
		return errf(400, "InvalidNetworkInterface.NotSupported", "network interface %s is requester-managed by %s and cannot be mirrored", eniID, eni.RequesterID)
	}
	if in := e.instances[eni.InstanceID]; in != nil {
		for _, p := range append(slices.Clone(unsupportedTypes), "*.metal") {
			if strings.HasPrefix(in.Type, p) || p == "*.metal" && strings.HasSuffix(in.Type, ".metal") {
				return errf(400, "InvalidParameterValue", "instance type %s of %s is not supported for traffic mirroring", in.Type, in.ID)
			}
		}
	}
	return nil
}

// sourcesPerTarget is how many source interfaces an ENI target accepts: 100 on the largest
// sizes, 10 on the rest (Traffic Mirroring quotas; the emulator takes 24xlarge and up, and
// metal, as "largest").
func (e *Emulator) sourcesPerTarget(target *Target) int {
	eni := e.enis[target.ENI]
	if eni == nil {
		return 10
	}
	if in := e.instances[eni.InstanceID]; in != nil {
		_, size, _ := strings.Cut(in.Type, ".")
		if slices.Contains([]string{"24xlarge", "32xlarge", "48xlarge", "metal"}, size) {
			return 100
		}
	}
	return 10
}

func (e *Emulator) checkSourcesPerTarget(target *Target, eniID string) *apiError {
	if target.ENI == "" {
		return nil // NLB and GWLB endpoint targets take any number of sources
	}
	sources := map[string]bool{}
	for _, s := range e.sessions {
		if s.TargetID == target.ID {
			sources[s.ENI] = true
		}
	}
	if limit := e.sourcesPerTarget(target); !sources[eniID] && len(sources) >= limit {
		return errf(400, "TrafficMirrorSourcesPerTargetLimitExceeded", "traffic mirror target %s already has %d sources", target.ID, limit)
	}
	return nil
}

// setPacketLength validates PacketLength: 1-8500 for NLB targets, which default to 8500.
func (e *Emulator) setPacketLength(s *Session, target *Target, v string) *apiError {
	if v == "" {
		if target.NLBArn != "" {
			s.PacketLength = 8500
		} else {
			s.PacketLength = 0
		}
		return nil
	}
	n, err := strconv.Atoi(v)
	limit := 65535
	if target.NLBArn != "" {
		limit = 8500
	}
	if err != nil || n < 1 || n > limit {
		return errf(400, "InvalidParameterValue", "PacketLength must be 1-%d for this target, got %q", limit, v)
	}
	s.PacketLength = n
	return nil
}

func (e *Emulator) modifySession(form url.Values) (string, *apiError) {
	id := form.Get("TrafficMirrorSessionId")
	cur := e.sessions[id]
	if cur == nil {
		return "", errf(400, "InvalidTrafficMirrorSessionId.NotFound", "The traffic mirror session '%s' does not exist", id)
	}
	next := *cur
	if v := form.Get("TrafficMirrorTargetId"); v != "" {
		t := e.targets[v]
		if t == nil {
			return "", errf(400, "InvalidTrafficMirrorTargetId.NotFound", "The traffic mirror target '%s' does not exist", v)
		}
		if err := e.checkSourcesPerTarget(t, cur.ENI); err != nil {
			return "", err
		}
		next.TargetID = v
	}
	if v := form.Get("TrafficMirrorFilterId"); v != "" {
		if e.filters[v] == nil {
			return "", errf(400, "InvalidTrafficMirrorFilterId.NotFound", "The traffic mirror filter '%s' does not exist", v)
		}
		next.FilterID = v
	}
	if v := form.Get("SessionNumber"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 32766 {
			return "", errf(400, "InvalidParameterValue", "SessionNumber must be 1-32766, got %q", v)
		}
		for _, s := range e.sessions {
			if s.ENI == cur.ENI && s.ID != id && s.Number == n {
				return "", errf(400, "InvalidParameterValue", "session number %d is already used on %s by %s", n, cur.ENI, s.ID)
			}
		}
		next.Number = n
	}
	if v := form.Get("VirtualNetworkId"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 1<<24-1 {
			return "", errf(400, "InvalidParameterValue", "VirtualNetworkId must be 0-16777215, got %q", v)
		}
		next.VNI = n
	}
	target := e.targets[next.TargetID]
	removed := flatList(form, "RemoveField")
	switch {
	case form.Get("PacketLength") != "":
		if err := e.setPacketLength(&next, target, form.Get("PacketLength")); err != nil {
			return "", err
		}
	case slices.Contains(removed, "packet-length") || next.TargetID != cur.TargetID:
		_ = e.setPacketLength(&next, target, "")
	}
	if slices.Contains(removed, "description") {
		next.Description = ""
	} else if v := form.Get("Description"); v != "" {
		next.Description = v
	}
	if dryRun(form) {
		return "", errDryRun
	}
	*cur = next
	var b xb
	b.open("trafficMirrorSession")
	b.WriteString(sessionXML(cur, e.Account))
	b.close("trafficMirrorSession")
	return b.String(), nil
}

// String describes a session for test failure messages.
func (s Session) String() string {
	return fmt.Sprintf("%s(%s→%s #%d vni %d)", s.ID, s.ENI, s.TargetID, s.Number, s.VNI)
}
