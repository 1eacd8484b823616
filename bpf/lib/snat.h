/* SPDX-License-Identifier: Apache-2.0 */
/* Egress: an endpoint's flow to an address outside its VPC leaves through
 * its own droplet, translated to the droplet's address and a port of the
 * droplet's SNAT range (mz_config.snat_first..snat_last).
 *
 * mz_snat_out, keyed with the VNI, gives an endpoint's flow its port;
 * mz_snat_in, keyed by (protocol, remote, remote port, port) and written
 * with BPF_NOEXIST, makes the port unique per remote, so tenants with the
 * very same addresses and ports get distinct translations and a reply
 * finds its tenant without a VNI. The flow's state (TCP states, last
 * packet) lives in the mz_snat_in entry, which both directions look up;
 * transitd sweeps what expired. */
#ifndef MZ_SNAT_H
#define MZ_SNAT_H

#include "service.h"

#ifndef AF_INET
#define AF_INET 2
#endif

/* Whether ip is in the VPC's address space (unknown: everything is). */
static __always_inline int in_vpc(const struct mz_vpc *v, __be32 ip)
{
	__u32 plen = v->cidr_prefixlen;
	if (plen == 0 || plen > 32)
		return 1;
	__u32 mask = 0xffffffffU << (32 - plen);
	return (bpf_ntohl(ip) & mask) == bpf_ntohl(v->cidr_ip);
}

/* The TCP flags of the packet whose L4 header is at off, or 0. */
static __always_inline __u8 snat_tcp_flags(struct mz_ctx *ctx, const struct mz_l4 *f)
{
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	if (f->proto != IPPROTO_TCP || f->off > 700)
		return 0;
	__u8 *l4 = data + f->off;
	if ((void *)(l4 + 14) > end)
		return 0;
	return l4[13];
}

/* A translated flow's state (SNAT's, a published flow's): `from_opener`,
 * the packet comes from the side that opened it (the endpoint, the
 * client); a new connection on the same ports starts it anew. */
#define nat_track(b, proto, fl, from_opener, now)                                                  \
	flow_track(&(b)->state, &(b)->flags, &(b)->seen_ns, proto, fl, from_opener,                \
		   (from_opener) ? MZ_CT_F_FIN_FIRST : MZ_CT_F_FIN_SECOND, 1, now)

/* The state a new translated flow starts in. */
static __always_inline __u8 nat_first_state(__u8 proto, __u8 fl)
{
	if (proto != IPPROTO_TCP)
		return 0;
	return (fl & (TCP_SYN | TCP_ACK)) == TCP_SYN ? MZ_CT_SYN : MZ_CT_ESTABLISHED;
}

/* A port of the SNAT range for a new flow: the first of MZ_SNAT_PROBES,
 * from `start`, whose entry in `map` (key with its port field at `port`)
 * can be written with BPF_NOEXIST: a port another flow holds there is never
 * taken. Shared by egress (mz_snat_in) and published flows (mz_pub_back);
 * inlined, so the map is a constant to the verifier. */
static __always_inline int port_alloc(void *map, void *key, __be16 *port, const void *value, __u32 start)
{
	__u32 first = mz_config.snat_first, last = mz_config.snat_last;
	if (first == 0 || last < first)
		return -MZ_DROP_EGRESS_DISABLED;
	__u32 n = last - first + 1;
	__u32 idx = start % n;
	for (int i = 0; i < MZ_SNAT_PROBES; i++) {
		if (i >= n)
			break;
		*port = bpf_htons((__u16)(first + idx));
		if (mz_update(map, key, value, BPF_NOEXIST) == 0)
			return 0;
		idx++;
		if (idx >= n)
			idx = 0;
	}
	return -MZ_DROP_SNAT_EXHAUSTED;
}

/* The port for a new flow out, from a place a hash of the flow (the VNI
 * included) picks: unique per remote. */
static __always_inline int snat_alloc(struct mz_snat_in_key *ik, const struct mz_snat_back *b, const struct mz_l4 *f)
{
	__u32 ports = ((__u32)bpf_ntohs(f->sport) << 16 | bpf_ntohs(f->dport)) ^ f->proto;
	return port_alloc(&mz_snat_in, ik, &ik->port, b, mz_snat_hash(b->vni, bpf_ntohl(b->ip), bpf_ntohl(ik->remote), ports));
}

/* The translated packet's way out: its next hop on the underlay, as the
 * droplet's own routing table says (an output lookup from the droplet's
 * address), found before anything is translated. tc resolves a next hop
 * whose MAC is unknown with bpf_redirect_neigh; XDP cannot, and drops the
 * packet under a name. A global function: the lookup's 64 bytes stay out
 * of its caller's frame. */
struct mz_way_out {
	__u8 dmac[6];
	__u8 smac[6];
	__u8 resolved;
};

