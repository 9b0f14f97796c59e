// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// capture.c: the appliance's XDP program. It takes mirrored traffic off the NIC before the
// kernel stack sees it: VXLAN (AWS Traffic Mirroring), GENEVE (AWS GWLB, optionally carrying
// VXLAN) and, in raw mode, plain TCP frames addressed to someone else (GCP Packet Mirroring).
// The tunnel is stripped, the inner frame goes into this CPU's ring buffer behind a small
// metadata header, and the mirrored copy is dropped. Everything else — above all the
// appliance's own traffic — passes untouched.
//
// Every packet bumps COUNTER_RECEIVED and exactly one outcome counter, so the per-CPU
// counters always add up: received = vxlan + geneve + geneve_vxlan + raw + passed + non_tcp
// + filtered + malformed + ringbuf_full + rejected_source + rejected_vni + whole + fragment
// + fragment_shared. COUNTER_TRUNCATED additionally marks captured frames shorter than they
// were on the wire.

#include "headers/bpf_base.h"
#include "headers/proto.h"

char __license[] SEC("license") = "Dual BSD/GPL";

// Outcome of one packet; the Go metric label is the lower-cased name without COUNTER_.
enum counter {
	COUNTER_RECEIVED = 0,
	COUNTER_VXLAN,
	COUNTER_GENEVE,
	COUNTER_GENEVE_VXLAN,
	COUNTER_RAW,
	COUNTER_PASSED,
	COUNTER_NON_TCP,
	COUNTER_FILTERED,
	COUNTER_MALFORMED,
	COUNTER_RINGBUF_FULL,
	COUNTER_TRUNCATED,
	COUNTER_REJECTED_SOURCE, // a tunnel packet from an outer source outside accept_sources
	COUNTER_REJECTED_VNI,	 // a tunnel packet whose VNI is not in accept_vnis
	COUNTER_WHOLE,		 // a frame in an encapsulation the Go decoder opens: handed on whole
	COUNTER_FRAGMENT,	 // an IP fragment of mirrored traffic: handed on whole, dropped
	COUNTER_FRAGMENT_SHARED, // an IP fragment that may be the host's own: handed on whole and passed
	COUNTER_MAX,
};

// Tunnel type of a record; the values equal datapath.Encap.
enum encap {
	ENCAP_RAW = 0,
	ENCAP_VXLAN,
	ENCAP_GENEVE,
	ENCAP_GENEVE_VXLAN,
};

#define FRAME_FLAG_INNER_IP 0x01	 // data starts at an IP header (GENEVE 0x0800/0x86DD)
#define FRAME_FLAG_COARSE_TIME 0x02 // timestamp from the coarse clock (see may_start_message)
#define FRAME_FLAG_WHOLE 0x04	    // the whole received frame, tunnel and all: Go decodes it from the start

// Header in front of every ring-buffer record. The inner frame starts data_off bytes from
// the start of the record (not always right after the header: up to 7 bytes of alignment
// prefix sit between, see emit_sized). Records are longer than data_off + cap_len:
// reservations come in a few fixed sizes.
struct frame_meta {
	__u64 timestamp;   // CLOCK_MONOTONIC ns: bpf_ktime_get_ns, or coarse (FRAME_FLAG_COARSE_TIME)
	__u32 wire_len;	   // inner frame length on the wire (from the inner IP length if larger)
	__u32 vni;	   // VXLAN/GENEVE VNI, 0 for raw frames
	__u16 cap_len;	   // inner bytes at data_off
	__u16 data_off;	   // offset of the inner frame from the start of the record, >= 32
	__u8 encap;	   // enum encap
	__u8 flags;	   // FRAME_FLAG_*
	__u8 reserved[10]; // the header is 32 bytes: RESERVE_SLACK and the copy alignment rely on it
};

// Anchors that put these types into BTF, so bpf2go can generate their Go twins.
const struct frame_meta *unused_frame_meta __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));
const enum encap *unused_encap __attribute__((unused));

// Largest inner frame copied (AWS jumbo mirrors: 9001 MTU); longer frames are truncated.
#define MAX_CAPTURE 9216
#define MAX_TUNNEL_PORTS 4
#define MAX_FILTER_PORTS 16
#define MAX_ACCEPT_VNIS 16

// Load-time configuration, set by the Go loader before the program is verified.
volatile const __u16 vxlan_ports[MAX_TUNNEL_PORTS] = {4789};
volatile const __u16 geneve_ports[MAX_TUNNEL_PORTS] = {6081};
volatile const __u8 raw_mode = 1;	   // capture TCP not addressed to a local address
volatile const __u8 tcp_only = 0;	   // drop (and count) inner frames that are not TCP
volatile const __u32 filter_ports_len = 0; // >0: keep only TCP/UDP with a port in filter_ports
volatile const __u16 filter_ports[MAX_FILTER_PORTS] = {};
volatile const __u8 accept_sources_on = 0; // tunnels only from an outer source in accept_sources
volatile const __u32 accept_vnis_len = 0; // >0: tunnels only with one of the first accept_vnis_len VNIs
volatile const __u32 accept_vnis[MAX_ACCEPT_VNIS] = {};

// One ring buffer per CPU (index = bpf_get_smp_processor_id()); the loader resizes both
// levels from its configuration.
struct ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct ring);
} rings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// The appliance's own addresses, IPv4 as v4-mapped IPv6. Raw mode never captures these.
// The Go side follows the host's addresses live (rtnetlink) and updates this map, the filter
// below and local_prefixes while the program runs.
struct addr_key {
	__u32 addr[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64); // the loader sizes it
	__type(key, struct addr_key);
	__type(value, __u8);
} local_addrs SEC(".maps");

