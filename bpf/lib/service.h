/* SPDX-License-Identifier: Apache-2.0 */
/* Scaled endpoints (service VIPs). No host holds a service table: the VIP's
 * bouncer picks a backend for the first packet of a flow (Maglev table,
 * computed by user space) and sends the packet back to the client's host
 * with a rewrite option; that host remembers the flow in mz_nat, rewrites
 * the packet to the backend and sends it on. Later packets are rewritten by
 * the client's agent, and replies are rewritten back to the VIP when they
 * are delivered into the client. */
#ifndef MZ_SERVICE_H
#define MZ_SERVICE_H

#include "forward.h"
#include "geneve.h"
#include "conntrack.h"

/* Where the rewrite option goes: right after the Geneve base header of a
 * tunnel packet with an option-less outer IPv4 header. */
#define MZ_RW_AT (MZ_ETH_LEN + MZ_IPV4_LEN + MZ_UDP_LEN + MZ_GENEVE_LEN)
#define MZ_RW_LEN ((__u32)sizeof(struct mz_opt_rewrite))

/* From svc_answer and svc_answered: the client is on this host, the
 * answer is in the mz_outer; the caller runs svc_apply next (a sibling
 * call, so the two functions' stacks never add up). */
#define MZ_SVC_APPLY_HERE 100
/* From svc_apply, with policy on: the packet is rewritten to the backend
 * and its flow is to be judged (pol_reroute). */
#define MZ_SVC_JUDGE 104

/* The entry points below are global functions: the verifier checks each
 * once on its own instead of along every path of its callers, which keeps
 * the transit program (inlined into the agent as well) within its limits. */

/* The flow of an IPv4 packet: TCP/UDP ports or an ICMP echo identifier. */
struct mz_l4 {
	__u32 off; /* L4 header, from the start of the frame */
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 icmp_type;
};

/* Reads the flow of the IPv4 packet at l3. A negative reason for what a
 * service cannot carry: fragments, other protocols, other ICMP. */
static __always_inline int flow_l4(struct mz_ctx *ctx, __u32 l3, struct mz_l4 *f)
{
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	if (l3 > 600)
		return -MZ_DROP_TRUNC_INNER;
	struct iphdr *ip = data + l3;
	if ((void *)(ip + 1) > end)
		return -MZ_DROP_TRUNC_INNER;
	if (ip->frag_off & bpf_htons(0x3fff))
		return -MZ_DROP_SVC_PROTO;
	__u32 off = l3 + ip->ihl * 4;
	f->off = off;
	f->proto = ip->protocol;
	f->icmp_type = 0;
	__u8 *l4 = data + off;
	if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) {
		if ((void *)(l4 + 4) > end)
			return -MZ_DROP_TRUNC_INNER;
		f->sport = *(__be16 *)l4;
		f->dport = *(__be16 *)(l4 + 2);
		return 0;
	}
	if (ip->protocol == IPPROTO_ICMP) {
		if ((void *)(l4 + 8) > end)
			return -MZ_DROP_TRUNC_INNER;
		f->icmp_type = l4[0];
		__be16 id = *(__be16 *)(l4 + 4);
		if (l4[0] == ICMP_ECHO_REQUEST) {
			f->sport = id;
			f->dport = 0;
			return 0;
		}
		if (l4[0] == ICMP_ECHO_REPLY) {
			f->sport = 0;
			f->dport = id;
			return 0;
		}
	}
	return -MZ_DROP_SVC_PROTO;
}

/* Writes ip (and, for TCP and UDP, port) over the packet's destination, or
 * its source (NAT_SOURCE), keeping the IPv4 and L4 checksums right. ICMP's
 * checksum does not cover the addresses; with NAT_ICMP_ID an ICMP echo's
 * identifier becomes `port` as well. A global function, with ip and port in
 * one argument (NAT_TO): a frame of its own keeps its callers' stacks small. */
