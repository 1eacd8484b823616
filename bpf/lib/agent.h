/* SPDX-License-Identifier: Apache-2.0 */
/* The agent logic: everything an endpoint sends. The sender's identity comes
 * from the interface it arrived on (mz_ifaces), never from the packet. */
#ifndef MZ_AGENT_H
#define MZ_AGENT_H

#include "transit.h"

static __always_inline int in_subnet(const struct mz_iface *cfg, __be32 ip)
{
	__u32 plen = cfg->subnet_prefixlen;
	if (plen == 0)
		return 1;
	if (plen > 32)
		return 0;
	__u32 mask = 0xffffffffU << (32 - plen);
	return (bpf_ntohl(ip) & mask) == bpf_ntohl(cfg->subnet_ip);
}

/* Encapsulates towards `to`, or runs the transit logic right here when the
 * next hop is this host (it bounces for the subnet, or divides for the VPC). */
static __always_inline int agent_send(struct mz_ctx *ctx, struct mz_pkt *p, const struct mz_droplet *dr,
				      const struct mz_host *to, __u32 hash, __u8 rts_flags)
{
	int ret = geneve_encap(ctx, dr, to, p->vni, hash, rts_flags);
	if (ret < 0)
		return ret;
	p->next_hop = to->ip;
	if (to->ip == dr->self.ip) {
		count(MZ_CNT_SELF_HANDOFF, p->len);
		return transit(ctx, p, dr);
	}
	p->target_ifindex = dr->ifindex;
	p->into_endpoint = 0;
	return MZ_V_REDIRECT;
}

/* A flow this host holds no valid entry for: its packet goes to a bouncer
 * of the subnet of the flow's source (`rev`: the destination opened it) to
 * be judged, whatever the destination's place. */
/* The flow hash of the IPv4 packet after the Ethernet header: addresses,
 * protocol and (TCP, UDP, unfragmented) ports, so flows spread over
 * bouncers, dividers and ECMP. */
static __always_inline int agent_flow_hash(struct mz_ctx *ctx, __be32 src, __be32 dst, __u32 *hash)
{
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	struct iphdr *ip = data + MZ_ETH_LEN;
	if ((void *)(ip + 1) > end)
		return -MZ_DROP_INNER_IP;
	__u32 ports = ip->protocol;
	if ((ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) &&
	    !(ip->frag_off & bpf_htons(0x3fff))) {
		__u32 *l4 = (void *)ip + ip->ihl * 4;
		if ((void *)(l4 + 1) <= end)
			ports ^= *l4;
	}
	*hash = flow_hash_ips(src, dst, ports);
	return 0;
}

static __always_inline int agent_judge(struct mz_ctx *ctx, struct mz_pkt *p, const struct mz_droplet *dr,
				       __be32 src, __be32 dst, int rev)
{
	const struct mz_subnet *s = subnet_of(p->vni, rev ? dst : src);
	if (!s)
		return -MZ_DROP_NO_ROUTE;
	struct mz_host to;
	__u32 hash;
	int ret = agent_flow_hash(ctx, src, dst, &hash);
	if (ret < 0)
		return ret;
	ret = pick_bouncer(s, hash, &to);
	if (ret < 0)
		return ret;
	count(MZ_CNT_POL_JUDGE, p->len);
	return agent_send(ctx, p, dr, &to, hash, MZ_RTS_F_JUDGE | (rev ? MZ_RTS_F_REVERSE : 0));
}

