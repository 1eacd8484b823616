/* SPDX-License-Identifier: Apache-2.0 */
/* The thin context layer: each program's logic is written once over these
 * helpers and built twice, for XDP (-DMZ_HOOK_XDP) and for tc
 * (-DMZ_HOOK_TC). The hook is a build choice because the two context types
 * differ; everything else is decided at run time.
 *
 * Encapsulation and decapsulation are normalised to one picture: after
 * ctx_push_head(len) the frame that was there starts at offset len and
 * [0, len) is free for the outer headers; ctx_pop_head(len) removes the
 * first len bytes. tc inserts and removes room behind the MAC header, so it
 * moves one Ethernet header to keep that picture. */
#ifndef MZ_CTX_H
#define MZ_CTX_H

#include "common.h"

#if defined(MZ_HOOK_XDP)

#define mz_ctx xdp_md
#define MZ_SEC "xdp"
#define MZ_HOOK_ID MZ_HOOK_ID_XDP
#define CTX_PASS XDP_PASS
#define CTX_DROP XDP_DROP

static __always_inline void *ctx_data(struct xdp_md *ctx) { return (void *)(long)ctx->data; }
static __always_inline void *ctx_data_end(struct xdp_md *ctx) { return (void *)(long)ctx->data_end; }
static __always_inline __u32 ctx_len(struct xdp_md *ctx) { return bpf_xdp_get_buff_len(ctx); }
static __always_inline __u32 ctx_ifindex(struct xdp_md *ctx) { return ctx->ingress_ifindex; }
static __always_inline void ctx_pull(struct xdp_md *ctx, __u32 len) { }

static __always_inline int ctx_push_head(struct xdp_md *ctx, __u32 len)
{
	return bpf_xdp_adjust_head(ctx, -(int)len);
}

static __always_inline int ctx_pop_head(struct xdp_md *ctx, __u32 len)
{
	return bpf_xdp_adjust_head(ctx, (int)len);
}

/* Back out of the arrival interface; see mz_config.xdp_tx_redirect. */
static __always_inline int ctx_tx(struct xdp_md *ctx, int by_redirect)
{
	return by_redirect ? bpf_redirect(ctx->ingress_ifindex, 0) : XDP_TX;
}

static __always_inline int ctx_redirect(struct xdp_md *ctx, __u32 ifindex)
{
	return bpf_redirect(ifindex, 0);
}

/* Into an endpoint behind its host-side veth. */
static __always_inline int ctx_redirect_endpoint(struct xdp_md *ctx, __u32 ifindex)
{
	return bpf_redirect(ifindex, 0);
}

/* Opens n bytes of room at offset at: [0, at) moves to the front, [at, ...)
 * stays where it is. ctx_close removes them again. Only for the fixed
 * tunnel headers (at, n constants): the copy is unrolled, in 8-byte words
 * (and 2-byte ones for the rest: every `at` is even), each loaded before it
 * is stored, in the order that never reads a byte already overwritten.
 * Byte by byte, the copy spills registers and costs the callers' stacks
 * more than the verifier allows. */
static __always_inline int ctx_open(struct xdp_md *ctx, const __u32 at, const __u32 n)
{
	if (bpf_xdp_adjust_head(ctx, -(int)n))
		return -1;
	__u8 *d = (void *)(long)ctx->data;
	if ((void *)(d + at + n) > (void *)(long)ctx->data_end)
		return -1;
#pragma unroll
	for (__u32 i = 0; i + 8 <= at; i += 8)
		*(__u64 *)(d + i) = *(__u64 *)(d + i + n);
#pragma unroll
	for (__u32 i = at & ~7U; i < at; i += 2)
		*(__u16 *)(d + i) = *(__u16 *)(d + i + n);
	return 0;
}

static __always_inline int ctx_close(struct xdp_md *ctx, const __u32 at, const __u32 n)
{
	__u8 *d = (void *)(long)ctx->data;
	if ((void *)(d + at + n) > (void *)(long)ctx->data_end)
		return -1;
#pragma unroll
	for (int i = (int)at - 2; i >= (int)(at & ~7U); i -= 2)
		*(__u16 *)(d + i + n) = *(__u16 *)(d + i);
#pragma unroll
	for (int i = (int)(at & ~7U) - 8; i >= 0; i -= 8)
		*(__u64 *)(d + i + n) = *(__u64 *)(d + i);
	return bpf_xdp_adjust_head(ctx, (int)n);
}

#elif defined(MZ_HOOK_TC)

#define mz_ctx __sk_buff
#define MZ_SEC "tc"
#define MZ_HOOK_ID MZ_HOOK_ID_TC
#define CTX_PASS TC_ACT_OK
#define CTX_DROP TC_ACT_SHOT

static __always_inline void *ctx_data(struct __sk_buff *ctx) { return (void *)(long)ctx->data; }
static __always_inline void *ctx_data_end(struct __sk_buff *ctx) { return (void *)(long)ctx->data_end; }
static __always_inline __u32 ctx_len(struct __sk_buff *ctx) { return ctx->len; }
static __always_inline __u32 ctx_ifindex(struct __sk_buff *ctx) { return ctx->ifindex; }

