package awsemu

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Subnet is a VPC subnet in one availability zone.
type Subnet struct {
	ID, VPCID, AZ, CIDR string
	next                int
}

func (s *Subnet) allocate() string {
	p := netip.MustParsePrefix(s.CIDR)
	a := p.Addr()
	s.next++
	for range s.next + 3 { // AWS reserves the first four addresses
		a = a.Next()
	}
	return a.String()
}

// Permission is one inbound security-group rule.
type Permission struct {
	Proto    string // tcp, udp, -1
	From, To int
	CIDRs    []string
	Groups   []string // source security groups
}

// SecurityGroup is a VPC security group (inbound rules only).
type SecurityGroup struct {
	ID, VPCID, Name string
	Ingress         []Permission
}

// NACLEntry is one network ACL rule.
type NACLEntry struct {
	Number   int
	Egress   bool
	Proto    string // "-1", "6", "17"
	From, To int
	CIDR     string
	Allow    bool
}

// NACL is a network ACL and the subnets it applies to.
type NACL struct {
	ID, VPCID string
	Subnets   []string
	Entries   []NACLEntry
}

type peering struct{ id, a, b, status string }

// network is the VPC-level state: subnets, security groups, network ACLs, peerings.
type network struct {
	subnets  map[string]*Subnet
	groups   map[string]*SecurityGroup
	nacls    map[string]*NACL
	peerings []peering
}

func newNetwork(region string) network {
	n := network{subnets: map[string]*Subnet{}, groups: map[string]*SecurityGroup{}, nacls: map[string]*NACL{}}
	n.addVPC("vpc-0emu", "10.0.0.0/16")
	n.subnets["subnet-0emu"] = &Subnet{ID: "subnet-0emu", VPCID: "vpc-0emu", AZ: region + "a", CIDR: "10.0.0.0/20"}
	n.subnets["subnet-0emub"] = &Subnet{ID: "subnet-0emub", VPCID: "vpc-0emu", AZ: region + "b", CIDR: "10.0.16.0/20"}
	n.nacls["acl-0emu"].Subnets = []string{"subnet-0emu", "subnet-0emub"}
	return n
}

// addVPC creates a VPC's default security group (members reach each other) and default
// network ACL (everything allowed).
func (n *network) addVPC(vpc, cidr string) {
	sg := "sg-" + strings.TrimPrefix(vpc, "vpc-") + "default"
	n.groups[sg] = &SecurityGroup{ID: sg, VPCID: vpc, Name: "default", Ingress: []Permission{{Proto: "-1", Groups: []string{sg}}}}
	acl := "acl-" + strings.TrimPrefix(vpc, "vpc-")
	n.nacls[acl] = &NACL{ID: acl, VPCID: vpc, Entries: []NACLEntry{
		{Number: 100, Proto: "-1", CIDR: "0.0.0.0/0", Allow: true}, {Number: 100, Egress: true, Proto: "-1", CIDR: "0.0.0.0/0", Allow: true},
		{Number: 32767, Proto: "-1", CIDR: "0.0.0.0/0"}, {Number: 32767, Egress: true, Proto: "-1", CIDR: "0.0.0.0/0"},
	}}
}

func (n *network) defaultGroup(vpc string) string {
	return "sg-" + strings.TrimPrefix(vpc, "vpc-") + "default"
}

// AddSubnet seeds a subnet (and its VPC, with a default security group and network ACL, when new).
func (e *Emulator) AddSubnet(id, vpc, az, cidr string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	known := false
	for _, s := range e.net.subnets {
		known = known || s.VPCID == vpc
	}
	if !known {
		e.net.addVPC(vpc, cidr)
	}
	e.net.subnets[id] = &Subnet{ID: id, VPCID: vpc, AZ: az, CIDR: cidr}
	acl := e.net.nacls["acl-"+strings.TrimPrefix(vpc, "vpc-")]
	acl.Subnets = append(acl.Subnets, id)
}

// RemoveSubnet deletes a subnet, e.g. to leave a VPC with one AZ.
func (e *Emulator) RemoveSubnet(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.net.subnets, id)
}

// AddSecurityGroup seeds a security group with inbound rules.
func (e *Emulator) AddSecurityGroup(g SecurityGroup) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := g
	c.Ingress = slices.Clone(g.Ingress)
	e.net.groups[g.ID] = &c
}

// SecurityGroupRules returns a copy of a group's inbound rules.
func (e *Emulator) SecurityGroupRules(id string) []Permission {
	e.mu.Lock()
	defer e.mu.Unlock()
	if g := e.net.groups[id]; g != nil {
		return slices.Clone(g.Ingress)
	}
	return nil
}

// AddNACLEntry adds a rule to the default network ACL of vpc.
func (e *Emulator) AddNACLEntry(vpc string, entry NACLEntry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	acl := e.net.nacls["acl-"+strings.TrimPrefix(vpc, "vpc-")]
	acl.Entries = append(acl.Entries, entry)
}

