/* SPDX-License-Identifier: Apache-2.0
 *
 * mizar_abi.h — every layout that crosses the kernel/user boundary.
 *
 * The BPF programs include this header and Swift imports it as the C module
 * CMizarABI, so both sides compile against one definition. A test compares the
 * map key/value layouts recorded in the built objects' BTF with Swift's view.
 *
 * Rules: no packed structs, explicit padding, sizes asserted below. Fields
 * typed __be16/__be32 are in network byte order; everything else is host
 * order. The VNI is a 24-bit value kept in the low bits of a host-order u32.
 */
#ifndef MIZAR_ABI_H
#define MIZAR_ABI_H

#include <linux/types.h>

/* ---- wire format -------------------------------------------------------- */

#define MZ_GENEVE_PORT 6081
#define MZ_ETH_P_TEB 0x6558 /* Geneve protocol: transparent Ethernet bridging */
/* Option class from the range RFC 8926 leaves for experimental use. */
#define MZ_GENEVE_CLASS 0xFF4D
#define MZ_GENEVE_CRITICAL 0x80 /* high bit of an option type (RFC 8926 §3.5) */

/* Option types of MZ_GENEVE_CLASS. */
enum mz_opt_type {
	MZ_OPT_RTS = 0x01,     /* return to sender: where the inner source lives */
	/* scaled endpoint: how the client's host rewrites the flow. Sent with
	 * the critical bit (MZ_GENEVE_CRITICAL | MZ_OPT_REWRITE): a host that
	 * does not know it must drop the packet, not deliver it unrewritten. */
	MZ_OPT_REWRITE = 0x02,
	/* Policy, all sent with the critical bit: a host that does not know
	 * them must drop the packet, never deliver it unjudged. Believed only
	 * from a droplet, like every tunnel packet. */
	MZ_OPT_POLICY = 0x03,    /* B1 -> B2: the flow's source, as judged so far */
	MZ_OPT_POLICY_EG = 0x04, /* B1 -> B2: the bits the source's egress admits */
	MZ_OPT_VERDICT = 0x05,   /* judge -> source host -> destination host: admitted */
	MZ_OPT_REVOKE = 0x06,    /* bouncer -> an endpoint's host: judge its flows anew */
};

/* RTS flags. */
#define MZ_RTS_F_DIRECT 0x01  /* sent on the direct path, not via a bouncer */
#define MZ_RTS_F_JUDGE 0x02   /* the first packet of a flow, for the bouncers to judge */
#define MZ_RTS_F_REVERSE 0x04 /* with JUDGE: the flow was opened by the inner destination */

struct mz_geneve {
	__u8 ver_optlen; /* version << 6 | option length in 4-byte words */
	__u8 flags;      /* O (0x80) and C (0x40) bits */
	__be16 protocol;
	__u8 vni[3];
	__u8 reserved;
};

struct mz_geneve_opt {
	__be16 opt_class;
	__u8 type;
	__u8 length; /* low 5 bits: data length in 4-byte words */
};

/* Return-to-sender option: the host of the inner frame's sender. A bouncer
 * answering ARP puts the target's host here, a divider puts itself. */
struct mz_opt_rts {
	struct mz_geneve_opt hdr;
	__be32 host_ip;
	__u8 host_mac[6];
	__u8 flags; /* MZ_RTS_F_* */
	__u8 reserved;
};

#define MZ_ETH_LEN 14
#define MZ_IPV4_LEN 20
#define MZ_UDP_LEN 8
#define MZ_GENEVE_LEN 8
/* What the agent prepends: outer Ethernet, IPv4 (no options), UDP, Geneve and
 * the RTS option. The underlay MTU counts from the outer IPv4 header, and the
 * endpoint's MTU from its IP header, so the endpoint loses the outer IPv4,
 * UDP, Geneve and option bytes plus its own Ethernet header, which travels
 * inside: MZ_ENCAP_LEN bytes in all (the outer Ethernet header does not count
 * against the MTU, the inner one does). */
#define MZ_ENCAP_LEN (MZ_ETH_LEN + MZ_IPV4_LEN + MZ_UDP_LEN + MZ_GENEVE_LEN + 16)
/* The same, where a macro expression does not reach (Swift imports enums). */
enum { MZ_ENCAP_BYTES = MZ_ENCAP_LEN, MZ_ENCAP_OVERHEAD = MZ_ENCAP_LEN };
#define MZ_GENEVE_MAX_OPTS 16
#define MZ_UDP_SPORT_BASE 49152 /* flow-hash source ports: 49152..65535 */
/* Host ports a scaled endpoint may be published on (HostPort.range in
 * Swift): below Linux's ephemeral ports and the SNAT range. */
#define MZ_PUB_FIRST_PORT 30000
#define MZ_PUB_LAST_PORT 32767

/* ---- table limits ------------------------------------------------------- */

#define MZ_MAX_BOUNCERS 32 /* per subnet */
#define MZ_MAX_DIVIDERS 32 /* per VPC */
#define MZ_MAX_VPCS 16384
#define MZ_MAX_TRACE_VPCS 1024 /* VPCs traced packet by packet at once */
#define MZ_MAX_SUBNETS 65536
#define MZ_MAX_ENDPOINTS (1 << 20) /* bouncer table: endpoint -> host */
#define MZ_MAX_LOCAL 65536         /* endpoints on this host */
#define MZ_MAX_HOSTCACHE (1 << 18) /* learned endpoint -> host (direct path) */
#define MZ_MAX_DROPLETS (1 << 17)  /* hosts whose tunnel packets are believed */
#define MZ_EVENTS_BYTES (1 << 20)
#define MZ_MAX_SERVICES 4096    /* scaled endpoints whose bouncer this host is */
#define MZ_MAX_SVC_PORTS 8      /* ports per scaled endpoint */
#define MZ_MAX_BACKENDS 256     /* backends per scaled endpoint */
#define MZ_MAGLEV_SIZE 65521    /* Maglev table entries, a prime: 128 KB a service */
#define MZ_MAX_NAT (1 << 16)    /* service flows on a client host, both directions */
#define MZ_MAX_SVC_CLIENTS (1 << 16) /* (service, client host) pairs a bouncer taught */
#define MZ_MAX_SVC_STATS (1 << 16)   /* (service, backend) flow counters */
#define MZ_POL_WORDS 16              /* 32-bit words of a policy bit set: 512 bits a VPC */
#define MZ_POL_RULES 32              /* port ranges of one rule set */
#define MZ_POL_NAMED 16              /* named-port bits one endpoint holds */
#define MZ_MAX_POL_EPS (1 << 20)     /* endpoints' policy entries on a bouncer */
#define MZ_MAX_POL_SETS (1 << 16)    /* distinct rule sets on a bouncer */
#define MZ_MAX_POL_BLOCKS (1 << 16)  /* ipBlock prefixes on a bouncer */
#define MZ_CT_DEFAULT (1 << 20)      /* conntrack entries a host keeps, unless the loader says */
#define MZ_SNAT_DEFAULT (1 << 18)    /* SNAT flows a host keeps, unless the loader says */
#define MZ_SNAT_PROBES 64            /* ports tried for a new SNAT flow before giving up */
#define MZ_MAX_PUBLISHED 4096        /* host ports published on one droplet */
#define MZ_MAX_PUB_FLOWS (1 << 16)   /* published flows one droplet carries */

