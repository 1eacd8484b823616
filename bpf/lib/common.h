/* SPDX-License-Identifier: Apache-2.0 */
#ifndef MZ_COMMON_H
#define MZ_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "mizar_abi.h"

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* A global function: the verifier checks it once on its own, with only its
 * argument types known, instead of along every path of its callers. Used
 * where a caller's many states would otherwise each walk the callee. */
#define MZ_SUBPROG __attribute__((noinline))

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define ETH_P_ARP_BE bpf_htons(ETH_P_ARP)
#define ETH_P_IP_BE bpf_htons(ETH_P_IP)

/* The explain build (-DMZ_EXPLAIN, for mizarctl trace): the same logic,
 * run on a packet through BPF_PROG_TEST_RUN, writing no table: what it
 * would learn, admit or translate stays unwritten, and what it counts and
 * decides goes to its own record (mz_explain) instead of the counters. */
#ifdef MZ_EXPLAIN
#define MZ_WRITES 0
#define mz_update(map, key, value, flags) ((void)(key), (void)(value), 0)
#define mz_delete(map, key) ((void)(key), 0)
#else
#define MZ_WRITES 1
#define mz_update(map, key, value, flags) bpf_map_update_elem(map, key, value, flags)
#define mz_delete(map, key) bpf_map_delete_elem(map, key)
#endif

/* Kernel 6.3 added this flag; Debian's 6.1 UAPI headers do not have it. */
#define MZ_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)

static __always_inline int mac_equal(const __u8 *a, const __u8 *b)
{
	return *(const __u32 *)a == *(const __u32 *)b &&
	       *(const __u16 *)(a + 4) == *(const __u16 *)(b + 4);
}

static __always_inline void mac_copy(__u8 *dst, const __u8 *src)
{
	*(__u32 *)dst = *(const __u32 *)src;
	*(__u16 *)(dst + 4) = *(const __u16 *)(src + 4);
}

/* The packet's Geneve VNI as a host-order u32. */
static __always_inline __u32 geneve_vni(const struct mz_geneve *g)
{
	return ((__u32)g->vni[0] << 16) | ((__u32)g->vni[1] << 8) | g->vni[2];
}

static __always_inline void geneve_set_vni(struct mz_geneve *g, __u32 vni)
{
	g->vni[0] = (vni >> 16) & 0xff;
	g->vni[1] = (vni >> 8) & 0xff;
	g->vni[2] = vni & 0xff;
	g->reserved = 0;
}

#endif