#define NAT_TO(ip, port) (((__u64)(__u32)(ip) << 16) | (__u16)(port))
#define NAT_SOURCE 0x01
#define NAT_ICMP_ID 0x02
#if defined(MZ_HOOK_XDP)
MZ_SUBPROG int nat_rewrite(struct mz_ctx *ctx, __u32 l3, const struct mz_l4 *f, int how, __u64 to)
{
	__be32 ip = (__be32)(to >> 16);
	__be16 port = (__be16)(to & 0xffff);
	if (!f)
		return -MZ_DROP_TRUNC_INNER;
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	__u32 off = f->off;
	__u8 proto = f->proto;
	if (l3 > 600 || off > 700)
		return -MZ_DROP_TRUNC_INNER;
	struct iphdr *iph = data + l3;
	if ((void *)(iph + 1) > end)
		return -MZ_DROP_TRUNC_INNER;
	__be32 old = (how & NAT_SOURCE) ? iph->saddr : iph->daddr;
	csum_replace4(&iph->check, old, ip);
	if (how & NAT_SOURCE)
		iph->saddr = ip;
	else
		iph->daddr = ip;
	__u8 *l4 = data + off;
	if (proto == IPPROTO_ICMP && (how & NAT_ICMP_ID)) {
		if ((void *)(l4 + 8) > end)
			return -MZ_DROP_TRUNC_INNER;
		__u16 *icheck = (void *)(l4 + 2);
		__be16 *id = (void *)(l4 + 4);
		csum_replace2(icheck, *id, port);
		*id = port;
		return 0;
	}
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return 0;
	if ((void *)(l4 + 18) > end && proto == IPPROTO_TCP)
		return -MZ_DROP_TRUNC_INNER;
	if ((void *)(l4 + 8) > end)
		return -MZ_DROP_TRUNC_INNER;
	__u16 *check = (void *)(l4 + (proto == IPPROTO_TCP ? 16 : 6));
	if ((void *)(check + 1) > end)
		return -MZ_DROP_TRUNC_INNER;
	__be16 *pp = (void *)(l4 + ((how & NAT_SOURCE) ? 0 : 2));
	__be16 old_port = *pp;
	*pp = port;
	if (proto == IPPROTO_UDP && *check == 0)
		return 0; /* no checksum: stays so */
	csum_replace4(check, old, ip);
	csum_replace2(check, old_port, port);
	if (proto == IPPROTO_UDP && *check == 0)
		*check = 0xffff;
	return 0;
}
#else
/* The kernel's helpers also handle the partial checksums of packets whose
 * sender left the checksum to offload (the usual case on a veth). */
MZ_SUBPROG int nat_rewrite(struct mz_ctx *ctx, __u32 l3, const struct mz_l4 *f, int how, __u64 to)
{
	__be32 ip = (__be32)(to >> 16);
	__be16 port = (__be16)(to & 0xffff);
	if (!f)
		return -MZ_DROP_TRUNC_INNER;
	__u32 addr_off = l3 + ((how & NAT_SOURCE) ? 12 : 16);
	__be32 old;
	if (bpf_skb_load_bytes(ctx, addr_off, &old, 4) < 0)
		return -MZ_DROP_TRUNC_INNER;
	if (bpf_l3_csum_replace(ctx, l3 + 10, old, ip, 4) < 0)
		return -MZ_DROP_ADJUST_FAILED;
	if (f->proto == IPPROTO_TCP || f->proto == IPPROTO_UDP) {
		__u32 csum_off = f->off + (f->proto == IPPROTO_TCP ? 16 : 6);
		__u64 mangled = f->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
		__u32 port_off = f->off + ((how & NAT_SOURCE) ? 0 : 2);
		__be16 old_port;
		if (bpf_skb_load_bytes(ctx, port_off, &old_port, 2) < 0)
			return -MZ_DROP_TRUNC_INNER;
		if (bpf_l4_csum_replace(ctx, csum_off, old, ip, BPF_F_PSEUDO_HDR | mangled | 4) < 0)
			return -MZ_DROP_ADJUST_FAILED;
		if (bpf_l4_csum_replace(ctx, csum_off, old_port, port, mangled | 2) < 0)
			return -MZ_DROP_ADJUST_FAILED;
		if (bpf_skb_store_bytes(ctx, port_off, &port, 2, 0) < 0)
			return -MZ_DROP_ADJUST_FAILED;
	} else if (f->proto == IPPROTO_ICMP && (how & NAT_ICMP_ID)) {
		__be16 old_id;
		if (bpf_skb_load_bytes(ctx, f->off + 4, &old_id, 2) < 0)
			return -MZ_DROP_TRUNC_INNER;
		if (bpf_l4_csum_replace(ctx, f->off + 2, old_id, port, 2) < 0)
			return -MZ_DROP_ADJUST_FAILED;
		if (bpf_skb_store_bytes(ctx, f->off + 4, &port, 2, 0) < 0)
			return -MZ_DROP_ADJUST_FAILED;
	}
	if (bpf_skb_store_bytes(ctx, addr_off, &ip, 4, 0) < 0)
		return -MZ_DROP_ADJUST_FAILED;
	return 0;
}
#endif