/* ---- map keys and values ------------------------------------------------ */

/* A host on the substrate network: a droplet. */
struct mz_host {
	__be32 ip;
	__u8 mac[6];
	__u16 reserved;
};

/* Rewrite option: a bouncer's answer to the first packet of a flow to a
 * scaled endpoint (a service VIP). The packet comes back to the client's
 * host unchanged inside, with this option after the Geneve header: the host
 * remembers the flow (forward and reverse), rewrites the packet's
 * destination to the backend and sends it to the backend's host. */
struct mz_opt_rewrite {
	struct mz_geneve_opt hdr;
	__be32 backend_ip;
	__be16 backend_port; /* 0 for ICMP echo */
	__u8 flags;
	__u8 reserved;
	struct mz_host host; /* the backend's host */
};

/* mz_droplet[0]: this host's own droplet and the interface it sits on. */
struct mz_droplet {
	struct mz_host self;
	__u32 ifindex;
	__u32 reserved;
};

/* Key of every (VPC, address) table. */
struct mz_ep_key {
	__u32 vni;
	__be32 ip;
};

struct mz_vpc_key {
	__u32 vni;
};

#define MZ_VPC_F_DIVIDER 0x01 /* this host is a divider of the VPC */
#define MZ_VPC_F_EGRESS 0x02  /* the VPC's endpoints may leave it, through SNAT */

/* mz_vpcs: VPCs known on this host; a VNI missing here is dropped. */
struct mz_vpc {
	__u32 flags;
	__u32 n_dividers;
	struct mz_host dividers[MZ_MAX_DIVIDERS];
	/* The VPC's address space. An address outside it leaves the VPC
	 * (egress); prefix length 0 means not given: everything is inside. */
	__be32 cidr_ip;
	__u8 cidr_prefixlen;
	__u8 reserved[3];
};

/* mz_subnets, an LPM trie: prefixlen = 32 + the subnet's prefix length, so
 * the VNI always matches exactly and the address by prefix. */
struct mz_subnet_key {
	__u32 prefixlen;
	__u32 vni;
	__be32 ip;
};

#define MZ_SUBNET_F_BOUNCER 0x01 /* this host is a bouncer of the subnet */

struct mz_subnet {
	__u32 vni;
	__be32 ip;
	__u8 prefixlen;
	__u8 flags;
	__u16 n_bouncers;
	struct mz_host bouncers[MZ_MAX_BOUNCERS];
};

enum mz_ep_kind {
	MZ_EP_SIMPLE = 1,
	MZ_EP_SCALED = 2,
	MZ_EP_HOST = 3,
	MZ_EP_GATEWAY = 4,
};

/* mz_endpoints: the bouncer's table, endpoint -> the host it lives on. */
struct mz_endpoint {
	struct mz_host host;
	__u8 mac[6];
	__u8 kind; /* enum mz_ep_kind */
	__u8 flags;
};

/* mz_local: endpoints on this host, for delivery (decap or same host). */
struct mz_local_ep {
	__u32 ifindex; /* host-side veth */
	__u8 mac[6];
	__u16 reserved;
	__u32 reserved2;
	/* Flows of this endpoint admitted before this time are judged again
	 * (a policy on it changed; or it was created). */
	__u64 revoked_ns;
};

struct mz_iface_key {
	__u32 ifindex;
};

#define MZ_IFACE_F_HOST 0x01 /* the host's route to this address is this endpoint's */

/* mz_ifaces: the agent's view of the endpoint behind a host-side veth. The
 * agent trusts only this, never the packet, for the sender's identity. */
struct mz_iface {
	__u32 vni;
	__be32 ip;
	__u8 mac[6];
	__u8 subnet_prefixlen;
	__u8 flags; /* MZ_IFACE_F_* */
	__be32 subnet_ip;
	__be32 gateway_ip;
	__u8 gateway_mac[6];
	__u16 reserved;
	__u64 revoked_ns; /* as mz_local_ep's, for what the endpoint sends */
};

/* mz_droplets: every droplet's underlay address -> its MAC, as the
 * management plane gives them. A tunnel packet is believed only from an
 * outer source in here; an RTS host is learned, and answered, only if it is
 * in here, and always with this MAC, never the packet's. */
struct mz_droplet_key {
	__be32 ip;
};
struct mz_droplet_entry {
	__u8 mac[6];
	__u16 reserved;
};

/* mz_hostcache (LRU): learned endpoint -> host, the direct path. */
struct mz_cached_host {
	struct mz_host host;
	__u32 flags;
	__u64 learned_ns;
};

/* ---- scaled endpoints (services) ---------------------------------------- */

struct mz_svc_port {
	__u8 proto; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 reserved;
	__be16 port;        /* on the VIP */
	__be16 target_port; /* on the backend */
	__u16 reserved2;
};

struct mz_backend {
	__be32 ip;
	struct mz_host host;
};

/* The head of a mz_services value. The whole value (struct mz_service, seen
 * only by the programs) is the head, MZ_MAX_BACKENDS backends and the Maglev
 * table of MZ_MAGLEV_SIZE backend indexes, written in one update so a
 * program never sees a table that points at other backends than it has.
 * Swift writes the value as bytes at MZ_SVC_*_OFFSET. */
