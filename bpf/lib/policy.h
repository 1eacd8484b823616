/* SPDX-License-Identifier: Apache-2.0 */
/* Network policy. No host holds a rule: the bouncers of a flow's endpoints
 * judge its first packet from the endpoints' entries (mz_pol_eps, built by
 * MizarPolicy), and each host of the flow keeps a conntrack entry (mz_ct)
 * once a bouncer admitted it. The path of a first packet:
 *
 *   source host --JUDGE--> B1 (a bouncer of the source's subnet)
 *      [--POLICY options--> B2 (a bouncer of the destination's subnet)]
 *      --VERDICT--> source host (installs its entry)
 *      --VERDICT--> destination host (installs its entry, delivers)
 *
 * A packet for a flow a host has no valid entry for is never delivered: it
 * is sent to be judged. "The flow's source" is the endpoint that opened it:
 * the inner destination when a reply needs judging again (REVERSE). */
#ifndef MZ_POLICY_H
#define MZ_POLICY_H

#include "service.h"

/* ---- judging, on bouncers ---------------------------------------------- */

static __always_inline void bits_or(struct mz_pol_bits *a, const struct mz_pol_bits *b)
{
#pragma unroll
	for (int i = 0; i < MZ_POL_WORDS; i++)
		a->w[i] |= b->w[i];
}

static __always_inline int bits_meet(const struct mz_pol_bits *a, const struct mz_pol_bits *b)
{
	__u32 any = 0;
#pragma unroll
	for (int i = 0; i < MZ_POL_WORDS; i++)
		any |= a->w[i] & b->w[i];
	return any != 0;
}

static __always_inline int bit_set(const struct mz_pol_bits *a, __u32 bit)
{
	__u32 i = bit / 32;
	if (i >= MZ_POL_WORDS)
		return 0;
	return (a->w[i] >> (bit % 32)) & 1;
}

/* The ipBlock bits of an address of the VPC, or 0 for none. */
static __always_inline const struct mz_pol_bits *pol_blocks(__u32 vni, __be32 ip)
{
	struct mz_pol_block_key k = { .prefixlen = 64, .vni = vni, .ip = ip };
	return bpf_map_lookup_elem(&mz_pol_blocks, &k);
}

static __always_inline const struct mz_pol_set *pol_set(__u32 vni, __u64 id)
{
	struct mz_pol_set_key k = { .vni = vni, .id = id };
	return bpf_map_lookup_elem(&mz_pol_sets, &k);
}

static __always_inline int rule_covers(const struct mz_pol_rule *r, __u32 proto, __u32 port)
{
	return r->proto == 0 || (r->proto == proto && port >= r->first && port <= r->last);
}

/* One rule of an egress set: 1 when it covers (proto, port) and admits any
 * peer; else 0, with its bits added to *eg when it covers. A global
 * function, so the verifier checks it once, not once per loop turn. */
MZ_SUBPROG int pol_rule_egress(const struct mz_pol_rule *r, __u32 proto, __u32 port, struct mz_pol_bits *eg)
{
	if (!r || !eg || !rule_covers(r, proto, port))
		return 0;
	if (r->flags & MZ_POL_R_ANY_PEER)
		return 1;
	bits_or(eg, &r->bits);
	return 0;
}

/* One rule of an ingress set: 1 when it covers (proto, port) and admits
 * any peer, or a peer with one of the bits of a or b. */
MZ_SUBPROG int pol_rule_ingress(const struct mz_pol_rule *r, __u32 proto, __u32 port, const struct mz_pol_bits *a,
				const struct mz_pol_bits *b)
{
	if (!r || !rule_covers(r, proto, port))
		return 0;
	if (r->flags & MZ_POL_R_ANY_PEER)
		return 1;
	return (a && bits_meet(&r->bits, a)) || (b && bits_meet(&r->bits, b));
}

/* The source's egress on (proto, port): 1 admitted whatever the peer (not
 * isolated, a rule for any peer, or an ipBlock of the destination), else 0
 * with *eg the bits its rules admit there. A rule set the bouncer lacks
 * admits nothing. */
static __always_inline int pol_egress(const struct mz_pol_ep *src, __u32 vni, __be32 dst, __u8 proto, __u16 port,
				      struct mz_pol_bits *eg)
{
	if (!src || !src->egress)
		return 1;
	const struct mz_pol_set *set = pol_set(vni, src->egress);
	if (!set)
		return 0;
	__u32 n = set->n_rules;
	for (__u32 i = 0; i < MZ_POL_RULES; i++) {
		if (i >= n)
			break;
		if (pol_rule_egress(&set->rules[i], proto, port, eg))
			return 1;
	}
	const struct mz_pol_bits *b = pol_blocks(vni, dst);
	return b && bits_meet(eg, b);
}