static __always_inline void flow_key(struct mz_flow_key *k, __u32 vni, __be32 src, __be32 dst,
				     const struct mz_l4 *f)
{
	k->vni = vni;
	k->src = src;
	k->dst = dst;
	k->sport = f->sport;
	k->dport = f->dport;
	k->proto = f->proto;
	k->reserved[0] = k->reserved[1] = k->reserved[2] = 0;
}

/* The inner IPv4 addresses at l3 (already bounds-checked by the caller's
 * parse, but pointers do not survive helper calls, so read them again). */
static __always_inline int inner_addrs(struct mz_ctx *ctx, __u32 l3, __be32 *src, __be32 *dst)
{
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	if (l3 > 600)
		return -MZ_DROP_TRUNC_INNER;
	struct iphdr *ip = data + l3;
	if ((void *)(ip + 1) > end)
		return -MZ_DROP_TRUNC_INNER;
	*src = ip->saddr;
	*dst = ip->daddr;
	return 0;
}

/* Client host, sending: a packet of a known service flow goes to its
 * backend. Returns 1 when rewritten (*dst is then the backend), 0 when the
 * packet is no service flow's. */
MZ_SUBPROG int svc_dnat(struct mz_ctx *ctx, struct mz_pkt *p, __u32 l3, __be32 src, __be32 *dst)
{
	/* A global function's pointer arguments may be null as far as the
	 * verifier knows. */
	if (!p || !dst)
		return -MZ_DROP_NO_DROPLET;
	struct mz_l4 f;
	if (flow_l4(ctx, l3, &f) < 0)
		return 0;
	struct mz_flow_key k;
	flow_key(&k, p->vni, src, *dst, &f);
	const struct mz_nat *n = bpf_map_lookup_elem(&mz_nat, &k);
	if (!n || (n->flags & MZ_NAT_F_REVERSE))
		return 0;
	__be32 to = n->to_ip;
	int ret = nat_rewrite(ctx, l3, &f, 0, NAT_TO(to, n->to_port));
	if (ret < 0)
		return ret;
	*dst = to;
	p->inner_dst = to;
	count(MZ_CNT_SVC_DNAT, p->len);
	return 1;
}

/* Whether this host holds service flows at all (an inlined array read). */
static __always_inline int nat_active(void)
{
	__u32 zero = 0;
	const __u32 *on = bpf_map_lookup_elem(&mz_nat_active, &zero);
	return on && *on;
}

/* Client host, delivering: a backend's reply gets the VIP back as its
 * source, so the client only ever sees the VIP. */
MZ_SUBPROG int svc_rnat(struct mz_ctx *ctx, struct mz_pkt *p, __u32 l3)
{
	/* A global function's pointer arguments may be null as far as the
	 * verifier knows. */
	if (!p)
		return -MZ_DROP_NO_DROPLET;
	struct mz_l4 f;
	__be32 src, dst;
	if (inner_addrs(ctx, l3, &src, &dst) < 0 || flow_l4(ctx, l3, &f) < 0)
		return 0;
	struct mz_flow_key k;
	flow_key(&k, p->vni, src, dst, &f);
	const struct mz_nat *n = bpf_map_lookup_elem(&mz_nat, &k);
	if (!n || !(n->flags & MZ_NAT_F_REVERSE))
		return 0;
	__be32 to = n->to_ip;
	int ret = nat_rewrite(ctx, l3, &f, NAT_SOURCE, NAT_TO(to, n->to_port));
	if (ret < 0)
		return ret;
	p->inner_src = to;
	count(MZ_CNT_SVC_RNAT, p->len);
	return 1;
}

