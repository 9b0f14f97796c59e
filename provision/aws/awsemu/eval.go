package awsemu

import (
	"net/netip"
	"slices"
)

// Packet is one packet seen at a source ENI, for asking which session mirrors it.
type Packet struct {
	Dir              string // ingress (arriving at the ENI) or egress (leaving it)
	Proto            int
	Src, Dst         string
	SrcPort, DstPort int
}

// Receiver answers "which session receives this ENI's packet": AWS evaluates an interface's
// sessions in ascending session number and mirrors each packet once, by the first session
// whose filter accepts it. It returns that session's id, or "" when none does.
func (e *Emulator) Receiver(eni string, p Packet) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var on []*Session
	for _, s := range e.sessions {
		if s.ENI == eni {
			on = append(on, s)
		}
	}
	slices.SortFunc(on, func(a, b *Session) int { return a.Number - b.Number })
	for _, s := range on {
		if f := e.filters[s.FilterID]; f != nil && filterAccepts(f, p) {
			return s.ID
		}
	}
	return ""
}

// filterAccepts evaluates a filter's rules for one direction in ascending rule number; the
// first matching rule decides, and no match means the packet is not mirrored.
func filterAccepts(f *Filter, p Packet) bool {
	rules := slices.Clone(f.Rules)
	slices.SortFunc(rules, func(a, b *FilterRule) int { return a.Number - b.Number })
	src, err1 := netip.ParseAddr(p.Src)
	dst, err2 := netip.ParseAddr(p.Dst)
	if err1 != nil || err2 != nil {
		return false
	}
	for _, r := range rules {
		if r.Direction != p.Dir || r.Protocol != 0 && r.Protocol != p.Proto {
			continue
		}
		sp, e1 := netip.ParsePrefix(r.SrcCIDR)
		dp, e2 := netip.ParsePrefix(r.DstCIDR)
		if e1 != nil || e2 != nil || !sp.Contains(src) || !dp.Contains(dst) {
			continue
		}
		if r.SrcPorts != nil && (p.SrcPort < r.SrcPorts.From || p.SrcPort > r.SrcPorts.To) {
			continue
		}
		if r.DstPorts != nil && (p.DstPort < r.DstPorts.From || p.DstPort > r.DstPorts.To) {
			continue
		}
		return r.Action == "accept"
	}
	return false
}

// Delivered answers whether a packet of the source ENI reaches its mirror target: the session
// that receives it sends a VXLAN copy (UDP 4789) from the ENI's address, which an ENI target
// drops unless its security groups let it in. NLB targets are taken to deliver.
func (e *Emulator) Delivered(eni string, p Packet) bool {
	id := e.Receiver(eni, p)
	if id == "" {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.targets[e.sessions[id].TargetID]
	if t == nil || t.NLBArn != "" {
		return t != nil
	}
	dst, src := e.enis[t.ENI], e.enis[eni]
	return dst != nil && src != nil && e.sgAdmits(dst, src, 4789)
}
