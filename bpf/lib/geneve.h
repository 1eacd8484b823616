/* SPDX-License-Identifier: Apache-2.0 */
/* The tunnel: parsing a received Geneve packet and building one. */
#ifndef MZ_GENEVE_H
#define MZ_GENEVE_H

#include "ctx.h"
#include "csum.h"
#include "maps.h"

/* A parsed tunnel packet. Offsets count from the start of the frame. */
struct mz_outer {
	__u16 len;     /* outer headers up to the inner Ethernet header */
	__u16 rts_off; /* the RTS option */
	struct mz_host rts; /* with the droplet table's MAC when rts_droplet */
	__u8 rts_flags;
	__u8 rts_droplet; /* the RTS host is a droplet (or this host) */
	__u8 rw_droplet;  /* the rewrite's backend host is a droplet (or this host) */
	__u16 rw_off; /* the rewrite option, or 0 */
	__be32 rw_backend;
	__be16 rw_port;
	struct mz_host rw_host;
	__u16 pol_off;     /* MZ_OPT_POLICY, or 0 */
	__u16 poleg_off;   /* MZ_OPT_POLICY_EG, or 0 */
	__u16 verdict_off; /* MZ_OPT_VERDICT, or 0 */
	__u16 revoke_off;  /* MZ_OPT_REVOKE, or 0 */
	__be32 verdict_host;
	__be32 revoke_ip; /* MZ_OPT_REVOKE's endpoint */
	__u8 verdict_flags;
	__u8 pol_flags;
};

enum {
	MZ_NOT_TUNNEL = 1, /* not Geneve for this host: leave it to the stack */
};

/* Whether `ip` is a droplet (this host included); if so, `mac` becomes its
 * MAC from the droplet table: never a packet's word for it. */
static __always_inline int droplet_mac(__be32 ip, const struct mz_droplet *dr, __u8 *mac)
{
	if (ip == dr->self.ip) {
		mac_copy(mac, dr->self.mac);
		return 1;
	}
	struct mz_droplet_key k = { .ip = ip };
	const struct mz_droplet_entry *e = bpf_map_lookup_elem(&mz_droplets, &k);
	if (!e)
		return 0;
	mac_copy(mac, e->mac);
	return 1;
}

/* Parses outer Ethernet/IPv4/UDP/Geneve and walks the options. Returns 0 for
 * a tunnel packet addressed to this droplet, MZ_NOT_TUNNEL for anything the
 * host's stack should have, or a negative drop reason. */
MZ_SUBPROG int geneve_parse(struct mz_ctx *ctx, const struct mz_droplet *dr, struct mz_outer *o,
			    struct mz_pkt *p)
{
	/* A global function's pointer arguments may be null as far as the
	 * verifier knows. */
	if (!dr || !o || !p)
		return -MZ_DROP_NO_DROPLET;
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return -MZ_DROP_TRUNC_ETH;
	if (eth->h_proto != ETH_P_IP_BE)
		return MZ_NOT_TUNNEL;

	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return -MZ_DROP_OUTER_IP;
	if (ip->version != 4 || ip->ihl < 5)
		return -MZ_DROP_OUTER_IP;
	if (ip->protocol != IPPROTO_UDP || ip->daddr != dr->self.ip)
		return MZ_NOT_TUNNEL;
	/* A later fragment has no UDP header to tell what it is. */
	if (ip->frag_off & bpf_htons(0x1fff))
		return MZ_NOT_TUNNEL;
	__u32 ihl = ip->ihl * 4;
	__u32 tot = bpf_ntohs(ip->tot_len);
	if (tot < ihl + MZ_UDP_LEN || tot > ctx_len(ctx) - MZ_ETH_LEN)
		return -MZ_DROP_OUTER_IP;

	struct udphdr *udp = (void *)ip + ihl;
	if ((void *)(udp + 1) > end)
		return -MZ_DROP_TRUNC_UDP;
	if (udp->dest != bpf_htons(MZ_GENEVE_PORT))
		return MZ_NOT_TUNNEL;
	if (ip->frag_off & bpf_htons(0x2000))
		return -MZ_DROP_OUTER_FRAGMENT;
	/* Believed only from a droplet: before anything is read from it, let
	 * alone learned or delivered. (This host's own hand-off is its own.) */
	__be32 outer_src = ip->saddr;
	const struct mz_droplet_entry *sender = 0;
	if (outer_src != dr->self.ip) {
		struct mz_droplet_key sk = { .ip = outer_src };
		sender = bpf_map_lookup_elem(&mz_droplets, &sk);
		if (!sender)
			return -MZ_DROP_NOT_DROPLET;
	}