struct mz_service_hdr {
	__u32 n_ports;
	__u32 n_backends;
	__u32 generation; /* bumped by user space on every change */
	__u32 reserved;
	struct mz_svc_port ports[MZ_MAX_SVC_PORTS];
};

#ifdef __bpf__
struct mz_service {
	struct mz_service_hdr hdr;
	struct mz_backend backends[MZ_MAX_BACKENDS];
	__u16 table[MZ_MAGLEV_SIZE];
};
#endif
enum {
	MZ_SVC_BACKENDS_OFFSET = sizeof(struct mz_service_hdr),
	MZ_SVC_TABLE_OFFSET = sizeof(struct mz_service_hdr) + MZ_MAX_BACKENDS * sizeof(struct mz_backend),
	/* rounded up to the struct's 4-byte alignment */
	MZ_SVC_VALUE_SIZE = (MZ_SVC_TABLE_OFFSET + MZ_MAGLEV_SIZE * 2 + 3) & ~3,
};

/* A flow as the client's host sees it, both directions. ICMP echo uses the
 * identifier as the client-side "port": sport for a request, dport for a
 * reply. */
struct mz_flow_key {
	__u32 vni;
	__be32 src;
	__be32 dst;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 reserved[3];
};

#define MZ_NAT_F_REVERSE 0x01 /* a reply from the backend: rewrite the source */

/* mz_nat: what to write into a flow's packets on the client's host. The
 * forward entry (client -> VIP) rewrites the destination to the backend, the
 * reverse entry (backend -> client) the source back to the VIP. */
struct mz_nat {
	__be32 to_ip;
	__be16 to_port;
	__u16 flags; /* MZ_NAT_F_* */
	__be32 vip;     /* the service, in both directions (for invalidation) */
	__be32 backend; /* the backend, in both directions */
	__u64 created_ns;
};

/* mz_svc_clients (LRU): the client hosts a bouncer taught a service's flows
 * to, so a removed backend's flows can be invalidated there and nowhere else. */
struct mz_svc_client_key {
	__u32 vni;
	__be32 vip;
	__be32 host_ip;
};

struct mz_svc_client {
	__u64 last_ns;
};

/* mz_svc_stats (per CPU): flows a bouncer gave each backend of a service. */
struct mz_svc_stat_key {
	__u32 vni;
	__be32 vip;
	__be32 backend;
};

struct mz_counter {
	__u64 packets;
	__u64 bytes;
};

/* ---- network policy ----------------------------------------------------- */

/* The bits of a VPC's peers (see MizarPolicy): selectors, selectors on a
 * named port, ipBlocks. */
struct mz_pol_bits {
	__u32 w[MZ_POL_WORDS];
};

/* A named-port bit an endpoint holds, and the port it stands for there. */
struct mz_pol_named {
	__u16 bit;
	__u8 proto;
	__u8 reserved;
	__u16 port; /* host order */
	__u16 reserved2;
};

/* mz_pol_eps (key mz_ep_key), on the endpoint's subnet's bouncers: its
 * member bits and its rule sets. A missing entry is an endpoint that is
 * nobody's peer and isolated in no direction. */
struct mz_pol_ep {
	struct mz_pol_bits members;
	__u64 ingress; /* mz_pol_sets id, 0: not isolated for ingress */
	__u64 egress;
	__u32 n_named;
	__u32 reserved;
	struct mz_pol_named named[MZ_POL_NAMED];
};

struct mz_pol_set_key {
	__u32 vni;
	__u32 reserved;
	__u64 id; /* a hash of the content, from MizarPolicy */
};

#define MZ_POL_R_ANY_PEER 0x01 /* admits every peer */

/* One port range of a rule set: protocol 0 is every protocol and port. */
struct mz_pol_rule {
	__u8 proto;
	__u8 flags; /* MZ_POL_R_* */
	__u16 first; /* host order */
	__u16 last;
	__u16 reserved;
	struct mz_pol_bits bits;
};

struct mz_pol_set {
	__u32 n_rules;
	__u32 reserved;
	struct mz_pol_rule rules[MZ_POL_RULES];
};

/* mz_pol_blocks, an LPM trie like mz_subnets: the ipBlock bits of the
 * addresses under a prefix of a VPC. */
struct mz_pol_block_key {
	__u32 prefixlen; /* 32 + the prefix's length */
	__u32 vni;
	__be32 ip;
};

/* What B1 knows of the flow's source, for B2. */
#define MZ_POL_F_EGRESS_OK 0x01 /* the source's egress already admits it */
#define MZ_POL_F_REVERSE 0x02   /* the flow's source is the inner destination */

struct mz_opt_policy {
	struct mz_geneve_opt hdr;
	__u8 flags; /* MZ_POL_F_* */
	__u8 reserved[3];
	__be32 dst_host; /* the inner destination's host when B1 knows it, or 0 */
	struct mz_pol_bits members;
};

/* Sent only when egress is not yet decided: the bits the source's egress
 * rules admit on the flow's protocol and port. */
struct mz_opt_policy_eg {
	struct mz_geneve_opt hdr;
	struct mz_pol_bits bits;
};

struct mz_opt_verdict {
	struct mz_geneve_opt hdr;
	__be32 host_ip; /* the inner destination's host */
	__u8 flags; /* MZ_POL_F_REVERSE */
	__u8 reserved[3];
};

/* Sent by a bouncer's transitd to an endpoint's host (VNI in the Geneve
 * header, an Ethernet header of MZ_ETH_P_REVOKE inside). */
struct mz_opt_revoke {
	struct mz_geneve_opt hdr;
	__be32 ip;
	__u32 reserved;
};
#define MZ_ETH_P_REVOKE 0x88B5 /* IEEE local experimental */

/* mz_ct (LRU): flows this host's endpoints take part in that a bouncer
 * admitted. The key is the flow's mz_flow_key with the lower (address,
 * port) first, so both directions find one entry. */
enum mz_ct_state {
	MZ_CT_OTHER = 0,   /* UDP, SCTP, ICMP and the rest */
	MZ_CT_SYN = 1,     /* TCP opened, not answered */
	MZ_CT_ESTABLISHED = 2,
	MZ_CT_CLOSING = 3, /* a FIN seen */
	MZ_CT_CLOSED = 4,  /* FINs both ways, or a RST */
};