MZ_SUBPROG int snat_route(struct mz_ctx *ctx, struct mz_pkt *p, const struct mz_droplet *dr, __be32 dst,
			  struct mz_way_out *w)
{
	/* A global function (its frame is not snat_out's): pointer arguments
	 * may be null as far as the verifier knows. */
	if (!p || !dr || !w)
		return -MZ_DROP_NO_DROPLET;
	/* As if the packet came in on the endpoint's veth with the droplet's
	 * source: the kernel answers only for an arrival interface that
	 * forwards, which transitd turns on for endpoint veths alone (never
	 * for the droplet's interface: nothing from the underlay is routed). */
	struct bpf_fib_lookup fib = {};
	fib.family = AF_INET;
	fib.ifindex = ctx_ifindex(ctx);
	fib.ipv4_src = dr->self.ip;
	fib.ipv4_dst = dst;
	long rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	p->target_ifindex = fib.ifindex;
	p->into_endpoint = 0;
	p->next_hop = fib.ipv4_dst;
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
#if defined(MZ_HOOK_TC)
		p->neigh = 1;
		w->resolved = 0;
		return MZ_V_REDIRECT;
#else
		return -MZ_DROP_SNAT_NO_NEIGH;
#endif
	}
	/* NOT_FWDED too: no route, or one of the host's own addresses. */
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return -MZ_DROP_SNAT_NO_ROUTE;
	/* fib's MACs are not 4-byte aligned: copied byte by byte */
	__builtin_memcpy(w->dmac, fib.dmac, 6);
	__builtin_memcpy(w->smac, fib.smac, 6);
	w->resolved = 1;
	return MZ_V_REDIRECT;
}

/* The agent, for a packet of its endpoint to an address outside the VPC
 * (egress on): finds or makes the flow's translation, rewrites the source
 * and sends the packet out of the droplet. */
MZ_SUBPROG int snat_out(struct mz_ctx *ctx, struct mz_pkt *p, const struct mz_droplet *dr)
{
	if (!p || !dr)
		return -MZ_DROP_NO_DROPLET;
	struct mz_l4 f;
	if (flow_l4(ctx, MZ_ETH_LEN, &f) < 0 || (f.proto == IPPROTO_ICMP && f.icmp_type != ICMP_ECHO_REQUEST))
		return -MZ_DROP_SNAT_PROTO;
	__be32 src = p->inner_src, dst = p->inner_dst;
	/* The way out first: a flow with none takes no port. */
	struct mz_way_out w = {};
	int verdict = snat_route(ctx, p, dr, dst, &w);
	if (verdict < 0)
		return verdict;
	__u8 fl = snat_tcp_flags(ctx, &f);
	__u64 now = bpf_ktime_get_ns();

	struct mz_flow_key ok;
	flow_key(&ok, p->vni, src, dst, &f);
	struct mz_snat_in_key ik = { .remote = dst, .remote_port = f.dport, .proto = f.proto };
	struct mz_snat *out = bpf_map_lookup_elem(&mz_snat_out, &ok);
	struct mz_snat_back *back = 0;
	if (out) {
		ik.port = out->port;
		back = bpf_map_lookup_elem(&mz_snat_in, &ik);
		/* The reverse entry went (evicted, swept) or is another flow's
		 * now: this flow gets a port afresh. */
		if (!back || back->vni != p->vni || back->ip != src || back->port != f.sport)
			back = 0;
	}
	if (back) {
		nat_track(back, f.proto, fl, 1, now);
	} else {
		struct mz_snat_back b = {
			.vni = p->vni,
			.ip = src,
			.port = f.sport,
			.created_ns = now,
			.seen_ns = now,
		};
		b.state = nat_first_state(f.proto, fl);
		int ret = snat_alloc(&ik, &b, &f);
		if (ret < 0)
			return ret;
		struct mz_snat s = { .port = ik.port, .created_ns = now };
		mz_update(&mz_snat_out, &ok, &s, BPF_ANY);
		count(MZ_CNT_SNAT_NEW, p->len);
	}
	int ret = nat_rewrite(ctx, MZ_ETH_LEN, &f, NAT_SOURCE | NAT_ICMP_ID, NAT_TO(dr->self.ip, ik.port));
	if (ret < 0)
		return ret;
	if (w.resolved) {
		void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
		struct ethhdr *eth = data;
		if ((void *)(eth + 1) > end)
			return -MZ_DROP_TRUNC_ETH;
		__builtin_memcpy(eth->h_dest, w.dmac, 6);
		__builtin_memcpy(eth->h_source, w.smac, 6);
	}
	count(MZ_CNT_SNAT_OUT, p->len);
	return verdict;
}

/* The transit program, for a packet that is no tunnel packet: a reply to
 * a translated flow (to the droplet's address, on a port of its range) is
 * translated back and delivered to its endpoint; anything else in the range
 * is dropped; the rest is the host's. An ICMP echo reply in the range that
 * matches no flow goes to the host, whose own pings may use that id. */