/* The rest of egress, where the destination's entry is: its member bits,
 * or a named port it serves as (proto, port). */
static __always_inline int pol_egress_to(const struct mz_pol_bits *eg, const struct mz_pol_ep *dst, __u8 proto, __u16 port)
{
	if (!dst)
		return 0;
	if (bits_meet(eg, &dst->members))
		return 1;
	__u32 n = dst->n_named;
	for (__u32 i = 0; i < MZ_POL_NAMED; i++) {
		if (i >= n)
			break;
		const struct mz_pol_named *np = &dst->named[i];
		if (np->proto == proto && np->port == port && bit_set(eg, np->bit))
			return 1;
	}
	return 0;
}

/* The destination's ingress, from the source's member bits (and its
 * address's ipBlock bits). */
static __always_inline int pol_ingress(const struct mz_pol_ep *dst, __u32 vni, const struct mz_pol_bits *members,
				       __be32 src, __u8 proto, __u16 port)
{
	if (!dst || !dst->ingress)
		return 1;
	const struct mz_pol_set *set = pol_set(vni, dst->ingress);
	if (!set)
		return 0;
	const struct mz_pol_bits *b = pol_blocks(vni, src);
	__u32 n = set->n_rules;
	for (__u32 i = 0; i < MZ_POL_RULES; i++) {
		if (i >= n)
			break;
		if (pol_rule_ingress(&set->rules[i], proto, port, members, b))
			return 1;
	}
	return 0;
}

/* ---- moving a first packet through its judgment ------------------------ */

#define MZ_POL_LEN ((__u32)sizeof(struct mz_opt_policy))
#define MZ_POLEG_LEN ((__u32)sizeof(struct mz_opt_policy_eg))
#define MZ_VERDICT_LEN ((__u32)sizeof(struct mz_opt_verdict))

/* From pol_judge: the verdict is for this very host (it sent the packet);
 * the caller runs pol_apply next. Or: the destination is a service VIP, for
 * svc_answer (policy options, if any, are gone). */
#define MZ_POL_APPLY_HERE 101
/* From pol_judge: admitted, o->verdict_host and o->verdict_flags set; the
 * caller runs pol_verdict next (a sibling call: the stacks never add up). */
#define MZ_POL_ADMIT 105
#define MZ_POL_SERVICE 102
/* From pol_reroute: this host bounces for the flow's source; the caller
 * runs pol_judge next. */
#define MZ_POL_JUDGE_HERE 103

/* Sets the RTS option's flags. */
static __always_inline int rts_flags(struct mz_ctx *ctx, __u32 rts_off, __u8 flags)
{
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	if (rts_off > 512)
		return -MZ_DROP_TRUNC_GENEVE;
	struct mz_opt_rts *r = data + rts_off;
	if ((void *)(r + 1) > end)
		return -MZ_DROP_TRUNC_GENEVE;
	r->flags = flags;
	return 0;
}

/* Takes the policy options B1 put right after the Geneve header out
 * again, leaving `keep` bytes of them in place (0 or MZ_VERDICT_LEN). */
static __always_inline int pol_strip(struct mz_ctx *ctx, struct mz_outer *o, int keep)
{
	if (!o->pol_off)
		return 0;
	if (o->pol_off != MZ_RW_AT || (o->poleg_off && o->poleg_off != MZ_RW_AT + MZ_POL_LEN))
		return -MZ_DROP_GENEVE_OPTIONS;
	int n = (int)MZ_POL_LEN + (o->poleg_off ? (int)MZ_POLEG_LEN : 0) - keep;
	int r;
	if (o->poleg_off)
		r = keep ? ctx_close(ctx, MZ_RW_AT, MZ_POL_LEN + MZ_POLEG_LEN - MZ_VERDICT_LEN)
			 : ctx_close(ctx, MZ_RW_AT, MZ_POL_LEN + MZ_POLEG_LEN);
	else
		r = keep ? ctx_close(ctx, MZ_RW_AT, MZ_POL_LEN - MZ_VERDICT_LEN) : ctx_close(ctx, MZ_RW_AT, MZ_POL_LEN);
	if (r < 0)
		return -MZ_DROP_ADJUST_FAILED;
	r = outer_resize(ctx, -n);
	if (r < 0)
		return r;
	if (o->rts_off > MZ_RW_AT)
		o->rts_off -= n;
	o->len -= n;
	o->pol_off = o->poleg_off = 0;
	return 0;
}