// Local routes wider than one address (AnyIP ranges: `ip route add local 10.1.0.0/24`),
// IPv4 as v4-mapped IPv6 (prefixlen + 96). Looked up only when local_filter says any exist.
struct prefix_key {
	__u32 prefixlen;
	__u32 addr[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct prefix_key);
	__type(value, __u8);
} local_prefixes SEC(".maps");

// A 512-bit filter over local_addrs: bit local_filter_bit(a) is set for every local address.
// A clear bit proves an address is not one of local_addrs without the hash lookup (~15–20
// ns), and mirrored traffic is almost never addressed to the appliance. Whoever adds a local
// address sets its bit after storing the address (the Go loader does), and clears bits only
// after recomputing them from the remaining addresses. prefixes counts local_prefixes.
struct local_filter {
	__u64 bits[8];
	__u32 prefixes;
	__u32 reserved;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct local_filter);
} local_filter SEC(".maps");

// local_filter_bit folds an address to 9 bits; xdp.localFilterBit is the Go twin.
static __always_inline __u32 local_filter_bit(const struct addr_key *k)
{
	__u32 x = k->addr[0] ^ k->addr[1] ^ k->addr[2] ^ k->addr[3];
	x ^= x >> 16;
	x ^= x >> 8;
	return x & 511;
}

static __always_inline int is_local(const struct addr_key *k)
{
	__u32 zero = 0;
	struct local_filter *lf = bpf_map_lookup_elem(&local_filter, &zero);
	if (!lf) // never: an array slot always exists
		return bpf_map_lookup_elem(&local_addrs, k) != 0;
	__u32 bit = local_filter_bit(k);
	if ((lf->bits[(bit >> 6) & 7] & (1ULL << (bit & 63))) && bpf_map_lookup_elem(&local_addrs, k))
		return 1;
	if (!lf->prefixes)
		return 0;
	struct prefix_key pk = {.prefixlen = 128};
	pk.addr[0] = k->addr[0];
	pk.addr[1] = k->addr[1];
	pk.addr[2] = k->addr[2];
	pk.addr[3] = k->addr[3];
	return bpf_map_lookup_elem(&local_prefixes, &pk) != 0;
}

// Outer source addresses tunnels are accepted from (the mirror sources' networks), as
// prefix_key (IPv4 v4-mapped). Set at load time; consulted only with accept_sources_on.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct prefix_key);
	__type(value, __u8);
} accept_sources SEC(".maps");

// What the parsers learn about an IP packet.
struct flow {
	void *l4;	// L4 header (may lie beyond data_end)
	__u32 l3_len;	// IP header + payload length as the IP header declares it
	__u16 sport, dport; // raw (network order) ports, 0 when unknown
	__u8 proto;	// L4 protocol
	__u8 ports_ok;	// sport/dport were read
	__u8 frag;	// an IP fragment (IPv4 MF or offset; an IPv6 fragment header right after the fixed one)
	struct addr_key dst;
	struct prefix_key src; // a full-length accept_sources key: looked up as it is
};

enum parse_result {
	PARSE_OK = 0,
	PARSE_NOT_IP, // a well-formed non-IP frame
	PARSE_BAD,    // truncated or inconsistent headers
};

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += 1;
}

static __always_inline int accepted_source(const struct prefix_key *src)
{
	return bpf_map_lookup_elem(&accept_sources, src) != 0;
}

// vni_rejected tells whether accept_vnis is set and vni is not in it. A list in the
// program's constants, not a map: no helper call in the middle of the tunnel parsers.
static __always_inline int vni_rejected(__u32 vni)
{
	if (!accept_vnis_len)
		return 0;
#pragma unroll
	for (__u32 i = 0; i < MAX_ACCEPT_VNIS; i++) {
		if (i >= accept_vnis_len)
			break;
		if (accept_vnis[i] == vni)
			return 0;
	}
	return 1;
}

static __always_inline int verdict(__u32 idx, int action)
{
	count(idx);
	return action;
}

static __always_inline int port_in(__u16 port, volatile const __u16 *list, __u32 n)
{
#pragma unroll
	for (__u32 i = 0; i < n; i++) {
		__u16 p = list[i];
		if (p == 0) // lists are packed: the first 0 ends them
			return 0;
		if (p == port)
			return 1;
	}
	return 0;
}

// parse_l2 steps over an Ethernet header and up to two VLAN tags (802.1Q, QinQ).
static __always_inline int parse_l2(void **pos, void *end, __u16 *proto)
{
	struct ethhdr *eth = *pos;
	if ((void *)(eth + 1) > end)
		return PARSE_BAD;
	__u16 p = eth->proto;
	void *cur = eth + 1;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (p != bpf_htons(ETH_P_8021Q) && p != bpf_htons(ETH_P_8021AD))
			break;
		struct vlanhdr *v = cur;
		if ((void *)(v + 1) > end)
			return PARSE_BAD;
		p = v->proto;
		cur = v + 1;
	}
	*pos = cur;
	*proto = p;
	return PARSE_OK;
}