/* Client host, sending a TCP SYN straight to an address and port: when a
 * service flow had taken this client port to that very backend and port,
 * the backend could not tell the new connection from that flow, so the
 * flow is over. Its entries go, and the new connection's replies keep
 * their source. Returns 1 when entries went, 0 otherwise. */
MZ_SUBPROG int svc_direct_syn(struct mz_ctx *ctx, struct mz_pkt *p, __u32 l3)
{
	/* A global function's pointer arguments may be null as far as the
	 * verifier knows. */
	if (!p)
		return -MZ_DROP_NO_DROPLET;
	struct mz_l4 f;
	__be32 src, dst;
	if (inner_addrs(ctx, l3, &src, &dst) < 0 || flow_l4(ctx, l3, &f) < 0 || f.proto != IPPROTO_TCP)
		return 0;
	__u32 off = f.off;
	if (off > 700)
		return 0;
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	__u8 *tcp = data + off;
	if ((void *)(tcp + 14) > end)
		return 0;
	if ((tcp[13] & 0x12) != 0x02) /* SYN, not SYN-ACK */
		return 0;
	/* The reply direction, where a service flow keeps its reverse entry. */
	struct mz_flow_key k = {
		.vni = p->vni, .src = dst, .dst = src, .sport = f.dport, .dport = f.sport, .proto = IPPROTO_TCP,
	};
	const struct mz_nat *n = bpf_map_lookup_elem(&mz_nat, &k);
	if (!n || !(n->flags & MZ_NAT_F_REVERSE))
		return 0;
	struct mz_flow_key fwd = {
		.vni = p->vni, .src = src, .dst = n->to_ip, .sport = f.sport, .dport = n->to_port, .proto = IPPROTO_TCP,
	};
	mz_delete(&mz_nat, &fwd);
	mz_delete(&mz_nat, &k);
	count(MZ_CNT_SVC_ENDED, p->len);
	return 1;
}

/* Sets the outer lengths and the Geneve option length after the rewrite
 * option was added (delta > 0) or removed (delta < 0). */
static __always_inline int outer_resize(struct mz_ctx *ctx, int delta)
{
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	struct iphdr *ip = data + MZ_ETH_LEN;
	struct udphdr *udp = (void *)(ip + 1);
	struct mz_geneve *g = (void *)(udp + 1);
	if ((void *)(g + 1) > end)
		return -MZ_DROP_TRUNC_GENEVE;
	__be16 old_len = ip->tot_len;
	ip->tot_len = bpf_htons(bpf_ntohs(ip->tot_len) + delta);
	csum_replace2(&ip->check, old_len, ip->tot_len);
	udp->len = bpf_htons(bpf_ntohs(udp->len) + delta);
	udp->check = 0;
	g->ver_optlen = (g->ver_optlen & 0xc0) | (((g->ver_optlen & 0x3f) + delta / 4) & 0x3f);
	return 0;
}

/* The inner packet of a tunnel packet bound for a service: its addresses
 * and flow, or why a service cannot carry it. */
static __always_inline int svc_flow(struct mz_ctx *ctx, const struct mz_outer *o, __be32 *client, __be32 *vip,
				    struct mz_l4 *f)
{
	__u32 l3 = o->len + MZ_ETH_LEN;
	int ret = inner_addrs(ctx, l3, client, vip);
	if (ret < 0)
		return ret;
	ret = flow_l4(ctx, l3, f);
	if (ret < 0)
		return ret;
	if (f->proto == IPPROTO_ICMP && f->icmp_type != ICMP_ECHO_REQUEST)
		return -MZ_DROP_SVC_PROTO;
	return 0;
}