/* Admitted: the packet goes back to the host that sent it (the RTS host)
 * with a verdict naming the inner destination's host (o->verdict_host,
 * o->verdict_flags, set by the caller). */
MZ_SUBPROG int pol_verdict(struct mz_ctx *ctx, struct mz_pkt *p, const struct mz_droplet *dr, struct mz_outer *o)
{
	if (!p || !dr || !o)
		return -MZ_DROP_NO_DROPLET;
	__be32 host = o->verdict_host;
	__u8 flags = o->verdict_flags;
	if (!o->rts_droplet)
		return -MZ_DROP_RTS_NOT_DROPLET;
	int r;
	if (o->pol_off) {
		r = pol_strip(ctx, o, MZ_VERDICT_LEN);
		if (r < 0)
			return r;
	} else {
		if (!tunnel_room(ctx, dr, MZ_VERDICT_LEN))
			return -MZ_DROP_POL_NO_ROOM;
		if (ctx_open(ctx, MZ_RW_AT, MZ_VERDICT_LEN) < 0)
			return -MZ_DROP_ADJUST_FAILED;
		r = outer_resize(ctx, MZ_VERDICT_LEN);
		if (r < 0)
			return r;
		if (o->rts_off >= MZ_RW_AT)
			o->rts_off += MZ_VERDICT_LEN;
		o->len += MZ_VERDICT_LEN;
	}
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	struct mz_opt_verdict *v = data + MZ_RW_AT;
	if ((void *)(v + 1) > end)
		return -MZ_DROP_ADJUST_FAILED;
	geneve_opt_init(&v->hdr, MZ_GENEVE_CRITICAL | MZ_OPT_VERDICT, sizeof(*v));
	v->host_ip = host;
	v->flags = flags;
	v->reserved[0] = v->reserved[1] = v->reserved[2] = 0;
	r = rts_flags(ctx, o->rts_off, 0);
	if (r < 0)
		return r;
	o->verdict_off = MZ_RW_AT;
	count(MZ_CNT_POL_ADMIT, p->len);
	if (o->rts.ip == dr->self.ip)
		return MZ_POL_APPLY_HERE;
	struct mz_host to = o->rts;
	return bounce(ctx, p, dr, &to, 1);
}

/* The endpoints' bouncers: judges the first packet of a flow. B1 (a
 * bouncer of the flow's source's subnet, asked by JUDGE) decides the
 * source's side; B2 (the destination's, reached with the policy options)
 * the rest. One host bouncing for both decides at once. */
MZ_SUBPROG int pol_judge(struct mz_ctx *ctx, struct mz_pkt *p, const struct mz_droplet *dr, struct mz_outer *o)
{
	if (!p || !dr || !o)
		return -MZ_DROP_NO_DROPLET;
	struct mz_pflow f;
	int r = pol_flow(ctx, o->len + MZ_ETH_LEN, &f);
	if (r < 0)
		return r;
	int rev = o->pol_off ? !!(o->pol_flags & MZ_POL_F_REVERSE) : !!(o->rts_flags & MZ_RTS_F_REVERSE);
	__be32 osrc = rev ? f.dst : f.src, odst = rev ? f.src : f.dst;
	__u8 proto = f.proto;
	__u16 port = 0;
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP)
		port = bpf_ntohs(rev ? f.sport : f.dport);
	__u32 vni = p->vni;

	const struct mz_subnet *sd = subnet_of(vni, odst);
	int dst_here = sd && (sd->flags & MZ_SUBNET_F_BOUNCER);
	struct mz_ep_key k = { .vni = vni, .ip = odst };
	const struct mz_endpoint *epd = dst_here ? bpf_map_lookup_elem(&mz_endpoints, &k) : 0;
	if (dst_here && !epd)
		return -MZ_DROP_NO_ENDPOINT;
	if (epd && epd->kind == MZ_EP_SCALED && !rev) {
		/* A service VIP: its backend is chosen first, and that flow judged. */
		r = pol_strip(ctx, o, 0);
		return r < 0 ? r : MZ_POL_SERVICE;
	}
	const struct mz_pol_ep *dst = epd ? bpf_map_lookup_elem(&mz_pol_eps, &k) : 0;
	__u32 zero = 0;
	struct mz_pol_bits *egp = bpf_map_lookup_elem(&mz_pol_scratch, &zero);
	if (!egp)
		return -MZ_DROP_NO_DROPLET;
	__builtin_memset(egp, 0, sizeof(*egp));