// parse_l3 reads an IPv4 or IPv6 header at pos and, when present, the L4 ports; f->dst only
// when want_dst, f->src only when want_src (load-time constants at each call site).
static __always_inline int parse_l3(void *pos, void *end, __u16 proto, struct flow *f,
				    const int want_dst, const int want_src)
{
	// Callers do not zero their flows (a dozen stores per packet): whatever is read later
	// is set here, or read only after PARSE_OK.
	f->sport = 0;
	f->dport = 0;
	f->ports_ok = 0;
	f->frag = 0;
	// l3_len is read only after PARSE_OK, but clang may carry it in a register through
	// code shared by several parse sites; after a helper call on one of them the verifier
	// then sees an uninitialised register spilled (R4 !read_ok). One store settles it.
	f->l3_len = 0;

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = pos;
		if ((void *)(ip + 1) > end)
			return PARSE_BAD;
		__u32 ihl = (ip->ver_ihl & 0x0f) * 4;
		if ((ip->ver_ihl >> 4) != 4 || ihl < sizeof(*ip))
			return PARSE_BAD;
		f->l3_len = bpf_ntohs(ip->tot_len);
		if (f->l3_len < ihl)
			return PARSE_BAD;
		if (want_dst) {
			f->dst.addr[0] = 0;
			f->dst.addr[1] = 0;
			f->dst.addr[2] = 0xffff0000U; // ::ffff:a.b.c.d, little-endian load
			f->dst.addr[3] = ip->daddr;
		}
		if (want_src) {
			f->src.prefixlen = 128;
			f->src.addr[0] = 0;
			f->src.addr[1] = 0;
			f->src.addr[2] = 0xffff0000U;
			f->src.addr[3] = ip->saddr;
		}
		f->proto = ip->protocol;
		f->frag = (ip->frag_off & bpf_htons(0x3fff)) != 0;
		f->l4 = pos + ihl;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = pos;
		if ((void *)(ip6 + 1) > end)
			return PARSE_BAD;
		if ((*(__u8 *)ip6 >> 4) != 6)
			return PARSE_BAD;
		f->l3_len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
		if (want_dst) {
			f->dst.addr[0] = ip6->daddr[0];
			f->dst.addr[1] = ip6->daddr[1];
			f->dst.addr[2] = ip6->daddr[2];
			f->dst.addr[3] = ip6->daddr[3];
		}
		if (want_src) {
			f->src.prefixlen = 128;
			f->src.addr[0] = ip6->saddr[0];
			f->src.addr[1] = ip6->saddr[1];
			f->src.addr[2] = ip6->saddr[2];
			f->src.addr[3] = ip6->saddr[3];
		}
		f->proto = ip6->nexthdr;
		f->l4 = ip6 + 1;
		if (f->proto == IPPROTO_FRAGMENT) {
			// The protocol the datagram carries (what TCPOnly judges); l4 stays at the
			// fragment header.
			struct frag6hdr *fh = f->l4;
			f->frag = 1;
			if ((void *)(fh + 1) <= end)
				f->proto = fh->nexthdr;
		}
	} else {
		return PARSE_NOT_IP;
	}

	if (!f->frag && (f->proto == IPPROTO_TCP || f->proto == IPPROTO_UDP)) {
		__u16 *ports = f->l4;
		if ((void *)(ports + 2) <= end) {
			f->sport = ports[0];
			f->dport = ports[1];
			f->ports_ok = 1;
		}
	}
	return PARSE_OK;
}

// Each reservation is the bucket size plus RESERVE_SLACK: the 32-byte header and up to 7
// bytes of alignment prefix, rounded so that a record's footprint (8-byte ring header +
// reservation) is a multiple of 64 bytes.
#define RESERVE_SLACK 56

// DIRECT_MAX is the largest bucket copied with plain stores (larger ones, jumbo frames, go
// through bpf_xdp_load_bytes: unrolling the copy for them would bloat the program).
#define DIRECT_MAX 2048

// copy_linear copies the packet from src to dst with plain 8-byte loads and stores: whole
// 32-byte blocks and then whole words while they lie inside the packet (at most bound bytes,
// which the reservation must hold), then one last word that ends exactly at n and may
// overlap the previous one. The caller has checked 8 <= n <= bound and src + n <= data_end;
// bytes beyond n, when copied, are harmless slack.
// Why not bpf_xdp_load_bytes: the helper's memcpy costs ~100 ns more for frames under ~96
// bytes (measured on AMD EPYC, rep movsb into ring memory), which is most of a 64-byte
// frame's budget; plain stores cost ~15 ns there and no more than memcpy up to 1.5 KB.
static __always_inline void copy_linear(__u8 *dst, const __u8 *src, const void *end, __u32 n,
					const __u32 bound)
{
	__u32 i = 0;
#pragma unroll
	for (__u32 k = 0; k < bound / 32; k++) {
		if ((void *)(src + i + 32) > end)
			break;
		*(__u64 *)(dst + i) = *(const __u64 *)(src + i);
		*(__u64 *)(dst + i + 8) = *(const __u64 *)(src + i + 8);
		*(__u64 *)(dst + i + 16) = *(const __u64 *)(src + i + 16);
		*(__u64 *)(dst + i + 24) = *(const __u64 *)(src + i + 24);
		i += 32;
	}
#pragma unroll
	for (int k = 0; k < 3; k++) {
		if (i + 8 > bound || (void *)(src + i + 8) > end)
			break;
		*(__u64 *)(dst + i) = *(const __u64 *)(src + i);
		i += 8;
	}
	if (i < n) {
		// Re-derive the bound on the register the verifier sees: n - 8 <= bound - 8.
		__u32 last = n - 8;
		asm volatile("" : "+r"(last));
		if (last > bound - 8)
			return;
		if ((void *)(src + last + 8) > end)
			return;
		*(__u64 *)(dst + last) = *(const __u64 *)(src + last);
	}
}