static __always_inline int agent_arp(struct mz_ctx *ctx, struct mz_pkt *p, const struct mz_droplet *dr,
				     const struct mz_iface *cfg)
{
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	struct ethhdr *eth = data;
	struct mz_arp *a = (void *)(eth + 1);
	if ((void *)(a + 1) > end)
		return -MZ_DROP_ARP_MALFORMED;
	if (!arp_valid(a))
		return -MZ_DROP_ARP_MALFORMED;
	if (!mac_equal(a->sha, cfg->mac))
		return -MZ_DROP_SPOOF_MAC;
	__be32 spa = arp_ip(a->spa), tpa = arp_ip(a->tpa);
	p->inner_src = spa;
	p->inner_dst = tpa;
	/* A probe (RFC 5227) asks from 0.0.0.0; anything else must be our own. */
	if (spa != cfg->ip && !(spa == 0 && a->op == ARPOP_REQUEST_BE))
		return -MZ_DROP_SPOOF_IP;
	if (a->op != ARPOP_REQUEST_BE || tpa == spa)
		return -MZ_DROP_ARP_UNSUPPORTED;

	if (tpa == cfg->gateway_ip) {
		arp_answer(eth, a, cfg->gateway_mac);
		count(MZ_CNT_AGENT_ARP, p->len);
		return MZ_V_TX;
	}
	const struct mz_local_ep *local = local_ep(p->vni, tpa);
	if (local) {
		arp_answer(eth, a, local->mac);
		count(MZ_CNT_AGENT_ARP, p->len);
		return MZ_V_TX;
	}
	if (!in_subnet(cfg, tpa))
		return -MZ_DROP_NO_ROUTE;
	const struct mz_subnet *s = subnet_of(p->vni, tpa);
	if (!s)
		return -MZ_DROP_NO_ROUTE;
	struct mz_host to;
	__u32 hash = flow_hash_ips(spa, tpa, ETH_P_ARP);
	int ret = pick_bouncer(s, hash, &to);
	if (ret < 0)
		return ret;
	if (to.ip == dr->self.ip) {
		/* This host bounces for the subnet: answer from its own table
		 * rather than encapsulate to itself. */
		struct mz_ep_key k = { .vni = p->vni, .ip = tpa };
		const struct mz_endpoint *ep = bpf_map_lookup_elem(&mz_endpoints, &k);
		if (!ep)
			return -MZ_DROP_ARP_UNKNOWN;
		struct mz_host target_host = ep->host;
		arp_answer(eth, a, ep->mac);
		learn(p->vni, tpa, &target_host, MZ_HOST_UNCHECKED, dr, p->len);
		count(MZ_CNT_BOUNCER_ARP, p->len);
		return MZ_V_TX;
	}
	count(MZ_CNT_ENCAP_BOUNCER, p->len);
	return agent_send(ctx, p, dr, &to, hash, 0);
}

