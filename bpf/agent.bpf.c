/* SPDX-License-Identifier: Apache-2.0 */
/* The agent program: all egress of one endpoint, on the host side of its
 * veth. Delivers to endpoints on this host, answers ARP for the gateway and
 * for local endpoints, and encapsulates the rest towards the destination's
 * host (direct path), a bouncer (same subnet) or a divider (other subnet). */
#define MZ_AGENT 1
#include "lib/agent.h"

SEC(MZ_SEC)
int mz_agent(struct mz_ctx *ctx)
{
	__u32 zero = 0;
	struct mz_pkt p = { .len = ctx_len(ctx) };
	const struct mz_droplet *dr = bpf_map_lookup_elem(&mz_droplet, &zero);
	if (!dr)
		return CTX_DROP;
	ctx_pull(ctx, MZ_ETH_LEN + 60 + 4);
	return mz_finish(ctx, agent(ctx, &p, dr), &p, MZ_PROG_AGENT);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
