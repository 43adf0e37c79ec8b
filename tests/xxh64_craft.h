/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A userspace xxh64, and pages crafted to collide under it.
 *
 * rksm keys its stable and unstable trees by xxh64(page, 4096, seed 0).
 * Pages that all hash alike pile up in one bucket, where only memcmp tells
 * them apart: a hash-flooding attack on the trees. This header makes as
 * many such pages as wanted, all different and all with one seed-0 hash.
 *
 * How: xxh64 runs a 4096-byte input as 128 stripes of 32 bytes through four
 * 64-bit accumulators, each stripe lane by lane:
 *
 *	acc = rotl(acc + lane * P2, 31) * P1
 *
 * and then mixes only the four accumulators and the length into the hash.
 * P1 and P2 are odd, so each step can be undone mod 2^64: the lane that
 * takes an accumulator from any value to a chosen one is
 *
 *	lane = (rotr(target * inv(P1), 31) - acc) * inv(P2).
 *
 * A crafted page has arbitrary (per-page pseudo-random) bytes 0..4063 and
 * a last stripe solved so that the accumulators end at one fixed target
 * state. Same state, same length: same hash, whatever the first 4064 bytes.
 *
 * Header-only and self-contained (no libc beyond memcmp/qsort/malloc).
 */
#ifndef XXH64_CRAFT_H
#define XXH64_CRAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define XXH_P1 11400714785074694791ULL
#define XXH_P2 14029467366897019727ULL
#define XXH_P3 1609587929392839161ULL
#define XXH_P4 9650029242287828579ULL
#define XXH_P5 2870177450012600261ULL

#define XXH_CRAFT_PAGE 4096
#define XXH_CRAFT_STRIPE 32

static inline uint64_t xxh_rotl64(uint64_t x, unsigned int r)
{
	return (x << r) | (x >> (64 - r));
}

static inline uint64_t xxh_rotr64(uint64_t x, unsigned int r)
{
	return (x >> r) | (x << (64 - r));
}

/* Little-endian loads, whatever the host (and alignment) is. */
static inline uint64_t xxh_le64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static inline uint32_t xxh_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline void xxh_put_le64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++, v >>= 8)
		p[i] = (unsigned char)v;
}

static inline uint64_t xxh64_round(uint64_t acc, uint64_t lane)
{
	acc += lane * XXH_P2;
	acc = xxh_rotl64(acc, 31);
	return acc * XXH_P1;
}

static inline uint64_t xxh64_merge_round(uint64_t h, uint64_t v)
{
	h ^= xxh64_round(0, v);
	return h * XXH_P1 + XXH_P4;
}

/* The four accumulators xxh64 starts from with @seed. */
static inline void xxh64_init_state(uint64_t v[4], uint64_t seed)
{
	v[0] = seed + XXH_P1 + XXH_P2;
	v[1] = seed + XXH_P2;
	v[2] = seed;
	v[3] = seed - XXH_P1;
}

/* Run the whole stripes of @p (@len a multiple of 32) through @v. */
static inline void xxh64_stripes(uint64_t v[4], const unsigned char *p, size_t len)
{
	for (size_t off = 0; off + XXH_CRAFT_STRIPE <= len; off += XXH_CRAFT_STRIPE)
		for (int k = 0; k < 4; k++)
			v[k] = xxh64_round(v[k], xxh_le64(p + off + 8 * k));
}

/* xxh64's end: accumulators (used when @len >= 32), tail and avalanche. */
static inline uint64_t xxh64_finish(const uint64_t v[4], const unsigned char *tail,
				    size_t len, uint64_t seed)
{
	size_t rest = len % XXH_CRAFT_STRIPE;
	const unsigned char *p = tail;
	uint64_t h;

	if (len >= XXH_CRAFT_STRIPE) {
		h = xxh_rotl64(v[0], 1) + xxh_rotl64(v[1], 7) +
		    xxh_rotl64(v[2], 12) + xxh_rotl64(v[3], 18);
		for (int k = 0; k < 4; k++)
			h = xxh64_merge_round(h, v[k]);
	} else {
		h = seed + XXH_P5;
	}
	h += (uint64_t)len;
	for (; rest >= 8; p += 8, rest -= 8) {
		h ^= xxh64_round(0, xxh_le64(p));
		h = xxh_rotl64(h, 27) * XXH_P1 + XXH_P4;
	}
	if (rest >= 4) {
		h ^= (uint64_t)xxh_le32(p) * XXH_P1;
		h = xxh_rotl64(h, 23) * XXH_P2 + XXH_P3;
		p += 4;
		rest -= 4;
	}
	for (; rest; p++, rest--) {
		h ^= *p * XXH_P5;
		h = xxh_rotl64(h, 11) * XXH_P1;
	}
	h ^= h >> 33;
	h *= XXH_P2;
	h ^= h >> 29;
	h *= XXH_P3;
	h ^= h >> 32;
	return h;
}

/* XXH64 of @len bytes at @input with @seed (the kernel's lib/xxhash.c xxh64()). */
static inline uint64_t xxh64(const void *input, size_t len, uint64_t seed)
{
	const unsigned char *p = input;
	size_t whole = len / XXH_CRAFT_STRIPE * XXH_CRAFT_STRIPE;
	uint64_t v[4];

	xxh64_init_state(v, seed);
	xxh64_stripes(v, p, whole);
	return xxh64_finish(v, p + whole, len, seed);
}

/*
 * Known answers, from the reference implementation (xxhsum -H64 / the
 * python-xxhash documentation). Inputs of 0..3 bytes take only the tail
 * paths; the 39-byte one takes the stripe loop, an 8-byte, a 4-byte and a
 * 1-byte tail step, so every path is covered. Returns the index of the
 * first wrong answer, or -1 if all are right.
 */