#define MZ_CT_F_REPLY_FIRST 0x01 /* the flow was opened by the key's second (address, port) */
#define MZ_CT_F_FIN_FIRST 0x02   /* a FIN from the key's first side */
#define MZ_CT_F_FIN_SECOND 0x04

struct mz_ct {
	__u64 admitted_ns;
	__u64 seen_ns;
	__u8 state; /* enum mz_ct_state */
	__u8 flags; /* MZ_CT_F_* */
	__u8 proto;
	__u8 reserved;
	__u32 reserved2;
};

/* Seconds an entry lives past its last packet, by state. */
#define MZ_CT_TIMEOUT_SYN 60
#define MZ_CT_TIMEOUT_ESTABLISHED 21600
#define MZ_CT_TIMEOUT_CLOSING 60
#define MZ_CT_TIMEOUT_CLOSED 10
#define MZ_CT_TIMEOUT_UDP 60
#define MZ_CT_TIMEOUT_ICMP 30
#define MZ_CT_TIMEOUT_OTHER 60

/* ---- egress (SNAT) -------------------------------------------------------- */

/* mz_snat_out (LRU): an endpoint's flow out of its VPC, keyed as the
 * endpoint sends it (mz_flow_key: VNI, endpoint, remote, endpoint port or
 * echo id, remote port or 0, protocol) -> its port on the droplet's address. */
struct mz_snat {
	__be16 port;
	__u16 reserved;
	__u32 reserved2;
	__u64 created_ns;
};

/* mz_snat_in (LRU): the same flow as its replies show it. Unique per
 * (protocol, remote, remote port, translated port): no VNI is needed to
 * find the tenant, and two tenants' flows to one server never share a port. */
struct mz_snat_in_key {
	__be32 remote;
	__be16 remote_port; /* 0 for ICMP echo */
	__be16 port;        /* translated port or echo id */
	__u8 proto;
	__u8 reserved[3];
};

/* The flow's state lives here: both directions look this entry up. */
struct mz_snat_back {
	__u32 vni;
	__be32 ip;    /* the endpoint */
	__be16 port;  /* its port or echo id */
	__u8 state;   /* enum mz_ct_state */
	__u8 flags;   /* MZ_CT_F_FIN_FIRST: from the endpoint; _SECOND: from the remote */
	__u32 reserved2;
	__u64 created_ns;
	__u64 seen_ns;
};

/* ---- published services ------------------------------------------------- */

/* mz_published: a scaled endpoint published on this droplet's address at a
 * host port. */
struct mz_pub_key {
	__u8 proto;
	__u8 reserved;
	__be16 port; /* the host port */
};

struct mz_pub {
	__u32 vni;
	__be32 vip;
	__be16 vip_port; /* the service port the host port stands for */
	__u16 reserved;
};

/* mz_pub_flows (LRU), on the publishing droplet: a client's flow to a host
 * port -> its backend and its port on this droplet's address. */
struct mz_pub_flow_key {
	__be32 client;
	__be16 client_port;
	__be16 port; /* the host port */
	__u8 proto;
	__u8 reserved[3];
};

struct mz_pub_flow {
	__u32 vni;
	__be32 backend;
	__be16 backend_port;
	__be16 nat_port; /* the flow's port on this droplet's address */
	struct mz_host host; /* the backend's host */
	__u8 client_mac[6]; /* where the client's packets come from: replies go back there */
	__u16 reserved;
	__u64 created_ns;
};

/* mz_pub_back (LRU): the same flow as the backend's replies show it. The
 * flow's state lives here: both directions look this entry up. */
struct mz_pub_back_key {
	__u32 vni;
	__be32 backend;
	__be16 backend_port;
	__be16 nat_port;
	__u8 proto;
	__u8 reserved[3];
};

struct mz_pub_back {
	__be32 client;
	__be16 client_port;
	__be16 port; /* the host port */
	__u8 client_mac[6];
	__u8 state; /* enum mz_ct_state */
	__u8 flags; /* MZ_CT_F_FIN_FIRST: from the client; _SECOND: from the backend */
	__u64 seen_ns;
};

#define MZ_TRACE_DROPS 0x01 /* an event for every drop */
#define MZ_TRACE_ALL 0x02   /* an event for every packet */
#define MZ_TRACE_VPCS 0x04  /* an event for every packet of the VPCs in mz_trace_vpcs */

/* mz_trace_vpcs: the VPCs (by VNI) whose every packet is traced while
 * MZ_TRACE_VPCS is set; the value is unused. */
struct mz_trace_vpc_key {
	__u32 vni;
};

/* mz_vpc_stats (per CPU): packets of each VPC this host knows, by outcome.
 * Only user space makes entries (with the VPC); a packet whose VNI has none
 * is not counted per VPC. */
struct mz_vpc_stat {
	struct mz_counter forwarded; /* passed, sent or redirected */
	struct mz_counter dropped;
};

/* mz_knobs[0]: run-time switches, written by user space at any time. */
struct mz_knobs {
	__u32 trace; /* MZ_TRACE_* */
	__u32 reserved;
};

/* Load-time settings: the programs' .rodata.mzcfg, set before load. */
struct mz_config {
	__u8 outer_ttl;
	__u8 direct_path; /* learn and use endpoint -> host entries */
	/* XDP only: send "back out of the arrival interface" as a redirect to
	 * it rather than XDP_TX. A veth flushes XDP_TX frames to its peer only
	 * when the peer runs an XDP program of its own; a redirect is always
	 * flushed. Set for a droplet that is a veth; the agent (always on a
	 * veth) redirects regardless. */
	__u8 xdp_tx_redirect;
	/* Judge every new flow at the bouncers and keep conntrack (network
	 * policy); off, every flow inside a VPC is admitted. */
	__u8 policy;
	/* The droplet's SNAT port range (host order, inclusive); first 0: this
	 * host translates nothing. */
	__u16 snat_first;
	__u16 snat_last;
};

/* ---- verdicts, counters, drop reasons ----------------------------------- */

enum mz_verdict {
	MZ_V_PASS = 1,     /* to the host's own stack */
	MZ_V_DROP = 2,
	MZ_V_TX = 3,       /* back out of the interface it arrived on */
	MZ_V_REDIRECT = 4, /* out of (or into) another interface */
};

enum mz_program {
	MZ_PROG_TRANSIT = 1,
	MZ_PROG_AGENT = 2,
};