// AddPeering seeds a VPC peering connection between two VPCs ("active", "pending-acceptance", …).
func (e *Emulator) AddPeering(a, b, status string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.net.peerings = append(e.net.peerings, peering{id: e.id("pcx"), a: a, b: b, status: status})
}

// instanceTypes is the slice of DescribeInstanceTypes the emulator knows: hypervisor and bare metal.
func instanceTypeInfo(t string) (hypervisor string, bareMetal, known bool) {
	family, size, ok := strings.Cut(t, ".")
	if !ok {
		return "", false, false
	}
	if size == "metal" || strings.HasPrefix(size, "metal-") {
		return "", true, true
	}
	switch family {
	case "t2", "m4", "c4", "r4", "m3", "c3", "i3", "d2", "x1", "p2", "p3", "g3", "h1", "m1":
		return "xen", false, true
	}
	return "nitro", false, true
}

func (e *Emulator) describeInstanceTypes(form url.Values) (string, *apiError) {
	var b xb
	b.open("instanceTypeSet")
	for _, t := range flatList(form, "InstanceType") {
		hv, metal, known := instanceTypeInfo(t)
		if !known {
			return "", errf(400, "InvalidInstanceType", "The following supplied instance types do not exist: [%s]", t)
		}
		b.open("item")
		b.el("instanceType", t)
		b.el("bareMetal", strconv.FormatBool(metal))
		b.el("hypervisor", hv)
		b.close("item")
	}
	b.close("instanceTypeSet")
	return b.String(), nil
}

func (e *Emulator) describeSubnets(form url.Values) (string, *apiError) {
	f := ec2Filters(form)
	if err := checkFilters(f, "vpc-id", "subnet-id", "availability-zone"); err != nil {
		return "", err
	}
	ids := flatList(form, "SubnetId")
	for _, id := range ids {
		if e.net.subnets[id] == nil {
			return "", errf(400, "InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist", id)
		}
	}
	var sel []*Subnet
	for _, k := range sortedKeys(e.net.subnets) {
		s := e.net.subnets[k]
		if (len(ids) == 0 || slices.Contains(ids, s.ID)) && match(f, "vpc-id", s.VPCID) && match(f, "subnet-id", s.ID) && match(f, "availability-zone", s.AZ) {
			sel = append(sel, s)
		}
	}
	items, next, err := page(sel, form.Get("NextToken"), e.PageSize)
	if err != nil {
		return "", err
	}
	var b xb
	b.open("subnetSet")
	for _, s := range items {
		b.open("item")
		b.el("subnetId", s.ID)
		b.el("vpcId", s.VPCID)
		b.el("availabilityZone", s.AZ)
		b.el("cidrBlock", s.CIDR)
		b.el("state", "available")
		b.close("item")
	}
	b.close("subnetSet")
	b.el("nextToken", next)
	return b.String(), nil
}

func permXML(b *xb, p Permission) {
	b.open("item")
	b.el("ipProtocol", p.Proto)
	if p.Proto != "-1" {
		b.num("fromPort", p.From)
		b.num("toPort", p.To)
	}
	b.open("ipRanges")
	for _, c := range p.CIDRs {
		b.open("item")
		b.el("cidrIp", c)
		b.close("item")
	}
	b.close("ipRanges")
	b.open("groups")
	for _, g := range p.Groups {
		b.open("item")
		b.el("groupId", g)
		b.close("item")
	}
	b.close("groups")
	b.close("item")
}

func (e *Emulator) describeSecurityGroups(form url.Values) (string, *apiError) {
	ids := flatList(form, "GroupId")
	for _, id := range ids {
		if e.net.groups[id] == nil {
			return "", errf(400, "InvalidGroup.NotFound", "The security group '%s' does not exist", id)
		}
	}
	var b xb
	b.open("securityGroupInfo")
	for _, k := range sortedKeys(e.net.groups) {
		g := e.net.groups[k]
		if len(ids) > 0 && !slices.Contains(ids, g.ID) {
			continue
		}
		b.open("item")
		b.el("groupId", g.ID)
		b.el("groupName", g.Name)
		b.el("vpcId", g.VPCID)
		b.open("ipPermissions")
		for _, p := range g.Ingress {
			permXML(&b, p)
		}
		b.close("ipPermissions")
		b.close("item")
	}
	b.close("securityGroupInfo")
	return b.String(), nil
}

