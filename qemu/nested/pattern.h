/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The integrity checker's memory image, shared by the two inner-guest
 * checkers: guestcheck.c (a Linux /init) and baremetal.c (a multiboot
 * payload, no OS). Freestanding: no libc, 32-bit arithmetic only.
 *
 * Page i of the image is one of three kinds:
 *   i % 10 == 9   the guest's own: its contents name the guest;
 *   i % 10 == 8   zero;
 *   otherwise     common: the same in every guest (think of a shared OS
 *                 image), so the host can merge it across guests.
 * Each page also has a generation. A rewrite bumps it, so the page's
 * contents change while the host may have it merged (copy on write), and
 * every later check expects the new contents.
 */
#ifndef RKSM_NESTED_PATTERN_H
#define RKSM_NESTED_PATTERN_H

typedef unsigned int pat_u32;

#define PAT_PAGE_WORDS 1024 /* 4 KiB pages */

enum pat_kind { PAT_COMMON, PAT_ZERO, PAT_OWN };

static inline enum pat_kind pat_kind(pat_u32 i)
{
	return i % 10 == 9 ? PAT_OWN : i % 10 == 8 ? PAT_ZERO : PAT_COMMON;
}

static inline pat_u32 pat_mix(pat_u32 x)
{
	x ^= x >> 16;
	x *= 0x7feb352dU;
	x ^= x >> 15;
	x *= 0x846ca68bU;
	x ^= x >> 16;
	return x;
}

/* The key that page i of @guest holds at generation @gen; 0 means zeroes. */
static inline pat_u32 pat_key(pat_u32 guest, pat_u32 i, pat_u32 gen)
{
	pat_u32 k;

	if (pat_kind(i) == PAT_ZERO && gen == 0)
		return 0;
	k = pat_mix(i * 0x9e3779b1U ^ gen * 0x85ebca77U);
	if (pat_kind(i) == PAT_OWN)
		k = pat_mix(k ^ (guest + 1) * 0xc2b2ae3dU);
	return k | 1;
}

static inline void pat_fill(volatile pat_u32 *p, pat_u32 key)
{
	for (pat_u32 w = 0; w < PAT_PAGE_WORDS; w++)
		p[w] = key ? pat_mix(key + w) : 0;
}

/* Index of the first wrong word, or -1 when the page holds @key. */
static inline int pat_check(const volatile pat_u32 *p, pat_u32 key)
{
	for (pat_u32 w = 0; w < PAT_PAGE_WORDS; w++)
		if (p[w] != (key ? pat_mix(key + w) : 0))
			return (int)w;
	return -1;
}

/*
 * Round r rewrites one page in every @stride, starting at r % stride, so
 * every page is rewritten once per @stride rounds.
 */
static inline int pat_rewritten(pat_u32 i, pat_u32 round, pat_u32 stride)
{
	return round > 0 && i % stride == round % stride;
}

#endif
