/* SPDX-License-Identifier: Apache-2.0 */
/* The transit logic: everything that arrives on the droplet interface. Also
 * run by the agent, inline, when its next hop is its own host. */
#ifndef MZ_TRANSIT_H
#define MZ_TRANSIT_H

#include "forward.h"
#include "geneve.h"
#include "arp.h"
#include "policy.h"
#include "publish.h"

/* ARP inside the tunnel: a reply for a local endpoint is delivered; a
 * request is answered here, with the target's host in RTS for the requester
 * to cache, when the target is a local endpoint or in a subnet this host
 * bounces for. A request is never handed to a local endpoint: its answer
 * would be a reply, which no agent sends into the tunnel. */
static __always_inline int transit_arp(struct mz_ctx *ctx, struct mz_pkt *p,
				       const struct mz_droplet *dr, struct mz_outer *o)
{
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	if (o->len > 512)
		return -MZ_DROP_TRUNC_INNER;
	struct ethhdr *in = data + o->len;
	struct mz_arp *a = (void *)(in + 1);
	if ((void *)(a + 1) > end)
		return -MZ_DROP_TRUNC_INNER;
	if (!arp_valid(a))
		return -MZ_DROP_ARP_MALFORMED;
	__be32 spa = arp_ip(a->spa), tpa = arp_ip(a->tpa);
	p->inner_src = spa;
	p->inner_dst = tpa;

	const struct mz_local_ep *local = local_ep(p->vni, tpa);
	if (local && a->op != ARPOP_REQUEST_BE) {
		learn(p->vni, spa, &o->rts, o->rts_droplet, dr, p->len);
		return deliver(ctx, p, local, o->len, 0);
	}
	if (a->op != ARPOP_REQUEST_BE)
		return -MZ_DROP_ARP_UNSUPPORTED;

	struct mz_host target_host;
	__u8 target_mac[6];
	if (local) {
		learn(p->vni, spa, &o->rts, o->rts_droplet, dr, p->len);
		target_host = dr->self;
		mac_copy(target_mac, local->mac);
	} else {
		const struct mz_subnet *s = subnet_of(p->vni, tpa);
		if (!s || !(s->flags & MZ_SUBNET_F_BOUNCER))
			return -MZ_DROP_NO_ROUTE;
		struct mz_ep_key k = { .vni = p->vni, .ip = tpa };
		const struct mz_endpoint *ep = bpf_map_lookup_elem(&mz_endpoints, &k);
		if (!ep)
			return -MZ_DROP_ARP_UNKNOWN;
		target_host = ep->host;
		mac_copy(target_mac, ep->mac);
	}

	struct mz_host requester = o->rts;
	/* The answer goes to the RTS host: only ever a droplet. */
	if (!o->rts_droplet)
		return -MZ_DROP_RTS_NOT_DROPLET;
	arp_answer(in, a, target_mac);
	p->inner_src = tpa;
	p->inner_dst = spa;
	count(MZ_CNT_BOUNCER_ARP, p->len);

	if (o->rts_off > 512)
		return -MZ_DROP_TRUNC_GENEVE;
	struct mz_opt_rts *r = data + o->rts_off;
	if ((void *)(r + 1) > end)
		return -MZ_DROP_TRUNC_GENEVE;
	r->host_ip = target_host.ip;
	mac_copy(r->host_mac, target_host.mac);
	r->flags = 0;

	if (requester.ip == dr->self.ip) {
		/* The requester is on this host: its agent handed the request over. */
		const struct mz_local_ep *req = local_ep(p->vni, spa);
		if (!req)
			return -MZ_DROP_LOOP;
		learn(p->vni, tpa, &target_host, MZ_HOST_UNCHECKED, dr, p->len);
		return deliver(ctx, p, req, o->len, 0);
	}

	return bounce(ctx, p, dr, &requester, 1);
}

/* Judges a flow's packet here, and goes on as the judgment says: the
 * verdict applied here, or the VIP answered first. */
