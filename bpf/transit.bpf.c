/* SPDX-License-Identifier: Apache-2.0 */
/* The transit program: all ingress of the droplet interface. Decapsulates
 * and delivers to local endpoints, bounces for the subnets whose bouncer this
 * host is, divides for the VPCs whose divider it is, and passes the host's
 * own traffic to its stack. */
#include "lib/transit.h"

SEC(MZ_SEC)
int mz_transit(struct mz_ctx *ctx)
{
	__u32 zero = 0;
	struct mz_pkt p = { .len = ctx_len(ctx) };
	const struct mz_droplet *dr = bpf_map_lookup_elem(&mz_droplet, &zero);
	if (!dr)
		return CTX_PASS;
	ctx_pull(ctx, MZ_ENCAP_LEN + MZ_ETH_LEN + 60);
	return mz_finish(ctx, transit(ctx, &p, dr), &p, MZ_PROG_TRANSIT);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