func (e *Emulator) authorizeIngress(form url.Values) (string, *apiError) {
	g := e.net.groups[form.Get("GroupId")]
	if g == nil {
		return "", errf(400, "InvalidGroup.NotFound", "The security group '%s' does not exist", form.Get("GroupId"))
	}
	var add []Permission
	for i := 1; ; i++ {
		pfx := "IpPermissions." + strconv.Itoa(i)
		proto := form.Get(pfx + ".IpProtocol")
		if proto == "" {
			break
		}
		from, _ := strconv.Atoi(form.Get(pfx + ".FromPort"))
		to, _ := strconv.Atoi(form.Get(pfx + ".ToPort"))
		p := Permission{Proto: proto, From: from, To: to}
		for j := 1; ; j++ {
			c := form.Get(pfx + ".IpRanges." + strconv.Itoa(j) + ".CidrIp")
			if c == "" {
				break
			}
			if _, err := netip.ParsePrefix(c); err != nil {
				return "", errf(400, "InvalidParameterValue", "CIDR block %s is malformed", c)
			}
			p.CIDRs = append(p.CIDRs, c)
		}
		for _, x := range g.Ingress {
			if x.Proto == p.Proto && x.From == p.From && x.To == p.To && slices.Equal(x.CIDRs, p.CIDRs) {
				return "", errf(400, "InvalidPermission.Duplicate", "the specified rule already exists")
			}
		}
		add = append(add, p)
	}
	if len(add) == 0 {
		return "", errf(400, "MissingParameter", "IpPermissions is required")
	}
	if dryRun(form) {
		return "", errDryRun
	}
	g.Ingress = append(g.Ingress, add...)
	var b xb
	b.el("return", "true")
	return b.String(), nil
}

func (e *Emulator) describeNetworkAcls(form url.Values) (string, *apiError) {
	f := ec2Filters(form)
	if err := checkFilters(f, "vpc-id", "association.subnet-id"); err != nil {
		return "", err
	}
	var b xb
	b.open("networkAclSet")
	for _, k := range sortedKeys(e.net.nacls) {
		a := e.net.nacls[k]
		if !match(f, "vpc-id", a.VPCID) {
			continue
		}
		if want, ok := f["association.subnet-id"]; ok && !slices.ContainsFunc(want, func(s string) bool { return slices.Contains(a.Subnets, s) }) {
			continue
		}
		b.open("item")
		b.el("networkAclId", a.ID)
		b.el("vpcId", a.VPCID)
		b.open("entrySet")
		for _, x := range a.Entries {
			b.open("item")
			b.num("ruleNumber", x.Number)
			b.el("protocol", x.Proto)
			b.el("ruleAction", map[bool]string{true: "allow", false: "deny"}[x.Allow])
			b.el("egress", strconv.FormatBool(x.Egress))
			b.el("cidrBlock", x.CIDR)
			if x.Proto != "-1" {
				b.open("portRange")
				b.num("from", x.From)
				b.num("to", x.To)
				b.close("portRange")
			}
			b.close("item")
		}
		b.close("entrySet")
		b.open("associationSet")
		for _, s := range a.Subnets {
			b.open("item")
			b.el("networkAclId", a.ID)
			b.el("subnetId", s)
			b.close("item")
		}
		b.close("associationSet")
		b.close("item")
	}
	b.close("networkAclSet")
	return b.String(), nil
}

func (e *Emulator) describePeerings(form url.Values) (string, *apiError) {
	f := ec2Filters(form)
	if err := checkFilters(f, "status-code", "requester-vpc-info.vpc-id", "accepter-vpc-info.vpc-id"); err != nil {
		return "", err
	}
	var b xb
	b.open("vpcPeeringConnectionSet")
	for _, p := range e.net.peerings {
		if !match(f, "status-code", p.status) || !match(f, "requester-vpc-info.vpc-id", p.a) || !match(f, "accepter-vpc-info.vpc-id", p.b) {
			continue
		}
		b.open("item")
		b.el("vpcPeeringConnectionId", p.id)
		b.open("requesterVpcInfo")
		b.el("vpcId", p.a)
		b.close("requesterVpcInfo")
		b.open("accepterVpcInfo")
		b.el("vpcId", p.b)
		b.close("accepterVpcInfo")
		b.open("status")
		b.el("code", p.status)
		b.close("status")
		b.close("item")
	}
	b.close("vpcPeeringConnectionSet")
	return b.String(), nil
}

// sgAdmits reports whether the target ENI's security groups let UDP port in from the source ENI.
func (e *Emulator) sgAdmits(target, source *ENI, port int) bool {
	src, _ := netip.ParseAddr(source.PrivateIP)
	for _, gid := range target.Groups {
		g := e.net.groups[gid]
		if g == nil {
			continue
		}
		for _, p := range g.Ingress {
			if p.Proto != "-1" && (p.Proto != "udp" && p.Proto != "17" || p.From > port || p.To < port) {
				continue
			}
			for _, c := range p.CIDRs {
				if pfx, err := netip.ParsePrefix(c); err == nil && pfx.Contains(src) {
					return true
				}
			}
			for _, sg := range p.Groups {
				if slices.Contains(source.Groups, sg) {
					return true
				}
			}
		}
	}
	return false
}

func (g SecurityGroup) String() string { return fmt.Sprintf("%s(%d rules)", g.ID, len(g.Ingress)) }