/* Headers may sit in paged data; bring the first len bytes into the linear
 * area so direct packet access can reach them. */
static __always_inline void ctx_pull(struct __sk_buff *ctx, __u32 len)
{
	__u32 linear = ctx->data_end - ctx->data;
	if (linear < len && linear < ctx->len)
		bpf_skb_pull_data(ctx, ctx->len < len ? ctx->len : len);
}

static __always_inline int ctx_push_head(struct __sk_buff *ctx, __u32 len)
{
	/* bpf_skb_adjust_room knows only IP packets; ARP (small, never GSO)
	 * just gets more headroom. */
	if (ctx->protocol != ETH_P_IP_BE)
		return bpf_skb_change_head(ctx, len, 0);
	/* Keep the endpoint's TSO packets whole as UDP-tunnel GSO. */
	const __u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 |
			    BPF_F_ADJ_ROOM_ENCAP_L4_UDP | BPF_F_ADJ_ROOM_ENCAP_L2_ETH |
			    BPF_F_ADJ_ROOM_ENCAP_L2(MZ_ETH_LEN);
	__u8 eth[MZ_ETH_LEN];
	if (bpf_skb_load_bytes(ctx, 0, eth, sizeof(eth)) < 0)
		return -1;
	if (bpf_skb_adjust_room(ctx, (__s32)len, BPF_ADJ_ROOM_MAC, flags) < 0)
		return -1;
	return bpf_skb_store_bytes(ctx, len, eth, sizeof(eth), 0);
}

static __always_inline int ctx_pop_head(struct __sk_buff *ctx, __u32 len)
{
	__u8 eth[MZ_ETH_LEN];
	if (bpf_skb_load_bytes(ctx, len, eth, sizeof(eth)) < 0)
		return -1;
	if (bpf_skb_adjust_room(ctx, -(__s32)len, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_FIXED_GSO | MZ_ADJ_ROOM_DECAP_L3_IPV4) < 0)
		return -1;
	return bpf_skb_store_bytes(ctx, 0, eth, sizeof(eth), 0);
}

static __always_inline int ctx_tx(struct __sk_buff *ctx, int by_redirect)
{
	return bpf_redirect(ctx->ifindex, 0);
}

static __always_inline int ctx_redirect(struct __sk_buff *ctx, __u32 ifindex)
{
	return bpf_redirect(ifindex, 0);
}

/* Out of ifindex to the IPv4 next hop nh, whose MAC the kernel resolves
 * (and queues the packet for) when it is not known yet. */
static __always_inline int ctx_redirect_neigh(struct __sk_buff *ctx, __u32 ifindex, __be32 nh)
{
	struct bpf_redir_neigh n = { .nh_family = 2 /* AF_INET */, .ipv4_nh = nh };
	return bpf_redirect_neigh(ifindex, &n, sizeof(n), 0);
}

/* Straight into the endpoint's namespace: skips the host-side veth's
 * egress and its backlog queue. */
static __always_inline int ctx_redirect_endpoint(struct __sk_buff *ctx, __u32 ifindex)
{
	return bpf_redirect_peer(ifindex, 0);
}


/* tc inserts and removes room right behind the MAC header, so the headers
 * between it and `at` are copied over. A GSO packet would need its
 * transport header moved too; the first packet of a flow (the only one
 * that travels this way) is never one, so it is refused. */
static __always_inline int ctx_open(struct __sk_buff *ctx, const __u32 at, const __u32 n)
{
	__u8 buf[40];
	if (ctx->gso_size || at - MZ_ETH_LEN > sizeof(buf))
		return -1;
	if (bpf_skb_adjust_room(ctx, (__s32)n, BPF_ADJ_ROOM_MAC, 0) < 0)
		return -1;
	if (bpf_skb_load_bytes(ctx, MZ_ETH_LEN + n, buf, at - MZ_ETH_LEN) < 0)
		return -1;
	return bpf_skb_store_bytes(ctx, MZ_ETH_LEN, buf, at - MZ_ETH_LEN, 0);
}

static __always_inline int ctx_close(struct __sk_buff *ctx, const __u32 at, const __u32 n)
{
	__u8 buf[40];
	if (ctx->gso_size || at - MZ_ETH_LEN > sizeof(buf))
		return -1;
	if (bpf_skb_load_bytes(ctx, MZ_ETH_LEN, buf, at - MZ_ETH_LEN) < 0)
		return -1;
	if (bpf_skb_store_bytes(ctx, MZ_ETH_LEN + n, buf, at - MZ_ETH_LEN, 0) < 0)
		return -1;
	return bpf_skb_adjust_room(ctx, -(__s32)n, BPF_ADJ_ROOM_MAC, 0);
}

#else
#error "build with -DMZ_HOOK_XDP or -DMZ_HOOK_TC"
#endif

#endif