/* A service's backend for a flow: its address, the target port of the
 * service port `vip_port` (0 for ICMP echo) and its host, from the service's
 * Maglev table (user space computes it; mz_maglev_slot picks the entry).
 * The VIP's bouncers answer clients inside the VPC with it, a droplet a
 * service is published on its clients outside. */
struct mz_pick {
	__be32 backend;
	__be16 port;
	__u16 reserved;
	struct mz_host host;
};

static __always_inline int svc_pick(__u32 vni, __be32 client, __be32 vip, __be16 vip_port, const struct mz_l4 *f,
				    struct mz_pick *out)
{
	struct mz_ep_key sk = { .vni = vni, .ip = vip };
	const struct mz_service *svc = bpf_map_lookup_elem(&mz_services, &sk);
	if (!svc)
		return -MZ_DROP_SVC_NO_SERVICE;
	out->port = 0;
	if (f->proto != IPPROTO_ICMP) {
		int found = 0;
		__u32 n_ports = svc->hdr.n_ports;
#pragma unroll
		for (int i = 0; i < MZ_MAX_SVC_PORTS; i++) {
			if (i >= n_ports)
				break;
			if (svc->hdr.ports[i].proto == f->proto && svc->hdr.ports[i].port == vip_port) {
				out->port = svc->hdr.ports[i].target_port;
				found = 1;
				break;
			}
		}
		if (!found)
			return -MZ_DROP_SVC_PORT;
	}
	__u32 n = svc->hdr.n_backends;
	if (n == 0 || n > MZ_MAX_BACKENDS)
		return -MZ_DROP_SVC_NO_BACKEND;
	__u32 slot = mz_maglev_slot(bpf_ntohl(client), bpf_ntohl(vip), bpf_ntohs(f->sport), bpf_ntohs(vip_port), f->proto);
	barrier_var(slot); /* keep the check: the verifier cannot follow % */
	if (slot >= MZ_MAGLEV_SIZE)
		return -MZ_DROP_SVC_NO_BACKEND;
	__u32 idx = svc->table[slot];
	barrier_var(idx);
	if (idx >= n || idx >= MZ_MAX_BACKENDS)
		return -MZ_DROP_SVC_NO_BACKEND;
	out->backend = svc->backends[idx].ip;
	out->host = svc->backends[idx].host;
	out->host.reserved = 0;
	out->reserved = 0;
	return 0;
}

/* Client host: the answer to a first packet. Remembers the flow both ways,
 * rewrites the packet to the backend and sends it there (or delivers it,
 * when the backend lives here). `inserted` says the option sits in the
 * packet (an answer from another host) and must come out again. */