// emit_sized copies the inner frame into a reservation of a fixed size (the verifier wants a
// constant); it returns 0, or -1 when the ring is full. Frames wholly in the linear part of
// the packet are copied with plain stores; jumbo frames and frames spread over XDP fragments
// through bpf_xdp_load_bytes.
static __always_inline int emit_sized(struct xdp_md *ctx, void *ring, struct frame_meta *m,
				      __u32 off, __u32 caplen, const __u32 size)
{
	// Re-check the bound on the very register handed to the helper: without the barrier
	// clang reuses an earlier copy the verifier has no upper bound for.
	asm volatile("" : "+r"(caplen));
	if (caplen > size)
		return -1;
	asm volatile("" : "+r"(caplen)); // keeps clang from fusing the two checks into one
	if (caplen == 0)
		return -1;
	struct frame_meta *r = bpf_ringbuf_reserve(ring, size + RESERVE_SLACK, 0);
	if (!r)
		return -1;
	*r = *m;
	// The copy starts pre bytes before the frame, at an 8-byte aligned packet address (a few
	// bytes of outer header come along and are skipped by data_off), so loads and stores
	// are both aligned: the record body starts 8-byte aligned too.
	__u32 pre = off & 7;
	r->data_off = sizeof(*r) + pre;
	__u8 *body = (__u8 *)(r + 1);
	if (size <= DIRECT_MAX && caplen >= 8) {
		void *data = (void *)(long)ctx->data;
		void *end = (void *)(long)ctx->data_end;
		__u32 base = off - pre;
		asm volatile("" : "+r"(base));
		if (base <= MAX_CAPTURE) {
			const __u8 *src = data + base;
			__u32 n = caplen + pre;
			if ((void *)(src + n) <= end) {
				copy_linear(body, src, end, n, size + 8);
				bpf_ringbuf_submit(r, 0);
				return 0;
			}
		}
	}
	if (bpf_xdp_load_bytes(ctx, off, body + pre, caplen) < 0) {
		bpf_ringbuf_discard(r, 0);
		return -1;
	}
	bpf_ringbuf_submit(r, 0);
	return 0;
}

// emit writes the frame starting at packet offset off into this CPU's ring. Reservations are
// bucketed so a 64-byte frame does not take a jumbo-sized slot.
static __always_inline int emit(struct xdp_md *ctx, struct frame_meta *m, __u32 off)
{
	__u32 cpu = bpf_get_smp_processor_id();
	void *ring = bpf_map_lookup_elem(&rings, &cpu);
	if (!ring)
		return -1;
	__u32 caplen = m->cap_len;
	if (caplen <= 128)
		return emit_sized(ctx, ring, m, off, caplen, 128);
	if (caplen <= 256)
		return emit_sized(ctx, ring, m, off, caplen, 256);
	if (caplen <= 512)
		return emit_sized(ctx, ring, m, off, caplen, 512);
	if (caplen <= 1024)
		return emit_sized(ctx, ring, m, off, caplen, 1024);
	if (caplen <= 1536)
		return emit_sized(ctx, ring, m, off, caplen, 1536);
	if (caplen <= 2048)
		return emit_sized(ctx, ring, m, off, caplen, 2048);
	if (caplen <= 4096)
		return emit_sized(ctx, ring, m, off, caplen, 4096);
	return emit_sized(ctx, ring, m, off, caplen, MAX_CAPTURE);
}

// parse_inner parses the frame at inner: an IP packet when inner_is_ip (the version nibble
// tells v4 from v6), else an Ethernet frame. *l3 is set to the IP header.
static __always_inline int parse_inner(void *inner, void *end, __u8 inner_is_ip, void **l3,
				       struct flow *f)
{
	__u16 proto = 0;
	*l3 = inner;
	if (inner_is_ip) {
		if (inner + 1 > end)
			return PARSE_BAD;
		proto = (*(__u8 *)inner >> 4) == 6 ? bpf_htons(ETH_P_IPV6) : bpf_htons(ETH_P_IP);
	} else if (parse_l2(l3, end, &proto) != PARSE_OK) {
		return PARSE_BAD;
	}
	return parse_l3(*l3, end, proto, f, 0, 0);
}

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04

// may_start_message tells whether a parsed inner packet needs a precise timestamp: anything
// that is not a whole TCP segment, a SYN/FIN/RST, or a segment whose payload starts with an
// upper-case ASCII letter (every HTTP/1.x request method and "HTTP/" status line does). Trace
// start times and durations come from the segments that start messages; the others' times
// only drive timeouts, for which the coarse clock (last tick, <= 4 ms old at HZ=250) is
// plenty. bpf_ktime_get_ns costs ~40 ns per packet on a VM with retpolines, the coarse
// clock ~15: on body segments and bare ACKs that is ~10% of the program.
static __always_inline int may_start_message(struct flow *f, void *end)
{
	if (f->proto != IPPROTO_TCP || !f->ports_ok)
		return 1;
	__u8 *th = f->l4;
	if ((void *)(th + 14) > end)
		return 1;
	if (th[13] & (TCP_FIN | TCP_SYN | TCP_RST))
		return 1;
	__u8 *payload = th + ((th[12] >> 4) * 4);
	if ((void *)(payload + 1) > end)
		return 0; // no payload: a bare ACK
	return *payload >= 'A' && *payload <= 'Z';
}

