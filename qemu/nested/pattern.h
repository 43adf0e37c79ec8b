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
 * Each page also has a generation, which each rewrite bumps. At an odd
 * generation a page holds scratch contents, its guest's own and that
 * generation's; at an even one, its kind's contents again. A page is
 * rewritten twice every PAT_STRIDE rounds: into scratch, and back a round
 * later. So the host has it merged when it is written (copy on write), a
 * guest that saw the other's scratch page would fail its check, and the
 * share of pages that can merge does not depend on how far each guest got.
 */
#ifndef RKSM_NESTED_PATTERN_H
#define RKSM_NESTED_PATTERN_H

typedef unsigned int pat_u32;

#define PAT_PAGE_WORDS 1024 /* 4 KiB pages */

/* Where baremetal.c puts the image in guest-physical memory (nested_test reads it there). */
#define PAT_BAREMETAL_START (4U << 20)

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

#define PAT_STRIDE 16

/* The key that page i of @guest holds at generation @gen; 0 means zeroes. */
static inline pat_u32 pat_key(pat_u32 guest, pat_u32 i, pat_u32 gen)
{
	pat_u32 k = pat_mix(i * 0x9e3779b1U);

	if (gen & 1)
		return pat_mix(k ^ gen * 0x85ebca77U ^ (guest + 1) * 0xc2b2ae3dU) | 1;
	if (pat_kind(i) == PAT_ZERO)
		return 0;
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

/* Does round @round (from 1) rewrite page @i: into scratch, or back? */
static inline int pat_rewritten(pat_u32 i, pat_u32 round)
{
	return round % PAT_STRIDE == i % PAT_STRIDE ||
	       (round > 1 && (round - 1) % PAT_STRIDE == i % PAT_STRIDE);
}

/* Fill @pages pages from @base with @guest's image at generation 0. */
static inline void pat_fill_all(volatile pat_u32 *base, pat_u32 guest, pat_u32 pages)
{
	for (pat_u32 i = 0; i < pages; i++)
		pat_fill(base + i * PAT_PAGE_WORDS, pat_key(guest, i, 0));
}

/*
 * Round @round over the @pages pages from @base: rewrite the pages it
 * rewrites (bumping their @gen), then check every page. Returns -1 when all
 * are right, else the first wrong page, with the wrong word in *@word.
 */
static inline int pat_round(volatile pat_u32 *base, unsigned char *gen, pat_u32 guest,
			    pat_u32 pages, pat_u32 round, int *word)
{
	for (pat_u32 i = 0; i < pages; i++) {
		volatile pat_u32 *p = base + i * PAT_PAGE_WORDS;

		if (pat_rewritten(i, round))
			pat_fill(p, pat_key(guest, i, ++gen[i]));
		*word = pat_check(p, pat_key(guest, i, gen[i]));
		if (*word >= 0)
			return (int)i;
	}
	return -1;
}

#endif