enum mz_hook {
	MZ_HOOK_ID_XDP = 1,
	MZ_HOOK_ID_TC = 2,
};

/* Indexes of mz_counters. Each program counts its verdicts; the path
 * counters say which way a packet went. */
enum mz_counter_id {
	/* per verdict, in enum mz_verdict order: a program's packets are their sum */
	MZ_CNT_TRANSIT_PASS = 0,
	MZ_CNT_TRANSIT_DROP,
	MZ_CNT_TRANSIT_TX,
	MZ_CNT_TRANSIT_REDIRECT,
	MZ_CNT_AGENT_PASS,
	MZ_CNT_AGENT_DROP,
	MZ_CNT_AGENT_TX,
	MZ_CNT_AGENT_REDIRECT,
	MZ_CNT_DELIVER,        /* decapsulated into a local endpoint */
	MZ_CNT_LOCAL_DELIVER,  /* same host, no encapsulation */
	MZ_CNT_BOUNCER_FWD,    /* bounced to the endpoint's host */
	MZ_CNT_BOUNCER_ARP,    /* ARP answered by a bouncer */
	MZ_CNT_DIVIDER_FWD,    /* divider to a bouncer */
	MZ_CNT_DIVIDER_DIRECT, /* divider straight to a learned host */
	MZ_CNT_ENCAP_BOUNCER,
	MZ_CNT_ENCAP_DIVIDER,
	MZ_CNT_ENCAP_DIRECT,
	MZ_CNT_AGENT_ARP,      /* ARP answered by the agent (gateway, same host) */
	MZ_CNT_SELF_HANDOFF,   /* agent's next hop is this very host */
	MZ_CNT_CACHE_LEARN,    /* endpoint -> host learned or changed */
	MZ_CNT_STALE_REROUTE,  /* direct-path packet for an endpoint gone from here, sent to its bouncer */
	MZ_CNT_SVC_ANSWER,     /* bouncer: first packet to a service answered with a backend */
	MZ_CNT_SVC_LEARN,      /* client host: a service flow learned from an answer */
	MZ_CNT_SVC_RELAY,      /* divider: an answer relayed to the client's host */
	MZ_CNT_SVC_DNAT,       /* client host: a packet to a VIP rewritten to its backend */
	MZ_CNT_SVC_RNAT,       /* client host: a reply rewritten back to the VIP */
	MZ_CNT_SVC_ENDED,      /* client host: a direct SYN reused a service flow's ports; that flow's entries went */
	MZ_CNT_LEARN_REFUSED,  /* an RTS naming a host that is not a droplet: delivered, not learned */
	MZ_CNT_POL_JUDGE,      /* sent for judgment: a flow's first packet, from its host */
	MZ_CNT_POL_FORWARD,    /* B1: source judged, sent on to the destination's bouncer */
	MZ_CNT_POL_ADMIT,      /* a bouncer admitted a flow */
	MZ_CNT_POL_CT_LEARN,   /* a host installed a conntrack entry from a verdict */
	MZ_CNT_POL_REROUTE,    /* a packet of a flow this host had no valid entry for, sent to be judged */
	MZ_CNT_POL_REVOKED,    /* an endpoint's flows marked to be judged again */
	MZ_CNT_SNAT_NEW,       /* a flow out of its VPC given a port on the droplet's address */
	MZ_CNT_SNAT_OUT,       /* a packet out of its VPC translated to the droplet's address */
	MZ_CNT_SNAT_IN,        /* a reply translated back and delivered to its endpoint */
	MZ_CNT_HOST_REPLY,     /* an endpoint's reply to its host's own connection, handed to the host */
	MZ_CNT_PUB_NEW,        /* a client's new flow to a published port given a backend */
	MZ_CNT_PUB_IN,         /* a client's packet to a published port sent to its backend */
	MZ_CNT_PUB_OUT,        /* a backend's reply sent back to the published flow's client */
	MZ_CNT_PUB_ADMIT,      /* a backend's host: a published flow from its droplet admitted and delivered */
	MZ_CNT_TRACE_LOST,     /* a trace event not emitted: the events ring was full (its packet is counted as usual) */
	MZ_CNT__MAX,
};

/* Drop reasons: the index of mz_drops and the name the CLI shows. Helpers
 * return a negative reason; only the entry point turns it into a drop. */