#define eg (*egp)

	if (o->pol_off) {
		/* B2. */
		if (!dst_here)
			return -MZ_DROP_POL_NO_JUDGE;
		void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
		if (o->pol_off > 512)
			return -MZ_DROP_TRUNC_GENEVE;
		struct mz_opt_policy *pol = data + o->pol_off;
		if ((void *)(pol + 1) > end)
			return -MZ_DROP_TRUNC_GENEVE;
		__u8 flags = pol->flags;
		__be32 host = rev ? pol->dst_host : epd->host.ip;
		/* Bit sets are read from the stack, not the packet: the rules are
		 * global functions, and bits are indexed. One buffer serves the
		 * egress bits, then the source's members. */
		if (!(flags & MZ_POL_F_EGRESS_OK)) {
			if (!o->poleg_off || o->poleg_off > 600)
				return -MZ_DROP_POL_EGRESS;
			struct mz_opt_policy_eg *e = data + o->poleg_off;
			if ((void *)(e + 1) > end)
				return -MZ_DROP_TRUNC_GENEVE;
			eg = e->bits;
			if (!pol_egress_to(&eg, dst, proto, port))
				return -MZ_DROP_POL_EGRESS;
			__u32 pol_off = o->pol_off;
			if (pol_off > 512)
				return -MZ_DROP_TRUNC_GENEVE;
			data = ctx_data(ctx);
			end = ctx_data_end(ctx);
			pol = data + pol_off;
			if ((void *)(pol + 1) > end)
				return -MZ_DROP_TRUNC_GENEVE;
		}
		eg = pol->members;
		if (!pol_ingress(dst, vni, &eg, osrc, proto, port))
			return -MZ_DROP_POL_INGRESS;
		if (!host)
			return -MZ_DROP_POL_NO_JUDGE;
		o->verdict_host = host;
		o->verdict_flags = rev ? MZ_POL_F_REVERSE : 0;
		return MZ_POL_ADMIT;
	}

	/* B1. */
	const struct mz_subnet *ss = subnet_of(vni, osrc);
	if (!ss || !(ss->flags & MZ_SUBNET_F_BOUNCER))
		return -MZ_DROP_POL_NO_JUDGE;
	k.ip = osrc;
	const struct mz_endpoint *eps = bpf_map_lookup_elem(&mz_endpoints, &k);
	if (!eps)
		return -MZ_DROP_NO_ENDPOINT;
	__be32 src_host = eps->host.ip;
	const struct mz_pol_ep *src = bpf_map_lookup_elem(&mz_pol_eps, &k);
	int egress_ok = pol_egress(src, vni, odst, proto, port, &eg);
	if (dst_here) {
		if (!egress_ok && !pol_egress_to(&eg, dst, proto, port))
			return -MZ_DROP_POL_EGRESS;
		if (!pol_ingress(dst, vni, src ? &src->members : 0, osrc, proto, port))
			return -MZ_DROP_POL_INGRESS;
		o->verdict_host = rev ? src_host : epd->host.ip;
		o->verdict_flags = rev ? MZ_POL_F_REVERSE : 0;
		return MZ_POL_ADMIT;
	}
	if (!sd)
		return -MZ_DROP_NO_ROUTE;
	struct mz_host to;
	r = pick_bouncer(sd, flow_hash_ips(osrc, odst, proto), &to);
	if (r < 0)
		return r;
	/* On to B2, with what only this host knows. */
	int grow = (int)MZ_POL_LEN + (egress_ok ? 0 : (int)MZ_POLEG_LEN);
	if (!tunnel_room(ctx, dr, grow))
		return -MZ_DROP_POL_NO_ROOM;
	r = egress_ok ? ctx_open(ctx, MZ_RW_AT, MZ_POL_LEN) : ctx_open(ctx, MZ_RW_AT, MZ_POL_LEN + MZ_POLEG_LEN);
	if (r < 0)
		return -MZ_DROP_ADJUST_FAILED;
	r = outer_resize(ctx, grow);
	if (r < 0)
		return r;
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	struct mz_opt_policy *pol = data + MZ_RW_AT;
	if ((void *)(pol + 1) > end)
		return -MZ_DROP_ADJUST_FAILED;
	geneve_opt_init(&pol->hdr, MZ_GENEVE_CRITICAL | MZ_OPT_POLICY, sizeof(*pol));
	pol->flags = (egress_ok ? MZ_POL_F_EGRESS_OK : 0) | (rev ? MZ_POL_F_REVERSE : 0);
	pol->reserved[0] = pol->reserved[1] = pol->reserved[2] = 0;
	pol->dst_host = rev ? src_host : 0;
	if (src)
		pol->members = src->members;
	else
		__builtin_memset(&pol->members, 0, sizeof(pol->members));
	if (!egress_ok) {
		struct mz_opt_policy_eg *e = (void *)(pol + 1);
		if ((void *)(e + 1) > end)
			return -MZ_DROP_ADJUST_FAILED;
		geneve_opt_init(&e->hdr, MZ_GENEVE_CRITICAL | MZ_OPT_POLICY_EG, sizeof(*e));
		e->bits = eg;
	}
