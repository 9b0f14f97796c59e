/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * bpf_base.h: the few kernel UAPI types, helper declarations and map-definition macros the
 * appliance's XDP programs use. Written out here (instead of including <linux/bpf.h> and
 * libbpf's headers) so the object builds the same on any host with just clang: no
 * arch-specific include paths, no header version drift, reproducible bpf2go output.
 * Helper numbers are the stable UAPI ids from enum bpf_func_id.
 */
#ifndef METLO_BPF_BASE_H
#define METLO_BPF_BASE_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed long long __s64;

#define SEC(name) __attribute__((section(name), used))
#define __always_inline inline __attribute__((always_inline))
/* A global BPF function: verified once on its own (arguments: the context and scalars), not
 * once per call site; calling it costs a BPF-to-BPF call. */
#define __global_fn __attribute__((noinline))

/* BTF-style map definitions, as understood by cilium/ebpf and libbpf. */
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name
#define __array(name, val) typeof(val) *name[]

enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_LPM_TRIE = 11,
	BPF_MAP_TYPE_ARRAY_OF_MAPS = 12,
	BPF_MAP_TYPE_RINGBUF = 27,
};

/* Map flags. */
#define BPF_F_NO_PREALLOC (1U << 0)

/* bpf_map_update_elem flags. */
#define BPF_ANY 0

enum xdp_action {
	XDP_ABORTED = 0,
	XDP_DROP,
	XDP_PASS,
	XDP_TX,
	XDP_REDIRECT,
};

struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) = (void *)2;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static __u32 (*bpf_get_smp_processor_id)(void) = (void *)8;
static void *(*bpf_ringbuf_reserve)(void *ringbuf, __u64 size, __u64 flags) = (void *)131;
static void (*bpf_ringbuf_submit)(void *data, __u64 flags) = (void *)132;
static void (*bpf_ringbuf_discard)(void *data, __u64 flags) = (void *)133;
static __u64 (*bpf_ktime_get_coarse_ns)(void) = (void *)160;
static __u64 (*bpf_xdp_get_buff_len)(struct xdp_md *xdp_md) = (void *)188;
static long (*bpf_xdp_load_bytes)(struct xdp_md *xdp_md, __u32 offset, void *buf, __u32 len) = (void *)189;

/* Network byte order: the BPF target here is little endian (bpfel). */
#define bpf_htons(x) ((__u16)__builtin_bswap16(x))
#define bpf_ntohs(x) ((__u16)__builtin_bswap16(x))

#endif