enum mz_drop_reason {
	MZ_DROP_TRUNC_ETH = 1,
	MZ_DROP_OUTER_IP,        /* outer IPv4 malformed or truncated */
	MZ_DROP_OUTER_FRAGMENT,  /* fragmented tunnel packet */
	MZ_DROP_TRUNC_UDP,
	MZ_DROP_TRUNC_GENEVE,
	MZ_DROP_GENEVE_VERSION,
	MZ_DROP_GENEVE_OAM,      /* control packets are not used */
	MZ_DROP_GENEVE_PROTO,    /* payload is not Ethernet */
	MZ_DROP_GENEVE_OPTIONS,  /* option lengths overrun or too many */
	MZ_DROP_GENEVE_CRITICAL, /* unknown critical option */
	MZ_DROP_NO_RTS,          /* no return-to-sender option */
	MZ_DROP_UNKNOWN_VNI,
	MZ_DROP_TTL_EXCEEDED,
	MZ_DROP_TRUNC_INNER,     /* inner frame shorter than its headers */
	MZ_DROP_INNER_IP,        /* inner IPv4 malformed */
	MZ_DROP_UNSUPPORTED_L3,  /* neither IPv4 nor ARP */
	MZ_DROP_ARP_MALFORMED,
	MZ_DROP_ARP_UNKNOWN,     /* ARP for an address no endpoint has */
	MZ_DROP_ARP_UNSUPPORTED, /* gratuitous or unsolicited ARP */
	MZ_DROP_NO_ENDPOINT,     /* bouncer: unknown endpoint in its subnet */
	MZ_DROP_NO_ROUTE,        /* no subnet, bouncer or divider for it here */
	MZ_DROP_NO_BOUNCER,      /* subnet has no bouncers */
	MZ_DROP_NO_DIVIDER,      /* VPC has no dividers */
	MZ_DROP_STALE_DIRECT,    /* direct-path packet for an endpoint not here */
	MZ_DROP_LOOP,            /* next hop is this host, but nothing local */
	MZ_DROP_NO_IFACE,        /* agent on an interface with no endpoint */
	MZ_DROP_NO_DROPLET,      /* droplet not configured */
	MZ_DROP_SPOOF_MAC,
	MZ_DROP_SPOOF_IP,
	MZ_DROP_BROADCAST,       /* broadcast or multicast destination */
	MZ_DROP_ADJUST_FAILED,   /* a head/room adjustment helper failed */
	MZ_DROP_SVC_NO_SERVICE,  /* bouncer: scaled endpoint without a service entry */
	MZ_DROP_SVC_PORT,        /* to a VIP on a port the service does not have */
	MZ_DROP_SVC_PROTO,       /* to a VIP: neither TCP, UDP nor ICMP echo, or a fragment */
	MZ_DROP_SVC_NO_BACKEND,  /* the service has no live backend */
	MZ_DROP_SVC_REWRITE,     /* a rewrite answer malformed or for no local client */
	MZ_DROP_NOT_DROPLET,     /* a tunnel packet whose outer source is not a droplet */
	MZ_DROP_RTS_NOT_DROPLET, /* an answer would go to an RTS host that is not a droplet */
	MZ_DROP_POL_EGRESS,      /* the source's egress rules do not admit the flow */
	MZ_DROP_POL_INGRESS,     /* the destination's ingress rules do not admit the flow */
	MZ_DROP_POL_NO_JUDGE,    /* sent to be judged by a host that holds neither endpoint's entry */
	MZ_DROP_POL_NO_ROOM,     /* the judgment's options would make the packet exceed the MTU */
	MZ_DROP_POL_VERDICT,     /* a verdict or revocation malformed, or for no endpoint here */
	MZ_DROP_EGRESS_DISABLED, /* to outside the VPC, whose egress is off (or this host has no SNAT range) */
	MZ_DROP_SNAT_NO_MAPPING, /* to the SNAT range, matching no flow out: unsolicited, or stale */
	MZ_DROP_SNAT_EXHAUSTED,  /* no free port in the SNAT range for this remote */
	MZ_DROP_SNAT_PROTO,      /* out of the VPC: neither TCP, UDP nor ICMP echo, or a fragment */
	MZ_DROP_SNAT_NO_ROUTE,   /* out of the VPC: the droplet has no route to the address */
	MZ_DROP_SNAT_NO_NEIGH,   /* XDP agent: the next hop's MAC is not resolved yet */
	MZ_DROP_HOST_DENIED,     /* an endpoint to its own host's addresses, not allowed */
	MZ_DROP_PUB_NO_BACKEND,  /* to a published port: no service entry, port or backend for it here */
	MZ_DROP_PUB_NO_FLOW,     /* to this droplet's address in the tunnel, or from a local endpoint, matching no published flow */
	MZ_DROP_PUB_PROTO,       /* to a published port: a fragment */
	MZ_DROP_PUB_TOO_BIG,     /* to a published port: too big for the tunnel (droplet MTU less the encapsulation) */
	MZ_DROP__MAX,
};

/* The explain build's record of one run (mz_explain, per CPU, one entry):
 * zeroed by user space before the run, filled by the program. */
struct mz_explain {
	__u32 verdict;        /* enum mz_verdict */
	__u32 reason;         /* enum mz_drop_reason when dropped */
	__u32 target_ifindex; /* redirect or tx: where to */
	__be32 next_hop;      /* outer destination after encap or bounce */
	__u32 vni;
	__u8 into_endpoint;
	__u8 neigh;
	__u16 reserved;
	__u32 len;                 /* the length last counted */
	__u32 counts[64]; /* what it counted (by enum mz_counter_id): the path taken */
};

/* One per packet when tracing (mz_knobs.trace) asks for it: mz_events. */
struct mz_event {
	__u64 ts_ns;
	__u32 vni;
	__u32 ifindex;        /* where the packet arrived */
	__u32 target_ifindex; /* where it was redirected, or 0 */
	__u16 verdict;        /* enum mz_verdict */
	__u16 reason;         /* enum mz_drop_reason, 0 unless dropped */
	__u8 program;         /* enum mz_program */
	__u8 hook;            /* enum mz_hook */
	__u16 length;
	__be32 inner_src;
	__be32 inner_dst;
	__be32 next_hop; /* outer destination after encap or bounce, or 0 */
	/* The inner packet's transport, as it leaves (0 when not IPv4, or a
	 * fragment after the first): ports in network order (ICMP: type and
	 * code in sport, the echo identifier in dport), TCP flags. */
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 tcp_flags;
	__u16 reserved;
};

/* ---- the flow hash ------------------------------------------------------ */

/* Chooses bouncers and dividers and fills the UDP source port. Shared by both
 * sides so user space can predict the choice. */
static inline __u32 mz_mix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x7feb352dU;
	h ^= h >> 15;
	h *= 0x846ca68bU;
	h ^= h >> 16;
	return h;
}

static inline __u32 mz_flow_hash(__u32 src, __u32 dst, __u32 ports_proto)
{
	return mz_mix32(src ^ mz_mix32(dst ^ mz_mix32(ports_proto)));
}

/* The Maglev table entry a bouncer reads for a flow to a service (host-order
 * addresses and ports; ICMP echo: the identifier as sport, dport 0). */
static inline __u32 mz_maglev_slot(__u32 client, __u32 vip, __u16 sport, __u16 dport, __u8 proto)
{
	__u32 h = mz_flow_hash(client, vip, ((__u32)sport << 16 | dport) ^ proto);
	return mz_mix32(h ^ 0x9e3779b9U) % MZ_MAGLEV_SIZE;
}

/* Where a new SNAT flow starts probing a range of n ports: this hash % n.
 * Host-order addresses; ports_proto = (sport << 16 | dport) ^ protocol in
 * host order (ICMP echo: the identifier as sport, dport 0). */
static inline __u32 mz_snat_hash(__u32 vni, __u32 src, __u32 dst, __u32 ports_proto)
{
	return mz_flow_hash(src ^ vni, dst, ports_proto);
}

static inline __u16 mz_flow_sport(__u32 hash)
{
	return (__u16)(MZ_UDP_SPORT_BASE | (hash & 0x3fff));
}

/* ---- layout checks ------------------------------------------------------ */