// capture applies the optional filter to the inner frame at inner (inner_is_ip: it starts at
// the IP header), already parsed into rc, l3 and f, and hands it to the ring. The mirrored
// copy is always dropped.
static __always_inline int capture(struct xdp_md *ctx, void *data, void *end, void *inner,
				   __u8 inner_is_ip, __u8 encap, __u32 vni, __u32 outcome, int rc,
				   void *l3, struct flow *fp)
{
	if (rc == PARSE_BAD)
		return verdict(COUNTER_MALFORMED, XDP_DROP);

	if (tcp_only && (rc != PARSE_OK || fp->proto != IPPROTO_TCP))
		return verdict(COUNTER_NON_TCP, XDP_DROP);
	// Fragments are kept: only a datagram's first fragment carries its ports, and Go
	// reassembles them.
	if (filter_ports_len > 0 && !fp->frag) {
		__u16 sport = bpf_ntohs(fp->sport), dport = bpf_ntohs(fp->dport);
		if (!fp->ports_ok || !(port_in(sport, filter_ports, MAX_FILTER_PORTS) ||
				     port_in(dport, filter_ports, MAX_FILTER_PORTS)))
			return verdict(COUNTER_FILTERED, XDP_DROP);
	}

	__u32 off = inner - data;
	// When the IP packet lies wholly in the first buffer (always, short of jumbo frames)
	// its end is the frame's end: no helper call. Bytes after it (Ethernet padding) are
	// not the packet's.
	__u32 total;
	if (rc == PARSE_OK && l3 + fp->l3_len <= end)
		total = (__u32)(l3 - data) + fp->l3_len;
	else
		total = bpf_xdp_get_buff_len(ctx);
	if (total <= off)
		return verdict(COUNTER_MALFORMED, XDP_DROP);
	__u32 len = total - off;

	struct frame_meta m = {};
	m.wire_len = len;
	if (rc == PARSE_OK) {
		__u32 declared = (__u32)(l3 - inner) + fp->l3_len;
		if (declared > len)
			m.wire_len = declared;
	}
	m.cap_len = len > MAX_CAPTURE ? MAX_CAPTURE : len;
	m.vni = vni;
	m.encap = encap;
	m.flags = inner_is_ip ? FRAME_FLAG_INNER_IP : 0;
	if (rc == PARSE_OK && !may_start_message(fp, end)) {
		m.timestamp = bpf_ktime_get_coarse_ns();
		m.flags |= FRAME_FLAG_COARSE_TIME;
	} else {
		m.timestamp = bpf_ktime_get_ns();
	}

	if (emit(ctx, &m, off) < 0)
		return verdict(COUNTER_RINGBUF_FULL, XDP_DROP);
	if (m.wire_len > m.cap_len)
		count(COUNTER_TRUNCATED);
	return verdict(outcome, XDP_DROP);
}

static __always_inline __u32 vni24(const __u8 *v)
{
	return ((__u32)v[0] << 16) | ((__u32)v[1] << 8) | v[2];
}

static __always_inline int handle_vxlan(struct xdp_md *ctx, void *data, void *end, void *pos)
{
	struct vxlanhdr *vx = pos;
	if ((void *)(vx + 1) > end || !(vx->flags & 0x08))
		return verdict(COUNTER_MALFORMED, XDP_DROP);
	if (vni_rejected(vni24(vx->vni)))
		return verdict(COUNTER_REJECTED_VNI, XDP_DROP);
	struct flow f;
	void *l3;
	int rc = parse_inner(vx + 1, end, 0, &l3, &f);
	return capture(ctx, data, end, vx + 1, 0, ENCAP_VXLAN, vni24(vx->vni), COUNTER_VXLAN, rc,
		       l3, &f);
}

static __always_inline int handle_geneve(struct xdp_md *ctx, void *data, void *end, void *pos)
{
	struct genevehdr *gn = pos;
	if ((void *)(gn + 1) > end || (gn->ver_optlen >> 6) != 0)
		return verdict(COUNTER_MALFORMED, XDP_DROP);
	__u32 optlen = (gn->ver_optlen & 0x3f) * 4;
	void *inner = (void *)(gn + 1) + optlen;
	__u32 vni = vni24(gn->vni);
	__u8 inner_is_ip = 1;
	__u16 proto = gn->proto;

	if (proto == bpf_htons(ETH_P_TEB)) {
		inner_is_ip = 0;
	} else if (proto != bpf_htons(ETH_P_IP) && proto != bpf_htons(ETH_P_IPV6)) {
		return verdict(COUNTER_MALFORMED, XDP_DROP);
	}

	// VXLAN nested in GENEVE: a GWLB endpoint in front of a mirror target.
	struct flow f;
	void *l3;
	int rc = parse_inner(inner, end, inner_is_ip, &l3, &f);
	if (rc == PARSE_OK && f.proto == IPPROTO_UDP && f.ports_ok &&
	    port_in(bpf_ntohs(f.dport), vxlan_ports, MAX_TUNNEL_PORTS)) {
		struct vxlanhdr *vx = f.l4 + sizeof(struct udphdr);
		if ((void *)(vx + 1) <= end && (vx->flags & 0x08)) {
			// The mirror session's VNI is the VXLAN one; GWLB's GENEVE VNI is its own.
			if (vni_rejected(vni24(vx->vni)))
				return verdict(COUNTER_REJECTED_VNI, XDP_DROP);
			struct flow nf;
			void *nl3;
			int nrc = parse_inner(vx + 1, end, 0, &nl3, &nf);
			return capture(ctx, data, end, vx + 1, 0, ENCAP_GENEVE_VXLAN, vni24(vx->vni),
				       COUNTER_GENEVE_VXLAN, nrc, nl3, &nf);
		}
	}
	if (vni_rejected(vni))
		return verdict(COUNTER_REJECTED_VNI, XDP_DROP);
	return capture(ctx, data, end, inner, inner_is_ip, ENCAP_GENEVE, vni, COUNTER_GENEVE, rc, l3,
		       &f);
}