#undef eg
	count(MZ_CNT_POL_FORWARD, p->len);
	return bounce(ctx, p, dr, &to, 0);
}

/* A verdict arrived: the flow's entry is installed here; the packet goes
 * on to the destination's host (this host sent it) or into the endpoint. */
MZ_SUBPROG int pol_apply(struct mz_ctx *ctx, struct mz_pkt *p, const struct mz_droplet *dr, struct mz_outer *o)
{
	if (!p || !dr || !o)
		return -MZ_DROP_NO_DROPLET;
	struct mz_pflow f;
	__u32 l3 = o->len + MZ_ETH_LEN;
	int r = pol_flow(ctx, l3, &f);
	if (r < 0)
		return r;
	const struct mz_local_ep *local = local_ep(p->vni, f.dst);
	int sender = o->rts.ip == dr->self.ip;
	if (!local && !sender)
		return -MZ_DROP_POL_VERDICT;
	ct_admit(&f, p->vni, !!(o->verdict_flags & MZ_POL_F_REVERSE), bpf_ktime_get_ns(), p->len);
	if (local) {
		learn(p->vni, f.src, &o->rts, o->rts_droplet, dr, p->len);
		r = nat_active() ? svc_rnat(ctx, p, l3) : 0;
		if (r < 0)
			return r;
		return deliver(ctx, p, local, o->len, 1);
	}
	struct mz_host to = { .ip = o->verdict_host };
	if (to.ip == dr->self.ip || !droplet_mac(to.ip, dr, to.mac))
		return -MZ_DROP_POL_VERDICT;
	learn(p->vni, f.dst, &to, MZ_HOST_DROPLET, dr, p->len);
	r = rts_flags(ctx, o->rts_off, MZ_RTS_F_DIRECT);
	if (r < 0)
		return r;
	return bounce(ctx, p, dr, &to, 1);
}

/* A packet this host holds no valid entry for, arrived on the direct path
 * (or at a service's client host): it goes to be judged, by a bouncer of
 * the subnet of the flow's source (`rev`: the inner destination). Its RTS
 * still names the host that sent it, which gets the verdict. */
MZ_SUBPROG int pol_reroute(struct mz_ctx *ctx, struct mz_pkt *p, const struct mz_droplet *dr, struct mz_outer *o, int rev)
{
	if (!p || !dr || !o)
		return -MZ_DROP_NO_DROPLET;
	__be32 src, dst;
	int r = inner_addrs(ctx, o->len + MZ_ETH_LEN, &src, &dst);
	if (r < 0)
		return r;
	__be32 osrc = rev ? dst : src;
	const struct mz_subnet *s = subnet_of(p->vni, osrc);
	if (!s)
		return -MZ_DROP_NO_ROUTE;
	struct mz_host to;
	r = pick_bouncer(s, flow_hash_ips(src, dst, 0), &to);
	if (r < 0)
		return r;
	__u8 flags = MZ_RTS_F_JUDGE | (rev ? MZ_RTS_F_REVERSE : 0);
	r = rts_flags(ctx, o->rts_off, flags);
	if (r < 0)
		return r;
	o->rts_flags = flags;
	count(MZ_CNT_POL_REROUTE, p->len);
	if (to.ip == dr->self.ip)
		return MZ_POL_JUDGE_HERE;
	return bounce(ctx, p, dr, &to, 0);
}

/* A bouncer's word that an endpoint's flows must be judged again. */
static __always_inline int pol_revoke(struct mz_pkt *p, const struct mz_outer *o)
{
	struct mz_ep_key k = { .vni = p->vni, .ip = o->revoke_ip };
	struct mz_local_ep *local = bpf_map_lookup_elem(&mz_local, &k);
	p->inner_dst = o->revoke_ip;
	if (!local)
		return -MZ_DROP_POL_VERDICT;
	__u64 now = bpf_ktime_get_ns();
	struct mz_iface_key ik = { .ifindex = local->ifindex };
	struct mz_iface *cfg = bpf_map_lookup_elem(&mz_ifaces, &ik);
	if (MZ_WRITES) {
		local->revoked_ns = now;
		if (cfg)
			cfg->revoked_ns = now;
	}
	count(MZ_CNT_POL_REVOKED, p->len);
	return MZ_V_DROP;
}

#endif
