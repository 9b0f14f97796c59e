package lbsim

import (
	"fmt"
	"io"
	"net/netip"
	"sort"
	"text/tabwriter"
	"time"
)

// Model is how a load balancer chooses a member: the key it hashes, and how long it
// remembers a key's member (flow tracking, or stickiness).
type Model struct {
	Name string
	Key  func(p Packet) uint64
	Idle time.Duration // a key unused this long is hashed afresh
	Note string
}

// keyOf hashes addresses and numbers into one key (FNV-1a over their bytes).
func keyOf(addrs []netip.Addr, nums ...uint64) uint64 {
	h := uint64(14695981039346656037)
	add := func(b byte) {
		h ^= uint64(b)
		h *= 1099511628211
	}
	for _, a := range addrs {
		for _, b := range a.As16() {
			add(b)
		}
	}
	for _, n := range nums {
		for i := range 8 {
			add(byte(n >> (8 * i)))
		}
	}
	return h
}

// Models are the load-balancing behaviours that matter for mirrored traffic (docs: NLB
// "flow hash" on the 5-tuple for UDP with 120 s flow idle timeout; NLB target group
// stickiness.type=source_ip; GWLB 2-, 3- and 5-tuple flow stickiness; GCP internal load
// balancer for Packet Mirroring, symmetric hashing of the original packets).
var Models = []Model{
	{Name: "NLB 5-tuple, outer port symmetric", Idle: 120 * time.Second, Note: "source port the same for both directions (Linux VXLAN does this)",
		Key: func(p Packet) uint64 {
			return keyOf([]netip.Addr{p.OuterSrc, p.OuterDst}, 17, uint64(SymmetricPort(p)), 4789)
		}},
	{Name: "NLB 5-tuple, outer port directional", Idle: 120 * time.Second, Note: "source port hashed in packet order (AWS does not promise symmetry)",
		Key: func(p Packet) uint64 {
			return keyOf([]netip.Addr{p.OuterSrc, p.OuterDst}, 17, uint64(DirectionalPort(p)), 4789)
		}},
	{Name: "NLB source-IP stickiness", Idle: 24 * time.Hour, Note: "stickiness.type=source_ip: one source ENI, one appliance",
		Key: func(p Packet) uint64 { return keyOf([]netip.Addr{p.OuterSrc}) }},
	{Name: "GWLB 2-tuple", Idle: 350 * time.Second, Key: func(p Packet) uint64 { return keyOf([]netip.Addr{p.OuterSrc, p.OuterDst}) }},
	{Name: "GWLB 3-tuple", Idle: 350 * time.Second, Key: func(p Packet) uint64 { return keyOf([]netip.Addr{p.OuterSrc, p.OuterDst}, 17) }},
	{Name: "GWLB 5-tuple", Idle: 350 * time.Second, Note: "outer port directional",
		Key: func(p Packet) uint64 {
			return keyOf([]netip.Addr{p.OuterSrc, p.OuterDst}, 17, uint64(DirectionalPort(p)), 4789)
		}},
	{Name: "GCP ILB, symmetric hashing", Idle: 600 * time.Second, Note: "hash of the original packet's 5-tuple, both directions alike",
		Key: func(p Packet) uint64 {
			a, b, _ := canonical(netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort))
			return keyOf([]netip.Addr{a.Addr(), b.Addr()}, uint64(a.Port()), uint64(b.Port()), 6)
		}},
}

// Event changes the membership at a point in time.
type Event struct {
	At     time.Duration
	Add    int           // members joining
	Remove int           // members leaving: the busiest first (the worst case of a failure)
	Drain  time.Duration // how long a leaving member keeps the flows it has (deregistration delay)
}

// Result is what one model did to one capture.
type Result struct {
	Model      string
	Exchanges  int
	Whole      int     // exchanges some appliance received entirely (from one mirror source)
	Duplicated int     // exchanges two appliances each received entirely: two traces
	Packets    []int   // packets per member, in order of joining
	Imbalance  float64 // most-loaded member's packets over the mean
	MaxShare   float64 // most-loaded member's share of all packets
	Moved      int     // keys re-hashed because their member left
	Alive      []int   // members alive at the end
}

// WholeShare is the share of exchanges that stayed whole.
func (r Result) WholeShare() float64 {
	if r.Exchanges == 0 {
		return 1
	}
	return float64(r.Whole) / float64(r.Exchanges)
}

type member struct {
	id      int
	leaving bool
	leaveAt time.Duration // flows stop here (leaving + drain)
	gone    bool
}

type entry struct {
	m    int
	last time.Duration
}

