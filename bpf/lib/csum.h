/* SPDX-License-Identifier: Apache-2.0 */
#ifndef MZ_CSUM_H
#define MZ_CSUM_H

#include "common.h"

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). The sum is byte-order neutral,
 * so raw network-order words go in and out unchanged. */
static __always_inline void csum_replace2(__u16 *check, __u16 old, __u16 new)
{
	__u32 sum = (__u16)~*check;
	sum += (__u16)~old;
	sum += new;
	*check = csum_fold(sum);
}

static __always_inline void csum_replace4(__u16 *check, __u32 old, __u32 new)
{
	csum_replace2(check, (__u16)old, (__u16)new);
	csum_replace2(check, (__u16)(old >> 16), (__u16)(new >> 16));
}

/* Header checksum of an option-less IPv4 header whose check field is 0. */
static __always_inline __u16 ipv4_csum(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	return csum_fold(sum);
}

#endif