	struct mz_geneve *g = (void *)(udp + 1);
	if ((void *)(g + 1) > end)
		return -MZ_DROP_TRUNC_GENEVE;
	if (g->ver_optlen >> 6)
		return -MZ_DROP_GENEVE_VERSION;
	if (g->flags & 0x80)
		return -MZ_DROP_GENEVE_OAM;
	if (g->protocol != bpf_htons(MZ_ETH_P_TEB))
		return -MZ_DROP_GENEVE_PROTO;
	p->vni = geneve_vni(g);

	__u32 optlen = (g->ver_optlen & 0x3f) * 4;
	__u32 opts = MZ_ETH_LEN + ihl + MZ_UDP_LEN + MZ_GENEVE_LEN;
	if (opts + optlen > tot + MZ_ETH_LEN)
		return -MZ_DROP_GENEVE_OPTIONS;

	__u32 off = 0;
	int have_rts = 0;
for (int i = 0; i < MZ_GENEVE_MAX_OPTS; i++) {
		if (off >= optlen)
			break;
		struct mz_geneve_opt *opt = data + (opts + off);
		if ((void *)(opt + 1) > end)
			return -MZ_DROP_TRUNC_GENEVE;
		__u32 dlen = (opt->length & 0x1f) * 4;
		if (off + sizeof(*opt) + dlen > optlen)
			return -MZ_DROP_GENEVE_OPTIONS;
		if (opt->opt_class == bpf_htons(MZ_GENEVE_CLASS) && opt->type == MZ_OPT_RTS) {
			struct mz_opt_rts *r = (void *)opt;
			if (dlen != sizeof(*r) - sizeof(*opt))
				return -MZ_DROP_GENEVE_OPTIONS;
			if ((void *)(r + 1) > end)
				return -MZ_DROP_TRUNC_GENEVE;
			o->rts.ip = r->host_ip;
			mac_copy(o->rts.mac, r->host_mac);
			o->rts.reserved = 0;
			o->rts_flags = r->flags;
			o->rts_off = opts + off;
			have_rts = 1;
		} else if (opt->opt_class == bpf_htons(MZ_GENEVE_CLASS) &&
			   opt->type == (MZ_GENEVE_CRITICAL | MZ_OPT_REWRITE)) {
			struct mz_opt_rewrite *w = (void *)opt;
			if (dlen != sizeof(*w) - sizeof(*opt))
				return -MZ_DROP_GENEVE_OPTIONS;
			if ((void *)(w + 1) > end)
				return -MZ_DROP_TRUNC_GENEVE;
			o->rw_off = opts + off;
			o->rw_backend = w->backend_ip;
			o->rw_port = w->backend_port;
			o->rw_host.ip = w->host.ip;
			mac_copy(o->rw_host.mac, w->host.mac);
			o->rw_host.reserved = 0;
		} else if (opt->opt_class == bpf_htons(MZ_GENEVE_CLASS) &&
			   opt->type == (MZ_GENEVE_CRITICAL | MZ_OPT_POLICY)) {
			struct mz_opt_policy *pol = (void *)opt;
			if (dlen != sizeof(*pol) - sizeof(*opt))
				return -MZ_DROP_GENEVE_OPTIONS;
			if ((void *)(&pol->dst_host + 1) > end)
				return -MZ_DROP_TRUNC_GENEVE;
			o->pol_off = opts + off;
			o->pol_flags = pol->flags;
		} else if (opt->opt_class == bpf_htons(MZ_GENEVE_CLASS) &&
			   opt->type == (MZ_GENEVE_CRITICAL | MZ_OPT_POLICY_EG)) {
			if (dlen != sizeof(struct mz_opt_policy_eg) - sizeof(*opt))
				return -MZ_DROP_GENEVE_OPTIONS;
			o->poleg_off = opts + off;
		} else if (opt->opt_class == bpf_htons(MZ_GENEVE_CLASS) &&
			   opt->type == (MZ_GENEVE_CRITICAL | MZ_OPT_VERDICT)) {
			struct mz_opt_verdict *v = (void *)opt;
			if (dlen != sizeof(*v) - sizeof(*opt))
				return -MZ_DROP_GENEVE_OPTIONS;
			if ((void *)(v + 1) > end)
				return -MZ_DROP_TRUNC_GENEVE;
			o->verdict_off = opts + off;
			o->verdict_host = v->host_ip;
			o->verdict_flags = v->flags;
		} else if (opt->opt_class == bpf_htons(MZ_GENEVE_CLASS) &&
			   opt->type == (MZ_GENEVE_CRITICAL | MZ_OPT_REVOKE)) {
			struct mz_opt_revoke *rv = (void *)opt;
			if (dlen != sizeof(*rv) - sizeof(*opt))
				return -MZ_DROP_GENEVE_OPTIONS;
			if ((void *)(rv + 1) > end)
				return -MZ_DROP_TRUNC_GENEVE;
			o->revoke_off = opts + off;
			o->revoke_ip = rv->ip;
		} else if (opt->type & MZ_GENEVE_CRITICAL) {
			return -MZ_DROP_GENEVE_CRITICAL;
		}
		off += sizeof(*opt) + dlen;
	}
	if (off < optlen)
		return -MZ_DROP_GENEVE_OPTIONS;
	/* A revocation is no endpoint's packet: it needs no RTS. */
	if (!have_rts && !o->revoke_off)
		return -MZ_DROP_NO_RTS;
	/* The hosts the options name, with the table's MACs. The sender itself
	 * is the usual RTS host: its entry is at hand. */
	if (sender && o->rts.ip == outer_src) {
		mac_copy(o->rts.mac, sender->mac);
		o->rts_droplet = 1;
	} else {
		o->rts_droplet = droplet_mac(o->rts.ip, dr, o->rts.mac);
	}
	if (o->rw_off)
		o->rw_droplet = droplet_mac(o->rw_host.ip, dr, o->rw_host.mac);
	o->len = opts + optlen;
	return 0;
}