_Static_assert(sizeof(struct mz_geneve) == 8, "geneve header");
_Static_assert(sizeof(struct mz_geneve_opt) == 4, "geneve option header");
_Static_assert(sizeof(struct mz_opt_rts) == 16, "rts option");
_Static_assert(sizeof(struct mz_host) == 12, "host");
_Static_assert(sizeof(struct mz_droplet) == 20, "droplet");
_Static_assert(sizeof(struct mz_ep_key) == 8, "endpoint key");
_Static_assert(sizeof(struct mz_vpc) == 16 + 12 * MZ_MAX_DIVIDERS, "vpc");
_Static_assert(sizeof(struct mz_subnet_key) == 12, "subnet key");
_Static_assert(sizeof(struct mz_subnet) == 12 + 12 * MZ_MAX_BOUNCERS, "subnet");
_Static_assert(sizeof(struct mz_endpoint) == 20, "endpoint");
_Static_assert(sizeof(struct mz_local_ep) == 24, "local endpoint");
_Static_assert(sizeof(struct mz_iface) == 40, "iface");
_Static_assert(sizeof(struct mz_pol_bits) == 64, "policy bits");
_Static_assert(sizeof(struct mz_pol_named) == 8, "named port");
_Static_assert(sizeof(struct mz_pol_ep) == 64 + 24 + 8 * MZ_POL_NAMED, "policy endpoint");
_Static_assert(sizeof(struct mz_pol_set_key) == 16, "policy set key");
_Static_assert(sizeof(struct mz_pol_rule) == 72, "policy rule");
_Static_assert(sizeof(struct mz_pol_set) == 8 + 72 * MZ_POL_RULES, "policy set");
_Static_assert(sizeof(struct mz_pol_block_key) == 12, "policy block key");
_Static_assert(sizeof(struct mz_opt_policy) == 76, "policy option");
_Static_assert(sizeof(struct mz_opt_policy_eg) == 68, "policy egress option");
_Static_assert(sizeof(struct mz_opt_verdict) == 12, "verdict option");
_Static_assert(sizeof(struct mz_opt_revoke) == 12, "revoke option");
_Static_assert(sizeof(struct mz_ct) == 24, "conntrack entry");
_Static_assert(sizeof(struct mz_cached_host) == 24, "cached host");
_Static_assert(sizeof(struct mz_counter) == 16, "counter");
_Static_assert(sizeof(struct mz_event) == 48, "event");
_Static_assert(MZ_CNT__MAX <= 64, "explain counts");
_Static_assert(sizeof(struct mz_config) == 8, "config");
_Static_assert(sizeof(struct mz_opt_rewrite) == 24, "rewrite option");
_Static_assert(sizeof(struct mz_svc_port) == 8, "service port");
_Static_assert(sizeof(struct mz_backend) == 16, "backend");
_Static_assert(sizeof(struct mz_service_hdr) == 16 + 8 * MZ_MAX_SVC_PORTS, "service head");
_Static_assert(sizeof(struct mz_flow_key) == 20, "flow key");
_Static_assert(sizeof(struct mz_nat) == 24, "nat");
_Static_assert(sizeof(struct mz_snat) == 16, "snat");
_Static_assert(sizeof(struct mz_snat_in_key) == 12, "snat in key");
_Static_assert(sizeof(struct mz_snat_back) == 32, "snat back");
_Static_assert(sizeof(struct mz_pub_key) == 4, "published key");
_Static_assert(sizeof(struct mz_pub) == 12, "published");
_Static_assert(sizeof(struct mz_pub_flow_key) == 12, "published flow key");
_Static_assert(sizeof(struct mz_pub_flow) == 40, "published flow");
_Static_assert(sizeof(struct mz_pub_back_key) == 16, "published back key");
_Static_assert(sizeof(struct mz_pub_back) == 24, "published back");
_Static_assert(sizeof(struct mz_svc_client_key) == 12, "service client key");
_Static_assert(sizeof(struct mz_svc_stat_key) == 12, "service stat key");
_Static_assert(sizeof(struct mz_event) == 48, "event");
_Static_assert(MZ_CNT__MAX <= 64, "explain counts");
_Static_assert(sizeof(struct mz_vpc_stat) == 32, "vpc stat");
_Static_assert(MZ_MAX_BACKENDS <= 65535, "table entries are u16");
#ifdef __bpf__
_Static_assert(sizeof(struct mz_service) == MZ_SVC_VALUE_SIZE, "service value");
_Static_assert(__builtin_offsetof(struct mz_service, table) == MZ_SVC_TABLE_OFFSET, "service table");
#endif
_Static_assert(__builtin_offsetof(struct mz_opt_rts, host_mac) == 8, "rts mac");
_Static_assert(__builtin_offsetof(struct mz_subnet, bouncers) == 12, "subnet bouncers");
_Static_assert(__builtin_offsetof(struct mz_cached_host, learned_ns) == 16, "cached ts");
_Static_assert(MZ_ENCAP_LEN == 66, "encapsulation overhead");