struct xxh64_vector {
	const char *in;
	uint64_t seed, hash;
};

static const struct xxh64_vector xxh64_vectors[] = {
	{ "", 0, 0xEF46DB3751D8E999ULL },
	{ "a", 0, 0xD24EC4F1A98C6E5BULL },
	{ "abc", 0, 0x44BC2CF5AD770999ULL },
	{ "Nobody inspects the spammish repetition", 0, 0xFBCEA83C8A378BF1ULL },
};

static inline int xxh64_selftest(void)
{
	for (size_t i = 0; i < sizeof(xxh64_vectors) / sizeof(xxh64_vectors[0]); i++) {
		const struct xxh64_vector *t = &xxh64_vectors[i];

		if (xxh64(t->in, strlen(t->in), t->seed) != t->hash)
			return (int)i;
	}
	return -1;
}

/* The inverse of an odd @a mod 2^64 (Newton: each step doubles the good bits). */
static inline uint64_t xxh_inv64(uint64_t a)
{
	uint64_t x = a;	/* right to 3 bits for odd a */

	for (int i = 0; i < 5; i++)
		x *= 2 - a * x;
	return x;
}

/* The lane that xxh64_round() takes from @acc to @target. */
static inline uint64_t xxh64_solve_lane(uint64_t acc, uint64_t target)
{
	uint64_t before_mul = target * xxh_inv64(XXH_P1);
	uint64_t before_rot = xxh_rotr64(before_mul, 31);

	return (before_rot - acc) * xxh_inv64(XXH_P2);
}

/*
 * The accumulator state every crafted page ends in (any fixed values do),
 * and so the seed-0 xxh64 they all share.
 */
static const uint64_t xxh64_craft_target[4] = {
	0x72736b6d65726765ULL, 0x636f6c6c69646521ULL,
	0x0123456789abcdefULL, 0xfeedfacecafebeefULL,
};

static inline uint64_t xxh64_craft_hash(void)
{
	return xxh64_finish(xxh64_craft_target, NULL, XXH_CRAFT_PAGE, 0);
}

/* splitmix64: the per-page pseudo-random bytes. */
static inline uint64_t xxh_craft_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/*
 * Solve the last stripe of the 4096-byte @page, whose bytes 0..4063 are
 * already there, so that its seed-0 xxh64 is xxh64_craft_hash().
 */
static inline void xxh64_craft_solve(unsigned char *page)
{
	const size_t last = XXH_CRAFT_PAGE - XXH_CRAFT_STRIPE;
	uint64_t v[4];

	xxh64_init_state(v, 0);
	xxh64_stripes(v, page, last);
	for (int k = 0; k < 4; k++)
		xxh_put_le64(page + last + 8 * k,
			     xxh64_solve_lane(v[k], xxh64_craft_target[k]));
}

/*
 * Crafted page number @id: bytes 0..4063 pseudo-random from @id (word w is
 * splitmix64(id * 512 + w) ^ id), the last 32 bytes solved. Deterministic: the same @id gives the same page
 * in every process.
 */
static inline void xxh64_craft_page(void *page, uint64_t id)
{
	unsigned char *p = page;

	for (unsigned int w = 0; w < (XXH_CRAFT_PAGE - XXH_CRAFT_STRIPE) / 8; w++)
		xxh_put_le64(p + 8 * w, xxh_craft_mix(id * 512 + w) ^ id);
	xxh64_craft_solve(p);
}

/* Whether @page is crafted page @id. */
static inline bool xxh64_craft_page_is(const void *page, uint64_t id)
{
	unsigned char want[XXH_CRAFT_PAGE];

	xxh64_craft_page(want, id);
	return !memcmp(page, want, XXH_CRAFT_PAGE);
}

static inline int xxh_craft_cmp(const void *a, const void *b)
{
	return memcmp(*(const unsigned char *const *)a,
		      *(const unsigned char *const *)b, XXH_CRAFT_PAGE);
}

/*
 * Self-check of @n crafted pages at @pages (4096 bytes each, in a row):
 * every one has seed-0 xxh64 == xxh64_craft_hash(), and no two are equal.
 * Returns 0, or -1 (a wrong hash), -2 (two equal pages), -3 (no memory).
 */
static inline int xxh64_craft_check(const void *pages, size_t n)
{
	const unsigned char *base = pages;
	const unsigned char **order;
	uint64_t want = xxh64_craft_hash();
	int err = 0;

	for (size_t i = 0; i < n; i++)
		if (xxh64(base + i * XXH_CRAFT_PAGE, XXH_CRAFT_PAGE, 0) != want)
			return -1;
	order = malloc(n * sizeof(*order));
	if (!order)
		return -3;
	for (size_t i = 0; i < n; i++)
		order[i] = base + i * XXH_CRAFT_PAGE;
	qsort(order, n, sizeof(*order), xxh_craft_cmp);
	for (size_t i = 1; i < n && !err; i++)
		if (!memcmp(order[i - 1], order[i], XXH_CRAFT_PAGE))
			err = -2;
	free(order);
	return err;
}

/*
 * The generator: @n distinct 4096-byte pages at @pages, crafted pages
 * @first_id .. @first_id + n - 1, all with one seed-0 xxh64. It checks
 * that itself (xxh64_craft_check()) and returns its answer.
 */
static inline int xxh64_craft_pages(void *pages, size_t n, uint64_t first_id)
{
	for (size_t i = 0; i < n; i++)
		xxh64_craft_page((unsigned char *)pages + i * XXH_CRAFT_PAGE, first_id + i);
	return xxh64_craft_check(pages, n);
}

#endif /* XXH64_CRAFT_H */
