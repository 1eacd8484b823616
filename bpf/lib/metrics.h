/* SPDX-License-Identifier: Apache-2.0 */
/* Verdicts, counters and trace events. Logic returns an enum mz_verdict or
 * a negative enum mz_drop_reason; only mz_finish turns that into the hook's
 * return code, counts it, and emits the event tracing asks for. */
#ifndef MZ_METRICS_H
#define MZ_METRICS_H

#include "ctx.h"
#include "maps.h"

/* What one pass learned about a packet, for the exit point. */
struct mz_pkt {
	__u32 vni;
	__u32 target_ifindex; /* MZ_V_REDIRECT: where to */
	__be32 inner_src;
	__be32 inner_dst;
	__be32 next_hop;
	__u32 len;
	__u8 into_endpoint; /* redirect into an endpoint's namespace */
	__u8 neigh;         /* tc: redirect resolving next_hop's MAC (bpf_redirect_neigh) */
};

#ifdef MZ_EXPLAIN
static __always_inline void count(__u32 id, __u32 len)
{
	__u32 zero = 0;
	struct mz_explain *x = bpf_map_lookup_elem(&mz_explain, &zero);
	/* (The barrier keeps the bound checked on the register used.) */
	asm volatile("" : "+r"(id));
	if (x && id < MZ_CNT__MAX) {
		asm volatile("" : "+r"(id));
		x->counts[id & 63]++;
		x->len = len;
	}
}

static __always_inline void count_drop(__u32 reason, __u32 len) {}
#else
static __always_inline void count(__u32 id, __u32 len)
{
	struct mz_counter *c = bpf_map_lookup_elem(&mz_counters, &id);
	if (c) {
		c->packets++;
		c->bytes += len;
	}
}

static __always_inline void count_drop(__u32 reason, __u32 len)
{
	struct mz_counter *c = bpf_map_lookup_elem(&mz_drops, &reason);
	if (c) {
		c->packets++;
		c->bytes += len;
	}
}
#endif

/* The transport of the packet as it is now (inside the tunnel when it is
 * encapsulated): protocol, ports and TCP flags, or nothing. Runs only for
 * traced packets. */
static __always_inline void trace_transport(struct mz_ctx *ctx, struct mz_event *ev)
{
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->ihl != 5)
		return;
	if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *u = (void *)(ip + 1);
		if ((void *)(u + 1) > end)
			return;
		if (u->dest == bpf_htons(MZ_GENEVE_PORT)) {
			struct mz_geneve *g = (void *)(u + 1);
			if ((void *)(g + 1) > end)
				return;
			eth = (void *)(g + 1) + (g->ver_optlen & 0x3f) * 4;
			if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
				return;
			ip = (void *)(eth + 1);
			if ((void *)(ip + 1) > end || ip->ihl != 5)
				return;
		}
	}
	ev->proto = ip->protocol;
	if (ip->frag_off & bpf_htons(0x1fff))
		return;
	__u8 *l4 = (void *)(ip + 1);
	if ((void *)(l4 + 8) > end)
		return;
	if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) {
		ev->sport = *(__be16 *)l4;
		ev->dport = *(__be16 *)(l4 + 2);
		if (ip->protocol == IPPROTO_TCP && (void *)(l4 + 14) <= end)
			ev->tcp_flags = l4[13];
	} else if (ip->protocol == IPPROTO_ICMP) {
		ev->sport = bpf_htons((__u16)l4[0] << 8 | l4[1]);
		ev->dport = *(__be16 *)(l4 + 4);
	}
}

/* Per-VPC packets: only VPCs user space made an entry for are counted. */
static __always_inline void count_vpc(__u32 vni, __u32 len, int dropped)
{
	if (!vni || !MZ_WRITES)
		return;
	struct mz_vpc_stat *s = bpf_map_lookup_elem(&mz_vpc_stats, &vni);
	if (!s)
		return;
	struct mz_counter *c = dropped ? &s->dropped : &s->forwarded;
	c->packets++;
	c->bytes += len;
}