MZ_SUBPROG int svc_apply(struct mz_ctx *ctx, struct mz_pkt *p, const struct mz_droplet *dr, struct mz_outer *o,
			 int inserted)
{
	if (!p || !dr || !o)
		return -MZ_DROP_NO_DROPLET;
	__be32 backend = o->rw_backend;
	__be16 bport = o->rw_port;
	const struct mz_host *bhost = &o->rw_host;
	__u32 l3 = o->len + MZ_ETH_LEN;
	__be32 client, vip;
	struct mz_l4 f;
	int ret = svc_flow(ctx, o, &client, &vip, &f);
	if (ret < 0)
		return ret;
	if (backend == 0 || bhost->ip == 0 || !o->rw_droplet)
		return -MZ_DROP_SVC_REWRITE;
	__u64 now = bpf_ktime_get_ns();
	int icmp = f.proto == IPPROTO_ICMP;

	/* The reply's flow first (backend -> client, ports swapped after the
	 * rewrite), then the forward one; one key and value reused. */
	struct mz_flow_key k = { .vni = p->vni, .src = backend, .dst = client, .sport = icmp ? 0 : bport,
				 .dport = f.sport, .proto = f.proto };
	struct mz_nat n = { .to_ip = vip, .to_port = icmp ? 0 : f.dport, .flags = MZ_NAT_F_REVERSE, .vip = vip,
			    .backend = backend, .created_ns = now };
	if (mz_update(&mz_nat, &k, &n, BPF_ANY) < 0)
		return -MZ_DROP_SVC_REWRITE;
	flow_key(&k, p->vni, client, vip, &f);
	n.to_ip = backend;
	n.to_port = icmp ? 0 : bport;
	n.flags = 0;
	if (mz_update(&mz_nat, &k, &n, BPF_ANY) < 0)
		return -MZ_DROP_SVC_REWRITE;
	/* This host now holds service flows: delivery looks for replies. The
	 * key is k's first word (the stack here is at its limit). */
	k.vni = 0;
	__u32 *on = bpf_map_lookup_elem(&mz_nat_active, &k.vni);
	if (MZ_WRITES && on && !*on)
		*on = 1;
	count(MZ_CNT_SVC_LEARN, p->len);
	struct mz_host to = *bhost;
	learn(p->vni, backend, &to, o->rw_droplet ? MZ_HOST_DROPLET : MZ_HOST_NOT_DROPLET, dr, p->len);

	ret = nat_rewrite(ctx, l3, &f, 0, NAT_TO(backend, icmp ? 0 : bport));
	if (ret < 0)
		return ret;
	p->inner_dst = backend;

	if (to.ip == dr->self.ip && !mz_config.policy) {
		const struct mz_local_ep *local = local_ep(p->vni, backend);
		if (!local)
			return -MZ_DROP_STALE_DIRECT;
		return deliver(ctx, p, local, o->len, 1);
	}
	__u32 rts_off = o->rts_off;
	if (inserted) {
		if (ctx_close(ctx, MZ_RW_AT, MZ_RW_LEN) < 0)
			return -MZ_DROP_ADJUST_FAILED;
		ret = outer_resize(ctx, -(int)MZ_RW_LEN);
		if (ret < 0)
			return ret;
		if (rts_off > MZ_RW_AT)
			rts_off -= MZ_RW_LEN;
	}
	/* Sent on by this host, straight to the backend's: the RTS names us. */
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	if (rts_off > 512)
		return -MZ_DROP_TRUNC_GENEVE;
	struct mz_opt_rts *r = data + rts_off;
	if ((void *)(r + 1) > end)
		return -MZ_DROP_TRUNC_GENEVE;
	r->host_ip = dr->self.ip;
	mac_copy(r->host_mac, dr->self.mac);
	r->flags = MZ_RTS_F_DIRECT;
	if (mz_config.policy) {
		/* The flow to the backend is judged like any other. */
		o->rts_off = rts_off;
		o->rts = dr->self;
		o->rts_droplet = 1;
		if (inserted)
			o->len -= MZ_RW_LEN;
		o->rw_off = 0;
		return MZ_SVC_JUDGE;
	}
	return bounce(ctx, p, dr, &to, 1);
}

/* Bouncer: the first packet of a flow to a scaled endpoint of a subnet this
 * host bounces for. Picks the backend by Maglev and answers the client's
 * host; handles it right here when the client lives on this host. */
MZ_SUBPROG int svc_answer(struct mz_ctx *ctx, struct mz_pkt *p, const struct mz_droplet *dr,
			  struct mz_outer *o)
{
	/* A global function's pointer arguments may be null as far as the
	 * verifier knows. */
	if (!p || !dr || !o)
		return -MZ_DROP_NO_DROPLET;
	__be32 client, vip;
	struct mz_l4 f;
	int ret = svc_flow(ctx, o, &client, &vip, &f);
	if (ret < 0)
		return ret;

	struct mz_pick pick;
	ret = svc_pick(p->vni, client, vip, f.dport, &f, &pick);
	if (ret < 0)
		return ret;
	__be32 backend = pick.backend;
	__be16 bport = pick.port;
	struct mz_host bhost = pick.host;

