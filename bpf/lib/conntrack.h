/* SPDX-License-Identifier: Apache-2.0 */
/* Conntrack: the flows a bouncer admitted, on the hosts of their
 * endpoints (mz_ct). One entry per flow, found from either direction. */
#ifndef MZ_CONNTRACK_H
#define MZ_CONNTRACK_H

#include "forward.h"

#define ICMP_ECHO_REQUEST 8
#define ICMP_ECHO_REPLY 0

/* A packet's flow, for conntrack and judging: ports of TCP, UDP and SCTP,
 * an ICMP echo's identifier as service flows use it, 0 otherwise (and in
 * fragments after the first). */
struct mz_pflow {
	__be32 src;
	__be32 dst;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 tcp_flags;
	__u16 reserved;
};

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

static __always_inline int pol_flow(struct mz_ctx *ctx, __u32 l3, struct mz_pflow *f)
{
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	if (l3 > 600)
		return -MZ_DROP_TRUNC_INNER;
	struct iphdr *ip = data + l3;
	if ((void *)(ip + 1) > end)
		return -MZ_DROP_TRUNC_INNER;
	f->src = ip->saddr;
	f->dst = ip->daddr;
	f->proto = ip->protocol;
	f->sport = 0;
	f->dport = 0;
	f->tcp_flags = 0;
	f->reserved = 0;
	if (ip->frag_off & bpf_htons(0x1fff))
		return 0;
	__u8 *l4 = (void *)ip + ip->ihl * 4;
	if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP || ip->protocol == IPPROTO_SCTP) {
		if ((void *)(l4 + 4) > end)
			return -MZ_DROP_TRUNC_INNER;
		f->sport = *(__be16 *)l4;
		f->dport = *(__be16 *)(l4 + 2);
		if (ip->protocol == IPPROTO_TCP) {
			if ((void *)(l4 + 14) > end)
				return -MZ_DROP_TRUNC_INNER;
			f->tcp_flags = l4[13];
		}
	} else if (ip->protocol == IPPROTO_ICMP) {
		if ((void *)(l4 + 8) > end)
			return -MZ_DROP_TRUNC_INNER;
		if (l4[0] == ICMP_ECHO_REQUEST)
			f->sport = *(__be16 *)(l4 + 4);
		else if (l4[0] == ICMP_ECHO_REPLY)
			f->dport = *(__be16 *)(l4 + 4);
	}
	return 0;
}

/* The flow's conntrack key: the lower (address, port) first. *second says
 * whether the packet's source is the key's second side. */
static __always_inline void ct_key(const struct mz_pflow *f, __u32 vni, struct mz_flow_key *k, int *second)
{
	__u64 s = (__u64)bpf_ntohl(f->src) << 16 | bpf_ntohs(f->sport);
	__u64 d = (__u64)bpf_ntohl(f->dst) << 16 | bpf_ntohs(f->dport);
	*second = s > d;
	k->vni = vni;
	k->src = *second ? f->dst : f->src;
	k->dst = *second ? f->src : f->dst;
	k->sport = *second ? f->dport : f->sport;
	k->dport = *second ? f->sport : f->dport;
	k->proto = f->proto;
	k->reserved[0] = k->reserved[1] = k->reserved[2] = 0;
}

static __always_inline __u64 ct_timeout_ns(const struct mz_ct *c)
{
	__u64 s;
	switch (c->state) {
	case MZ_CT_SYN: s = MZ_CT_TIMEOUT_SYN; break;
	case MZ_CT_ESTABLISHED: s = MZ_CT_TIMEOUT_ESTABLISHED; break;
	case MZ_CT_CLOSING: s = MZ_CT_TIMEOUT_CLOSING; break;
	case MZ_CT_CLOSED: s = MZ_CT_TIMEOUT_CLOSED; break;
	default:
		s = c->proto == IPPROTO_UDP ? MZ_CT_TIMEOUT_UDP
		    : c->proto == IPPROTO_ICMP ? MZ_CT_TIMEOUT_ICMP : MZ_CT_TIMEOUT_OTHER;
	}
	return s * 1000000000ULL;
}

/* Whether the entry still admits its flow: not expired, and admitted after
 * the endpoints' revocations (`revoked`: the later of the local ones). */
static __always_inline int ct_valid(const struct mz_ct *c, __u64 revoked, __u64 now)
{
	return c && c->admitted_ns >= revoked && c->admitted_ns != 0 && now - c->seen_ns <= ct_timeout_ns(c);
}