static __always_inline void trace(struct mz_ctx *ctx, const struct mz_pkt *p, __u8 prog,
				  __u16 verdict, __u16 reason)
{
	__u32 zero = 0;
	const struct mz_knobs *k = bpf_map_lookup_elem(&mz_knobs, &zero);
	if (!MZ_WRITES || !k || !k->trace)
		return;
	if (!(k->trace & MZ_TRACE_ALL || (reason && (k->trace & MZ_TRACE_DROPS)))) {
		struct mz_trace_vpc_key tk = { .vni = p->vni };
		if (!(k->trace & MZ_TRACE_VPCS) || !p->vni || !bpf_map_lookup_elem(&mz_trace_vpcs, &tk))
			return;
	}
	struct mz_event ev = {
		.ts_ns = bpf_ktime_get_ns(),
		.vni = p->vni,
		.ifindex = ctx_ifindex(ctx),
		.target_ifindex = p->target_ifindex,
		.verdict = verdict,
		.reason = reason,
		.program = prog,
		.hook = MZ_HOOK_ID,
		.length = (__u16)p->len,
		.inner_src = p->inner_src,
		.inner_dst = p->inner_dst,
		.next_hop = p->next_hop,
	};
	trace_transport(ctx, &ev);
	/* No wakeup per event (a wakeup costs microseconds: a flood of drops
	 * would cost that each): the reader looks every 50 ms, and is woken
	 * only once a quarter of the ring waits. */
	__u64 wake = bpf_ringbuf_query(&mz_events, BPF_RB_AVAIL_DATA) >= MZ_EVENTS_BYTES / 4 ? BPF_RB_FORCE_WAKEUP
											     : BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&mz_events, &ev, sizeof(ev), wake) < 0)
		count(MZ_CNT_TRACE_LOST, 0);
}

static __always_inline int mz_finish(struct mz_ctx *ctx, int ret, struct mz_pkt *p, __u8 prog)
{
	__u32 base = prog == MZ_PROG_TRANSIT ? MZ_CNT_TRANSIT_PASS : MZ_CNT_AGENT_PASS;
	__u16 verdict = ret < 0 ? MZ_V_DROP : (__u16)ret;
	__u16 reason = ret < 0 ? (__u16)-ret : 0;

	if (verdict == MZ_V_TX)
		p->target_ifindex = ctx_ifindex(ctx);
	if (verdict < MZ_V_PASS || verdict > MZ_V_REDIRECT)
		verdict = MZ_V_DROP;
	if (reason)
		count_drop(reason, p->len);
	count(base + verdict - MZ_V_PASS, p->len);
	count_vpc(p->vni, p->len, verdict == MZ_V_DROP);
	trace(ctx, p, prog, verdict, reason);
#ifdef MZ_EXPLAIN
	{
		__u32 zero = 0;
		struct mz_explain *x = bpf_map_lookup_elem(&mz_explain, &zero);
		if (x) {
			x->verdict = verdict;
			x->reason = reason;
			x->target_ifindex = verdict == MZ_V_REDIRECT || verdict == MZ_V_TX ? p->target_ifindex : 0;
			x->next_hop = p->next_hop;
			x->into_endpoint = p->into_endpoint;
			x->neigh = p->neigh;
			x->vni = p->vni;
		}
		/* Nothing leaves: the caller reads the packet and the record. */
		return CTX_PASS;
	}
#endif

	switch (verdict) {
	case MZ_V_PASS:
		return CTX_PASS;
	case MZ_V_TX:
		return ctx_tx(ctx, prog == MZ_PROG_AGENT || mz_config.xdp_tx_redirect);
	case MZ_V_REDIRECT:
#if defined(MZ_HOOK_TC)
		if (p->neigh)
			return ctx_redirect_neigh(ctx, p->target_ifindex, p->next_hop);
#endif
		return p->into_endpoint ? ctx_redirect_endpoint(ctx, p->target_ifindex)
					: ctx_redirect(ctx, p->target_ifindex);
	default:
		return CTX_DROP;
	}
}

#endif