/* The header of one of Mizar's options of `size` bytes in all. */
static __always_inline void geneve_opt_init(struct mz_geneve_opt *h, __u8 type, __u32 size)
{
	h->opt_class = bpf_htons(MZ_GENEVE_CLASS);
	h->type = type;
	h->length = (size - sizeof(*h)) / 4;
}

/* Whether the packet may grow by delta bytes on the droplet's interface
 * (an encapsulation, options). */
static __always_inline int tunnel_room(struct mz_ctx *ctx, const struct mz_droplet *dr, int delta)
{
	__u32 mtu = 0;
	return bpf_check_mtu(ctx, dr->ifindex, &mtu, delta, 0) != BPF_MTU_CHK_RET_FRAG_NEEDED;
}

/* Prepends outer Ethernet/IPv4/UDP/Geneve/RTS addressed to `to`. */
static __always_inline int geneve_encap(struct mz_ctx *ctx, const struct mz_droplet *dr,
					const struct mz_host *to, __u32 vni, __u32 hash,
					__u8 rts_flags)
{
	__u32 inner_len = ctx_len(ctx);
	if (ctx_push_head(ctx, MZ_ENCAP_LEN) < 0)
		return -MZ_DROP_ADJUST_FAILED;
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	if (data + MZ_ENCAP_LEN > end)
		return -MZ_DROP_ADJUST_FAILED;

	struct ethhdr *eth = data;
	mac_copy(eth->h_dest, to->mac);
	mac_copy(eth->h_source, dr->self.mac);
	eth->h_proto = ETH_P_IP_BE;

	struct iphdr *ip = (void *)(eth + 1);
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(inner_len + MZ_ENCAP_LEN - MZ_ETH_LEN);
	ip->id = 0;
	ip->frag_off = bpf_htons(0x4000); /* DF: the underlay must not fragment */
	ip->ttl = mz_config.outer_ttl;
	ip->protocol = IPPROTO_UDP;
	ip->check = 0;
	ip->saddr = dr->self.ip;
	ip->daddr = to->ip;
	ip->check = ipv4_csum(ip);

	struct udphdr *udp = (void *)(ip + 1);
	udp->source = bpf_htons(mz_flow_sport(hash));
	udp->dest = bpf_htons(MZ_GENEVE_PORT);
	udp->len = bpf_htons(inner_len + MZ_ENCAP_LEN - MZ_ETH_LEN - MZ_IPV4_LEN);
	udp->check = 0; /* allowed for IPv4; the inner frame carries its own */

	struct mz_geneve *g = (void *)(udp + 1);
	g->ver_optlen = sizeof(struct mz_opt_rts) / 4;
	g->flags = 0;
	g->protocol = bpf_htons(MZ_ETH_P_TEB);
	geneve_set_vni(g, vni);

	struct mz_opt_rts *r = (void *)(g + 1);
	geneve_opt_init(&r->hdr, MZ_OPT_RTS, sizeof(*r));
	r->host_ip = dr->self.ip;
	mac_copy(r->host_mac, dr->self.mac);
	r->flags = rts_flags;
	r->reserved = 0;
	return 0;
}

#endif