static __always_inline int transit_judge(struct mz_ctx *ctx, struct mz_pkt *p, const struct mz_droplet *dr,
					 struct mz_outer *o)
{
	int ret = pol_judge(ctx, p, dr, o);
	if (ret == MZ_POL_ADMIT)
		ret = pol_verdict(ctx, p, dr, o);
	if (ret == MZ_POL_APPLY_HERE)
		return pol_apply(ctx, p, dr, o);
	if (ret != MZ_POL_SERVICE)
		return ret;
	ret = svc_answer(ctx, p, dr, o);
	if (ret == MZ_SVC_APPLY_HERE)
		ret = svc_apply(ctx, p, dr, o, 0);
	if (ret != MZ_SVC_JUDGE)
		return ret;
	/* The client lives here too, and its flow to the backend is judged
	 * next: by this host when it bounces for the client's subnet. */
	ret = pol_reroute(ctx, p, dr, o, 0);
	if (ret != MZ_POL_JUDGE_HERE)
		return ret;
	ret = pol_judge(ctx, p, dr, o);
	if (ret == MZ_POL_ADMIT)
		ret = pol_verdict(ctx, p, dr, o);
	return ret == MZ_POL_APPLY_HERE ? pol_apply(ctx, p, dr, o) : ret;
}

static __always_inline int transit(struct mz_ctx *ctx, struct mz_pkt *p, const struct mz_droplet *dr)
{
	struct mz_outer o = {};
	int ret = geneve_parse(ctx, dr, &o, p);
	if (ret == MZ_NOT_TUNNEL) {
#ifdef MZ_AGENT
		/* The agent runs this logic only on the tunnel packets it made. */
		return MZ_V_PASS;
#else
		ret = pub_in(ctx, p, dr);
		if (ret == MZ_PUB_DELIVER) {
			pub_admit(ctx, p, MZ_ETH_LEN);
			return MZ_V_REDIRECT;
		}
		return ret == MZ_PUB_NOT_MINE ? snat_in(ctx, p, dr) : ret;
#endif
	}
	if (ret < 0)
		return ret;
	if (o.revoke_off)
		return pol_revoke(p, &o);

	struct mz_vpc_key vk = { .vni = p->vni };
	const struct mz_vpc *vpc = bpf_map_lookup_elem(&mz_vpcs, &vk);
	if (!vpc)
		return -MZ_DROP_UNKNOWN_VNI;

	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	if (o.len > 512)
		return -MZ_DROP_TRUNC_INNER;
	struct ethhdr *in = data + o.len;
	if ((void *)(in + 1) > end)
		return -MZ_DROP_TRUNC_INNER;
	if (in->h_proto == ETH_P_ARP_BE)
		return transit_arp(ctx, p, dr, &o);
	if (in->h_proto != ETH_P_IP_BE)
		return -MZ_DROP_UNSUPPORTED_L3;
	struct iphdr *iip = (void *)(in + 1);
	if ((void *)(iip + 1) > end)
		return -MZ_DROP_TRUNC_INNER;
	if (iip->version != 4 || iip->ihl < 5)
		return -MZ_DROP_INNER_IP;
	__be32 src = iip->saddr, dst = iip->daddr;
	p->inner_src = src;
	p->inner_dst = dst;
	if (dst == dr->self.ip) {
		/* A backend's reply to a flow published on this droplet. */
		if (ctx_pop_head(ctx, o.len) < 0)
			return -MZ_DROP_ADJUST_FAILED;
		return pub_out(ctx, p, dr);
	}
	if (o.rw_off) {
		ret = svc_answered(ctx, p, dr, &o, vpc);
		if (ret == MZ_SVC_APPLY_HERE)
			ret = svc_apply(ctx, p, dr, &o, 1);
		if (ret != MZ_SVC_JUDGE)
			return ret;
		/* The backend's flow is new to this (the client's) host. */
		ret = pol_reroute(ctx, p, dr, &o, 0);
		return ret == MZ_POL_JUDGE_HERE ? transit_judge(ctx, p, dr, &o) : ret;
	}
	if (mz_config.policy) {
		if (o.verdict_off)
			return pol_apply(ctx, p, dr, &o);
		if (o.pol_off || (o.rts_flags & MZ_RTS_F_JUDGE))
			return transit_judge(ctx, p, dr, &o);
	}

	const struct mz_local_ep *local = local_ep(p->vni, dst);
	if (local) {
		if (mz_config.policy) {
			/* Never delivered unjudged, except the traffic of a droplet's
			 * own address (a flow published on it): host traffic. */
			int rev;
			if (!ct_check(ctx, o.len + MZ_ETH_LEN, p->vni, local->revoked_ns, &rev)) {
				if (!(o.rts_droplet && src == o.rts.ip)) {
					ret = pol_reroute(ctx, p, dr, &o, rev);
					return ret == MZ_POL_JUDGE_HERE ? transit_judge(ctx, p, dr, &o) : ret;
				}
				pub_admit(ctx, p, o.len + MZ_ETH_LEN);
			}
		} else if (o.rts_droplet && src == o.rts.ip) {
			pub_admit(ctx, p, o.len + MZ_ETH_LEN);
		}
		learn(p->vni, src, &o.rts, o.rts_droplet, dr, p->len);
		ret = nat_active() ? svc_rnat(ctx, p, o.len + MZ_ETH_LEN) : 0;
		if (ret < 0)
			return ret;
		return deliver(ctx, p, local, o.len, 1);
	}

	/* Bouncer: the subnet is ours, so we know every endpoint's host. */
	const struct mz_subnet *s = subnet_of(p->vni, dst);
	if (s && (s->flags & MZ_SUBNET_F_BOUNCER)) {
		struct mz_ep_key k = { .vni = p->vni, .ip = dst };
		const struct mz_endpoint *ep = bpf_map_lookup_elem(&mz_endpoints, &k);
		if (!ep)
			return -MZ_DROP_NO_ENDPOINT;
		if (ep->kind == MZ_EP_SCALED) {
			ret = svc_answer(ctx, p, dr, &o);
			if (ret == MZ_SVC_APPLY_HERE)
				ret = svc_apply(ctx, p, dr, &o, 0);
			if (ret != MZ_SVC_JUDGE)
				return ret;
			ret = pol_reroute(ctx, p, dr, &o, 0);
			return ret == MZ_POL_JUDGE_HERE ? transit_judge(ctx, p, dr, &o) : ret;
		}
		struct mz_host to = ep->host;
		ret = bounce(ctx, p, dr, &to, 0);
		if (ret >= 0)
			count(MZ_CNT_BOUNCER_FWD, p->len);
		return ret;
	}

	/* Divider: learn the sender, then the destination's host if known, else
	 * one of its subnet's bouncers. Replies then come back through us. */
	if (vpc->flags & MZ_VPC_F_DIVIDER) {
		struct mz_host to;
		__u32 path;
		learn(p->vni, src, &o.rts, o.rts_droplet, dr, p->len);
		struct mz_ep_key k = { .vni = p->vni, .ip = dst };
		const struct mz_cached_host *c =
			mz_config.direct_path ? bpf_map_lookup_elem(&mz_hostcache, &k) : 0;
		if (c && c->host.ip != dr->self.ip) {
			to = c->host;
			path = MZ_CNT_DIVIDER_DIRECT;
		} else if (s) {
			ret = pick_bouncer(s, flow_hash_ips(src, dst, iip->protocol), &to);
			if (ret < 0)
				return ret;
			path = MZ_CNT_DIVIDER_FWD;
		} else {
			return -MZ_DROP_NO_ROUTE;
		}
		if (o.rts_off > 512)
			return -MZ_DROP_TRUNC_GENEVE;
		struct mz_opt_rts *r = data + o.rts_off;
		if ((void *)(r + 1) > end)
			return -MZ_DROP_TRUNC_GENEVE;
		r->host_ip = dr->self.ip;
		mac_copy(r->host_mac, dr->self.mac);
		r->flags = path == MZ_CNT_DIVIDER_DIRECT ? MZ_RTS_F_DIRECT : 0;
		ret = bounce(ctx, p, dr, &to, 0);
		if (ret >= 0)
			count(path, p->len);
		return ret;
	}

	/* Sent straight here by a host (or divider) whose cache says the
	 * endpoint lives here: it moved or is gone. One of its subnet's bouncers
	 * knows where it lives now; the RTS still names the sender, so the reply
	 * comes back direct from the new host and re-teaches the sender's cache.
	 * The flag is cleared so that a stale bouncer entry cannot bounce the
	 * packet around. */
	if (o.rts_flags & MZ_RTS_F_DIRECT) {
		struct mz_host to;
		if (!s)
			return -MZ_DROP_STALE_DIRECT;
		ret = pick_bouncer(s, flow_hash_ips(src, dst, iip->protocol), &to);
		if (ret < 0)
			return ret;
		if (o.rts_off > 512)
			return -MZ_DROP_TRUNC_GENEVE;
		struct mz_opt_rts *r = data + o.rts_off;
		if ((void *)(r + 1) > end)
			return -MZ_DROP_TRUNC_GENEVE;
		r->flags = 0;
		ret = bounce(ctx, p, dr, &to, 0);
		if (ret >= 0)
			count(MZ_CNT_STALE_REROUTE, p->len);
		return ret;
	}
	return -MZ_DROP_NO_ROUTE;
}

#endif