// copy_whole hands the received frame on whole, outer headers and all, for the Go decoder to
// open: encapsulations this program does not strip (GRE with ERSPAN, Ethernet, IP or MPLS
// inside, IP in IP, MPLS) and IP fragments, which Go reassembles. It counts outcome and
// returns action: XDP_DROP for mirrored traffic, XDP_PASS for a fragment that may be the
// host's own (the kernel gets it too). A full ring counts ringbuf_full instead, with the
// same action. A global function: verified once, not at every call site.
__global_fn int copy_whole(struct xdp_md *ctx, __u32 outcome, __u32 action)
{
	__u32 total = bpf_xdp_get_buff_len(ctx);
	struct frame_meta m = {};
	m.wire_len = total;
	m.cap_len = total > MAX_CAPTURE ? MAX_CAPTURE : total;
	m.encap = ENCAP_RAW;
	m.flags = FRAME_FLAG_WHOLE;
	m.timestamp = bpf_ktime_get_ns();
	if (emit(ctx, &m, 0) < 0)
		return verdict(COUNTER_RINGBUF_FULL, action);
	if (m.wire_len > m.cap_len)
		count(COUNTER_TRUNCATED);
	return verdict(outcome, action);
}

// Furthest an IP header (after Ethernet and two VLAN tags) and a transport header (after
// IPv4 with options; IPv6's fixed header is shorter) can start. The global functions below
// get offsets as scalars, which they must bound themselves.
#define MAX_L3_OFF (14 + 2 * 4)
#define MAX_L4_OFF (MAX_L3_OFF + 60)

// accepted_addr tells whether src (IPv4 v4-mapped) is in accept_sources.
static __always_inline int accepted_addr(const struct addr_key *src)
{
	struct prefix_key pk = {.prefixlen = 128};
	pk.addr[0] = src->addr[0];
	pk.addr[1] = src->addr[1];
	pk.addr[2] = src->addr[2];
	pk.addr[3] = src->addr[3];
	return accepted_source(&pk);
}

// read_addrs reads the source and destination of the IP header at ip (IPv4 v4-mapped),
// telling v4 from v6 by the version nibble; -1 when it does not fit before end.
static __always_inline int read_addrs(void *ip, void *end, struct addr_key *src,
				      struct addr_key *dst)
{
	if (ip + 1 > end)
		return -1;
	__u8 ver = *(__u8 *)ip >> 4;
	if (ver == 4) {
		struct iphdr *h = ip;
		if ((void *)(h + 1) > end)
			return -1;
		src->addr[0] = 0;
		src->addr[1] = 0;
		src->addr[2] = 0xffff0000U;
		src->addr[3] = h->saddr;
		dst->addr[0] = 0;
		dst->addr[1] = 0;
		dst->addr[2] = 0xffff0000U;
		dst->addr[3] = h->daddr;
		return 0;
	}
	if (ver == 6) {
		struct ipv6hdr *h = ip;
		if ((void *)(h + 1) > end)
			return -1;
#pragma unroll
		for (int i = 0; i < 4; i++) {
			src->addr[i] = h->saddr[i];
			dst->addr[i] = h->daddr[i];
		}
		return 0;
	}
	return -1;
}

enum tunnel_kind {
	TUNNEL_NONE = 0, // not an encapsulation taken here, or the host's own tunnel
	TUNNEL_MIRROR,	 // mirrored traffic in an encapsulation the Go decoder opens
};

// ip_tunnel_kind classifies a GRE or IP-in-IP packet whose transport header starts at l4.
// ERSPAN and Ethernet over GRE are mirror encapsulations wherever they go. In raw mode (the
// appliance routes nothing) so are MPLS over GRE (the host runs no MPLS), and IP over GRE
// and IP in IP whose inner packet is addressed to someone else: a host's own tunnel
// delivers to the host, so an inner destination that is not local is a mirror's. The Go
// decoder still refuses inner traffic that touches the host's addresses.
static __always_inline int ip_tunnel_kind(void *l4, void *end, __u8 proto)
{
	void *inner = l4;
	if (proto == IPPROTO_GRE) {
		struct grehdr *gre = l4;
		if ((void *)(gre + 1) > end)
			return TUNNEL_NONE;
		__u16 gp = gre->proto;
		if (gp == bpf_htons(ETH_P_ERSPAN) || gp == bpf_htons(ETH_P_ERSPAN3) ||
		    gp == bpf_htons(ETH_P_TEB))
			return TUNNEL_MIRROR;
		if (!raw_mode)
			return TUNNEL_NONE;
		if (gp == bpf_htons(ETH_P_MPLS_UC))
			return TUNNEL_MIRROR;
		if (gp != bpf_htons(ETH_P_IP) && gp != bpf_htons(ETH_P_IPV6))
			return TUNNEL_NONE;
		__u16 flags = bpf_ntohs(gre->flags);
		if (flags & (GRE_ROUTING | GRE_VERSION))
			return TUNNEL_NONE; // PPTP's enhanced GRE, RFC 1701 source routes: not a mirror
		inner = (void *)(gre + 1) + ((flags & GRE_CSUM) ? 4 : 0) + ((flags & GRE_KEY) ? 4 : 0) +
			((flags & GRE_SEQ) ? 4 : 0);
	} else if (!raw_mode || (proto != IPPROTO_IPIP && proto != IPPROTO_IPV6)) {
		return TUNNEL_NONE;
	}
	struct addr_key src, dst;
	if (read_addrs(inner, end, &src, &dst) < 0)
		return TUNNEL_NONE; // not an IP packet we can read: the kernel decides
	return is_local(&dst) ? TUNNEL_NONE : TUNNEL_MIRROR;
}