	/* Remember who was taught, then count the flow for the backend. The
	 * answer goes to the RTS host: only ever a droplet. */
	if (!o->rts_droplet)
		return -MZ_DROP_RTS_NOT_DROPLET;
	struct mz_host requester = o->rts;
	struct mz_svc_client_key ck = { .vni = p->vni, .vip = vip, .host_ip = requester.ip };
	struct mz_svc_client cv = { .last_ns = bpf_ktime_get_ns() };
	mz_update(&mz_svc_clients, &ck, &cv, BPF_ANY);
	struct mz_svc_stat_key stk = { .vni = p->vni, .vip = vip, .backend = backend };
	struct mz_counter *st = MZ_WRITES ? bpf_map_lookup_elem(&mz_svc_stats, &stk) : 0;
	if (st) {
		st->packets++;
		st->bytes += p->len;
	} else {
		struct mz_counter first = { .packets = 1, .bytes = p->len };
		mz_update(&mz_svc_stats, &stk, &first, BPF_NOEXIST);
	}
	count(MZ_CNT_SVC_ANSWER, p->len);

	if (requester.ip == dr->self.ip) {
		/* The client lives here: the caller applies the answer. */
		o->rw_backend = backend;
		o->rw_port = bport;
		o->rw_host = bhost;
		o->rw_droplet = 1;
		return MZ_SVC_APPLY_HERE;
	}

	/* The answer: the very packet, back to the client's host, with the
	 * rewrite option in front of the others. */
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	struct iphdr *oip = data + MZ_ETH_LEN;
	if ((void *)(oip + 1) > end)
		return -MZ_DROP_OUTER_IP;
	if (oip->ihl != 5 || o->len + MZ_RW_LEN > 512)
		return -MZ_DROP_GENEVE_OPTIONS;
	if (ctx_open(ctx, MZ_RW_AT, MZ_RW_LEN) < 0)
		return -MZ_DROP_ADJUST_FAILED;
	ret = outer_resize(ctx, MZ_RW_LEN);
	if (ret < 0)
		return ret;
	data = ctx_data(ctx);
	end = ctx_data_end(ctx);
	struct mz_opt_rewrite *w = data + MZ_RW_AT;
	if ((void *)(w + 1) > end)
		return -MZ_DROP_ADJUST_FAILED;
	geneve_opt_init(&w->hdr, MZ_GENEVE_CRITICAL | MZ_OPT_REWRITE, sizeof(*w));
	w->backend_ip = backend;
	w->backend_port = bport;
	w->flags = 0;
	w->reserved = 0;
	w->host = bhost;
	w->host.reserved = 0;
	return bounce(ctx, p, dr, &requester, 1);
}

/* A tunnel packet carrying a rewrite option: an answer for a client here,
 * or (on a divider, which put itself in the RTS on the way in) one to pass
 * on to the client's host. */
MZ_SUBPROG int svc_answered(struct mz_ctx *ctx, struct mz_pkt *p, const struct mz_droplet *dr,
					struct mz_outer *o, const struct mz_vpc *vpc)
{
	/* A global function's pointer arguments may be null as far as the
	 * verifier knows. */
	if (!p || !dr || !o || !vpc)
		return -MZ_DROP_NO_DROPLET;
	__be32 client, vip;
	int ret = inner_addrs(ctx, o->len + MZ_ETH_LEN, &client, &vip);
	if (ret < 0)
		return ret;
	p->inner_src = client;
	p->inner_dst = vip;
	if (o->rw_off != MZ_RW_AT)
		return -MZ_DROP_SVC_REWRITE;
	if (local_ep(p->vni, client))
		return MZ_SVC_APPLY_HERE;
	if (!(vpc->flags & MZ_VPC_F_DIVIDER))
		return -MZ_DROP_SVC_REWRITE;
	struct mz_ep_key k = { .vni = p->vni, .ip = client };
	const struct mz_cached_host *c = bpf_map_lookup_elem(&mz_hostcache, &k);
	if (!c || c->host.ip == dr->self.ip)
		return -MZ_DROP_SVC_REWRITE;
	struct mz_host to = c->host;
	ret = bounce(ctx, p, dr, &to, 0);
	if (ret >= 0)
		count(MZ_CNT_SVC_RELAY, p->len);
	return ret;
}

#endif