MZ_SUBPROG int snat_in(struct mz_ctx *ctx, struct mz_pkt *p, const struct mz_droplet *dr)
{
	if (!p || !dr)
		return MZ_V_PASS;
	__u32 first = mz_config.snat_first, last = mz_config.snat_last;
	if (first == 0)
		return MZ_V_PASS;
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != ETH_P_IP_BE)
		return MZ_V_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5 || ip->daddr != dr->self.ip)
		return MZ_V_PASS;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP && ip->protocol != IPPROTO_ICMP)
		return MZ_V_PASS;
	struct mz_l4 f;
	if (flow_l4(ctx, MZ_ETH_LEN, &f) < 0)
		return MZ_V_PASS; /* fragments, other ICMP: the host's */
	if (f.proto == IPPROTO_ICMP && f.icmp_type != ICMP_ECHO_REPLY)
		return MZ_V_PASS;
	__u16 port = bpf_ntohs(f.dport);
	if (port < first || port > last)
		return MZ_V_PASS;
	__be32 src = ip->saddr;
	p->inner_src = src;
	p->inner_dst = ip->daddr;
	struct mz_snat_in_key ik = { .remote = src, .remote_port = f.sport, .port = f.dport, .proto = f.proto };
	struct mz_snat_back *b = bpf_map_lookup_elem(&mz_snat_in, &ik);
	if (!b)
		return f.proto == IPPROTO_ICMP ? MZ_V_PASS : -MZ_DROP_SNAT_NO_MAPPING;
	/* The endpoint must still be here, in its VPC, behind its interface:
	 * a reply for one gone is never delivered to whoever has its address. */
	__u32 vni = b->vni;
	__be32 to = b->ip;
	__be16 to_port = b->port;
	p->vni = vni;
	const struct mz_local_ep *local = local_ep(vni, to);
	if (!local)
		return -MZ_DROP_SNAT_NO_MAPPING;
	struct mz_iface_key ifk = { .ifindex = local->ifindex };
	const struct mz_iface *cfg = bpf_map_lookup_elem(&mz_ifaces, &ifk);
	if (!cfg || cfg->vni != vni || cfg->ip != to)
		return -MZ_DROP_SNAT_NO_MAPPING;
	nat_track(b, f.proto, snat_tcp_flags(ctx, &f), 0, bpf_ktime_get_ns());
	__u32 ifindex = local->ifindex;
	__u8 mac[6], gw[6];
	mac_copy(mac, local->mac);
	mac_copy(gw, cfg->gateway_mac);
	int ret = nat_rewrite(ctx, MZ_ETH_LEN, &f, NAT_ICMP_ID, NAT_TO(to, to_port));
	if (ret < 0)
		return ret;
	data = ctx_data(ctx);
	end = ctx_data_end(ctx);
	eth = data;
	if ((void *)(eth + 1) > end)
		return -MZ_DROP_TRUNC_ETH;
	mac_copy(eth->h_dest, mac);
	mac_copy(eth->h_source, gw);
	p->inner_dst = to;
	p->target_ifindex = ifindex;
	p->into_endpoint = 1;
	count(MZ_CNT_SNAT_IN, p->len);
	return MZ_V_REDIRECT;
}

/* An endpoint's packet to its host's address: handed to the host only as a
 * reply to a connection the host opened (a probe), never as a connection of
 * its own. The host's sockets say which: a TCP socket of the host with this
 * very flow that is not listening (the host connected to the endpoint), a
 * UDP socket of the host connected to this endpoint and port, or an ICMP
 * echo reply. Only the endpoint whose address the host routes to may. */
MZ_SUBPROG int host_reply(struct mz_ctx *ctx, struct mz_pkt *p)
{
	if (!p)
		return -MZ_DROP_NO_DROPLET;
	struct mz_l4 f;
	if (flow_l4(ctx, MZ_ETH_LEN, &f) < 0)
		return -MZ_DROP_HOST_DENIED;
	struct bpf_sock_tuple t = {};
	t.ipv4.saddr = p->inner_src;
	t.ipv4.daddr = p->inner_dst;
	t.ipv4.sport = f.sport;
	t.ipv4.dport = f.dport;
	int ok = 0;
	if (f.proto == IPPROTO_ICMP) {
		ok = f.icmp_type == ICMP_ECHO_REPLY;
	} else if (f.proto == IPPROTO_TCP) {
		struct bpf_sock *sk = bpf_skc_lookup_tcp(ctx, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
		if (!sk)
			return -MZ_DROP_HOST_DENIED;
		ok = sk->state != BPF_TCP_LISTEN && sk->state != BPF_TCP_NEW_SYN_RECV;
		bpf_sk_release(sk);
	} else if (f.proto == IPPROTO_UDP) {
		struct bpf_sock *sk = bpf_sk_lookup_udp(ctx, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
		if (!sk)
			return -MZ_DROP_HOST_DENIED;
		ok = sk->dst_ip4 == p->inner_src && sk->dst_port == f.sport;
		bpf_sk_release(sk);
	}
	if (!ok)
		return -MZ_DROP_HOST_DENIED;
	count(MZ_CNT_HOST_REPLY, p->len);
	return MZ_V_PASS;
}

#endif
