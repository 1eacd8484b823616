/* SPDX-License-Identifier: Apache-2.0 */
/* The moves a tunnel packet can make: learn its sender's host, bounce it to
 * another host, or deliver it into a local endpoint. */
#ifndef MZ_FORWARD_H
#define MZ_FORWARD_H

#include "metrics.h"
#include "csum.h"

/* What is known of a host to learn: already resolved against the droplet
 * table (its MAC is the table's), already found not to be in it, or not
 * looked up yet. */
enum { MZ_HOST_NOT_DROPLET = 0, MZ_HOST_DROPLET = 1, MZ_HOST_UNCHECKED = 2 };

/* Remembers that `ip` in `vni` lives behind host `h` (the direct path), if
 * `h` is a droplet, with the droplet table's MAC. The cache lookup first
 * keeps steady traffic from rewriting the LRU on every packet (an entry
 * there was a droplet's when it was learned). */
MZ_SUBPROG int learn_host(__u32 vni, __be32 ip, const struct mz_host *h, int known, __u32 len)
{
	__u32 zero = 0;
	const struct mz_droplet *dr = bpf_map_lookup_elem(&mz_droplet, &zero);
	if (!h || !dr || !mz_config.direct_path || h->ip == dr->self.ip || h->ip == 0)
		return 0;
	struct mz_ep_key k = { .vni = vni, .ip = ip };
	struct mz_cached_host *c = bpf_map_lookup_elem(&mz_hostcache, &k);
	if (c && c->host.ip == h->ip && mac_equal(c->host.mac, h->mac))
		return 0;
	struct mz_cached_host v = { .host = { .ip = h->ip }, .learned_ns = bpf_ktime_get_ns() };
	if (known == MZ_HOST_DROPLET) {
		mac_copy(v.host.mac, h->mac);
	} else {
		const struct mz_droplet_entry *d = 0;
		if (known == MZ_HOST_UNCHECKED) {
			struct mz_droplet_key dk = { .ip = h->ip };
			d = bpf_map_lookup_elem(&mz_droplets, &dk);
		}
		if (!d) {
			count(MZ_CNT_LEARN_REFUSED, len);
			return 0;
		}
		mac_copy(v.host.mac, d->mac);
	}
	mz_update(&mz_hostcache, &k, &v, BPF_ANY);
	count(MZ_CNT_CACHE_LEARN, len);
	return 1;
}

/* learn_host is a global function (its own frame, checked once); `dr` is
 * what every caller has at hand, and learn_host finds it itself. */
#define learn(vni, ip, h, known, dr, len) learn_host((vni), (ip), (h), (known), (len))

/* Out to the substrate network, from whichever interface we are on. */
static __always_inline int send_underlay(struct mz_ctx *ctx, struct mz_pkt *p,
					 const struct mz_droplet *dr)
{
	if (ctx_ifindex(ctx) == dr->ifindex)
		return MZ_V_TX;
	p->target_ifindex = dr->ifindex;
	p->into_endpoint = 0;
	return MZ_V_REDIRECT;
}

/* Re-addresses the outer headers from this host to `to`: one routing hop,
 * so the outer TTL goes down and a loop dies out. An answer (reply) is a new
 * packet and starts with a fresh TTL instead. */
static __always_inline int bounce(struct mz_ctx *ctx, struct mz_pkt *p,
				  const struct mz_droplet *dr, const struct mz_host *to, int answer)
{
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return -MZ_DROP_OUTER_IP;
	if (ip->ttl <= 1 && !answer)
		return -MZ_DROP_TTL_EXCEEDED;
	if (to->ip == dr->self.ip)
		return -MZ_DROP_LOOP;

	__u16 old_ttl_word = *(__u16 *)&ip->ttl;
	ip->ttl = answer ? mz_config.outer_ttl : ip->ttl - 1;
	csum_replace2(&ip->check, old_ttl_word, *(__u16 *)&ip->ttl);
	csum_replace4(&ip->check, ip->saddr, dr->self.ip);
	csum_replace4(&ip->check, ip->daddr, to->ip);
	ip->saddr = dr->self.ip;
	ip->daddr = to->ip;
	mac_copy(eth->h_source, dr->self.mac);
	mac_copy(eth->h_dest, to->mac);
	p->next_hop = to->ip;
	return send_underlay(ctx, p, dr);
}

/* Strips the outer headers and hands the inner frame to the local endpoint.
 * An IPv4 frame gets the endpoint's MAC (a routed packet was sent to the
 * gateway's) and goes straight into the endpoint's namespace; ARP goes out
 * of the host-side veth, whose peer works out the frame's protocol anew. */
static __always_inline int deliver(struct mz_ctx *ctx, struct mz_pkt *p,
				   const struct mz_local_ep *local, __u32 outer_len, int set_mac)
{
	__u32 ifindex = local->ifindex;
	if (set_mac) {
		void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
		if (outer_len > 512)
			return -MZ_DROP_TRUNC_INNER;
		struct ethhdr *in = data + outer_len;
		if ((void *)(in + 1) > end)
			return -MZ_DROP_TRUNC_INNER;
		mac_copy(in->h_dest, local->mac);
	}
	if (ctx_pop_head(ctx, outer_len) < 0)
		return -MZ_DROP_ADJUST_FAILED;
	p->target_ifindex = ifindex;
	p->into_endpoint = set_mac;
	count(MZ_CNT_DELIVER, p->len);
	return MZ_V_REDIRECT;
}

static __always_inline __u32 flow_hash_ips(__be32 src, __be32 dst, __u32 extra)
{
	return mz_flow_hash(bpf_ntohl(src), bpf_ntohl(dst), extra);
}

static __always_inline const struct mz_subnet *subnet_of(__u32 vni, __be32 ip)
{
	struct mz_subnet_key k = { .prefixlen = 64, .vni = vni, .ip = ip };
	return bpf_map_lookup_elem(&mz_subnets, &k);
}

static __always_inline const struct mz_local_ep *local_ep(__u32 vni, __be32 ip)
{
	struct mz_ep_key k = { .vni = vni, .ip = ip };
	return bpf_map_lookup_elem(&mz_local, &k);
}

/* One of n hosts (a subnet's bouncers, a VPC's dividers) by flow hash. */
static __always_inline int pick_host(const struct mz_host *hosts, __u32 n, __u32 max, __u32 hash,
				     struct mz_host *out)
{
	if (n == 0 || n > max)
		return -1;
	__u32 i = hash % n;
	barrier_var(i); /* keep the check below: the verifier cannot follow % */
	if (i >= max)
		return -1;
	*out = hosts[i];
	return 0;
}

static __always_inline int pick_bouncer(const struct mz_subnet *s, __u32 hash, struct mz_host *out)
{
	return pick_host(s->bouncers, s->n_bouncers, MZ_MAX_BOUNCERS, hash, out) ? -MZ_DROP_NO_BOUNCER : 0;
}

static __always_inline int pick_divider(const struct mz_vpc *v, __u32 hash, struct mz_host *out)
{
	return pick_host(v->dividers, v->n_dividers, MZ_MAX_DIVIDERS, hash, out) ? -MZ_DROP_NO_DIVIDER : 0;
}

#endif