static __always_inline int agent(struct mz_ctx *ctx, struct mz_pkt *p, const struct mz_droplet *dr)
{
	struct mz_iface_key ik = { .ifindex = ctx_ifindex(ctx) };
	const struct mz_iface *cfg = bpf_map_lookup_elem(&mz_ifaces, &ik);
	if (!cfg)
		return -MZ_DROP_NO_IFACE;
	p->vni = cfg->vni;
	if (dr->ifindex == 0 || dr->self.ip == 0)
		return -MZ_DROP_NO_DROPLET;

	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return -MZ_DROP_TRUNC_ETH;
	if (!mac_equal(eth->h_source, cfg->mac))
		return -MZ_DROP_SPOOF_MAC;
	if (eth->h_proto == ETH_P_ARP_BE)
		return agent_arp(ctx, p, dr, cfg);
	if (eth->h_proto != ETH_P_IP_BE)
		return -MZ_DROP_UNSUPPORTED_L3;

	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return -MZ_DROP_INNER_IP;
	if (ip->version != 4 || ip->ihl < 5)
		return -MZ_DROP_INNER_IP;
	if (ip->saddr != cfg->ip)
		return -MZ_DROP_SPOOF_IP;
	__be32 src = ip->saddr, dst = ip->daddr;
	p->inner_src = src;
	p->inner_dst = dst;
	__u32 hdst = bpf_ntohl(dst);
	if (hdst >= 0xe0000000U)
		return -MZ_DROP_BROADCAST; /* multicast, reserved, limited broadcast */
	if (cfg->subnet_prefixlen < 31 && cfg->subnet_prefixlen > 0 && in_subnet(cfg, dst) &&
	    (hdst | (0xffffffffU >> cfg->subnet_prefixlen)) == hdst)
		return -MZ_DROP_BROADCAST; /* the subnet's broadcast address */

	/* To its own host: only replies to the host's connections. Out of the
	 * VPC: through SNAT when its egress is on; the VPC's entry is read only
	 * for a destination outside the endpoint's subnet. */
	struct mz_ep_key k = { .vni = p->vni, .ip = dst };
	if (dst == dr->self.ip) {
		/* A local backend's reply to a flow published on this droplet. */
		int r = pub_out(ctx, p, dr);
		if (r != -MZ_DROP_PUB_NO_FLOW)
			return r;
		return (cfg->flags & MZ_IFACE_F_HOST) ? host_reply(ctx, p) : -MZ_DROP_HOST_DENIED;
	}
	if (!in_subnet(cfg, dst)) {
		struct mz_vpc_key vk = { .vni = p->vni };
		const struct mz_vpc *vpc = bpf_map_lookup_elem(&mz_vpcs, &vk);
		if (vpc && !in_vpc(vpc, dst)) {
			/* A droplet that sent a published flow to this endpoint is
			 * in the host cache: its replies go back in the tunnel. */
			if (!(mz_config.direct_path && bpf_map_lookup_elem(&mz_hostcache, &k))) {
				if (!(vpc->flags & MZ_VPC_F_EGRESS))
					return -MZ_DROP_EGRESS_DISABLED;
				return snat_out(ctx, p, dr);
			}
		}
	}

	/* A direct connection that reuses a service flow's ports ends it. Only
	 * a TCP SYN (unfragmented) can: everything else skips the call. */
	if (ip->protocol == IPPROTO_TCP && !(ip->frag_off & bpf_htons(0x3fff))) {
		__u8 *tcp = (void *)ip + ip->ihl * 4;
		if ((void *)(tcp + 14) <= end && (tcp[13] & 0x12) == 0x02) {
			int ended = svc_direct_syn(ctx, p, MZ_ETH_LEN);
			if (ended < 0)
				return ended;
		}
	}

	/* A destination that is neither here nor learned may be a service VIP
	 * whose flow this host was taught: then it goes to the backend. */
	const struct mz_local_ep *local = local_ep(p->vni, dst);
	const struct mz_cached_host *c = 0;
	int natted = 0;
	if (!local) {
		c = mz_config.direct_path ? bpf_map_lookup_elem(&mz_hostcache, &k) : 0;
		if (!c) {
			natted = svc_dnat(ctx, p, MZ_ETH_LEN, src, &dst);
			if (natted < 0)
				return natted;
			if (natted) {
				k.ip = dst;
				local = local_ep(p->vni, dst);
				if (!local && mz_config.direct_path)
					c = bpf_map_lookup_elem(&mz_hostcache, &k);
			}
		}
	}
	int rev;
	if (local) {
		if (mz_config.policy) {
			__u64 revoked = cfg->revoked_ns > local->revoked_ns ? cfg->revoked_ns : local->revoked_ns;
			if (!ct_check(ctx, MZ_ETH_LEN, p->vni, revoked, &rev))
				return agent_judge(ctx, p, dr, src, dst, rev);
		}
		if (!natted && nat_active()) {
			/* A backend answering a client on this host. */
			int r = svc_rnat(ctx, p, MZ_ETH_LEN);
			if (r < 0)
				return r;
		}
		data = ctx_data(ctx);
		end = ctx_data_end(ctx);
		eth = data;
		if ((void *)(eth + 1) > end)
			return -MZ_DROP_TRUNC_ETH;
		mac_copy(eth->h_dest, local->mac);
		p->target_ifindex = local->ifindex;
		p->into_endpoint = 1;
		count(MZ_CNT_LOCAL_DELIVER, p->len);
		return MZ_V_REDIRECT;
	}

	__u32 hash;
	int ret = agent_flow_hash(ctx, src, dst, &hash);
	if (ret < 0)
		return ret;
	if (mz_config.policy && !ct_check(ctx, MZ_ETH_LEN, p->vni, cfg->revoked_ns, &rev))
		return agent_judge(ctx, p, dr, src, dst, rev);

	struct mz_host to;
	if (c) {
		to = c->host;
		count(MZ_CNT_ENCAP_DIRECT, p->len);
		return agent_send(ctx, p, dr, &to, hash, MZ_RTS_F_DIRECT);
	}
	if (in_subnet(cfg, dst)) {
		const struct mz_subnet *s = subnet_of(p->vni, dst);
		if (!s)
			return -MZ_DROP_NO_ROUTE;
		ret = pick_bouncer(s, hash, &to);
		if (ret < 0)
			return ret;
		count(MZ_CNT_ENCAP_BOUNCER, p->len);
	} else {
		struct mz_vpc_key vk = { .vni = p->vni };
		const struct mz_vpc *vpc = bpf_map_lookup_elem(&mz_vpcs, &vk);
		if (!vpc)
			return -MZ_DROP_UNKNOWN_VNI;
		ret = pick_divider(vpc, hash, &to);
		if (ret < 0)
			return ret;
		count(MZ_CNT_ENCAP_DIVIDER, p->len);
	}
	return agent_send(ctx, p, dr, &to, hash, 0);
}

#endif