/* ---- names, for user space ---------------------------------------------- */
#ifndef __bpf__
static inline const char *mz_drop_name(__u32 reason)
{
	switch (reason) {
	case MZ_DROP_TRUNC_ETH: return "trunc_eth";
	case MZ_DROP_OUTER_IP: return "outer_ip_malformed";
	case MZ_DROP_OUTER_FRAGMENT: return "outer_fragment";
	case MZ_DROP_TRUNC_UDP: return "trunc_udp";
	case MZ_DROP_TRUNC_GENEVE: return "trunc_geneve";
	case MZ_DROP_GENEVE_VERSION: return "geneve_version";
	case MZ_DROP_GENEVE_OAM: return "geneve_oam";
	case MZ_DROP_GENEVE_PROTO: return "geneve_protocol";
	case MZ_DROP_GENEVE_OPTIONS: return "geneve_options";
	case MZ_DROP_GENEVE_CRITICAL: return "geneve_critical_option";
	case MZ_DROP_NO_RTS: return "no_rts_option";
	case MZ_DROP_UNKNOWN_VNI: return "unknown_vni";
	case MZ_DROP_TTL_EXCEEDED: return "ttl_exceeded";
	case MZ_DROP_TRUNC_INNER: return "trunc_inner";
	case MZ_DROP_INNER_IP: return "inner_ip_malformed";
	case MZ_DROP_UNSUPPORTED_L3: return "unsupported_l3";
	case MZ_DROP_ARP_MALFORMED: return "arp_malformed";
	case MZ_DROP_ARP_UNKNOWN: return "arp_unknown_target";
	case MZ_DROP_ARP_UNSUPPORTED: return "arp_unsupported";
	case MZ_DROP_NO_ENDPOINT: return "no_endpoint";
	case MZ_DROP_NO_ROUTE: return "no_route";
	case MZ_DROP_NO_BOUNCER: return "no_bouncer";
	case MZ_DROP_NO_DIVIDER: return "no_divider";
	case MZ_DROP_STALE_DIRECT: return "stale_direct_path";
	case MZ_DROP_LOOP: return "loop";
	case MZ_DROP_NO_IFACE: return "no_iface";
	case MZ_DROP_NO_DROPLET: return "no_droplet";
	case MZ_DROP_SPOOF_MAC: return "spoofed_mac";
	case MZ_DROP_SPOOF_IP: return "spoofed_ip";
	case MZ_DROP_BROADCAST: return "broadcast";
	case MZ_DROP_ADJUST_FAILED: return "adjust_failed";
	case MZ_DROP_SVC_NO_SERVICE: return "service_missing";
	case MZ_DROP_SVC_PORT: return "service_port";
	case MZ_DROP_SVC_PROTO: return "service_protocol";
	case MZ_DROP_SVC_NO_BACKEND: return "service_no_backend";
	case MZ_DROP_SVC_REWRITE: return "service_rewrite";
	case MZ_DROP_NOT_DROPLET: return "not_from_droplet";
	case MZ_DROP_RTS_NOT_DROPLET: return "rts_not_droplet";
	case MZ_DROP_POL_EGRESS: return "policy_egress_denied";
	case MZ_DROP_POL_INGRESS: return "policy_ingress_denied";
	case MZ_DROP_POL_NO_JUDGE: return "policy_no_judge";
	case MZ_DROP_POL_NO_ROOM: return "policy_no_room";
	case MZ_DROP_POL_VERDICT: return "policy_verdict";
	case MZ_DROP_EGRESS_DISABLED: return "egress_disabled";
	case MZ_DROP_SNAT_NO_MAPPING: return "snat_no_mapping";
	case MZ_DROP_SNAT_EXHAUSTED: return "snat_ports_exhausted";
	case MZ_DROP_SNAT_PROTO: return "snat_protocol";
	case MZ_DROP_SNAT_NO_ROUTE: return "snat_no_route";
	case MZ_DROP_SNAT_NO_NEIGH: return "snat_no_neighbour";
	case MZ_DROP_HOST_DENIED: return "host_access_denied";
	case MZ_DROP_PUB_NO_BACKEND: return "published_no_backend";
	case MZ_DROP_PUB_NO_FLOW: return "published_no_flow";
	case MZ_DROP_PUB_PROTO: return "published_protocol";
	case MZ_DROP_PUB_TOO_BIG: return "published_too_big";
	default: return 0;
	}
}

static inline const char *mz_counter_name(__u32 id)
{
	switch (id) {
	case MZ_CNT_TRANSIT_PASS: return "transit_pass";
	case MZ_CNT_TRANSIT_DROP: return "transit_drop";
	case MZ_CNT_TRANSIT_TX: return "transit_tx";
	case MZ_CNT_TRANSIT_REDIRECT: return "transit_redirect";
	case MZ_CNT_AGENT_PASS: return "agent_pass";
	case MZ_CNT_AGENT_DROP: return "agent_drop";
	case MZ_CNT_AGENT_TX: return "agent_tx";
	case MZ_CNT_AGENT_REDIRECT: return "agent_redirect";
	case MZ_CNT_DELIVER: return "deliver";
	case MZ_CNT_LOCAL_DELIVER: return "local_deliver";
	case MZ_CNT_BOUNCER_FWD: return "bouncer_forward";
	case MZ_CNT_BOUNCER_ARP: return "bouncer_arp_reply";
	case MZ_CNT_DIVIDER_FWD: return "divider_forward";
	case MZ_CNT_DIVIDER_DIRECT: return "divider_direct";
	case MZ_CNT_ENCAP_BOUNCER: return "encap_to_bouncer";
	case MZ_CNT_ENCAP_DIVIDER: return "encap_to_divider";
	case MZ_CNT_ENCAP_DIRECT: return "encap_direct";
	case MZ_CNT_AGENT_ARP: return "agent_arp_reply";
	case MZ_CNT_SELF_HANDOFF: return "self_handoff";
	case MZ_CNT_CACHE_LEARN: return "cache_learn";
	case MZ_CNT_STALE_REROUTE: return "stale_reroute";
	case MZ_CNT_SVC_ANSWER: return "service_answer";
	case MZ_CNT_SVC_LEARN: return "service_learn";
	case MZ_CNT_SVC_RELAY: return "service_relay";
	case MZ_CNT_SVC_DNAT: return "service_dnat";
	case MZ_CNT_SVC_RNAT: return "service_rnat";
	case MZ_CNT_SVC_ENDED: return "service_flow_ended";
	case MZ_CNT_LEARN_REFUSED: return "learn_refused";
	case MZ_CNT_POL_JUDGE: return "policy_judge";
	case MZ_CNT_POL_FORWARD: return "policy_forward";
	case MZ_CNT_POL_ADMIT: return "policy_admit";
	case MZ_CNT_POL_CT_LEARN: return "policy_ct_learn";
	case MZ_CNT_POL_REROUTE: return "policy_reroute";
	case MZ_CNT_POL_REVOKED: return "policy_revoked";
	case MZ_CNT_SNAT_NEW: return "snat_new";
	case MZ_CNT_SNAT_OUT: return "snat_out";
	case MZ_CNT_SNAT_IN: return "snat_in";
	case MZ_CNT_HOST_REPLY: return "host_reply";
	case MZ_CNT_PUB_NEW: return "published_new";
	case MZ_CNT_PUB_IN: return "published_in";
	case MZ_CNT_PUB_OUT: return "published_out";
	case MZ_CNT_PUB_ADMIT: return "published_admit";
	case MZ_CNT_TRACE_LOST: return "trace_lost";
	default: return 0;
	}
}
#endif /* !__bpf__ */

#endif /* MIZAR_ABI_H */