/* Moves a flow's entry (conntrack, SNAT, published) through the TCP
 * states, and refreshes the time of its last packet at most once a second
 * (a write per packet would cost more than the lookup). `from_opener`: the
 * packet comes from the side that opened the flow; `fin`: that side's FIN
 * flag (MZ_CT_F_FIN_FIRST or _SECOND); `reopen`: a SYN from the opener on a
 * closed entry starts it anew (a translation whose ports are used again),
 * where conntrack leaves it to its caller to judge the flow anew. */
static __always_inline void flow_track(__u8 *state, __u8 *flags, __u64 *seen, __u8 proto, __u8 fl,
				       int from_opener, __u8 fin, int reopen, __u64 now)
{
	if (!MZ_WRITES)
		return;
	__u8 s = *state;
	if (proto == IPPROTO_TCP) {
		if (fl & TCP_RST) {
			s = MZ_CT_CLOSED;
		} else if (fl & TCP_FIN) {
			if (!(*flags & fin))
				*flags |= fin;
			s = (*flags & (MZ_CT_F_FIN_FIRST | MZ_CT_F_FIN_SECOND)) ==
				    (MZ_CT_F_FIN_FIRST | MZ_CT_F_FIN_SECOND) ? MZ_CT_CLOSED : MZ_CT_CLOSING;
		} else if (s == MZ_CT_SYN && !from_opener && (fl & TCP_ACK)) {
			s = MZ_CT_ESTABLISHED;
		} else if (reopen && s == MZ_CT_CLOSED && from_opener && (fl & (TCP_SYN | TCP_ACK)) == TCP_SYN) {
			s = MZ_CT_SYN;
			*flags = 0;
		}
	}
	if (s != *state || now - *seen > 1000000000ULL) {
		*state = s;
		*seen = now;
	}
}

/* A conntrack entry: `second`, the packet goes from the key's second
 * address to its first. */
static __always_inline void ct_track(struct mz_ct *c, const struct mz_pflow *f, int second, __u64 now)
{
	int from_opener = second == !!(c->flags & MZ_CT_F_REPLY_FIRST);
	flow_track(&c->state, &c->flags, &c->seen_ns, f->proto, f->tcp_flags, from_opener,
		   second ? MZ_CT_F_FIN_SECOND : MZ_CT_F_FIN_FIRST, 0, now);
}

/* Installs (or renews) the flow's entry: a bouncer admitted it. `reverse`:
 * the flow was opened by the packet's destination. */
static __always_inline void ct_admit(const struct mz_pflow *f, __u32 vni, int reverse, __u64 now, __u32 len)
{
	struct mz_flow_key k;
	int second;
	ct_key(f, vni, &k, &second);
	struct mz_ct c = {
		.admitted_ns = now,
		.seen_ns = now,
		.proto = f->proto,
		.flags = (second != reverse) ? MZ_CT_F_REPLY_FIRST : 0,
	};
	if (f->proto == IPPROTO_TCP)
		c.state = (f->tcp_flags & TCP_SYN) && !(f->tcp_flags & TCP_ACK) ? MZ_CT_SYN : MZ_CT_ESTABLISHED;
	mz_update(&mz_ct, &k, &c, BPF_ANY);
	count(MZ_CNT_POL_CT_LEARN, len);
}

/* The check of a flow's packet on a host: 1 when a valid entry admits it
 * (and it is tracked), 0 when it must be judged, with *reverse set when
 * an entry says the packet's destination opened the flow. A global
 * function: its frame is not the caller's, whose stack is near full. */
MZ_SUBPROG int ct_check(struct mz_ctx *ctx, __u32 l3, __u32 vni, __u64 revoked, int *reverse)
{
	struct mz_pflow f;
	if (!reverse)
		return 0;
	*reverse = 0;
	if (pol_flow(ctx, l3, &f) < 0)
		return 0;
	struct mz_flow_key k;
	int second;
	ct_key(&f, vni, &k, &second);
	struct mz_ct *c = bpf_map_lookup_elem(&mz_ct, &k);
	if (!c)
		return 0;
	/* The packet's source is the key's `second`; the opener is the
	 * key's second when REPLY_FIRST. */
	*reverse = second != !!(c->flags & MZ_CT_F_REPLY_FIRST);
	__u64 now = bpf_ktime_get_ns();
	if (!ct_valid(c, revoked, now))
		return 0;
	/* A new connection on the ports of a closed one is judged anew. */
	if (c->state == MZ_CT_CLOSED && (f.tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN) {
		*reverse = 0;
		return 0;
	}
	ct_track(c, &f, second, now);
	return 1;
}

#endif
