/* SPDX-License-Identifier: Apache-2.0 */
/* Published services: a scaled endpoint reached from outside on a host port
 * of a droplet (source NAT mode). On the publishing droplet X a client's
 * packet to X's address and the port is given a backend by X's copy of the
 * service's Maglev table, translated to X's address and a port of X's SNAT
 * range (so replies come back to X) and the backend's address and port,
 * and sent in the VPC's tunnel to the backend's host (or delivered, when the
 * backend lives on X). The backend's host admits such a flow as traffic of
 * a droplet's own address and learns X from it; the backend's replies go
 * back to X in the tunnel, where they are translated back and sent to the
 * MAC the client's packets came from. */
#ifndef MZ_PUBLISH_H
#define MZ_PUBLISH_H

#include "snat.h"

/* From pub_in: not a packet to a published port; the caller goes on. */
#define MZ_PUB_NOT_MINE 200
/* From pub_in: translated for a backend on this host, to be admitted
 * (pub_admit, a sibling call: the two frames never add up) and delivered. */
#define MZ_PUB_DELIVER 201

/* Admits a published flow's packet at l3 into conntrack (with policy on):
 * the traffic of a droplet's own address, as host traffic, is not judged.
 * A global function: the flow's frame stays out of its callers'. */
MZ_SUBPROG int pub_admit(struct mz_ctx *ctx, struct mz_pkt *p, __u32 l3)
{
	if (!p)
		return 0;
	if (mz_config.policy) {
		struct mz_pflow pf;
		if (pol_flow(ctx, l3, &pf) == 0)
			ct_admit(&pf, p->vni, 0, bpf_ktime_get_ns(), p->len);
	}
	count(MZ_CNT_PUB_ADMIT, p->len);
	return 0;
}

/* The transit program, for a packet that is no tunnel packet: a client's
 * packet to a port published on this droplet goes to its backend. */
MZ_SUBPROG int pub_in(struct mz_ctx *ctx, struct mz_pkt *p, const struct mz_droplet *dr)
{
	if (!p || !dr)
		return MZ_PUB_NOT_MINE;
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != ETH_P_IP_BE)
		return MZ_PUB_NOT_MINE;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5 || ip->daddr != dr->self.ip)
		return MZ_PUB_NOT_MINE;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return MZ_PUB_NOT_MINE;
	__u8 *l4 = (void *)ip + ip->ihl * 4;
	if ((void *)(l4 + 4) > end)
		return MZ_PUB_NOT_MINE;
	__be16 dport = *(__be16 *)(l4 + 2);
	__u16 hp = bpf_ntohs(dport);
	if (hp < MZ_PUB_FIRST_PORT || hp > MZ_PUB_LAST_PORT)
		return MZ_PUB_NOT_MINE;
	struct mz_pub_key pk = { .proto = ip->protocol, .port = dport };
	const struct mz_pub *pub = bpf_map_lookup_elem(&mz_published, &pk);
	if (!pub)
		return MZ_PUB_NOT_MINE;
	__u32 vni = pub->vni;
	__be32 vip = pub->vip;
	__be16 vip_port = pub->vip_port;
	__be32 client = ip->saddr;
	__u8 client_mac[6];
	mac_copy(client_mac, eth->h_source);
	p->vni = vni;
	p->inner_src = client;
	p->inner_dst = vip;
	struct mz_l4 f;
	if (flow_l4(ctx, MZ_ETH_LEN, &f) < 0)
		return -MZ_DROP_PUB_PROTO;

	__u64 now = bpf_ktime_get_ns();
	__u8 tcp = snat_tcp_flags(ctx, &f);
	struct mz_pub_flow_key fk = { .client = client, .client_port = f.sport, .port = f.dport, .proto = f.proto };
	struct mz_pub_flow fl = {};
	struct mz_pub_flow *known = bpf_map_lookup_elem(&mz_pub_flows, &fk);
	if (known) {
		fl = *known;
		struct mz_pub_back_key bk = { .vni = fl.vni, .backend = fl.backend, .backend_port = fl.backend_port,
					      .nat_port = fl.nat_port, .proto = f.proto };
		struct mz_pub_back *b = bpf_map_lookup_elem(&mz_pub_back, &bk);
		/* The reverse entry (with the flow's state) went, evicted or
		 * swept, or is another flow's now: this one is picked afresh. */
		if (b && b->client == client && b->client_port == f.sport && b->port == f.dport)
			nat_track(b, f.proto, tcp, 1, now);
		else
			known = 0;
	}
	if (!known) {
		/* The backend a client inside would get from the VIP's bouncer. */
		struct mz_pick pick;
		int ret = svc_pick(vni, client, vip, vip_port, &f, &pick);
		if (ret < 0)
			return -MZ_DROP_PUB_NO_BACKEND;
		fl.backend = pick.backend;
		fl.backend_port = pick.port;
		fl.host = pick.host;
		struct mz_pub_back_key bk = { .vni = vni, .backend = fl.backend, .backend_port = fl.backend_port, .proto = f.proto };
		struct mz_pub_back bv = { .client = client, .client_port = f.sport, .port = f.dport,
					  .state = nat_first_state(f.proto, tcp), .seen_ns = now };
		mac_copy(bv.client_mac, client_mac);
		ret = port_alloc(&mz_pub_back, &bk, &bk.nat_port, &bv,
				 mz_flow_hash(bpf_ntohl(client), bpf_ntohl(fl.backend), ((__u32)f.sport << 16 | f.dport) ^ f.proto));
		if (ret < 0)
			return ret == -MZ_DROP_EGRESS_DISABLED ? -MZ_DROP_SNAT_EXHAUSTED : ret;
		fl.vni = vni;
		fl.nat_port = bk.nat_port;
		mac_copy(fl.client_mac, client_mac);
		fl.created_ns = now;
		mz_update(&mz_pub_flows, &fk, &fl, BPF_ANY);
		count(MZ_CNT_PUB_NEW, p->len);
	}
	int ret = nat_rewrite(ctx, MZ_ETH_LEN, &f, NAT_SOURCE, NAT_TO(dr->self.ip, fl.nat_port));
	if (ret < 0)
		return ret;
	ret = nat_rewrite(ctx, MZ_ETH_LEN, &f, 0, NAT_TO(fl.backend, fl.backend_port));
	if (ret < 0)
		return ret;
	p->inner_src = dr->self.ip;
	p->inner_dst = fl.backend;
	count(MZ_CNT_PUB_IN, p->len);

	data = ctx_data(ctx);
	end = ctx_data_end(ctx);
	eth = data;
	if ((void *)(eth + 1) > end)
		return -MZ_DROP_TRUNC_ETH;
	if (fl.host.ip == dr->self.ip) {
		/* The backend lives here. */
		const struct mz_local_ep *local = local_ep(vni, fl.backend);
		if (!local)
			return -MZ_DROP_PUB_NO_BACKEND;
		mac_copy(eth->h_dest, local->mac);
		mac_copy(eth->h_source, dr->self.mac);
		p->target_ifindex = local->ifindex;
		p->into_endpoint = 1;
		return MZ_PUB_DELIVER;
	}
	/* A client on the underlay has the droplet's MTU; the tunnel does not
	 * (TCP fits: the backend's MSS is its own, smaller, MTU's). */
	if (!tunnel_room(ctx, dr, MZ_ENCAP_LEN))
		return -MZ_DROP_PUB_TOO_BIG;
	mac_copy(eth->h_dest, dr->self.mac);
	mac_copy(eth->h_source, dr->self.mac);
	struct mz_host to = fl.host;
	__u32 hash = mz_flow_hash(bpf_ntohl(dr->self.ip), bpf_ntohl(fl.backend), ((__u32)fl.nat_port << 16 | fl.backend_port) ^ f.proto);
	ret = geneve_encap(ctx, dr, &to, vni, hash, MZ_RTS_F_DIRECT);
	if (ret < 0)
		return ret;
	p->next_hop = to.ip;
	return send_underlay(ctx, p, dr);
}

