/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* proto.h: on-the-wire headers the capture program parses (natural layouts, no padding).
 * Multi-byte fields are in network byte order. */
#ifndef METLO_PROTO_H
#define METLO_PROTO_H

#include "bpf_base.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define ETH_P_TEB 0x6558 /* transparent Ethernet bridging: GENEVE carries an Ethernet frame */
#define ETH_P_MPLS_UC 0x8847
#define ETH_P_ERSPAN 0x88BE  /* ERSPAN types I and II over GRE */
#define ETH_P_ERSPAN3 0x22EB /* ERSPAN type III over GRE */

#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_GRE 47

struct ethhdr {
	__u8 dst[6];
	__u8 src[6];
	__u16 proto;
};

struct vlanhdr {
	__u16 tci;
	__u16 proto;
};

struct iphdr {
	__u8 ver_ihl;
	__u8 tos;
	__u16 tot_len;
	__u16 id;
	__u16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__u32 saddr;
	__u32 daddr;
};

struct ipv6hdr {
	__u32 ver_tc_flow;
	__u16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u32 saddr[4];
	__u32 daddr[4];
};

struct udphdr {
	__u16 source;
	__u16 dest;
	__u16 len;
	__u16 check;
};

/* RFC 2784: flags and version, protocol type; checksum, key and sequence number follow
 * when flagged. */
struct grehdr {
	__u16 flags;
	__u16 proto;
};

/* RFC 7348: flags (I = 0x08), 3 reserved bytes, 24-bit VNI, 1 reserved byte. */
struct vxlanhdr {
	__u8 flags;
	__u8 reserved1[3];
	__u8 vni[3];
	__u8 reserved2;
};

/* RFC 8926: version (2 bits) + option length in 4-byte words (6 bits), O/C flags,
 * protocol type, 24-bit VNI, reserved; options follow. */
struct genevehdr {
	__u8 ver_optlen;
	__u8 flags;
	__u16 proto;
	__u8 vni[3];
	__u8 reserved;
};

#endif