// ip_tunnel_verdict decides an unfragmented GRE or IP-in-IP packet whose IP header starts at
// l3_off and transport header at l4_off: a mirror encapsulation from an accepted source is
// handed on whole, one from elsewhere dropped, anything else passes.
__global_fn int ip_tunnel_verdict(struct xdp_md *ctx, __u32 l3_off, __u32 l4_off, __u32 proto)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	if (l3_off > MAX_L3_OFF || l4_off > MAX_L4_OFF)
		return verdict(COUNTER_PASSED, XDP_PASS);
	if (ip_tunnel_kind(data + l4_off, end, proto) != TUNNEL_MIRROR)
		return verdict(COUNTER_PASSED, XDP_PASS);
	if (accept_sources_on) {
		struct addr_key src, dst;
		if (read_addrs(data + l3_off, end, &src, &dst) < 0 || !accepted_addr(&src))
			return verdict(COUNTER_REJECTED_SOURCE, XDP_DROP);
	}
	return copy_whole(ctx, COUNTER_WHOLE, XDP_DROP);
}

// What a fragmented datagram's first fragment showed it to be, remembered for its later
// fragments, which carry no ports and no tunnel header.
enum frag_verdict {
	FRAG_CAPTURE = 1,   // mirrored traffic: every fragment to Go, none to the kernel
	FRAG_PASS,	    // the host's own, or nothing taken here: to the kernel only
	FRAG_REJECT_SOURCE, // a tunnel from outside accept_sources
	FRAG_REJECT_VNI,    // VXLAN with a VNI outside accept_vnis
};

// A datagram's identity (RFC 791: addresses, protocol, identification; RFC 8200: addresses
// and identification).
struct frag_key {
	struct addr_key src, dst; // IPv4 v4-mapped
	__u32 id;
	__u32 proto; // IPv4 protocol; FRAG_KEY_V6 for IPv6
};

struct frag_value {
	__u64 time; // coarse clock when the first fragment was seen
	__u32 verdict;
	__u32 reserved;
};

#define FRAG_KEY_V6 0x100
// A verdict older than this is not trusted: fragments of one datagram travel together, and an
// old entry may be for an earlier datagram with the same (wrapped) identification.
#define FRAG_VERDICT_TTL_NS 1000000000ULL

// Shared by all CPUs: a datagram's fragments may arrive on several.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct frag_key);
	__type(value, struct frag_value);
} frag_verdicts SEC(".maps");

// first_fragment_verdict decides a datagram by its first fragment, whose transport header
// starts at l4, the way the unfragmented packet would have been decided: a VXLAN or GENEVE
// tunnel (whatever its destination), ERSPAN and the other encapsulations ip_tunnel_kind
// names, and in raw mode TCP to an address that is not the host's are captured. The accept
// lists apply as far as the fragment shows them: the VXLAN VNI when its header is in it;
// GENEVE's VNI may be a nested VXLAN's, checked by Go after reassembly.
static __always_inline __u32 first_fragment_verdict(void *l4, void *end, __u8 proto,
						    struct frag_key *k)
{
	if (proto == IPPROTO_UDP) {
		struct udphdr *udp = l4;
		if ((void *)(udp + 1) > end)
			return FRAG_PASS;
		__u16 dport = bpf_ntohs(udp->dest);
		int vxlan = port_in(dport, vxlan_ports, MAX_TUNNEL_PORTS);
		if (!vxlan && !port_in(dport, geneve_ports, MAX_TUNNEL_PORTS))
			return FRAG_PASS;
		if (accept_sources_on && !accepted_addr(&k->src))
			return FRAG_REJECT_SOURCE;
		struct vxlanhdr *vx = (void *)(udp + 1);
		if (vxlan && (void *)(vx + 1) <= end && (vx->flags & 0x08) &&
		    vni_rejected(vni24(vx->vni)))
			return FRAG_REJECT_VNI;
		return FRAG_CAPTURE;
	}
	if (proto == IPPROTO_TCP)
		return raw_mode && !is_local(&k->dst) ? FRAG_CAPTURE : FRAG_PASS;
	if (ip_tunnel_kind(l4, end, proto) != TUNNEL_MIRROR)
		return FRAG_PASS;
	if (accept_sources_on && !accepted_addr(&k->src))
		return FRAG_REJECT_SOURCE;
	return FRAG_CAPTURE;
}

