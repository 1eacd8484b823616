/* SPDX-License-Identifier: Apache-2.0 */
/* Every map of the data plane. Both programs, in both hook builds, declare
 * the same maps, and the loader shares one instance of each between them. */
#ifndef MZ_MAPS_H
#define MZ_MAPS_H

#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mz_droplet);
} mz_droplet SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mz_knobs);
} mz_knobs SEC(".maps");

/* Allocated on demand: sized for 100,000 hosts, holding as many as exist. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MZ_MAX_DROPLETS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mz_droplet_key);
	__type(value, struct mz_droplet_entry);
} mz_droplets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MZ_MAX_VPCS);
	__type(key, struct mz_vpc_key);
	__type(value, struct mz_vpc);
} mz_vpcs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MZ_MAX_SUBNETS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mz_subnet_key);
	__type(value, struct mz_subnet);
} mz_subnets SEC(".maps");

/* Allocated on demand: a bouncer may hold a million entries, most hosts none. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MZ_MAX_ENDPOINTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mz_ep_key);
	__type(value, struct mz_endpoint);
} mz_endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MZ_MAX_LOCAL);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mz_ep_key);
	__type(value, struct mz_local_ep);
} mz_local SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MZ_MAX_LOCAL);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mz_iface_key);
	__type(value, struct mz_iface);
} mz_ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MZ_MAX_HOSTCACHE);
	__type(key, struct mz_ep_key);
	__type(value, struct mz_cached_host);
} mz_hostcache SEC(".maps");

/* Scaled endpoints this host bounces for: ports, backends, Maglev table. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MZ_MAX_SERVICES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mz_ep_key);
	__type(value, struct mz_service);
} mz_services SEC(".maps");

/* Service flows of this host's endpoints (client side), both directions. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MZ_MAX_NAT);
	__type(key, struct mz_flow_key);
	__type(value, struct mz_nat);
} mz_nat SEC(".maps");

/* Client hosts this bouncer taught, per service. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MZ_MAX_SVC_CLIENTS);
	__type(key, struct mz_svc_client_key);
	__type(value, struct mz_svc_client);
} mz_svc_clients SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MZ_MAX_SVC_STATS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mz_svc_stat_key);
	__type(value, struct mz_counter);
} mz_svc_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MZ_CNT__MAX);
	__type(key, __u32);
	__type(value, struct mz_counter);
} mz_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MZ_DROP__MAX);
	__type(key, __u32);
	__type(value, struct mz_counter);
} mz_drops SEC(".maps");

/* Made and removed by user space with each VPC; the programs only count. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MZ_MAX_VPCS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct mz_vpc_stat);
} mz_vpc_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MZ_MAX_TRACE_VPCS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mz_trace_vpc_key);
	__type(value, __u32);
} mz_trace_vpcs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, MZ_EVENTS_BYTES);
} mz_events SEC(".maps");

#ifdef MZ_EXPLAIN
/* The explain build's record of one run: what it counted and decided. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mz_explain);
} mz_explain SEC(".maps");
#endif

/* Index 0 is 1 once this host was taught a service flow (svc_apply sets
 * it): until then no delivered packet can be a service's reply, and
 * delivery skips the reverse-NAT lookup. Only the programs write it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} mz_nat_active SEC(".maps");

/* Network policy, on bouncers: endpoints' entries, rule sets, ipBlocks. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MZ_MAX_POL_EPS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mz_ep_key);
	__type(value, struct mz_pol_ep);
} mz_pol_eps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MZ_MAX_POL_SETS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mz_pol_set_key);
	__type(value, struct mz_pol_set);
} mz_pol_sets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MZ_MAX_POL_BLOCKS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mz_pol_block_key);
	__type(value, struct mz_pol_bits);
} mz_pol_blocks SEC(".maps");

/* Room for a bit set while a packet is judged: the judging functions'
 * stacks add up to more than the verifier's 512 bytes otherwise. Per CPU,
 * and a program runs to its end on one CPU. Not shared: each program has
 * its own. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mz_pol_bits);
} mz_pol_scratch SEC(".maps");

/* Admitted flows of this host's endpoints. The loader sizes it (transitd's
 * --conntrack-size); an LRU map is allocated whole when it is created. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MZ_CT_DEFAULT);
	__type(key, struct mz_flow_key);
	__type(value, struct mz_ct);
} mz_ct SEC(".maps");

/* Egress: flows of this host's endpoints out of their VPC, translated to
 * the droplet's address. Both sized by the loader (transitd's --snat-size)
 * and pinned, so a restart keeps established flows. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MZ_SNAT_DEFAULT);
	__type(key, struct mz_flow_key);
	__type(value, struct mz_snat);
} mz_snat_out SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MZ_SNAT_DEFAULT);
	__type(key, struct mz_snat_in_key);
	__type(value, struct mz_snat_back);
} mz_snat_in SEC(".maps");

/* Published services: the host ports of this droplet, and their flows. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MZ_MAX_PUBLISHED);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mz_pub_key);
	__type(value, struct mz_pub);
} mz_published SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MZ_MAX_PUB_FLOWS);
	__type(key, struct mz_pub_flow_key);
	__type(value, struct mz_pub_flow);
} mz_pub_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MZ_MAX_PUB_FLOWS);
	__type(key, struct mz_pub_back_key);
	__type(value, struct mz_pub_back);
} mz_pub_back SEC(".maps");

/* Load-time settings (struct mz_config), written by the loader. */
const volatile struct mz_config mz_config SEC(".rodata.mzcfg") = {
	.outer_ttl = 64,
	.direct_path = 1,
};

#endif