// rendezvous picks the member with the highest hash of (key, member): a member joining or
// leaving moves only the keys it wins or held.
func rendezvous(k uint64, members []*member) int {
	best, bestH := -1, uint64(0)
	for _, m := range members {
		h := mix64(k ^ (uint64(m.id)+1)*0x9e3779b97f4a7c15)
		if best < 0 || h > bestH {
			best, bestH = m.id, h
		}
	}
	return best
}

// mix64 is SplitMix64's finaliser: every input bit moves every output bit.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

type exKey struct{ conn, idx int }
type copyKey struct {
	ex  exKey
	src netip.Addr
}

// Run replays the capture through a model with `initial` members and the events.
func Run(c *Capture, m Model, initial int, events []Event) Result {
	var members []*member
	for i := range initial {
		members = append(members, &member{id: i})
	}
	evs := append([]Event(nil), events...)
	sort.Slice(evs, func(i, j int) bool { return evs[i].At < evs[j].At })
	table := map[uint64]*entry{}
	r := Result{Model: m.Name}
	exIdx := map[copyKey]int{}       // per connection and mirror source: its copies count requests alike
	got := map[copyKey]map[int]int{} // copy → member → packets
	counts := map[int]int{}
	for _, p := range c.Packets {
		for len(evs) > 0 && evs[0].At <= p.T {
			ev := evs[0]
			evs = evs[1:]
			for range ev.Add {
				members = append(members, &member{id: len(members)})
			}
			for range ev.Remove {
				flows := map[int]int{}
				for _, e := range table {
					if p.T-e.last <= m.Idle {
						flows[e.m]++
					}
				}
				var victim *member
				for _, mm := range members {
					if !mm.leaving && (victim == nil || flows[mm.id] > flows[victim.id]) {
						victim = mm
					}
				}
				if victim != nil {
					victim.leaving, victim.leaveAt = true, ev.At+ev.Drain
				}
			}
		}
		var active []*member
		for _, mm := range members {
			if mm.leaving && p.T >= mm.leaveAt {
				mm.gone = true
			}
			if !mm.leaving {
				active = append(active, mm)
			}
		}
		k := m.Key(p)
		e := table[k]
		if e != nil && (p.T-e.last > m.Idle || members[e.m].gone) {
			if members[e.m].gone {
				r.Moved++
			}
			e = nil
		}
		if e == nil {
			e = &entry{m: rendezvous(k, active)}
			table[k] = e
		}
		e.last = p.T
		counts[e.m]++
		cc := copyKey{exKey{p.Conn, 0}, p.OuterSrc}
		if p.ReqStart {
			exIdx[cc]++
		}
		if idx := exIdx[cc]; idx > 0 {
			ck := copyKey{exKey{p.Conn, idx}, p.OuterSrc}
			if got[ck] == nil {
				got[ck] = map[int]int{}
			}
			got[ck][e.m]++
		}
	}
	wholeAt := map[exKey]map[int]bool{}
	for ck, by := range got {
		if wholeAt[ck.ex] == nil {
			wholeAt[ck.ex] = map[int]bool{}
		}
		if len(by) == 1 {
			for mm := range by {
				wholeAt[ck.ex][mm] = true
			}
		}
	}
	for _, at := range wholeAt {
		r.Exchanges++
		if len(at) > 0 {
			r.Whole++
		}
		if len(at) > 1 {
			r.Duplicated++
		}
	}
	total, maxN := 0, 0
	for _, mm := range members {
		r.Packets = append(r.Packets, counts[mm.id])
		total += counts[mm.id]
		maxN = max(maxN, counts[mm.id])
		if !mm.gone {
			r.Alive = append(r.Alive, mm.id)
		}
	}
	if total > 0 {
		r.MaxShare = float64(maxN) / float64(total)
		r.Imbalance = float64(maxN) / (float64(total) / float64(len(members)))
	}
	return r
}

// Scenario is one traffic pattern and membership story.
type Scenario struct {
	Name    string
	Members int
	Events  []Event
	Capture *Capture
}

// Report runs every model over every scenario and writes a table.
func Report(w io.Writer, scenarios []Scenario, models []Model) map[string]map[string]Result {
	out := map[string]map[string]Result{}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tmodel\texchanges\twhole\tduplicated\tmax member share\timbalance (max/mean)\tkeys moved")
	for _, s := range scenarios {
		out[s.Name] = map[string]Result{}
		for _, m := range models {
			r := Run(s.Capture, m, s.Members, s.Events)
			out[s.Name][m.Name] = r
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f%%\t%.1f%%\t%.1f%%\t%.2f\t%d\n", s.Name, m.Name, r.Exchanges, 100*r.WholeShare(),
				100*float64(r.Duplicated)/float64(max(1, r.Exchanges)), 100*r.MaxShare, r.Imbalance, r.Moved)
		}
	}
	_ = tw.Flush()
	return out
}
