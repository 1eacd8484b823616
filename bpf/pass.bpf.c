/* SPDX-License-Identifier: Apache-2.0 */
/* The benchmarks' baseline: the cheapest program a hook can run. */
#include "lib/ctx.h"

SEC(MZ_SEC)
int mz_pass(struct mz_ctx *ctx)
{
	return CTX_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