/* A backend's reply to this droplet's address (decapsulated, or straight
 * from a local backend): translated back and sent to the client. */
MZ_SUBPROG int pub_out(struct mz_ctx *ctx, struct mz_pkt *p, const struct mz_droplet *dr)
{
	if (!p || !dr)
		return -MZ_DROP_NO_DROPLET;
	__be32 backend, self;
	struct mz_l4 f;
	if (inner_addrs(ctx, MZ_ETH_LEN, &backend, &self) < 0 || flow_l4(ctx, MZ_ETH_LEN, &f) < 0 ||
	    f.proto == IPPROTO_ICMP)
		return -MZ_DROP_PUB_NO_FLOW;
	struct mz_pub_back_key bk = { .vni = p->vni, .backend = backend, .backend_port = f.sport, .nat_port = f.dport,
				      .proto = f.proto };
	struct mz_pub_back *b = bpf_map_lookup_elem(&mz_pub_back, &bk);
	if (!b)
		return -MZ_DROP_PUB_NO_FLOW;
	nat_track(b, f.proto, snat_tcp_flags(ctx, &f), 0, bpf_ktime_get_ns());
	__be32 client = b->client;
	__be16 client_port = b->client_port, port = b->port;
	__u8 client_mac[6];
	mac_copy(client_mac, b->client_mac);
	int ret = nat_rewrite(ctx, MZ_ETH_LEN, &f, NAT_SOURCE, NAT_TO(dr->self.ip, port));
	if (ret < 0)
		return ret;
	ret = nat_rewrite(ctx, MZ_ETH_LEN, &f, 0, NAT_TO(client, client_port));
	if (ret < 0)
		return ret;
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return -MZ_DROP_TRUNC_ETH;
	mac_copy(eth->h_dest, client_mac);
	mac_copy(eth->h_source, dr->self.mac);
	p->inner_src = dr->self.ip;
	p->inner_dst = client;
	count(MZ_CNT_PUB_OUT, p->len);
	return send_underlay(ctx, p, dr);
}

#endif
