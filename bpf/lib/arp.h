/* SPDX-License-Identifier: Apache-2.0 */
#ifndef MZ_ARP_H
#define MZ_ARP_H

#include "common.h"

#define ARPOP_REQUEST_BE bpf_htons(1)
#define ARPOP_REPLY_BE bpf_htons(2)

/* Ethernet/IPv4 ARP. Addresses are byte arrays: spa sits at offset 14, where
 * a __be32 member would make the compiler pad the struct. */
struct mz_arp {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
};
_Static_assert(sizeof(struct mz_arp) == 28, "arp");

static __always_inline __be32 arp_ip(const __u8 *p)
{
	__be32 v;
	__builtin_memcpy(&v, p, 4);
	return v;
}

/* Only Ethernet/IPv4 requests and replies exist on a Mizar network. */
static __always_inline int arp_valid(const struct mz_arp *a)
{
	return a->htype == bpf_htons(1) && a->ptype == ETH_P_IP_BE && a->hlen == 6 &&
	       a->plen == 4 && (a->op == ARPOP_REQUEST_BE || a->op == ARPOP_REPLY_BE);
}

/* Turns a request into the answer "tpa is at mac", in place. */
static __always_inline void arp_answer(struct ethhdr *eth, struct mz_arp *a, const __u8 *mac)
{
	__u8 tpa[4];
	__builtin_memcpy(tpa, a->tpa, 4);
	mac_copy(eth->h_dest, a->sha);
	mac_copy(eth->h_source, mac);
	a->op = ARPOP_REPLY_BE;
	mac_copy(a->tha, a->sha);
	__builtin_memcpy(a->tpa, a->spa, 4);
	mac_copy(a->sha, mac);
	__builtin_memcpy(a->spa, tpa, 4);
}

#endif