// fragment_verdict decides an IP fragment whose IP header starts at l3_off. Fragments are
// handed to Go whole (it reassembles them, then decodes the datagram like any frame).
// A first fragment decides its datagram (first_fragment_verdict) and the verdict is
// remembered for the later fragments. A later fragment whose first was not seen (reordered,
// lost, or older than FRAG_VERDICT_TTL_NS) is captured when it may be mirrored traffic:
// dropped when not for the host in raw mode (raw TCP or a tunnel to another address, as
// unfragmented); copied and also passed when addressed to the host (it may be the host's
// own; if it is not, the kernel holds it until its reassembly timeout and drops it) or when
// raw mode is off; only passed when it is for the host and comes from outside
// accept_sources (it cannot be a tunnel taken here).
__global_fn int fragment_verdict(struct xdp_md *ctx, __u32 l3_off)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	if (l3_off > MAX_L3_OFF)
		return verdict(COUNTER_PASSED, XDP_PASS);
	void *l3 = data + l3_off;
	struct frag_key k = {};
	void *l4;
	__u8 proto;
	int first, more;
	if (read_addrs(l3, end, &k.src, &k.dst) < 0)
		return verdict(COUNTER_PASSED, XDP_PASS);
	if ((*(__u8 *)l3 >> 4) == 4) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) > end)
			return verdict(COUNTER_PASSED, XDP_PASS);
		__u16 fo = bpf_ntohs(ip->frag_off);
		k.id = ip->id;
		k.proto = ip->protocol;
		proto = ip->protocol;
		first = (fo & 0x1fff) == 0;
		more = (fo & 0x2000) != 0;
		l4 = l3 + (ip->ver_ihl & 0x0f) * 4;
	} else {
		struct frag6hdr *fh = l3 + sizeof(struct ipv6hdr);
		if ((void *)(fh + 1) > end)
			return verdict(COUNTER_PASSED, XDP_PASS);
		__u16 fo = bpf_ntohs(fh->frag_off);
		k.id = fh->id;
		k.proto = FRAG_KEY_V6;
		proto = fh->nexthdr;
		first = (fo & 0xfff8) == 0;
		more = fo & 1;
		l4 = fh + 1;
	}

	__u32 v;
	if (first) {
		v = first_fragment_verdict(l4, end, proto, &k);
		if (more) { // not an atomic IPv6 fragment (RFC 6946): later fragments follow
			struct frag_value fv = {.time = bpf_ktime_get_coarse_ns(), .verdict = v};
			bpf_map_update_elem(&frag_verdicts, &k, &fv, BPF_ANY);
		}
	} else {
		struct frag_value *fv = bpf_map_lookup_elem(&frag_verdicts, &k);
		if (fv && bpf_ktime_get_coarse_ns() - fv->time < FRAG_VERDICT_TTL_NS) {
			v = fv->verdict;
		} else if (raw_mode && !is_local(&k.dst)) {
			return copy_whole(ctx, COUNTER_FRAGMENT, XDP_DROP);
		} else if (!accept_sources_on || accepted_addr(&k.src)) {
			return copy_whole(ctx, COUNTER_FRAGMENT_SHARED, XDP_PASS);
		} else {
			return verdict(COUNTER_PASSED, XDP_PASS);
		}
	}
	switch (v) {
	case FRAG_CAPTURE:
		return copy_whole(ctx, COUNTER_FRAGMENT, XDP_DROP);
	case FRAG_REJECT_SOURCE:
		return verdict(COUNTER_REJECTED_SOURCE, XDP_DROP);
	case FRAG_REJECT_VNI:
		return verdict(COUNTER_REJECTED_VNI, XDP_DROP);
	}
	return verdict(COUNTER_PASSED, XDP_PASS);
}

// l2_whole tells whether parse_l2 stopped at an EtherType that still wraps the packet in
// labels or tags it does not strip: MPLS, a third 802.1Q/802.1ad tag, a 0x9100/0x9200 S-tag.
static __always_inline int l2_whole(__u16 proto)
{
	return proto == bpf_htons(ETH_P_MPLS_UC) || proto == bpf_htons(ETH_P_MPLS_MC) ||
	       proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD) ||
	       proto == bpf_htons(ETH_P_QINQ1) || proto == bpf_htons(ETH_P_QINQ2);
}

SEC("xdp.frags")
int xdp_capture(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	void *pos = data;
	__u16 proto;

	count(COUNTER_RECEIVED);
	if (parse_l2(&pos, end, &proto) != PARSE_OK)
		return verdict(COUNTER_PASSED, XDP_PASS);
	// In raw mode, MPLS-labelled frames (the host runs no MPLS) and frames with a third VLAN
	// tag or an old-style S-tag (the host has no such stack of VLAN devices) are mirrored
	// traffic parse_l2 cannot open: the Go decoder pops any number of labels and tags.
	if (raw_mode && l2_whole(proto))
		return copy_whole(ctx, COUNTER_WHOLE, XDP_DROP);
	struct flow outer = {};
	if (parse_l3(pos, end, proto, &outer, raw_mode, accept_sources_on) != PARSE_OK)
		return verdict(COUNTER_PASSED, XDP_PASS);

	// IP fragments (a tunnel's outer packet split on a small-MTU path, fragmented raw
	// traffic) go to Go whole, for its defragmenter; the host's own reach the kernel.
	if (outer.frag)
		return fragment_verdict(ctx, pos - data);

	if (outer.proto == IPPROTO_GRE || outer.proto == IPPROTO_IPIP || outer.proto == IPPROTO_IPV6)
		return ip_tunnel_verdict(ctx, pos - data, outer.l4 - data, outer.proto);

	if (outer.proto == IPPROTO_UDP && outer.ports_ok) {
		__u16 dport = bpf_ntohs(outer.dport);
		void *payload = outer.l4 + sizeof(struct udphdr);
		int vxlan = port_in(dport, vxlan_ports, MAX_TUNNEL_PORTS);
		int geneve = !vxlan && port_in(dport, geneve_ports, MAX_TUNNEL_PORTS);
		// Tunnels are taken only from the mirror sources (forged tunnel packets would
		// become forged traces); the rest are dropped and counted.
		if ((vxlan || geneve) && accept_sources_on && !accepted_source(&outer.src))
			return verdict(COUNTER_REJECTED_SOURCE, XDP_DROP);
		if (vxlan)
			return handle_vxlan(ctx, data, end, payload);
		if (geneve)
			return handle_geneve(ctx, data, end, payload);
	}

	if (raw_mode && outer.proto == IPPROTO_TCP && !is_local(&outer.dst))
		return capture(ctx, data, end, data, 0, ENCAP_RAW, 0, COUNTER_RAW, PARSE_OK, pos,
			       &outer);

	return verdict(COUNTER_PASSED, XDP_PASS);
}

// xdp_baseline only copies each frame into this CPU's ring and drops it: the yardstick the
// capture program's benchmarks are measured against.
SEC("xdp.frags")
int xdp_baseline(struct xdp_md *ctx)
{
	__u32 total = bpf_xdp_get_buff_len(ctx);
	struct frame_meta m = {};
	m.wire_len = total;
	m.cap_len = total > MAX_CAPTURE ? MAX_CAPTURE : total;
	m.timestamp = bpf_ktime_get_ns();
	if (emit(ctx, &m, 0) < 0)
		return verdict(COUNTER_RINGBUF_FULL, XDP_DROP);
	return verdict(COUNTER_RAW, XDP_DROP);
}
