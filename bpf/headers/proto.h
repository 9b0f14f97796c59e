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
#define ETH_P_QINQ1 0x9100 /* pre-802.1ad vendor S-tags */
#define ETH_P_QINQ2 0x9200
#define ETH_P_MPLS_UC 0x8847
#define ETH_P_MPLS_MC 0x8848
#define ETH_P_ERSPAN 0x88BE  /* ERSPAN types I and II over GRE */
#define ETH_P_ERSPAN3 0x22EB /* ERSPAN type III over GRE */

#define IPPROTO_IPIP 4 /* IPv4 in IP */
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_IPV6 41 /* IPv6 in IP */
#define IPPROTO_FRAGMENT 44 /* IPv6 fragment extension header */
#define IPPROTO_GRE 47

/* RFC 2784/2890 GRE flags (first 16 bits, network order once swapped): checksum, routing
 * (obsolete, RFC 1701), key and sequence number present; the low 3 bits are the version. */
#define GRE_CSUM 0x8000
#define GRE_ROUTING 0x4000
#define GRE_KEY 0x2000
#define GRE_SEQ 0x1000
#define GRE_VERSION 0x0007

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

/* RFC 8200 §4.5: next header, reserved, offset (13 bits, in 8-byte units) + 2 reserved bits +
 * M flag, identification. */
struct frag6hdr {
	__u8 nexthdr;
	__u8 reserved;
	__u16 frag_off;
	__u32 id;
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
